//! RegisterTaskDefinition's rules, as pure functions over the wire types.
//!
//! - [`validate_register`]: every rule a request must pass, in the order ECS
//!   applies them as far as we know it; the first broken rule comes back as a
//!   [`TaskDefinitionError`] that names the field, the rule and the AWS error
//!   code.
//! - [`requires_attributes`] and [`compatibilities`]: what ECS computes and
//!   reports on the registered definition.
//! - [`build_task_definition`]: the stored/described `TaskDefinition`.
//! - [`parse_task_cpu`] and [`parse_task_memory`]: task-level sizes in CPU
//!   units and MiB, for the scheduler.
//!
//! Where the rules come from: the ECS developer guide (task definition
//! parameters, task size), the API reference, error messages real ECS returned
//! in public issue threads (quoted verbatim where we found them), and the
//! describe-task-definition outputs in `shared/reference/taskdefs` (which is
//! how the `requiresAttributes` mapping was checked).
//!
//! Decisions a reader should know about:
//! - Task `cpu`/`memory` are stored **as given** (".25 vcpu" comes back as
//!   ".25 vcpu") and only parsed for validation. Real ECS documents that it
//!   converts unit strings to integers at registration; we deliberately keep
//!   the caller's text (project decision). Everything that needs numbers calls
//!   [`parse_task_cpu`] / [`parse_task_memory`].
//! - [`build_task_definition`] fills the defaults real ECS is known to fill in
//!   (see its docs); it adds nothing else.
//! - Task `tags` are not part of `TaskDefinition` on the wire: they travel in
//!   `RegisterTaskDefinitionResponse.tags` / `DescribeTaskDefinition` with
//!   `include: [TAGS]`; the caller stores them next to the definition.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::ecs;
use crate::shape::Shape;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The AWS error code a rejected registration answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// What ECS answers for nearly every task definition problem.
    ClientException,
    /// The model's own rules (required members, lengths, list sizes) and tags.
    InvalidParameterException,
}

impl ErrorCode {
    /// The code as it travels in `__type` / `X-Amzn-ErrorType`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ClientException => "ClientException",
            ErrorCode::InvalidParameterException => "InvalidParameterException",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule a request broke. Tests and callers match on this; the message
/// is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A `required`/min/max rule of the service model.
    Shape,
    /// `family`: present, 1–255 of letters, digits, `-`, `_`.
    Family,
    /// `containerDefinitions`: 1–10 containers.
    ContainerCount,
    /// A container's `name`: present, 1–255 of letters, digits, `-`, `_`.
    ContainerName,
    /// Container names are unique within the definition.
    DuplicateContainerName,
    /// A container's `image` is present and not blank.
    ContainerImage,
    /// At least one container is essential.
    EssentialContainer,
    /// Container `cpu` is not negative.
    ContainerCpu,
    /// Container `memory`/`memoryReservation`: positive, reservation ≤ memory,
    /// one of them present when the task has no memory (EC2/EXTERNAL).
    ContainerMemory,
    /// The containers' `cpu` sum and each container's `memory` fit the task.
    TaskResources,
    /// Task `cpu` parses and is in range.
    TaskCpu,
    /// Task `memory` parses and is in range.
    TaskMemory,
    /// Something the network mode does not allow (`hostname` in awsvpc,
    /// port mappings in none, a Windows definition in bridge mode…).
    NetworkMode,
    /// `portMappings` entries: container port or range, host port.
    PortMapping,
    /// In host/awsvpc mode, host port == container port.
    HostPortMismatch,
    /// The same static host port (per protocol) mapped twice in the task, or
    /// the same container port twice in a container.
    PortConflict,
    /// `links`: bridge mode only, naming other containers, no cycles.
    Link,
    /// `dependsOn`: known containers, not itself, condition rules, no cycles.
    DependsOn,
    /// `volumesFrom` names another container of the definition.
    VolumesFrom,
    /// `volumes` names: present, valid, unique.
    Volume,
    /// `mountPoints`: `sourceVolume` names a volume, `containerPath` given.
    MountPoint,
    /// `healthCheck` command and limits.
    HealthCheck,
    /// `environment` entries have a name and a value.
    Environment,
    /// `logConfiguration` options the driver needs.
    LogConfiguration,
    /// `placementConstraints`: at most 10, memberOf with an expression.
    PlacementConstraint,
    /// `ephemeralStorage.sizeInGiB` within 21–200.
    EphemeralStorage,
    /// `proxyConfiguration.containerName` names a container.
    ProxyConfiguration,
    /// Tags: unique keys, no `aws:` prefix.
    Tags,
    /// The definition uses something the requested launch type (FARGATE,
    /// EXTERNAL, EC2) does not support.
    LaunchType,
}

/// A rejected RegisterTaskDefinition: which field, which rule, which AWS
/// error code, and a message that says what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskDefinitionError {
    pub code: ErrorCode,
    pub rule: Rule,
    /// Path of the offending field, e.g. `containerDefinitions[1].dependsOn[0].containerName`.
    pub field: String,
    /// The message for the wire. Mirrors ECS's wording where we know it, and
    /// names the field.
    pub message: String,
}

fn client(rule: Rule, field: impl Into<String>, message: impl Into<String>) -> TaskDefinitionError {
    TaskDefinitionError {
        code: ErrorCode::ClientException,
        rule,
        field: field.into(),
        message: message.into(),
    }
}

fn invalid(
    rule: Rule,
    field: impl Into<String>,
    message: impl Into<String>,
) -> TaskDefinitionError {
    TaskDefinitionError {
        code: ErrorCode::InvalidParameterException,
        rule,
        field: field.into(),
        message: message.into(),
    }
}

type Result<T, E = TaskDefinitionError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// Containers per task definition (ECS service quota, not adjustable).
pub const MAX_CONTAINERS: usize = 10;
/// Placement constraints in a task definition.
pub const MAX_PLACEMENT_CONSTRAINTS: usize = 10;
/// Characters in a placement constraint expression.
pub const MAX_CONSTRAINT_EXPRESSION_CHARS: usize = 2000;
/// Task `cpu` range for EC2/EXTERNAL, in CPU units (0.125 to 192 vCPU).
pub const EC2_TASK_CPU_RANGE: std::ops::RangeInclusive<i32> = 128..=196_608;
/// `ephemeralStorage.sizeInGiB` range.
pub const EPHEMERAL_STORAGE_GIB_RANGE: std::ops::RangeInclusive<i32> = 21..=200;
/// Longest `stopTimeout` Fargate accepts, in seconds.
pub const FARGATE_MAX_STOP_TIMEOUT: i32 = 120;

const MAX_NAME_CHARS: usize = 255;

// ---------------------------------------------------------------------------
// Task size
// ---------------------------------------------------------------------------

/// Parses a task-level `cpu` into CPU units (1024 per vCPU).
///
/// Accepts what the ECS docs document: an integer of CPU units (`"1024"`) or
/// vCPUs with the `vcpu` unit in any case, with or without a space, whole or
/// fractional (`"1 vCPU"`, `"2vcpu"`, `".25 vcpu"`). The result must be a
/// positive whole number of units. Ranges (EC2's 128–196608, Fargate's fixed
/// sizes) are checked by [`validate_register`], not here.
pub fn parse_task_cpu(value: &str) -> Result<i32> {
    parse_size(value, "vcpu", 1024).ok_or_else(|| {
        client(
            Rule::TaskCpu,
            "cpu",
            format!(
                "Invalid 'cpu' setting for task. ({value:?}: use an integer of CPU units \
                 (\"1024\") or vCPUs (\"1 vCPU\", \".25 vcpu\"))"
            ),
        )
    })
}

/// Parses a task-level `memory` into MiB.
///
/// Accepts what the ECS docs document: an integer of MiB (`"2048"`) or GB
/// (1 GB = 1024 MiB) with the `GB` unit in any case, with or without a space,
/// whole or fractional (`"1GB"`, `"0.5 GB"`, `".5 gb"`). Other units (`MiB`,
/// `MB`, `GiB`) are not documented by ECS and are rejected.
pub fn parse_task_memory(value: &str) -> Result<i32> {
    parse_size(value, "gb", 1024).ok_or_else(|| {
        client(
            Rule::TaskMemory,
            "memory",
            format!(
                "Invalid 'memory' setting for task. ({value:?}: use an integer of MiB \
                 (\"2048\") or GB (\"2 GB\", \".5 gb\"))"
            ),
        )
    })
}

