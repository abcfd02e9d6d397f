//! What a task needs, validated from the ECS wire types once, at the edge.
//!
//! [`TaskRequest::from_spec`] turns a task definition's needs plus the
//! request's `placementConstraints` and `placementStrategy` into typed
//! [`Constraint`]s and [`Strategy`]s, so placement never sees an unchecked
//! string. Errors name the field and the rule, ready to become an
//! `InvalidParameterException`.

use std::collections::BTreeSet;
use std::fmt;

use flotilla_model::ecs;

use crate::cql::{Expression, ParseError};
use crate::instance::attributes;

/// ECS's limits: constraints from the task definition and the request together.
pub const MAX_CONSTRAINTS: usize = 10;
pub const MAX_STRATEGIES: usize = 5;

/// A binding placement constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// At most one task of the request's group per instance.
    DistinctInstance,
    /// Only instances the expression matches.
    MemberOf(Expression),
}

/// Why a placement constraint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("type is required (distinctInstance or memberOf)")]
    MissingType,
    #[error("memberOf requires an expression")]
    MissingExpression,
    #[error("distinctInstance does not take an expression")]
    UnexpectedExpression,
    #[error("expression: {0}")]
    Expression(#[from] ParseError),
}

impl Constraint {
    pub fn parse(wire: &ecs::PlacementConstraint) -> Result<Constraint, ConstraintError> {
        let kind = wire.r#type.ok_or(ConstraintError::MissingType)?;
        Constraint::build(
            kind == ecs::PlacementConstraintType::MemberOf,
            wire.expression.as_deref(),
        )
    }

    /// Task definitions carry their own constraint type (memberOf only).
    pub fn parse_task_definition(
        wire: &ecs::TaskDefinitionPlacementConstraint,
    ) -> Result<Constraint, ConstraintError> {
        let kind = wire.r#type.ok_or(ConstraintError::MissingType)?;
        let member_of = kind == ecs::TaskDefinitionPlacementConstraintType::MemberOf;
        Constraint::build(member_of, wire.expression.as_deref())
    }

    fn build(member_of: bool, expression: Option<&str>) -> Result<Constraint, ConstraintError> {
        // An empty string travels as "no expression" in many clients.
        let expression = expression.filter(|e| !e.trim().is_empty());
        match (member_of, expression) {
            (true, None) => Err(ConstraintError::MissingExpression),
            (true, Some(e)) => Ok(Constraint::MemberOf(Expression::parse(e)?)),
            (false, None) => Ok(Constraint::DistinctInstance),
            (false, Some(_)) => Err(ConstraintError::UnexpectedExpression),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::DistinctInstance => f.write_str("distinctInstance"),
            Constraint::MemberOf(e) => write!(f, "memberOf({e})"),
        }
    }
}

/// The resource `binpack` packs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Cpu,
    Memory,
}

/// What `spread` balances over.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpreadField {
    /// `instanceId` or `host` (the same thing).
    Instance,
    /// `attribute:<name>`; instances without the attribute form one more
    /// value of their own.
    Attribute(String),
}

/// A best-effort ordering of the feasible instances.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Least remaining of the resource, among instances it still fits.
    Binpack(Resource),
    /// Fewest tasks of the request's group per value of the field.
    Spread(SpreadField),
    /// Uniformly at random among the feasible instances.
    Random,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    #[error("type is required (binpack, spread or random)")]
    MissingType,
    #[error("binpack field must be cpu or memory, got {}", shown(.0))]
    BinpackField(Option<String>),
    #[error("spread field must be instanceId, host or attribute:<name>, got {}", shown(.0))]
    SpreadField(Option<String>),
}

/// The field as the user wrote it, for a message (not Rust's `Some("…")`).
fn shown(field: &Option<String>) -> String {
    match field {
        Some(f) => format!("'{f}'"),
        None => "no field".to_owned(),
    }
}

