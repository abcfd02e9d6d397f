//! Feasibility: which instances can take a task, and why the others cannot.
//!
//! The checks run in [`PIPELINE`] order and an instance's record is its
//! first failing check. The order is the instance's eligibility first, then
//! the binding constraints, then resources:
//!
//! status → agent → requiresAttributes → memberOf → distinctInstance → CPU →
//! memory → TCP ports → UDP ports
//!
//! The order matters only for explaining a failure. ECS reports one reason
//! for the whole request, naming "the closest matching container instance":
//! we take that to be the instance that got furthest down the pipeline. With
//! constraints before resources, a task whose `memberOf` matches two full
//! instances is reported as `RESOURCE:MEMORY` (what the user must fix) rather
//! than as the constraint failing on every other host; a constraint that
//! matches nothing is reported as the constraint.

use std::fmt;

use crate::cql::Expression;
use crate::instance::InstanceStatus;
use crate::request::{RequiredAttribute, TaskRequest};
use crate::view::ClusterView;

/// One feasibility check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    Status,
    Agent,
    Attribute,
    MemberOf,
    DistinctInstance,
    Cpu,
    Memory,
    Ports,
    PortsUdp,
}

/// The checks, in the order they run.
pub const PIPELINE: [Check; 9] = [
    Check::Status,
    Check::Agent,
    Check::Attribute,
    Check::MemberOf,
    Check::DistinctInstance,
    Check::Cpu,
    Check::Memory,
    Check::Ports,
    Check::PortsUdp,
];

/// Why one instance cannot take the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not ACTIVE. ECS does not consider such instances at all.
    Status(InstanceStatus),
    AgentDisconnected,
    MissingAttribute(RequiredAttribute),
    /// The `memberOf` expression (canonical form) the instance fails.
    MemberOf(String),
    DistinctInstance,
    Cpu {
        needed: u32,
        remaining: u32,
    },
    Memory {
        needed: u32,
        remaining: u32,
    },
    Ports {
        port: u16,
    },
    PortsUdp {
        port: u16,
    },
}

impl Rejection {
    pub fn check(&self) -> Check {
        match self {
            Rejection::Status(_) => Check::Status,
            Rejection::AgentDisconnected => Check::Agent,
            Rejection::MissingAttribute(_) => Check::Attribute,
            Rejection::MemberOf(_) => Check::MemberOf,
            Rejection::DistinctInstance => Check::DistinctInstance,
            Rejection::Cpu { .. } => Check::Cpu,
            Rejection::Memory { .. } => Check::Memory,
            Rejection::Ports { .. } => Check::Ports,
            Rejection::PortsUdp { .. } => Check::PortsUdp,
        }
    }

    /// The `reason` ECS puts in a RunTask/StartTask `failures` entry. For a
    /// non-ACTIVE instance, which ECS never reports, it is the status.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Status(s) => s.as_str(),
            Rejection::AgentDisconnected => "AGENT",
            Rejection::MissingAttribute(_) => "ATTRIBUTE",
            Rejection::MemberOf(_) => "MemberOf placement constraint unsatisfied",
            Rejection::DistinctInstance => "DistinctInstance placement constraint unsatisfied",
            Rejection::Cpu { .. } => "RESOURCE:CPU",
            Rejection::Memory { .. } => "RESOURCE:MEMORY",
            Rejection::Ports { .. } => "RESOURCE:PORTS",
            Rejection::PortsUdp { .. } => "RESOURCE:PORTS_UDP",
        }
    }
}

/// What the instance lacks, phrased to follow "the container instance …".
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Status(s) => write!(f, "is {s}, not ACTIVE"),
            Rejection::AgentDisconnected => f.write_str("has a disconnected agent"),
            Rejection::MissingAttribute(a) => match &a.value {
                Some(v) => write!(
                    f,
                    "is missing an attribute required by your task ({}={v})",
                    a.name
                ),
                None => write!(
                    f,
                    "is missing an attribute required by your task ({})",
                    a.name
                ),
            },
            Rejection::MemberOf(e) => write!(
                f,
                "does not satisfy the memberOf placement constraint ({e})"
            ),
            Rejection::DistinctInstance => f.write_str(
                "already runs a task of this group (distinctInstance placement constraint)",
            ),
            Rejection::Cpu { needed, remaining } => {
                write!(
                    f,
                    "has insufficient CPU units available ({remaining} left, {needed} needed)"
                )
            }
            Rejection::Memory { needed, remaining } => {
                write!(
                    f,
                    "has insufficient memory available ({remaining} MiB left, {needed} MiB needed)"
                )
            }
            Rejection::Ports { port } => write!(
                f,
                "is already using a port required by your task ({port}/tcp)"
            ),
            Rejection::PortsUdp { port } => {
                write!(
                    f,
                    "is already using a port required by your task ({port}/udp)"
                )
            }
        }
    }
}