/// `"<integer>"` as is, or `"<decimal>[ ]<unit>"` times `scale`; positive,
/// whole and within `i32`.
fn parse_size(value: &str, unit: &str, scale: u32) -> Option<i32> {
    let text = value.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i32>().ok().filter(|n| *n > 0);
    }
    let lower = text.to_ascii_lowercase();
    let number = lower.strip_suffix(unit)?.trim_end();
    let mut dots = 0;
    let well_formed = !number.is_empty()
        && number.bytes().all(|b| {
            dots += usize::from(b == b'.');
            b.is_ascii_digit() || b == b'.'
        })
        && dots <= 1
        && number != ".";
    if !well_formed {
        return None;
    }
    let scaled = number.parse::<f64>().ok()? * f64::from(scale);
    if scaled <= 0.0 || scaled.fract() != 0.0 || scaled > f64::from(i32::MAX) {
        return None;
    }
    // Whole and in range, checked above.
    Some(scaled as i32)
}

/// The memory sizes (MiB) Fargate offers for a task CPU size, as the ECS
/// "task size" table documents them; empty for a CPU size Fargate lacks.
pub fn fargate_memory_options(cpu: i32) -> Vec<i32> {
    let gb = 1024;
    match cpu {
        256 => vec![512, gb, 2 * gb],
        512 => (1..=4).map(|n| n * gb).collect(),
        1024 => (2..=8).map(|n| n * gb).collect(),
        2048 => (4..=16).map(|n| n * gb).collect(),
        4096 => (8..=30).map(|n| n * gb).collect(),
        8192 => (4..=15).map(|n| n * 4 * gb).collect(),
        16384 => (4..=15).map(|n| n * 8 * gb).collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// The network mode the containers actually get: absent means bridge on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    Bridge,
    Host,
    Awsvpc,
    None,
}

impl Net {
    fn of(req_mode: Option<ecs::NetworkMode>) -> Net {
        match req_mode {
            None | Some(ecs::NetworkMode::Bridge) => Net::Bridge,
            Some(ecs::NetworkMode::Host) => Net::Host,
            Some(ecs::NetworkMode::Awsvpc) => Net::Awsvpc,
            Some(ecs::NetworkMode::None) => Net::None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Net::Bridge => "bridge",
            Net::Host => "host",
            Net::Awsvpc => "awsvpc",
            Net::None => "none",
        }
    }
}

/// What the rules share: the request, its containers, the effective network
/// mode, the parsed task size and a name → index map.
struct Ctx<'a> {
    req: &'a ecs::RegisterTaskDefinitionRequest,
    containers: &'a [ecs::ContainerDefinition],
    net: Net,
    task_cpu: Option<i32>,
    task_memory: Option<i32>,
    by_name: HashMap<&'a str, usize>,
}

impl<'a> Ctx<'a> {
    /// A context that tolerates a broken request (used by
    /// [`compatibilities`] and [`requires_attributes`]).
    fn lenient(req: &'a ecs::RegisterTaskDefinitionRequest) -> Ctx<'a> {
        let containers = req.container_definitions.as_deref().unwrap_or(&[]);
        let mut by_name = HashMap::new();
        for (i, c) in containers.iter().enumerate() {
            if let Some(name) = c.name.as_deref() {
                by_name.entry(name).or_insert(i);
            }
        }
        Ctx {
            req,
            containers,
            net: Net::of(req.network_mode),
            task_cpu: req.cpu.as_deref().and_then(|v| parse_task_cpu(v).ok()),
            task_memory: req
                .memory
                .as_deref()
                .and_then(|v| parse_task_memory(v).ok()),
            by_name,
        }
    }

    fn name(&self, i: usize) -> &'a str {
        self.containers[i].name.as_deref().unwrap_or("")
    }

    fn is_windows(&self) -> bool {
        self.req
            .runtime_platform
            .as_ref()
            .and_then(|p| p.operating_system_family)
            .is_some_and(|os| os != ecs::OSFamily::Linux)
    }
}

fn container_path(i: usize) -> String {
    format!("containerDefinitions[{i}]")
}

fn is_essential(c: &ecs::ContainerDefinition) -> bool {
    c.essential.unwrap_or(true)
}

/// Letters, digits, hyphens and underscores, 1–255 of them: the charset of
/// families, container names and volume names.
fn is_resource_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= MAX_NAME_CHARS
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks a RegisterTaskDefinition request against ECS's rules.
///
/// Order: family, container list, the model's shape rules, tags, task size,
/// each container on its own, the containers together (names, essential,
/// dependsOn, links, volumes, ports, resources), placement, and last the
/// requested launch types (`requiresCompatibilities`; EC2 when absent or
/// empty). The first broken rule is returned.
pub fn validate_register(req: &ecs::RegisterTaskDefinitionRequest) -> Result<()> {
    check_family(req)?;
    let containers = match req.container_definitions.as_deref() {
        Some(c) if !c.is_empty() => c,
        _ => {
            return Err(client(
                Rule::ContainerCount,
                "containerDefinitions",
                "Container list cannot be empty. (containerDefinitions needs at least one \
                 container definition)",
            ))
        }
    };
    if containers.len() > MAX_CONTAINERS {
        return Err(client(
            Rule::ContainerCount,
            "containerDefinitions",
            format!(
                "A task definition can have at most {MAX_CONTAINERS} containers; \
                 containerDefinitions has {}.",
                containers.len()
            ),
        ));
    }
    req.validate().map_err(|v| {
        invalid(
            Rule::Shape,
            v.field.clone(),
            format!("Invalid request: {} {}.", v.field, v.rule),
        )
    })?;
    check_tags(req)?;

    let task_cpu = req.cpu.as_deref().map(parse_task_cpu).transpose()?;
    let task_memory = req.memory.as_deref().map(parse_task_memory).transpose()?;
    let mut ctx = Ctx::lenient(req);
    ctx.task_cpu = task_cpu;
    ctx.task_memory = task_memory;

    check_names(&ctx)?;
    for i in 0..containers.len() {
        check_container(&ctx, i)?;
    }
    check_essential(&ctx)?;
    check_depends_on(&ctx)?;
    check_links(&ctx)?;
    check_volumes_from(&ctx)?;
    check_volumes_and_mounts(&ctx)?;
    check_port_conflicts(&ctx)?;
    check_task_resources(&ctx)?;
    check_placement_constraints(req)?;
    check_ephemeral_storage(req)?;
    check_proxy(&ctx)?;
    check_launch_types(&ctx)
}