impl Strategy {
    pub fn parse(wire: &ecs::PlacementStrategy) -> Result<Strategy, StrategyError> {
        let kind = wire.r#type.ok_or(StrategyError::MissingType)?;
        let field = wire.field.as_deref().map(str::trim);
        match kind {
            ecs::PlacementStrategyType::Random => Ok(Strategy::Random), // field is not used
            ecs::PlacementStrategyType::Binpack => match field {
                Some(f) if f.eq_ignore_ascii_case("cpu") => Ok(Strategy::Binpack(Resource::Cpu)),
                Some(f) if f.eq_ignore_ascii_case("memory") => {
                    Ok(Strategy::Binpack(Resource::Memory))
                }
                _ => Err(StrategyError::BinpackField(wire.field.clone())),
            },
            ecs::PlacementStrategyType::Spread => match field {
                Some(f)
                    if f.eq_ignore_ascii_case("instanceId") || f.eq_ignore_ascii_case("host") =>
                {
                    Ok(Strategy::Spread(SpreadField::Instance))
                }
                Some(f) => match f.split_once(':') {
                    Some((prefix, name))
                        if prefix.eq_ignore_ascii_case("attribute")
                            && valid_attribute_name(name) =>
                    {
                        Ok(Strategy::Spread(SpreadField::Attribute(name.to_owned())))
                    }
                    _ => Err(StrategyError::SpreadField(wire.field.clone())),
                },
                None => Err(StrategyError::SpreadField(None)),
            },
        }
    }

    /// ECS's default for services: spread over availability zones, then
    /// over instances within a zone.
    pub fn service_default() -> Vec<Strategy> {
        vec![
            Strategy::Spread(SpreadField::Attribute(
                attributes::AVAILABILITY_ZONE.to_owned(),
            )),
            Strategy::Spread(SpreadField::Instance),
        ]
    }
}

fn valid_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '\\'))
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Binpack(Resource::Cpu) => f.write_str("binpack(cpu)"),
            Strategy::Binpack(Resource::Memory) => f.write_str("binpack(memory)"),
            Strategy::Spread(SpreadField::Instance) => f.write_str("spread(instanceId)"),
            Strategy::Spread(SpreadField::Attribute(a)) => write!(f, "spread(attribute:{a})"),
            Strategy::Random => f.write_str("random"),
        }
    }
}

/// What one task holds on its instance while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Demand {
    /// CPU units (1/1024 core).
    pub cpu: u32,
    /// MiB.
    pub memory: u32,
    /// Static host ports; dynamic (0) ports are not listed.
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
}

impl Demand {
    pub fn new(cpu: u32, memory: u32) -> Self {
        Demand {
            cpu,
            memory,
            ..Demand::default()
        }
    }