/// One instance's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub instance_id: String,
    /// `None` if the instance could take the task.
    pub rejection: Option<Rejection>,
}

/// Why a task could not be placed, as ECS would tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unplaceable {
    /// No ACTIVE instance at all. ECS answers RunTask with a
    /// `ClientException` ([`Unplaceable::NO_INSTANCES_MESSAGE`]) rather than
    /// with `failures`.
    NoInstances,
    /// Instances exist but none fits; `instance_id` is the closest match,
    /// which RunTask reports as `failures: [{arn, reason}]`.
    Rejected {
        instance_id: String,
        rejection: Rejection,
    },
}

impl Unplaceable {
    pub const NO_INSTANCES_MESSAGE: &'static str =
        "No Container Instances were found in your cluster.";

    /// The `failures[].reason`.
    pub fn reason(&self) -> &str {
        match self {
            Unplaceable::NoInstances => Unplaceable::NO_INSTANCES_MESSAGE,
            Unplaceable::Rejected { rejection, .. } => rejection.reason(),
        }
    }

    /// The tail of a service event: "(service web) was unable to place a
    /// task because " + this.
    pub fn explanation(&self) -> String {
        match self {
            Unplaceable::NoInstances => format!(
                "no container instance met all of its requirements. Reason: {}",
                Unplaceable::NO_INSTANCES_MESSAGE
            ),
            Unplaceable::Rejected {
                instance_id,
                rejection,
            } => {
                let short = instance_id.rsplit('/').next().unwrap_or(instance_id);
                format!(
                    "no container instance met all of its requirements. The closest matching \
                     (container-instance {short}) {rejection}."
                )
            }
        }
    }
}

/// Summarises per-instance verdicts into the one reason ECS reports:
/// `None` if some instance is feasible; the instance that got furthest down
/// the pipeline otherwise (the first such in view order), or
/// [`Unplaceable::NoInstances`] when no instance is ACTIVE.
pub fn summarize(verdicts: &[Verdict]) -> Option<Unplaceable> {
    let mut closest: Option<(&Verdict, &Rejection)> = None;
    for v in verdicts {
        let r = v.rejection.as_ref()?;
        if closest.is_none_or(|(_, best)| r.check() > best.check()) {
            closest = Some((v, r));
        }
    }
    match closest {
        Some((v, r)) if r.check() > Check::Status => Some(Unplaceable::Rejected {
            instance_id: v.instance_id.clone(),
            rejection: r.clone(),
        }),
        _ => Some(Unplaceable::NoInstances),
    }
}

/// Every instance's verdict for `req` against the view as it is now.
pub fn explain(view: &ClusterView, req: &TaskRequest) -> Vec<Verdict> {
    let filter = Filter::new(view, req, true);
    (0..view.len())
        .map(|i| Verdict {
            instance_id: view.instance(i).id.clone(),
            rejection: filter.first_failure(view, i, view.groups_at(i).count(&req.group)),
        })
        .collect()
}

/// The first check `req` fails on instance `id` (StartTask, where the caller
/// picks the instance); `None` if it fits.
pub fn check_instance(
    view: &ClusterView,
    req: &TaskRequest,
    id: &str,
) -> Option<Option<Rejection>> {
    let i = view.position(id)?;
    let filter = Filter::new(view, req, false);
    Some(filter.first_failure(view, i, view.groups_at(i).count(&req.group)))
}

struct MemberOf<'r> {
    expr: &'r Expression,
    /// Precomputed result per instance, or evaluate on demand.
    mask: Option<Vec<bool>>,
    dynamic: bool,
}

/// The checks for one request, with what can be computed once per batch
/// computed once. Shared by placement's fast path and by [`explain`], so a
/// placement and its explanation can never disagree.
pub(crate) struct Filter<'r> {
    req: &'r TaskRequest,
    /// Per `requiresAttributes` entry: which instances have it, or evaluate
    /// on demand.
    needs: Option<Vec<Vec<bool>>>,
    member_of: Vec<MemberOf<'r>>,
    distinct: bool,
}