fn check_family(req: &ecs::RegisterTaskDefinitionRequest) -> Result<()> {
    match req.family.as_deref() {
        None | Some("") => Err(client(
            Rule::Family,
            "family",
            "Family can not be blank. (family: up to 255 letters, numbers, hyphens and \
             underscores)",
        )),
        Some(f) if !is_resource_name(f) => Err(client(
            Rule::Family,
            "family",
            format!(
                "Family contains invalid characters. (family {f:?}: up to 255 letters, \
                 numbers, hyphens and underscores are allowed)"
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn check_tags(req: &ecs::RegisterTaskDefinitionRequest) -> Result<()> {
    let Some(tags) = &req.tags else { return Ok(()) };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, tag) in tags.iter().enumerate() {
        let field = format!("tags[{i}].key");
        let Some(key) = tag.key.as_deref() else {
            return Err(invalid(
                Rule::Tags,
                field,
                format!("Tag key is required (tags[{i}].key)."),
            ));
        };
        if key.len() >= 4 && key[..4].eq_ignore_ascii_case("aws:") {
            return Err(invalid(
                Rule::Tags,
                field.clone(),
                format!(
                    "Tag keys beginning with 'aws:' are reserved for AWS use ({field} is {key:?})."
                ),
            ));
        }
        if let Some(first) = seen.insert(key, i) {
            return Err(invalid(
                Rule::Tags,
                field,
                format!("Duplicate tag key {key:?}: tags[{first}] and tags[{i}]. Tag keys must be unique."),
            ));
        }
    }
    Ok(())
}

fn check_names(ctx: &Ctx<'_>) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, c) in ctx.containers.iter().enumerate() {
        let field = format!("{}.name", container_path(i));
        let name = match c.name.as_deref() {
            None | Some("") => {
                return Err(client(
                    Rule::ContainerName,
                    field.clone(),
                    "Container.name should not be null or empty.",
                ))
            }
            Some(n) => n,
        };
        if !is_resource_name(name) {
            return Err(client(
                Rule::ContainerName,
                field.clone(),
                format!(
                    "Container.name contains invalid characters. ({field} is {name:?}; up to 255 \
                     letters, numbers, hyphens and underscores are allowed)"
                ),
            ));
        }
        if let Some(first) = seen.insert(name, i) {
            return Err(client(
                Rule::DuplicateContainerName,
                field,
                format!(
                    "Container names must be unique within a Task Definition. ({name:?} is used by \
                     containerDefinitions[{first}] and containerDefinitions[{i}])"
                ),
            ));
        }
    }
    Ok(())
}

/// The rules that look at one container alone.
fn check_container(ctx: &Ctx<'_>, i: usize) -> Result<()> {
    let c = &ctx.containers[i];
    let at = container_path(i);
    let name = ctx.name(i);

    if c.image.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return Err(client(
            Rule::ContainerImage,
            format!("{at}.image"),
            "Container.image should not be null or empty.",
        ));
    }
    if let Some(cpu) = c.cpu {
        if cpu < 0 {
            return Err(client(
                Rule::ContainerCpu,
                format!("{at}.cpu"),
                format!("Invalid 'cpu' setting for container '{name}'. ({cpu}; must be 0 or more CPU units)"),
            ));
        }
    }
    for (field, value) in [
        ("memory", c.memory),
        ("memoryReservation", c.memory_reservation),
    ] {
        if let Some(v) = value {
            if v <= 0 {
                return Err(client(
                    Rule::ContainerMemory,
                    format!("{at}.{field}"),
                    format!(
                        "Invalid '{field}' setting for container '{name}'. ({v}; must be a positive \
                         number of MiB)"
                    ),
                ));
            }
        }
    }
    if let (Some(memory), Some(reservation)) = (c.memory, c.memory_reservation) {
        if reservation > memory {
            return Err(client(
                Rule::ContainerMemory,
                format!("{at}.memoryReservation"),
                format!(
                    "Invalid setting for container '{name}'. 'memory' must be greater than or equal \
                     to 'memoryReservation'. (memory {memory}, memoryReservation {reservation})"
                ),
            ));
        }
    }
    if ctx.net == Net::Awsvpc && c.hostname.is_some() {
        return Err(client(
            Rule::NetworkMode,
            format!("{at}.hostname"),
            format!("hostname is not supported on container when networkMode=awsvpc. (container '{name}')"),
        ));
    }
    check_environment(c, &at, name)?;
    check_port_mappings(ctx, i)?;
    if let Some(hc) = &c.health_check {
        check_health_check(hc, &format!("{at}.healthCheck"), name)?;
    }
    if let Some(log) = &c.log_configuration {
        check_log_configuration(log, &format!("{at}.logConfiguration"), name)?;
    }
    Ok(())
}

fn check_environment(c: &ecs::ContainerDefinition, at: &str, name: &str) -> Result<()> {
    for (j, kv) in c.environment.iter().flatten().enumerate() {
        let here = format!("{at}.environment[{j}]");
        let Some(var) = kv.name.as_deref().filter(|n| !n.trim().is_empty()) else {
            return Err(client(
                Rule::Environment,
                format!("{here}.name"),
                format!("Environment variable name cannot be null or blank. ({here}.name, container '{name}')"),
            ));
        };
        // The model does not mark `value` required, but the docs do, and an
        // entry without one is nearly always a secret put in the wrong list
        // (`valueFrom` belongs in `secrets`): registering it would silently
        // drop what the user meant.
        if kv.value.is_none() {
            return Err(client(
                Rule::Environment,
                format!("{here}.value"),
                format!(
                    "Environment variable {var:?} of container '{name}' has no value ({here}.value). \
                     To take a value from Secrets Manager or SSM Parameter Store, list it under \
                     'secrets' with 'valueFrom'."
                ),
            ));
        }
    }
    Ok(())
}

/// `"1-100"` → (1, 100) when 1 ≤ start < end ≤ 65535.
fn parse_port_range(s: &str) -> Option<(i32, i32)> {
    let (a, b) = s.split_once('-')?;
    let (a, b) = (a.trim().parse::<i32>().ok()?, b.trim().parse::<i32>().ok()?);
    (1 <= a && a < b && b <= 65535).then_some((a, b))
}

fn protocol_str(p: Option<ecs::TransportProtocol>) -> &'static str {
    p.unwrap_or(ecs::TransportProtocol::Tcp).as_str()
}

fn check_port_mappings(ctx: &Ctx<'_>, i: usize) -> Result<()> {
    let c = &ctx.containers[i];
    let at = container_path(i);
    let name = ctx.name(i);
    let mappings = c.port_mappings.as_deref().unwrap_or(&[]);
    if ctx.net == Net::None && !mappings.is_empty() {
        return Err(client(
            Rule::NetworkMode,
            format!("{at}.portMappings"),
            format!("Port mappings are not supported when networkMode=none (container '{name}')."),
        ));
    }
    let mut seen: HashMap<(i32, &str), usize> = HashMap::new();
    for (j, pm) in mappings.iter().enumerate() {
        let here = format!("{at}.portMappings[{j}]");
        match (pm.container_port, pm.container_port_range.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(client(
                    Rule::PortMapping,
                    format!("{here}.containerPortRange"),
                    format!(
                        "Invalid port mapping for container '{name}' ({here}): give either \
                         containerPort or containerPortRange, not both."
                    ),
                ))
            }
            (None, None) => {
                return Err(client(
                    Rule::PortMapping,
                    format!("{here}.containerPort"),
                    format!(
                        "Invalid 'containerPort' setting for container '{name}'. ({here}: a port \
                         mapping needs a containerPort or a containerPortRange)"
                    ),
                ))
            }
            (Some(port), None) if !(1..=65535).contains(&port) => {
                return Err(client(
                    Rule::PortMapping,
                    format!("{here}.containerPort"),
                    format!(
                    "Invalid 'containerPort' setting for container '{name}'. ({here}.containerPort \
                         is {port}; must be 1-65535)"
                ),
                ))
            }
            (None, Some(range)) => {
                if parse_port_range(range).is_none() {
                    return Err(client(
                        Rule::PortMapping,
                        format!("{here}.containerPortRange"),
                        format!(
                            "Invalid 'containerPortRange' setting for container '{name}' \
                             ({here}.containerPortRange is {range:?}; expected \"start-end\" with \
                             1 <= start < end <= 65535)."
                        ),
                    ));
                }
                if pm.host_port.is_some() {
                    return Err(client(
                        Rule::PortMapping,
                        format!("{here}.hostPort"),
                        format!(
                            "Container '{name}' ({here}): hostPort cannot be set together with \
                             containerPortRange; host ports for a range are assigned by ECS."
                        ),
                    ));
                }
                if !matches!(ctx.net, Net::Bridge | Net::Awsvpc) {
                    return Err(client(
                        Rule::NetworkMode,
                        format!("{here}.containerPortRange"),
                        format!(
                            "containerPortRange is only supported when networkMode is bridge or \
                             awsvpc, not {} (container '{name}').",
                            ctx.net.as_str()
                        ),
                    ));
                }
            }
            (Some(_), None) => {}
        }
        if let Some(host) = pm.host_port {
            if !(0..=65535).contains(&host) {
                return Err(client(
                    Rule::PortMapping,
                    format!("{here}.hostPort"),
                    format!(
                        "Invalid 'hostPort' setting for container '{name}' ({here}.hostPort is \
                         {host}; must be 0-65535)."
                    ),
                ));
            }
            if let Some(port) = pm.container_port {
                // 0 is "not set" (dynamic); in host/awsvpc mode ECS uses the
                // container port for it.
                if matches!(ctx.net, Net::Host | Net::Awsvpc) && host != 0 && host != port {
                    return Err(client(
                        Rule::HostPortMismatch,
                        format!("{here}.hostPort"),
                        format!(
                            "When networkMode={}, the host ports and container ports in port \
                             mappings must match. (container '{name}', {here}: hostPort {host}, \
                             containerPort {port})",
                            ctx.net.as_str()
                        ),
                    ));
                }
            }
        }
        if let Some(port) = pm.container_port {
            let protocol = protocol_str(pm.protocol);
            if let Some(first) = seen.insert((port, protocol), j) {
                return Err(client(
                    Rule::PortConflict,
                    format!("{here}.containerPort"),
                    format!(
                        "Container '{name}' maps container port {port}/{protocol} twice \
                         ({at}.portMappings[{first}] and {here})."
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_health_check(hc: &ecs::HealthCheck, at: &str, name: &str) -> Result<()> {
    let command = hc.command.as_deref().unwrap_or(&[]);
    let runs_something = match command.first().map(String::as_str) {
        None => false,
        Some("CMD") | Some("CMD-SHELL") => command[1..].iter().any(|s| !s.trim().is_empty()),
        // Without a CMD/CMD-SHELL prefix the whole list is the command (exec
        // form). The developer guide documents CMD as the default, and real
        // ECS registers such definitions (e.g. the ADOT collector's
        // ["/healthcheck"]).
        Some(_) => command.iter().any(|s| !s.trim().is_empty()),
    };
    if !runs_something {
        return Err(client(
            Rule::HealthCheck,
            format!("{at}.command"),
            format!(
                "Invalid healthCheck for container '{name}': {at}.command must name a command to \
                 run, e.g. [\"CMD-SHELL\", \"curl -f http://localhost/ || exit 1\"]."
            ),
        ));
    }
    let limits = [
        ("interval", hc.interval, 5, 300),
        ("timeout", hc.timeout, 2, 120),
        ("retries", hc.retries, 1, 10),
        ("startPeriod", hc.start_period, 0, 300),
    ];
    for (field, value, min, max) in limits {
        if let Some(v) = value {
            if !(min..=max).contains(&v) {
                return Err(client(
                    Rule::HealthCheck,
                    format!("{at}.{field}"),
                    format!(
                        "Invalid healthCheck for container '{name}': {at}.{field} is {v}; it must \
                         be between {min} and {max}."
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_log_configuration(log: &ecs::LogConfiguration, at: &str, name: &str) -> Result<()> {
    if log.log_driver == Some(ecs::LogDriver::Awslogs) {
        let options = log.options.as_ref();
        let missing: Vec<&str> = ["awslogs-region", "awslogs-group"]
            .into_iter()
            .filter(|k| options.and_then(|o| o.get(*k)).is_none_or(|v| v.is_empty()))
            .collect();
        if !missing.is_empty() {
            return Err(client(
                Rule::LogConfiguration,
                format!("{at}.options"),
                format!(
                    "Log driver awslogs requires options: awslogs-region, awslogs-group \
                     (container '{name}' is missing {}).",
                    missing.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn check_essential(ctx: &Ctx<'_>) -> Result<()> {
    if ctx.containers.iter().any(is_essential) {
        return Ok(());
    }
    Err(client(
        Rule::EssentialContainer,
        "containerDefinitions",
        "Task definition does not have any essential container: at least one container must \
         be essential (essential is true when absent).",
    ))
}

/// Depth-first search for a cycle in `edges` (container index → indexes it
/// points at); returns the cycle's container indexes in order.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: usize,
        edges: &[Vec<usize>],
        mark: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        mark[n] = Mark::Open;
        stack.push(n);
        for &m in &edges[n] {
            match mark[m] {
                Mark::Open => {
                    let start = stack.iter().position(|&s| s == m).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(m);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(m, edges, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark[n] = Mark::Done;
        None
    }
    let mut mark = vec![Mark::New; edges.len()];
    let mut stack = Vec::new();
    (0..edges.len()).find_map(|n| {
        if mark[n] == Mark::New {
            visit(n, edges, &mut mark, &mut stack)
        } else {
            None
        }
    })
}

fn describe_cycle(ctx: &Ctx<'_>, cycle: &[usize]) -> String {
    cycle
        .iter()
        .map(|&i| format!("'{}'", ctx.name(i)))
        .collect::<Vec<_>>()
        .join(" -> ")
}

fn check_depends_on(ctx: &Ctx<'_>) -> Result<()> {
    let mut edges = vec![Vec::new(); ctx.containers.len()];
    for (i, c) in ctx.containers.iter().enumerate() {
        let name = ctx.name(i);
        for (j, dep) in c.depends_on.iter().flatten().enumerate() {
            let here = format!("{}.dependsOn[{j}]", container_path(i));
            // Both members are required by the model; validate() ran first.
            let target_name = dep.container_name.as_deref().unwrap_or("");
            let Some(&target) = ctx.by_name.get(target_name) else {
                return Err(client(
                    Rule::DependsOn,
                    format!("{here}.containerName"),
                    format!(
                        "Container '{name}' depends on container '{target_name}', which is not in \
                         this task definition ({here}.containerName)."
                    ),
                ));
            };
            if target == i {
                return Err(client(
                    Rule::DependsOn,
                    format!("{here}.containerName"),
                    format!("Container '{name}' cannot depend on itself ({here}.containerName)."),
                ));
            }
            match dep.condition {
                Some(ecs::ContainerCondition::Complete | ecs::ContainerCondition::Success)
                    if is_essential(&ctx.containers[target]) =>
                {
                    return Err(client(
                        Rule::DependsOn,
                        format!("{here}.condition"),
                        format!(
                            "A dependency container with SUCCESS or COMPLETE condition cannot be an \
                             essential container ('{name}' waits for '{target_name}' to {} at \
                             {here}; mark '{target_name}' essential: false or use START/HEALTHY).",
                            dep.condition.map_or("", |c| c.as_str())
                        ),
                    ));
                }
                Some(ecs::ContainerCondition::Healthy)
                    if ctx.containers[target].health_check.is_none() =>
                {
                    return Err(client(
                        Rule::DependsOn,
                        format!("{here}.condition"),
                        format!(
                            "A dependency container with HEALTHY condition must have a health check: \
                             '{name}' waits for '{target_name}' to be HEALTHY ({here}), but \
                             '{target_name}' has no healthCheck."
                        ),
                    ));
                }
                _ => {}
            }
            edges[i].push(target);
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        return Err(client(
            Rule::DependsOn,
            format!("{}.dependsOn", container_path(cycle[0])),
            format!(
                "Container dependencies (dependsOn) must not form a cycle: {}.",
                describe_cycle(ctx, &cycle)
            ),
        ));
    }
    Ok(())
}

fn check_links(ctx: &Ctx<'_>) -> Result<()> {
    let mut edges = vec![Vec::new(); ctx.containers.len()];
    for (i, c) in ctx.containers.iter().enumerate() {
        let name = ctx.name(i);
        let links = c.links.as_deref().unwrap_or(&[]);
        if links.is_empty() {
            continue;
        }
        let at = format!("{}.links", container_path(i));
        if ctx.net != Net::Bridge {
            return Err(client(
                Rule::Link,
                at,
                format!(
                    "Links are not supported when networkMode={}. (container '{name}'; links work \
                     only in bridge mode)",
                    ctx.net.as_str()
                ),
            ));
        }
        for (j, link) in links.iter().enumerate() {
            let here = format!("{at}[{j}]");
            let (target_name, alias) = match link.split_once(':') {
                Some((t, a)) => (t, Some(a)),
                None => (link.as_str(), None),
            };
            if !is_resource_name(target_name) || alias.is_some_and(|a| !is_resource_name(a)) {
                return Err(client(
                    Rule::Link,
                    here.clone(),
                    format!(
                        "Invalid link {link:?} in container '{name}' ({here}): expected \"name\" or \
                         \"name:alias\" of letters, numbers, hyphens and underscores."
                    ),
                ));
            }
            let Some(&target) = ctx.by_name.get(target_name) else {
                return Err(client(
                    Rule::Link,
                    here.clone(),
                    format!(
                        "Container '{name}' links to container '{target_name}', which is not in this \
                         task definition ({here})."
                    ),
                ));
            };
            if target == i {
                return Err(client(
                    Rule::Link,
                    here.clone(),
                    format!("Container '{name}' cannot link to itself ({here})."),
                ));
            }
            edges[i].push(target);
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        return Err(client(
            Rule::Link,
            format!("{}.links", container_path(cycle[0])),
            format!(
                "Container links should not have a cycle: {}.",
                describe_cycle(ctx, &cycle)
            ),
        ));
    }
    Ok(())
}

fn check_volumes_from(ctx: &Ctx<'_>) -> Result<()> {
    for (i, c) in ctx.containers.iter().enumerate() {
        let name = ctx.name(i);
        for (j, vf) in c.volumes_from.iter().flatten().enumerate() {
            let here = format!("{}.volumesFrom[{j}].sourceContainer", container_path(i));
            let source = vf.source_container.as_deref().unwrap_or("");
            match ctx.by_name.get(source) {
                None => {
                    return Err(client(
                        Rule::VolumesFrom,
                        here.clone(),
                        format!(
                            "Container '{name}' mounts volumes from container '{source}', which is \
                             not in this task definition ({here})."
                        ),
                    ))
                }
                Some(&t) if t == i => {
                    return Err(client(
                        Rule::VolumesFrom,
                        here.clone(),
                        format!("Container '{name}' cannot mount volumes from itself ({here})."),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn check_volumes_and_mounts(ctx: &Ctx<'_>) -> Result<()> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (k, v) in ctx.req.volumes.iter().flatten().enumerate() {
        let here = format!("volumes[{k}].name");
        let name = v.name.as_deref().unwrap_or("");
        if !is_resource_name(name) {
            return Err(client(
                Rule::Volume,
                here.clone(),
                format!(
                    "Invalid volume name {name:?} ({here}): up to 255 letters, numbers, hyphens \
                     and underscores are allowed."
                ),
            ));
        }
        if let Some(first) = names.insert(name, k) {
            return Err(client(
                Rule::Volume,
                here,
                format!("Volume names must be unique: {name:?} is used by volumes[{first}] and volumes[{k}]."),
            ));
        }
    }
    for (i, c) in ctx.containers.iter().enumerate() {
        for (j, mp) in c.mount_points.iter().flatten().enumerate() {
            let here = format!("{}.mountPoints[{j}]", container_path(i));
            let source = mp.source_volume.as_deref().unwrap_or("");
            if !names.contains_key(source) {
                return Err(client(
                    Rule::MountPoint,
                    format!("{here}.sourceVolume"),
                    format!(
                        "Unknown volume '{source}'. ({here}.sourceVolume of container '{}' must name \
                         one of the task definition's volumes)",
                        ctx.name(i)
                    ),
                ));
            }
            if mp.container_path.as_deref().is_none_or(str::is_empty) {
                return Err(client(
                    Rule::MountPoint,
                    format!("{here}.containerPath"),
                    format!("Mount point of container '{}' needs a containerPath ({here}.containerPath).", ctx.name(i)),
                ));
            }
        }
    }
    Ok(())
}

/// Every statically bound host port of the task: (port, protocol) → where.
/// Dynamic mappings (bridge with hostPort 0 or absent) and port ranges bind
/// nothing fixed and are left out.
fn static_host_ports(ctx: &Ctx<'_>) -> Vec<((i32, &'static str), String)> {
    let mut out = Vec::new();
    for (i, c) in ctx.containers.iter().enumerate() {
        for (j, pm) in c.port_mappings.iter().flatten().enumerate() {
            let Some(container_port) = pm.container_port else {
                continue;
            };
            let host = match (ctx.net, pm.host_port) {
                (Net::Host | Net::Awsvpc, None | Some(0)) => container_port,
                (_, Some(h)) if h > 0 => h,
                _ => continue,
            };
            out.push((
                (host, protocol_str(pm.protocol)),
                format!("{}.portMappings[{j}]", container_path(i)),
            ));
        }
    }
    out
}

fn check_port_conflicts(ctx: &Ctx<'_>) -> Result<()> {
    let mut seen: HashMap<(i32, &str), String> = HashMap::new();
    for (key, at) in static_host_ports(ctx) {
        if let Some(first) = seen.get(&key) {
            return Err(client(
                Rule::PortConflict,
                format!("{at}.hostPort"),
                format!(
                    "Host port {}/{} is bound twice in this task definition ({first} and {at}); a \
                     static host port can be used once per protocol.",
                    key.0, key.1
                ),
            ));
        }
        seen.insert(key, at);
    }
    Ok(())
}

fn check_task_resources(ctx: &Ctx<'_>) -> Result<()> {
    if let Some(task_cpu) = ctx.task_cpu {
        let sum: i64 = ctx
            .containers
            .iter()
            .map(|c| i64::from(c.cpu.unwrap_or(0)))
            .sum();
        if sum > i64::from(task_cpu) {
            return Err(client(
                Rule::TaskResources,
                "containerDefinitions",
                format!(
                    "The sum of all container 'cpu' values cannot be greater than the value of the \
                     task 'cpu'. (containers {sum}, task {task_cpu})"
                ),
            ));
        }
    }
    if let Some(task_memory) = ctx.task_memory {
        for (i, c) in ctx.containers.iter().enumerate() {
            if let Some(memory) = c.memory.filter(|m| *m > task_memory) {
                return Err(client(
                    Rule::TaskResources,
                    format!("{}.memory", container_path(i)),
                    format!(
                        "The 'memory' setting for container '{}' is greater than for the task. \
                         (container {memory} MiB, task {task_memory} MiB)",
                        ctx.name(i)
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_placement_constraints(req: &ecs::RegisterTaskDefinitionRequest) -> Result<()> {
    let constraints = req.placement_constraints.as_deref().unwrap_or(&[]);
    if constraints.len() > MAX_PLACEMENT_CONSTRAINTS {
        return Err(client(
            Rule::PlacementConstraint,
            "placementConstraints",
            format!(
                "A task definition can have at most {MAX_PLACEMENT_CONSTRAINTS} placement \
                 constraints; placementConstraints has {}.",
                constraints.len()
            ),
        ));
    }
    for (k, pc) in constraints.iter().enumerate() {
        let here = format!("placementConstraints[{k}]");
        if pc.r#type.is_none() {
            return Err(client(
                Rule::PlacementConstraint,
                format!("{here}.type"),
                format!("{here}.type is required; task definitions support type memberOf."),
            ));
        }
        match pc.expression.as_deref() {
            None | Some("") => {
                return Err(client(
                    Rule::PlacementConstraint,
                    format!("{here}.expression"),
                    format!("A memberOf constraint needs an expression ({here}.expression)."),
                ))
            }
            Some(e) if e.chars().count() > MAX_CONSTRAINT_EXPRESSION_CHARS => {
                return Err(client(
                    Rule::PlacementConstraint,
                    format!("{here}.expression"),
                    format!(
                        "{here}.expression is {} characters long; at most \
                         {MAX_CONSTRAINT_EXPRESSION_CHARS} are allowed.",
                        e.chars().count()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_ephemeral_storage(req: &ecs::RegisterTaskDefinitionRequest) -> Result<()> {
    if let Some(size) = req.ephemeral_storage.as_ref().and_then(|e| e.size_in_gi_b) {
        if !EPHEMERAL_STORAGE_GIB_RANGE.contains(&size) {
            return Err(client(
                Rule::EphemeralStorage,
                "ephemeralStorage.sizeInGiB",
                format!(
                    "Invalid ephemeralStorage.sizeInGiB {size}: it must be between {} and {} GiB.",
                    EPHEMERAL_STORAGE_GIB_RANGE.start(),
                    EPHEMERAL_STORAGE_GIB_RANGE.end()
                ),
            ));
        }
    }
    Ok(())
}

fn check_proxy(ctx: &Ctx<'_>) -> Result<()> {
    let Some(proxy) = &ctx.req.proxy_configuration else {
        return Ok(());
    };
    let name = proxy.container_name.as_deref().unwrap_or("");
    if ctx.by_name.contains_key(name) {
        return Ok(());
    }
    Err(client(
        Rule::ProxyConfiguration,
        "proxyConfiguration.containerName",
        format!("The proxy container '{name}' (proxyConfiguration.containerName) is not in this task definition."),
    ))
}

/// The launch types a request asks to be validated against: its
/// `requiresCompatibilities`, or EC2 when that is absent or empty.
fn requested_launch_types(req: &ecs::RegisterTaskDefinitionRequest) -> Vec<ecs::Compatibility> {
    match req.requires_compatibilities.as_deref() {
        Some(list) if !list.is_empty() => list.to_vec(),
        _ => vec![ecs::Compatibility::Ec2],
    }
}

fn check_launch_types(ctx: &Ctx<'_>) -> Result<()> {
    if ctx.is_windows()
        && matches!(
            ctx.req.network_mode,
            Some(ecs::NetworkMode::Bridge | ecs::NetworkMode::Host | ecs::NetworkMode::None)
        )
    {
        return Err(client(
            Rule::NetworkMode,
            "networkMode",
            format!(
                "Windows task definitions support the default network mode or awsvpc, not \
                 networkMode={}.",
                ctx.net.as_str()
            ),
        ));
    }
    for launch_type in requested_launch_types(ctx.req) {
        if let Some(e) = launch_type_violation(ctx, launch_type) {
            return Err(e);
        }
    }
    Ok(())
}

/// The first rule of `launch_type` the definition breaks, if any. Shared by
/// validation (for the requested types) and [`compatibilities`] (for all).
fn launch_type_violation(
    ctx: &Ctx<'_>,
    launch_type: ecs::Compatibility,
) -> Option<TaskDefinitionError> {
    match launch_type {
        ecs::Compatibility::Ec2 | ecs::Compatibility::ManagedInstances => ec2_violation(ctx),
        ecs::Compatibility::External => external_violation(ctx),
        ecs::Compatibility::Fargate => fargate_violation(ctx),
    }
}

fn ec2_violation(ctx: &Ctx<'_>) -> Option<TaskDefinitionError> {
    if let Some(cpu) = ctx.task_cpu.filter(|c| !EC2_TASK_CPU_RANGE.contains(c)) {
        return Some(client(
            Rule::TaskCpu,
            "cpu",
            format!(
                "Invalid 'cpu' setting for task: {cpu} CPU units. Supported values are between {} \
                 and {} CPU units.",
                EC2_TASK_CPU_RANGE.start(),
                EC2_TASK_CPU_RANGE.end()
            ),
        ));
    }
    if ctx.task_memory.is_some() || ctx.req.memory.is_some() {
        return None;
    }
    ctx.containers.iter().enumerate().find_map(|(i, c)| {
        (c.memory.is_none() && c.memory_reservation.is_none()).then(|| {
            client(
                Rule::ContainerMemory,
                format!("{}.memory", container_path(i)),
                format!(
                    "Invalid setting for container '{}'. At least one of 'memory' or \
                     'memoryReservation' must be specified. (Or set the task-level 'memory'.)",
                    ctx.name(i)
                ),
            )
        })
    })
}

/// A port mapping `name`/`appProtocol` is Service Connect configuration, which
/// ECS Anywhere does not support; real ECS leaves EXTERNAL out of
/// `compatibilities` for such definitions.
fn uses_service_connect_ports(ctx: &Ctx<'_>) -> Option<String> {
    ctx.containers.iter().enumerate().find_map(|(i, c)| {
        c.port_mappings
            .iter()
            .flatten()
            .enumerate()
            .find_map(|(j, pm)| {
                (pm.name.is_some() || pm.app_protocol.is_some())
                    .then(|| format!("{}.portMappings[{j}]", container_path(i)))
            })
    })
}

fn external_violation(ctx: &Ctx<'_>) -> Option<TaskDefinitionError> {
    let not = |field: String, what: &str| {
        Some(client(
            Rule::LaunchType,
            field,
            format!("Tasks using the EXTERNAL launch type do not support {what}."),
        ))
    };
    if ctx.net == Net::Awsvpc {
        return not("networkMode".into(), "networkMode 'awsvpc'");
    }
    if let Some(at) = uses_service_connect_ports(ctx) {
        return not(at, "Service Connect port mapping names or appProtocol");
    }
    for (k, v) in ctx.req.volumes.iter().flatten().enumerate() {
        if v.efs_volume_configuration.is_some() {
            return not(
                format!("volumes[{k}].efsVolumeConfiguration"),
                "EFS volumes",
            );
        }
        if v.fsx_windows_file_server_volume_configuration.is_some() {
            return not(
                format!("volumes[{k}].fsxWindowsFileServerVolumeConfiguration"),
                "FSx volumes",
            );
        }
    }
    if ctx
        .req
        .inference_accelerators
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        return not("inferenceAccelerators".into(), "inference accelerators");
    }
    ec2_violation(ctx)
}

fn fargate_violation(ctx: &Ctx<'_>) -> Option<TaskDefinitionError> {
    let req = ctx.req;
    let not = |field: String, what: &str| {
        Some(client(
            Rule::LaunchType,
            field,
            format!("Tasks using the Fargate launch type do not support {what}."),
        ))
    };
    let Some(cpu) = ctx.task_cpu else {
        return Some(client(
            Rule::LaunchType,
            "cpu",
            "Fargate requires that 'cpu' be defined at the task level.",
        ));
    };
    let Some(memory) = ctx.task_memory else {
        return Some(client(
            Rule::LaunchType,
            "memory",
            "Fargate requires that 'memory' be defined at the task level.",
        ));
    };
    if ctx.net != Net::Awsvpc {
        return Some(client(
            Rule::LaunchType,
            "networkMode",
            format!(
                "Fargate only supports network mode ‘awsvpc’. (networkMode is {})",
                ctx.net.as_str()
            ),
        ));
    }
    if !fargate_memory_options(cpu).contains(&memory) {
        let options = fargate_memory_options(cpu);
        let hint = if options.is_empty() {
            "Fargate task cpu is one of 256, 512, 1024, 2048, 4096, 8192, 16384".to_string()
        } else {
            format!(
                "with {cpu} CPU, memory is one of {}",
                options
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Some(client(
            Rule::LaunchType,
            "memory",
            format!(
                "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See \
                 the Amazon ECS documentation for the valid values. ({hint})"
            ),
        ));
    }
    if req.ipc_mode.is_some() {
        return not("ipcMode".into(), "ipcMode");
    }
    if req.pid_mode == Some(ecs::PidMode::Host) {
        // AWS's text, verbatim.
        return Some(client(
            Rule::LaunchType,
            "pidMode",
            "Tasks using the Fargate launch type do not support pidMode 'host'. The supported value for pidMode is 'task'.",
        ));
    }
    if req
        .placement_constraints
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        return not("placementConstraints".into(), "placement constraints");
    }
    if req
        .inference_accelerators
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        return not("inferenceAccelerators".into(), "inference accelerators");
    }
    for (k, v) in req.volumes.iter().flatten().enumerate() {
        if v.host.as_ref().is_some_and(|h| h.source_path.is_some()) {
            return not(
                format!("volumes[{k}].host.sourcePath"),
                "host volumes with a sourcePath",
            );
        }
        if v.docker_volume_configuration.is_some() {
            return not(
                format!("volumes[{k}].dockerVolumeConfiguration"),
                "Docker volumes",
            );
        }
    }
    let has_execution_role = req
        .execution_role_arn
        .as_deref()
        .is_some_and(|r| !r.is_empty());
    for (i, c) in ctx.containers.iter().enumerate() {
        let at = container_path(i);
        if c.privileged == Some(true) {
            return not(format!("{at}.privileged"), "privileged containers");
        }
        if c.docker_security_options
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            return not(
                format!("{at}.dockerSecurityOptions"),
                "dockerSecurityOptions",
            );
        }
        if c.links.as_ref().is_some_and(|v| !v.is_empty()) {
            return not(format!("{at}.links"), "links");
        }
        if let Some(lp) = &c.linux_parameters {
            let unsupported = [
                (
                    "devices",
                    lp.devices.as_ref().is_some_and(|v| !v.is_empty()),
                ),
                ("sharedMemorySize", lp.shared_memory_size.is_some()),
                ("tmpfs", lp.tmpfs.as_ref().is_some_and(|v| !v.is_empty())),
                ("maxSwap", lp.max_swap.is_some()),
                ("swappiness", lp.swappiness.is_some()),
            ];
            if let Some((field, _)) = unsupported.iter().find(|(_, used)| *used) {
                return not(
                    format!("{at}.linuxParameters.{field}"),
                    &format!("linuxParameters.{field}"),
                );
            }
            let added = lp
                .capabilities
                .as_ref()
                .and_then(|k| k.add.as_deref())
                .unwrap_or(&[]);
            if let Some(cap) = added.iter().find(|c| c.as_str() != "SYS_PTRACE") {
                return not(
                    format!("{at}.linuxParameters.capabilities.add"),
                    &format!("adding the {cap} kernel capability (only SYS_PTRACE)"),
                );
            }
        }
        if c.resource_requirements
            .iter()
            .flatten()
            .any(|r| r.r#type == Some(ecs::ResourceType::Gpu))
        {
            return not(
                format!("{at}.resourceRequirements"),
                "GPU resource requirements",
            );
        }
        if let Some(t) = c.stop_timeout.filter(|t| *t > FARGATE_MAX_STOP_TIMEOUT) {
            return not(
                format!("{at}.stopTimeout"),
                &format!("a stopTimeout of {t} seconds (at most {FARGATE_MAX_STOP_TIMEOUT})"),
            );
        }
        if let Some(driver) = c.log_configuration.as_ref().and_then(|l| l.log_driver) {
            if !matches!(
                driver,
                ecs::LogDriver::Awslogs | ecs::LogDriver::Splunk | ecs::LogDriver::Awsfirelens
            ) {
                return not(
                    format!("{at}.logConfiguration.logDriver"),
                    &format!("the {driver} log driver (use awslogs, splunk or awsfirelens)"),
                );
            }
            if driver == ecs::LogDriver::Awslogs && !has_execution_role {
                return Some(client(
                    Rule::LaunchType,
                    "executionRoleArn",
                    format!(
                        "Fargate requires task definition to have execution role ARN to support log \
                         driver awslogs. (container '{}')",
                        ctx.name(i)
                    ),
                ));
            }
        }
        if c.image.as_deref().is_some_and(is_ecr_image) && !has_execution_role {
            return Some(client(
                Rule::LaunchType,
                "executionRoleArn",
                format!(
                    "Fargate requires task definition to have execution role ARN to support ECR \
                     images. (container '{}')",
                    ctx.name(i)
                ),
            ));
        }
    }
    None
}

// ---------------------------------------------------------------------------
// What ECS reports
// ---------------------------------------------------------------------------

/// The launch types ECS reports in `compatibilities`: every launch type whose
/// rules the definition meets, whether requested or not (a bridge-mode EC2
/// definition reports `["EXTERNAL", "EC2"]`, a valid awsvpc Fargate one
/// `["EC2", "FARGATE"]`).
///
/// MANAGED_INSTANCES is reported only when requested: when real ECS started
/// reporting it unasked is not something we could pin down.
pub fn compatibilities(req: &ecs::RegisterTaskDefinitionRequest) -> Vec<ecs::Compatibility> {
    let ctx = Ctx::lenient(req);
    let requested = requested_launch_types(req);
    [
        ecs::Compatibility::External,
        ecs::Compatibility::Ec2,
        ecs::Compatibility::ManagedInstances,
        ecs::Compatibility::Fargate,
    ]
    .into_iter()
    .filter(|lt| *lt != ecs::Compatibility::ManagedInstances || requested.contains(lt))
    .filter(|lt| launch_type_violation(&ctx, *lt).is_none())
    .collect()
}

/// True for an Amazon ECR image reference (`<account>.dkr.ecr.<region>.amazonaws.com/...`).
pub fn is_ecr_image(image: &str) -> bool {
    let Some((host, _)) = image.split_once('/') else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    (host.contains(".dkr.ecr.") || host.contains(".dkr.ecr-fips."))
        && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
}

/// True for a `valueFrom` that names a Secrets Manager secret; anything else
/// (an SSM parameter ARN, name or path) is SSM Parameter Store.
fn is_secrets_manager(value_from: &str) -> bool {
    value_from.split(':').nth(2) == Some("secretsmanager")
}

const DOCKER_API: &str = "com.amazonaws.ecs.capability.docker-remote-api.";

/// The container instance attributes every task of this definition needs,
/// as ECS lists them in `requiresAttributes` (sorted by name). The agent must
/// advertise the same names for such tasks to be placed on it: the fixed
/// names are in [`KNOWN_REQUIRED_ATTRIBUTES`]; the others are
/// `com.amazonaws.ecs.capability.logging-driver.<driver>`,
/// `ecs.capability.docker-plugin.<volume driver>` and
/// `ecs.capability.firelens.<fluentbit|fluentd>`.
///
/// The mapping follows the ECS docs (which parameter needs which Docker API
/// version or agent capability) and was checked against the describe outputs
/// in `shared/reference/taskdefs` (025, 033, 034, 047, 059, 060) and other
/// public describe outputs:
///
/// | feature | attribute(s) |
/// |---|---|
/// | `networkMode: awsvpc` | `ecs.capability.task-eni`, docker-remote-api.1.18 |
/// | `mountPoints` (non-empty) | docker-remote-api.1.17 |
/// | `ulimits`, `dockerLabels` (present, even empty) | docker-remote-api.1.18 |
/// | `logConfiguration` | `…logging-driver.<driver>`; `options` non-empty: 1.19; option `mode`: 1.28; option `awslogs-create-group`: 1.29 |
/// | awslogs + `executionRoleArn` | `ecs.capability.execution-role-awslogs` |
/// | ECR image | `…ecr-auth`; with `executionRoleArn`: `ecs.capability.execution-role-ecr-pull` |
/// | `taskRoleArn` | `…task-iam-role` (+ `…task-iam-role-network-host` in host mode) |
/// | `healthCheck` | `ecs.capability.container-health-check`, 1.24 |
/// | `dependsOn`, `startTimeout`, `stopTimeout` | `ecs.capability.container-ordering` |
/// | `secrets` | `ecs.capability.secrets.{ssm,asm}.environment-variables` |
/// | log `secretOptions` | `ecs.capability.secrets.{ssm,asm}.bootstrap.log-driver` |
/// | `repositoryCredentials` | `ecs.capability.private-registry-authentication.secretsmanager` |
/// | `environmentFiles` (non-empty) | `ecs.capability.env-files.s3` |
/// | `firelensConfiguration` | `ecs.capability.firelens.<type>`, `…firelens.options.config.{file,s3}` |
/// | `linuxParameters.initProcessEnabled` | 1.25 |
/// | `privileged` | `…privileged-container` |
/// | `dockerSecurityOptions` `label:`/`apparmor:`/`credentialspec:` | `…selinux` / `…apparmor` / `ecs.capability.gmsa` |
/// | `containerPortRange` | `ecs.capability.network.container-port-range` |
/// | `pidMode`/`ipcMode` | `ecs.capability.pid-ipc-namespace-sharing` |
/// | `proxyConfiguration` | `ecs.capability.aws-appmesh` |
/// | `ephemeralStorage` | `ecs.capability.extensible-ephemeral-storage` |
/// | `inferenceAccelerators` | `ecs.capability.task-eia` |
/// | EFS volume | `ecs.capability.efs`; with access point or IAM: `ecs.capability.efsAuth` |
/// | FSx volume | `ecs.capability.fsxWindowsFileServer` |
/// | Docker volume | `ecs.capability.docker-plugin.<driver, default local>` |
///
/// Known gap: some real outputs also list docker-remote-api.1.21 for a
/// feature we could not identify; and real ECS omitted
/// `secrets.asm.environment-variables` in one Fargate output (033) that the
/// docs say it needs; we follow the docs.
pub fn requires_attributes(req: &ecs::RegisterTaskDefinitionRequest) -> Vec<ecs::Attribute> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut add = |n: &str| {
        names.insert(n.to_string());
    };
    let net = Net::of(req.network_mode);
    let has_execution_role = req
        .execution_role_arn
        .as_deref()
        .is_some_and(|r| !r.is_empty());

    if net == Net::Awsvpc {
        add("ecs.capability.task-eni");
        add(&format!("{DOCKER_API}1.18"));
    }
    if req.task_role_arn.as_deref().is_some_and(|r| !r.is_empty()) {
        add("com.amazonaws.ecs.capability.task-iam-role");
        if net == Net::Host {
            add("com.amazonaws.ecs.capability.task-iam-role-network-host");
        }
    }
    if req.pid_mode.is_some() || req.ipc_mode.is_some() {
        add("ecs.capability.pid-ipc-namespace-sharing");
    }
    if req.proxy_configuration.is_some() {
        add("ecs.capability.aws-appmesh");
    }
    if req.ephemeral_storage.is_some() {
        add("ecs.capability.extensible-ephemeral-storage");
    }
    if req
        .inference_accelerators
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        add("ecs.capability.task-eia");
    }
    for v in req.volumes.iter().flatten() {
        if let Some(efs) = &v.efs_volume_configuration {
            add("ecs.capability.efs");
            let auth = efs.authorization_config.as_ref();
            if auth.is_some_and(|a| {
                a.access_point_id.is_some()
                    || a.iam == Some(ecs::EFSAuthorizationConfigIAM::Enabled)
            }) {
                add("ecs.capability.efsAuth");
            }
        }
        if v.fsx_windows_file_server_volume_configuration.is_some() {
            add("ecs.capability.fsxWindowsFileServer");
        }
        if let Some(docker) = &v.docker_volume_configuration {
            add(&format!(
                "ecs.capability.docker-plugin.{}",
                docker.driver.as_deref().unwrap_or("local")
            ));
        }
    }

    for c in req.container_definitions.iter().flatten() {
        if c.image.as_deref().is_some_and(is_ecr_image) {
            add("com.amazonaws.ecs.capability.ecr-auth");
            if has_execution_role {
                add("ecs.capability.execution-role-ecr-pull");
            }
        }
        if c.privileged == Some(true) {
            add("com.amazonaws.ecs.capability.privileged-container");
        }
        if c.mount_points.as_ref().is_some_and(|v| !v.is_empty()) {
            add(&format!("{DOCKER_API}1.17"));
        }
        if c.ulimits.is_some() || c.docker_labels.is_some() {
            add(&format!("{DOCKER_API}1.18"));
        }
        if let Some(log) = &c.log_configuration {
            if let Some(driver) = log.log_driver {
                add(&format!(
                    "com.amazonaws.ecs.capability.logging-driver.{driver}"
                ));
                if driver == ecs::LogDriver::Awslogs && has_execution_role {
                    add("ecs.capability.execution-role-awslogs");
                }
            }
            if let Some(options) = log.options.as_ref().filter(|o| !o.is_empty()) {
                add(&format!("{DOCKER_API}1.19"));
                if options.contains_key("mode") {
                    add(&format!("{DOCKER_API}1.28"));
                }
                if options.contains_key("awslogs-create-group") {
                    add(&format!("{DOCKER_API}1.29"));
                }
            }
            for s in log.secret_options.iter().flatten() {
                let kind = if s.value_from.as_deref().is_some_and(is_secrets_manager) {
                    "asm"
                } else {
                    "ssm"
                };
                add(&format!(
                    "ecs.capability.secrets.{kind}.bootstrap.log-driver"
                ));
            }
        }
        if c.health_check.is_some() {
            add("ecs.capability.container-health-check");
            add(&format!("{DOCKER_API}1.24"));
        }
        if c.depends_on.as_ref().is_some_and(|v| !v.is_empty())
            || c.start_timeout.is_some()
            || c.stop_timeout.is_some()
        {
            add("ecs.capability.container-ordering");
        }
        for s in c.secrets.iter().flatten() {
            let kind = if s.value_from.as_deref().is_some_and(is_secrets_manager) {
                "asm"
            } else {
                "ssm"
            };
            add(&format!(
                "ecs.capability.secrets.{kind}.environment-variables"
            ));
        }
        if c.repository_credentials.is_some() {
            add("ecs.capability.private-registry-authentication.secretsmanager");
        }
        if c.environment_files.as_ref().is_some_and(|v| !v.is_empty()) {
            add("ecs.capability.env-files.s3");
        }
        if let Some(fl) = &c.firelens_configuration {
            if let Some(t) = fl.r#type {
                add(&format!("ecs.capability.firelens.{t}"));
            }
            match fl
                .options
                .as_ref()
                .and_then(|o| o.get("config-file-type"))
                .map(String::as_str)
            {
                Some("file") => add("ecs.capability.firelens.options.config.file"),
                Some("s3") => add("ecs.capability.firelens.options.config.s3"),
                _ => {}
            }
        }
        if c.linux_parameters
            .as_ref()
            .and_then(|l| l.init_process_enabled)
            == Some(true)
        {
            add(&format!("{DOCKER_API}1.25"));
        }
        for opt in c.docker_security_options.iter().flatten() {
            if opt.starts_with("label:") || opt.starts_with("label=") {
                add("com.amazonaws.ecs.capability.selinux");
            } else if opt.starts_with("apparmor:") || opt.starts_with("apparmor=") {
                add("com.amazonaws.ecs.capability.apparmor");
            } else if opt.starts_with("credentialspec:") {
                add("ecs.capability.gmsa");
            }
        }
        if c.port_mappings
            .iter()
            .flatten()
            .any(|pm| pm.container_port_range.is_some())
        {
            add("ecs.capability.network.container-port-range");
        }
    }

    names
        .into_iter()
        .map(|name| ecs::Attribute {
            name: Some(name),
            value: None,
            target_id: None,
            target_type: None,
        })
        .collect()
}

/// The fixed attribute names [`requires_attributes`] can emit (the
/// driver-specific ones are described there). An agent that advertises these
/// can run every definition that validates.
pub const KNOWN_REQUIRED_ATTRIBUTES: &[&str] = &[
    "com.amazonaws.ecs.capability.docker-remote-api.1.17",
    "com.amazonaws.ecs.capability.docker-remote-api.1.18",
    "com.amazonaws.ecs.capability.docker-remote-api.1.19",
    "com.amazonaws.ecs.capability.docker-remote-api.1.24",
    "com.amazonaws.ecs.capability.docker-remote-api.1.25",
    "com.amazonaws.ecs.capability.docker-remote-api.1.28",
    "com.amazonaws.ecs.capability.docker-remote-api.1.29",
    "com.amazonaws.ecs.capability.ecr-auth",
    "com.amazonaws.ecs.capability.privileged-container",
    "com.amazonaws.ecs.capability.task-iam-role",
    "com.amazonaws.ecs.capability.task-iam-role-network-host",
    "com.amazonaws.ecs.capability.selinux",
    "com.amazonaws.ecs.capability.apparmor",
    "ecs.capability.task-eni",
    "ecs.capability.execution-role-ecr-pull",
    "ecs.capability.execution-role-awslogs",
    "ecs.capability.container-health-check",
    "ecs.capability.container-ordering",
    "ecs.capability.secrets.ssm.environment-variables",
    "ecs.capability.secrets.asm.environment-variables",
    "ecs.capability.secrets.ssm.bootstrap.log-driver",
    "ecs.capability.secrets.asm.bootstrap.log-driver",
    "ecs.capability.private-registry-authentication.secretsmanager",
    "ecs.capability.env-files.s3",
    "ecs.capability.firelens.options.config.file",
    "ecs.capability.firelens.options.config.s3",
    "ecs.capability.gmsa",
    "ecs.capability.network.container-port-range",
    "ecs.capability.pid-ipc-namespace-sharing",
    "ecs.capability.aws-appmesh",
    "ecs.capability.extensible-ephemeral-storage",
    "ecs.capability.task-eia",
    "ecs.capability.efs",
    "ecs.capability.efsAuth",
    "ecs.capability.fsxWindowsFileServer",
];

// ---------------------------------------------------------------------------
// The registered definition
// ---------------------------------------------------------------------------

/// Builds the `TaskDefinition` that RegisterTaskDefinition returns and
/// Describe serves: every request field as given, plus `revision`, `status`
/// ACTIVE, `taskDefinitionArn`, `requiresAttributes`, `compatibilities`,
/// `registeredAt` (epoch seconds) and `registeredBy`. Call it on a request
/// that passed [`validate_register`].
///
/// Defaults filled in because real ECS fills them in (DescribeTaskDefinition
/// shows them; Terraform's AWS provider normalises exactly these to avoid
/// false diffs):
/// - container `essential: true`, `cpu: 0`, and `portMappings`,
///   `environment`, `mountPoints`, `volumesFrom` as `[]` when absent;
/// - `portMappings[].protocol: "tcp"` when absent, and in awsvpc mode
///   `hostPort` = `containerPort` when absent;
/// - `healthCheck` `interval: 30`, `timeout: 5`, `retries: 3` when absent;
/// - task `volumes` and `placementConstraints` as `[]` when absent.
///
/// Not filled in: `networkMode` (absent stays absent), `hostPort` in bridge
/// and host mode, `healthCheck.startPeriod`, `systemControls`, `entryPoint`,
/// `command`, `requiresCompatibilities`. Task `cpu`/`memory` are kept as
/// given (see the module docs). Tags are not part of `TaskDefinition`.
pub fn build_task_definition(
    req: &ecs::RegisterTaskDefinitionRequest,
    arn: String,
    revision: i32,
    registered_at: f64,
    registered_by: Option<String>,
) -> ecs::TaskDefinition {
    let requires_attributes = requires_attributes(req);
    let compatibilities = compatibilities(req);
    // Destructured so that a field added to the model fails to compile here
    // instead of being dropped silently.
    let ecs::RegisterTaskDefinitionRequest {
        container_definitions,
        cpu,
        enable_fault_injection,
        ephemeral_storage,
        execution_role_arn,
        family,
        inference_accelerators,
        ipc_mode,
        memory,
        network_mode,
        pid_mode,
        placement_constraints,
        proxy_configuration,
        requires_compatibilities,
        runtime_platform,
        tags: _,
        task_role_arn,
        volumes,
    } = req.clone();
    let awsvpc = Net::of(network_mode) == Net::Awsvpc;
    let container_definitions = container_definitions.map(|cs| {
        cs.into_iter()
            .map(|c| with_container_defaults(c, awsvpc))
            .collect()
    });
    ecs::TaskDefinition {
        compatibilities: Some(compatibilities),
        container_definitions,
        cpu,
        delete_requested_at: None,
        deregistered_at: None,
        enable_fault_injection,
        ephemeral_storage,
        execution_role_arn,
        family,
        inference_accelerators,
        ipc_mode,
        memory,
        network_mode,
        pid_mode,
        placement_constraints: Some(placement_constraints.unwrap_or_default()),
        proxy_configuration,
        registered_at: Some(registered_at),
        registered_by,
        requires_attributes: Some(requires_attributes),
        requires_compatibilities,
        revision: Some(revision),
        runtime_platform,
        status: Some(ecs::TaskDefinitionStatus::Active),
        task_definition_arn: Some(arn),
        task_role_arn,
        volumes: Some(
            volumes
                .unwrap_or_default()
                .into_iter()
                .map(with_volume_defaults)
                .collect(),
        ),
    }
}

/// An EFS volume's `rootDirectory` is `/` unless given, as ECS returns it.
fn with_volume_defaults(mut v: ecs::Volume) -> ecs::Volume {
    if let Some(efs) = v.efs_volume_configuration.as_mut() {
        efs.root_directory.get_or_insert_with(|| "/".to_string());
    }
    v
}

fn with_container_defaults(
    mut c: ecs::ContainerDefinition,
    awsvpc: bool,
) -> ecs::ContainerDefinition {
    c.essential.get_or_insert(true);
    c.cpu.get_or_insert(0);
    c.environment.get_or_insert_with(Vec::new);
    c.mount_points.get_or_insert_with(Vec::new);
    c.volumes_from.get_or_insert_with(Vec::new);
    for pm in c.port_mappings.get_or_insert_with(Vec::new) {
        pm.protocol.get_or_insert(ecs::TransportProtocol::Tcp);
        if awsvpc && pm.host_port.is_none() {
            pm.host_port = pm.container_port;
        }
    }
    if let Some(hc) = &mut c.health_check {
        hc.interval.get_or_insert(30);
        hc.timeout.get_or_insert(5);
        hc.retries.get_or_insert(3);
    }
    c
}