    /// What a task of this definition reserves on an EC2 host, as ECS
    /// computes it: task-level `cpu`/`memory` if set ("256", "1 vCPU",
    /// "0.5 GB"), else the sum over containers (`memoryReservation`, or
    /// `memory` when no reservation is given); static host ports from the
    /// port mappings (in `host` mode the host port defaults to the container
    /// port; in `bridge` mode 0 or absent means dynamic; `awsvpc` and `none`
    /// bind no host ports).
    pub fn of_task_definition(td: &ecs::TaskDefinition) -> Result<Demand, RequestError> {
        let containers = td.container_definitions.as_deref().unwrap_or(&[]);
        let cpu = match td.cpu.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(s) => parse_units(s, &["vcpu"], "cpu")?,
            None => {
                let mut sum: u64 = 0;
                for (i, c) in containers.iter().enumerate() {
                    let v = c.cpu.unwrap_or(0);
                    sum += u64::try_from(v).map_err(|_| RequestError::Invalid {
                        field: format!("containerDefinitions[{i}].cpu"),
                        message: format!("must not be negative, got {v}"),
                    })?;
                }
                clamp_u32(sum, "cpu")?
            }
        };
        let memory = match td.memory.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(s) => parse_units(s, &["gb", "gib"], "memory")?,
            None => {
                let mut sum: u64 = 0;
                for (i, c) in containers.iter().enumerate() {
                    let v = c.memory_reservation.or(c.memory).unwrap_or(0);
                    sum += u64::try_from(v).map_err(|_| RequestError::Invalid {
                        field: format!("containerDefinitions[{i}].memory"),
                        message: format!("must not be negative, got {v}"),
                    })?;
                }
                clamp_u32(sum, "memory")?
            }
        };
        let mode = td.network_mode.unwrap_or(ecs::NetworkMode::Bridge);
        let mut demand = Demand {
            cpu,
            memory,
            ..Demand::default()
        };
        if matches!(mode, ecs::NetworkMode::Awsvpc | ecs::NetworkMode::None) {
            return Ok(demand);
        }
        for (i, c) in containers.iter().enumerate() {
            for (j, pm) in c.port_mappings.as_deref().unwrap_or(&[]).iter().enumerate() {
                let field = format!("containerDefinitions[{i}].portMappings[{j}].hostPort");
                let host = match (mode, pm.host_port, pm.container_port) {
                    (ecs::NetworkMode::Host, Some(h), _) if h != 0 => h,
                    (ecs::NetworkMode::Host, _, Some(c)) => c,
                    (ecs::NetworkMode::Bridge, Some(h), _) => h,
                    _ => 0,
                };
                if host == 0 {
                    continue; // dynamic: Docker picks a free ephemeral port
                }
                let port = u16::try_from(host).map_err(|_| RequestError::Invalid {
                    field: field.clone(),
                    message: format!("must be between 0 and 65535, got {host}"),
                })?;
                match pm.protocol.unwrap_or(ecs::TransportProtocol::Tcp) {
                    ecs::TransportProtocol::Tcp => demand.tcp_ports.push(port),
                    ecs::TransportProtocol::Udp => demand.udp_ports.push(port),
                }
            }
        }
        Ok(demand)
    }

    fn check_ports(&self) -> Result<(), RequestError> {
        for (ports, proto) in [(&self.tcp_ports, "tcp"), (&self.udp_ports, "udp")] {
            let mut seen = BTreeSet::new();
            for p in ports {
                if !seen.insert(*p) {
                    return Err(RequestError::Invalid {
                        field: "portMappings".into(),
                        message: format!(
                            "host port {p}/{proto} is used more than once in the task"
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

fn clamp_u32(v: u64, what: &str) -> Result<u32, RequestError> {
    u32::try_from(v).map_err(|_| RequestError::Invalid {
        field: what.into(),
        message: format!("{v} is too large"),
    })
}

/// "256" (units), or "1 vCPU" / "0.5 GB" (×1024).
fn parse_units(s: &str, suffixes: &[&str], field: &str) -> Result<u32, RequestError> {
    let bad = || RequestError::Invalid {
        field: field.into(),
        message: format!("'{s}' is not a whole number or a value such as '1 vCPU' / '2 GB'"),
    };
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    for suffix in suffixes {
        if let Some(num) = lower.strip_suffix(suffix) {
            let n: f64 = num.trim().parse().map_err(|_| bad())?;
            if !n.is_finite() || n < 0.0 || n * 1024.0 > f64::from(u32::MAX) {
                return Err(bad());
            }
            return Ok((n * 1024.0).round() as u32);
        }
    }
    t.parse::<u32>().map_err(|_| bad())
}

/// A `requiresAttributes` entry: the attribute must exist, and equal
/// `value` if one is given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequiredAttribute {
    pub name: String,
    pub value: Option<String>,
}

/// Which default strategy applies when a request names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Launch {
    /// A service's tasks: spread by zone, then instance.
    Service,
    /// RunTask: `random` when the request names no strategy, so the tasks
    /// of one call land independently on any feasible instance.
    Standalone,
}

/// Everything the server knows about one placement request, in wire form.
#[derive(Debug, Clone)]
pub struct PlacementSpec<'a> {
    /// `service:<name>`, `family:<family>`, or RunTask's `group`.
    pub group: &'a str,
    pub demand: Demand,
    pub requires_attributes: &'a [ecs::Attribute],
    pub task_definition_constraints: &'a [ecs::TaskDefinitionPlacementConstraint],
    pub constraints: &'a [ecs::PlacementConstraint],
    pub strategies: &'a [ecs::PlacementStrategy],
    pub launch: Launch,
}

impl<'a> PlacementSpec<'a> {
    /// Demand, required attributes and constraints from the task
    /// definition; the caller adds the request's constraints and strategies.
    pub fn for_task_definition(
        td: &'a ecs::TaskDefinition,
        group: &'a str,
        launch: Launch,
    ) -> Result<PlacementSpec<'a>, RequestError> {
        Ok(PlacementSpec {
            group,
            demand: Demand::of_task_definition(td)?,
            requires_attributes: td.requires_attributes.as_deref().unwrap_or(&[]),
            task_definition_constraints: td.placement_constraints.as_deref().unwrap_or(&[]),
            constraints: &[],
            strategies: &[],
            launch,
        })
    }
}

/// Why a request cannot be placed at all, whatever the cluster looks like.
/// `field` is the request path, for an `InvalidParameterException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{field}: {source}")]
    Constraint {
        field: String,
        source: ConstraintError,
    },
    #[error("placementStrategy[{index}]: {source}")]
    Strategy { index: usize, source: StrategyError },
    #[error("at most {MAX_CONSTRAINTS} placement constraints are allowed (task definition and request together), got {0}")]
    TooManyConstraints(usize),
    #[error("at most {MAX_STRATEGIES} placement strategies are allowed, got {0}")]
    TooManyStrategies(usize),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

/// A validated placement request. Build it with [`TaskRequest::from_spec`]
/// (from wire types) or [`TaskRequest::new`] (tests, internal callers).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRequest {
    pub group: String,
    pub demand: Demand,
    pub required_attributes: Vec<RequiredAttribute>,
    pub constraints: Vec<Constraint>,
    /// Applied in order, each breaking the previous one's ties.
    pub strategies: Vec<Strategy>,
}

impl TaskRequest {
    /// No attributes, constraints or strategies; fill the fields directly.
    pub fn new(group: impl Into<String>, demand: Demand) -> Self {
        TaskRequest {
            group: group.into(),
            demand,
            required_attributes: Vec::new(),
            constraints: Vec::new(),
            strategies: Vec::new(),
        }
    }

    pub fn from_spec(spec: &PlacementSpec<'_>) -> Result<TaskRequest, RequestError> {
        spec.demand.check_ports()?;
        let total = spec.task_definition_constraints.len() + spec.constraints.len();
        if total > MAX_CONSTRAINTS {
            return Err(RequestError::TooManyConstraints(total));
        }
        if spec.strategies.len() > MAX_STRATEGIES {
            return Err(RequestError::TooManyStrategies(spec.strategies.len()));
        }
        let mut constraints = Vec::with_capacity(total);
        for (i, c) in spec.task_definition_constraints.iter().enumerate() {
            constraints.push(Constraint::parse_task_definition(c).map_err(|source| {
                RequestError::Constraint {
                    field: format!("taskDefinition.placementConstraints[{i}]"),
                    source,
                }
            })?);
        }
        for (i, c) in spec.constraints.iter().enumerate() {
            constraints.push(
                Constraint::parse(c).map_err(|source| RequestError::Constraint {
                    field: format!("placementConstraints[{i}]"),
                    source,
                })?,
            );
        }
        let mut strategies = Vec::with_capacity(spec.strategies.len());
        for (index, s) in spec.strategies.iter().enumerate() {
            strategies.push(
                Strategy::parse(s).map_err(|source| RequestError::Strategy { index, source })?,
            );
        }
        if strategies.is_empty() {
            strategies = match spec.launch {
                Launch::Service => Strategy::service_default(),
                Launch::Standalone => vec![Strategy::Random],
            };
        }
        let mut required_attributes = Vec::with_capacity(spec.requires_attributes.len());
        for (i, a) in spec.requires_attributes.iter().enumerate() {
            let name = a.name.as_deref().unwrap_or("").trim();
            if name.is_empty() {
                return Err(RequestError::Invalid {
                    field: format!("requiresAttributes[{i}].name"),
                    message: "is required".into(),
                });
            }
            required_attributes.push(RequiredAttribute {
                name: name.to_owned(),
                value: a.value.clone(),
            });
        }
        Ok(TaskRequest {
            group: spec.group.to_owned(),
            demand: spec.demand.clone(),
            required_attributes,
            constraints,
            strategies,
        })
    }

    pub fn distinct_instance(&self) -> bool {
        self.constraints
            .iter()
            .any(|c| matches!(c, Constraint::DistinctInstance))
    }

    /// The memberOf expressions, in order.
    pub fn member_of(&self) -> impl Iterator<Item = &Expression> {
        self.constraints.iter().filter_map(|c| match c {
            Constraint::MemberOf(e) => Some(e),
            Constraint::DistinctInstance => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint(
        kind: Option<ecs::PlacementConstraintType>,
        expr: Option<&str>,
    ) -> ecs::PlacementConstraint {
        ecs::PlacementConstraint {
            r#type: kind,
            expression: expr.map(str::to_owned),
        }
    }

    fn strategy(
        kind: Option<ecs::PlacementStrategyType>,
        field: Option<&str>,
    ) -> ecs::PlacementStrategy {
        ecs::PlacementStrategy {
            r#type: kind,
            field: field.map(str::to_owned),
        }
    }

    #[test]
    fn constraints_parse_with_clear_errors() {
        use ecs::PlacementConstraintType::*;
        assert_eq!(
            Constraint::parse(&constraint(Some(DistinctInstance), None)),
            Ok(Constraint::DistinctInstance)
        );
        assert!(matches!(
            Constraint::parse(&constraint(Some(MemberOf), Some("attribute:a exists"))),
            Ok(Constraint::MemberOf(_))
        ));
        let e = Constraint::parse(&constraint(Some(MemberOf), None)).unwrap_err();
        assert_eq!(e.to_string(), "memberOf requires an expression");
        assert_eq!(
            Constraint::parse(&constraint(Some(MemberOf), Some("  "))),
            Err(ConstraintError::MissingExpression)
        );
        assert_eq!(
            Constraint::parse(&constraint(None, None)),
            Err(ConstraintError::MissingType)
        );
        assert_eq!(
            Constraint::parse(&constraint(
                Some(DistinctInstance),
                Some("attribute:a exists")
            )),
            Err(ConstraintError::UnexpectedExpression)
        );
        let e = Constraint::parse(&constraint(Some(MemberOf), Some("attribute:a =="))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "expression: expected a value after '==', found end of expression at position 15"
        );
    }

    #[test]
    fn strategies_parse_with_clear_errors() {
        use ecs::PlacementStrategyType::*;
        let p = |k, f| Strategy::parse(&strategy(k, f));
        assert_eq!(
            p(Some(Binpack), Some("memory")),
            Ok(Strategy::Binpack(Resource::Memory))
        );
        assert_eq!(
            p(Some(Binpack), Some("CPU")),
            Ok(Strategy::Binpack(Resource::Cpu))
        );
        assert_eq!(
            p(Some(Binpack), Some("disk")).unwrap_err().to_string(),
            "binpack field must be cpu or memory, got 'disk'"
        );
        assert_eq!(
            p(Some(Binpack), None).unwrap_err().to_string(),
            "binpack field must be cpu or memory, got no field"
        );
        assert_eq!(
            p(Some(Spread), Some("host")),
            Ok(Strategy::Spread(SpreadField::Instance))
        );
        assert_eq!(
            p(Some(Spread), Some("instanceId")),
            Ok(Strategy::Spread(SpreadField::Instance))
        );
        assert_eq!(
            p(Some(Spread), Some("attribute:ecs.availability-zone")),
            Ok(Strategy::Spread(SpreadField::Attribute(
                "ecs.availability-zone".into()
            )))
        );
        assert!(p(Some(Spread), Some("attribute:")).is_err());
        assert!(p(Some(Spread), Some("zone"))
            .unwrap_err()
            .to_string()
            .starts_with("spread field must be"));
        assert!(p(Some(Spread), None).is_err());
        assert_eq!(p(Some(Random), Some("ignored")), Ok(Strategy::Random));
        assert_eq!(p(None, Some("cpu")), Err(StrategyError::MissingType));
    }

    #[test]
    fn from_spec_applies_limits_and_defaults() {
        use ecs::PlacementConstraintType::*;
        let many: Vec<_> = (0..11)
            .map(|_| constraint(Some(DistinctInstance), None))
            .collect();
        let spec = PlacementSpec {
            group: "service:web",
            demand: Demand::new(256, 512),
            requires_attributes: &[],
            task_definition_constraints: &[],
            constraints: &many,
            strategies: &[],
            launch: Launch::Service,
        };
        assert_eq!(
            TaskRequest::from_spec(&spec),
            Err(RequestError::TooManyConstraints(11))
        );
        let spec = PlacementSpec {
            constraints: &many[..2],
            ..spec
        };
        let req = TaskRequest::from_spec(&spec).unwrap();
        assert_eq!(req.strategies, Strategy::service_default());
        assert!(req.distinct_instance());
        let spec = PlacementSpec {
            launch: Launch::Standalone,
            ..spec
        };
        assert_eq!(
            TaskRequest::from_spec(&spec).unwrap().strategies,
            vec![Strategy::Random]
        );
        let six: Vec<_> = (0..6)
            .map(|_| strategy(Some(ecs::PlacementStrategyType::Random), None))
            .collect();
        let spec = PlacementSpec {
            strategies: &six,
            ..spec
        };
        assert_eq!(
            TaskRequest::from_spec(&spec),
            Err(RequestError::TooManyStrategies(6))
        );
        let bad = [
            constraint(Some(DistinctInstance), None),
            constraint(Some(MemberOf), None),
        ];
        let spec = PlacementSpec {
            strategies: &[],
            constraints: &bad,
            ..spec
        };
        assert_eq!(
            TaskRequest::from_spec(&spec).unwrap_err().to_string(),
            "placementConstraints[1]: memberOf requires an expression"
        );
        let dup = PlacementSpec {
            constraints: &[],
            demand: Demand {
                tcp_ports: vec![80, 80],
                ..Demand::new(1, 1)
            },
            ..spec
        };
        assert!(TaskRequest::from_spec(&dup)
            .unwrap_err()
            .to_string()
            .contains("80/tcp is used more than once"));
    }

    fn container(
        cpu: Option<i32>,
        memory: Option<i32>,
        reservation: Option<i32>,
    ) -> ecs::ContainerDefinition {
        ecs::ContainerDefinition {
            cpu,
            memory,
            memory_reservation: reservation,
            ..Default::default()
        }
    }

    fn mapping(container: i32, host: Option<i32>, udp: bool) -> ecs::PortMapping {
        ecs::PortMapping {
            container_port: Some(container),
            host_port: host,
            protocol: Some(if udp {
                ecs::TransportProtocol::Udp
            } else {
                ecs::TransportProtocol::Tcp
            }),
            ..Default::default()
        }
    }

    #[test]
    fn demand_of_a_task_definition() {
        let mut web = container(Some(256), Some(512), None);
        web.port_mappings = Some(vec![
            mapping(80, Some(8080), false),
            mapping(9000, Some(0), false),
            mapping(53, Some(53), true),
        ]);
        let sidecar = container(None, Some(1024), Some(128));
        let mut td = ecs::TaskDefinition {
            container_definitions: Some(vec![web, sidecar]),
            ..Default::default()
        };
        let d = Demand::of_task_definition(&td).unwrap();
        assert_eq!(
            (d.cpu, d.memory),
            (256, 640),
            "reservation wins over the hard limit"
        );
        assert_eq!(
            (d.tcp_ports.clone(), d.udp_ports.clone()),
            (vec![8080], vec![53])
        );

        td.cpu = Some("1 vCPU".into());
        td.memory = Some("0.5 GB".into());
        td.network_mode = Some(ecs::NetworkMode::Host);
        if let Some(cs) = td.container_definitions.as_mut() {
            cs[0].port_mappings = Some(vec![mapping(80, None, false)]);
        }
        let d = Demand::of_task_definition(&td).unwrap();
        assert_eq!(
            (d.cpu, d.memory, d.tcp_ports.clone()),
            (1024, 512, vec![80]),
            "host mode binds the container port"
        );

        td.network_mode = Some(ecs::NetworkMode::Awsvpc);
        assert!(Demand::of_task_definition(&td)
            .unwrap()
            .tcp_ports
            .is_empty());

        td.cpu = Some("lots".into());
        assert!(Demand::of_task_definition(&td)
            .unwrap_err()
            .to_string()
            .starts_with("cpu: 'lots'"));
        td.cpu = Some("512".into());
        td.network_mode = None;
        if let Some(cs) = td.container_definitions.as_mut() {
            cs[0].port_mappings = Some(vec![mapping(80, Some(70000), false)]);
        }
        let e = Demand::of_task_definition(&td).unwrap_err().to_string();
        assert_eq!(e, "containerDefinitions[0].portMappings[0].hostPort: must be between 0 and 65535, got 70000");
        let neg = ecs::TaskDefinition {
            container_definitions: Some(vec![container(Some(-1), None, None)]),
            ..Default::default()
        };
        assert!(Demand::of_task_definition(&neg).is_err());
    }
}