impl<'r> Filter<'r> {
    /// `whole_view`: evaluate attributes and memberOf over all instances up
    /// front, through the view's columns (for a batch); otherwise per
    /// instance on demand (one instance, as in StartTask).
    pub(crate) fn new(view: &ClusterView, req: &'r TaskRequest, whole_view: bool) -> Self {
        let needs = whole_view.then(|| {
            req.required_attributes
                .iter()
                .map(|a| {
                    let Some(col) = view.column(&a.name) else {
                        return vec![false; view.len()];
                    };
                    // The value id to match, or 0 for "any value".
                    let want = match &a.value {
                        None => 0,
                        Some(v) => match col.lookup(v) {
                            Some(id) => id,
                            None => return vec![false; view.len()],
                        },
                    };
                    (0..view.len())
                        .map(|i| col.id(i) != 0 && (want == 0 || col.id(i) == want))
                        .collect()
                })
                .collect()
        });
        let member_of = req
            .member_of()
            .map(|expr| MemberOf {
                expr,
                mask: whole_view.then(|| view.select(expr)),
                dynamic: expr.depends_on_tasks(),
            })
            .collect();
        Filter {
            req,
            needs,
            member_of,
            distinct: req.distinct_instance(),
        }
    }

    /// Checks that no placement in the batch can change: status, agent,
    /// attributes, and memberOf expressions that do not look at tasks.
    pub(crate) fn passes_static(&self, view: &ClusterView, i: usize) -> bool {
        view.is_eligible(i)
            && (0..self.req.required_attributes.len()).all(|k| self.need_met(view, k, i))
            && self
                .member_of
                .iter()
                .all(|m| m.dynamic || self.member_ok(m, view, i))
    }

    /// The rest, for an instance that passed [`passes_static`](Self::passes_static).
    #[inline]
    pub(crate) fn passes_dynamic(&self, view: &ClusterView, i: usize, group_count: u32) -> bool {
        let d = &self.req.demand;
        view.cpu_left[i] >= d.cpu
            && view.mem_left[i] >= d.memory
            && !(self.distinct && group_count > 0)
            && ((d.tcp_ports.is_empty() && d.udp_ports.is_empty())
                || view.resource_rejection(i, d).is_none())
            && self
                .member_of
                .iter()
                .all(|m| !m.dynamic || self.member_ok(m, view, i))
    }

    /// After a task lands on `i`, re-evaluate the expressions that look at
    /// tasks there.
    pub(crate) fn refresh(&mut self, view: &ClusterView, i: usize) {
        for m in self.member_of.iter_mut().filter(|m| m.dynamic) {
            if let Some(mask) = m.mask.as_mut() {
                mask[i] = m.expr.matches(view.instance(i), view.groups_at(i));
            }
        }
    }

    /// The first failing check in [`PIPELINE`] order.
    pub(crate) fn first_failure(
        &self,
        view: &ClusterView,
        i: usize,
        group_count: u32,
    ) -> Option<Rejection> {
        let inst = view.instance(i);
        if inst.status != InstanceStatus::Active {
            return Some(Rejection::Status(inst.status));
        }
        if !inst.agent_connected {
            return Some(Rejection::AgentDisconnected);
        }
        for (k, attr) in self.req.required_attributes.iter().enumerate() {
            if !self.need_met(view, k, i) {
                return Some(Rejection::MissingAttribute(attr.clone()));
            }
        }
        for m in &self.member_of {
            if !self.member_ok(m, view, i) {
                return Some(Rejection::MemberOf(m.expr.to_string()));
            }
        }
        if self.distinct && group_count > 0 {
            return Some(Rejection::DistinctInstance);
        }
        view.resource_rejection(i, &self.req.demand)
    }

    fn need_met(&self, view: &ClusterView, k: usize, i: usize) -> bool {
        match &self.needs {
            Some(masks) => masks[k][i],
            None => {
                let a = &self.req.required_attributes[k];
                view.instance(i)
                    .attribute(&a.name)
                    .is_some_and(|v| a.value.as_deref().is_none_or(|want| want == v))
            }
        }
    }

    fn member_ok(&self, m: &MemberOf<'_>, view: &ClusterView, i: usize) -> bool {
        match &m.mask {
            Some(mask) => mask[i],
            None => m.expr.matches(view.instance(i), view.groups_at(i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{Instance, Resources, TaskGroups};
    use crate::request::{Constraint, Demand};

    fn inst(id: &str) -> Instance {
        Instance::new(id, Resources::new(1024, 2048))
            .with_attribute("ecs.availability-zone", "z1")
            .with_attribute("ecs.capability.foo", "")
    }

    fn reject(view: &ClusterView, req: &TaskRequest, id: &str) -> Option<Rejection> {
        check_instance(view, req, id).expect("known instance")
    }

    #[test]
    fn each_check_records_its_reason() {
        let mut draining = inst("draining");
        draining.status = InstanceStatus::Draining;
        let mut gone = inst("gone");
        gone.agent_connected = false;
        let mut busy = inst("busy");
        busy.used_tcp_ports.insert(80);
        busy.used_udp_ports.insert(53);
        let view = ClusterView::from_instances([
            (draining, TaskGroups::new()),
            (gone, TaskGroups::new()),
            (busy, TaskGroups::new()),
            (inst("web"), [("service:web", 1)].into_iter().collect()),
        ]);
        let mut req = TaskRequest::new("service:web", Demand::new(256, 256));
        assert_eq!(
            reject(&view, &req, "draining"),
            Some(Rejection::Status(InstanceStatus::Draining))
        );
        assert_eq!(
            reject(&view, &req, "gone").map(|r| r.reason()),
            Some("AGENT")
        );
        assert_eq!(reject(&view, &req, "busy"), None);

        req.demand.tcp_ports = vec![80];
        assert_eq!(
            reject(&view, &req, "busy").map(|r| r.reason()),
            Some("RESOURCE:PORTS")
        );
        req.demand.tcp_ports = vec![81];
        req.demand.udp_ports = vec![53];
        assert_eq!(
            reject(&view, &req, "busy").map(|r| r.reason()),
            Some("RESOURCE:PORTS_UDP")
        );
        req.demand = Demand::new(2000, 10);
        assert_eq!(
            reject(&view, &req, "busy").map(|r| r.reason()),
            Some("RESOURCE:CPU")
        );
        req.demand = Demand::new(10, 4096);
        assert_eq!(
            reject(&view, &req, "busy").map(|r| r.reason()),
            Some("RESOURCE:MEMORY")
        );
        req.demand = Demand::new(10, 10);

        req.constraints = vec![Constraint::DistinctInstance];
        assert_eq!(
            reject(&view, &req, "web").map(|r| r.reason()),
            Some("DistinctInstance placement constraint unsatisfied")
        );
        assert_eq!(reject(&view, &req, "busy"), None);

        req.constraints = vec![Constraint::MemberOf(
            Expression::parse("attribute:ecs.availability-zone == z2").unwrap(),
        )];
        let r = reject(&view, &req, "busy").unwrap();
        assert_eq!(r.reason(), "MemberOf placement constraint unsatisfied");
        assert_eq!(
            r,
            Rejection::MemberOf("attribute:ecs.availability-zone == z2".into())
        );

        req.constraints.clear();
        req.required_attributes = vec![RequiredAttribute {
            name: "ecs.capability.foo".into(),
            value: None,
        }];
        assert_eq!(reject(&view, &req, "busy"), None);
        req.required_attributes.push(RequiredAttribute {
            name: "ecs.availability-zone".into(),
            value: Some("z9".into()),
        });
        assert_eq!(
            reject(&view, &req, "busy").map(|r| r.reason()),
            Some("ATTRIBUTE")
        );
        req.required_attributes = vec![RequiredAttribute {
            name: "nowhere".into(),
            value: None,
        }];
        assert_eq!(
            reject(&view, &req, "busy").map(|r| r.reason()),
            Some("ATTRIBUTE")
        );
        assert!(check_instance(&view, &req, "unknown").is_none());
    }

    #[test]
    fn summary_names_the_closest_instance() {
        let v = |id: &str, r: Option<Rejection>| Verdict {
            instance_id: id.into(),
            rejection: r,
        };
        let mem = Rejection::Memory {
            needed: 2,
            remaining: 1,
        };
        let verdicts = [
            v(
                "arn:aws:ecs:r:1:container-instance/c/aaa",
                Some(Rejection::MemberOf("x".into())),
            ),
            v(
                "arn:aws:ecs:r:1:container-instance/c/bbb",
                Some(mem.clone()),
            ),
            v(
                "arn:aws:ecs:r:1:container-instance/c/ccc",
                Some(Rejection::AgentDisconnected),
            ),
        ];
        let s = summarize(&verdicts).unwrap();
        assert_eq!(s.reason(), "RESOURCE:MEMORY");
        assert_eq!(
            s.explanation(),
            "no container instance met all of its requirements. The closest matching (container-instance bbb) \
             has insufficient memory available (1 MiB left, 2 MiB needed)."
        );
        assert_eq!(
            summarize(&[v("a", Some(Rejection::MemberOf("x".into()))), v("b", None)]),
            None
        );
        assert_eq!(summarize(&[]), Some(Unplaceable::NoInstances));
        assert_eq!(
            summarize(&[v("a", Some(Rejection::Status(InstanceStatus::Draining)))]),
            Some(Unplaceable::NoInstances)
        );
        assert_eq!(
            Unplaceable::NoInstances.reason(),
            "No Container Instances were found in your cluster."
        );
        let agent_only = summarize(&[v("a", Some(Rejection::AgentDisconnected))]).unwrap();
        assert_eq!(agent_only.reason(), "AGENT");
    }

    #[test]
    fn pipeline_order_is_the_documented_one() {
        let mut sorted = PIPELINE;
        sorted.sort();
        assert_eq!(
            sorted, PIPELINE,
            "Check's Ord is the pipeline order summarize relies on"
        );
    }
}
