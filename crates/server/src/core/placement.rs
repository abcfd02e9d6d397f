//! The bridge between the cluster state and the scheduler.
//!
//! Each cluster keeps a [`ClusterView`]: the scheduler's picture of its
//! container instances (remaining resources, ports in use, task groups,
//! attribute indexes). It is derived state: rebuilt from the instances and
//! tasks when the state is loaded, and kept current by the handlers that
//! change them — [`place`] reserves, [`release`] gives back when a task
//! stops, [`sync_instance`] refreshes an instance after it changes. Because
//! every change happens under the state lock, a plan is always computed from
//! the latest state and cannot over-commit.

use flotilla_model::arn::name_from_ref;
use flotilla_model::ecs;
use flotilla_scheduler::{
    place as schedule, ClusterView, Expression, Instance, Launch, PlacementSpec, Resources,
    TaskGroups, TaskRequest, Unplaceable,
};

use super::resources::{definition_of, demand};
use super::state::{Account, ClusterState, Families};
use crate::error::{ApiError, ApiResult};
use crate::telemetry::{PlacementLabels, PlacementResult, TELEMETRY};

pub struct PlacementRequest<'a> {
    pub definition: &'a ecs::TaskDefinition,
    pub overrides: Option<&'a ecs::TaskOverride>,
    /// `family:NAME` or `service:NAME`.
    pub group: &'a str,
    pub constraints: &'a [ecs::PlacementConstraint],
    pub strategies: &'a [ecs::PlacementStrategy],
    pub launch: Launch,
}

/// ECS's limits: 10 constraints, 5 strategies.
pub fn check_limits(
    constraints: Option<&[ecs::PlacementConstraint]>,
    strategies: Option<&[ecs::PlacementStrategy]>,
) -> ApiResult<()> {
    if constraints.map_or(0, |c| c.len()) > 10 {
        return Err(ApiError::invalid(
            "placementConstraints can have at most 10 items.",
        ));
    }
    if strategies.map_or(0, |s| s.len()) > 5 {
        return Err(ApiError::invalid(
            "placementStrategy can have at most 5 items.",
        ));
    }
    Ok(())
}

/// The validated scheduler request, or `InvalidParameterException` naming the field.
pub fn task_request(req: &PlacementRequest<'_>) -> ApiResult<TaskRequest> {
    let mut spec = PlacementSpec::for_task_definition(req.definition, req.group, req.launch)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    spec.demand = demand(req.definition, req.overrides);
    spec.constraints = req.constraints;
    spec.strategies = req.strategies;
    TaskRequest::from_spec(&spec).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Chooses an instance (by id) for each of `req.count` tasks and reserves
/// them on the view; the rest come back as ECS `failures`, and `unplaced`
/// says why for service events.
pub struct Placed {
    pub instance_ids: Vec<String>,
    pub failures: Vec<ecs::Failure>,
    pub unplaced: Option<Unplaceable>,
}

pub fn place(c: &mut ClusterState, req: &TaskRequest, count: usize) -> Placed {
    let started = std::time::Instant::now();
    let plan = schedule(&mut c.view, req, count, &mut rand::rng());
    let result = match plan.unplaced {
        None => PlacementResult::Placed,
        Some(_) => PlacementResult::Unplaced,
    };
    TELEMETRY
        .placement
        .get_or_create(&PlacementLabels { result })
        .observe(started.elapsed().as_secs_f64());
    TELEMETRY.tasks_placed.inc_by(plan.placed.len() as u64);
    let instance_ids = plan
        .placed
        .iter()
        .filter_map(|(_, arn)| name_from_ref(arn, "container-instance").map(str::to_string))
        .collect();
    let mut failures = Vec::new();
    let unplaced = plan.unplaced.map(|u| {
        let arn = match &u.reason {
            Unplaceable::Rejected { instance_id, .. } => Some(instance_id.clone()),
            Unplaceable::NoInstances => None,
        };
        for _ in 0..u.count {
            failures.push(ecs::Failure {
                arn: arn.clone(),
                reason: Some(u.reason.reason().to_string()),
                detail: None,
            });
        }
        u.reason
    });
    Placed {
        instance_ids,
        failures,
        unplaced,
    }
}

/// Gives a stopped task's resources back to its instance.
pub fn release(families: &Families, c: &mut ClusterState, task: &ecs::Task) {
    let (Some(instance), Some(def)) = (
        task.container_instance_arn.as_deref(),
        definition_of(families, task),
    ) else {
        return;
    };
    let group = task.group.as_deref().unwrap_or_default();
    // Never fails for a task the view holds; a duplicate release is a no-op.
    let _ = c
        .view
        .release(instance, group, &demand(def, task.overrides.as_ref()));
}

fn integer(resources: &[ecs::Resource], name: &str) -> u32 {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .and_then(|r| r.integer_value.map(i64::from).or(r.long_value))
        .map_or(0, |v| v.clamp(0, u32::MAX as i64) as u32)
}

fn ports<'a>(resources: &'a [ecs::Resource], name: &'a str) -> impl Iterator<Item = u16> + 'a {
    resources
        .iter()
        .filter(move |r| r.name.as_deref() == Some(name))
        .flat_map(|r| r.string_set_value.iter().flatten())
        .filter_map(|p| p.parse().ok())
}

/// The scheduler's record of one container instance, from its stored form
/// and the tasks placed on it.
fn instance_entry(
    families: &Families,
    c: &ClusterState,
    ci: &ecs::ContainerInstance,
) -> Option<(Instance, TaskGroups)> {
    let arn = ci.container_instance_arn.clone()?;
    let registered = ci.registered_resources.as_deref().unwrap_or_default();
    let mut inst = Instance::new(
        arn.clone(),
        Resources::new(integer(registered, "CPU"), integer(registered, "MEMORY")),
    );
    inst.ec2_instance_id = ci.ec2_instance_id.clone();
    inst.status = ci.lifecycle();
    inst.agent_connected = ci.agent_connected.unwrap_or(false);
    inst.agent_version = ci
        .version_info
        .as_ref()
        .and_then(|v| v.agent_version.clone());
    inst.registered_at = ci.registered_at.unwrap_or(0.0) as i64;
    inst.attributes = ci
        .attributes
        .iter()
        .flatten()
        .filter_map(|a| Some((a.name.clone()?, a.value.clone().unwrap_or_default())))
        .collect();
    inst.used_tcp_ports.extend(ports(registered, "PORTS"));
    inst.used_udp_ports.extend(ports(registered, "PORTS_UDP"));
    let mut groups = TaskGroups::new();
    for (_, t) in c
        .tasks_on(&arn)
        .filter(|(_, t)| t.status().holds_resources())
    {
        let Some(def) = definition_of(families, t) else {
            continue;
        };
        let d = demand(def, t.overrides.as_ref());
        inst.remaining.cpu = inst.remaining.cpu.saturating_sub(d.cpu);
        inst.remaining.memory = inst.remaining.memory.saturating_sub(d.memory);
        inst.used_tcp_ports.extend(d.tcp_ports.iter().copied());
        inst.used_udp_ports.extend(d.udp_ports.iter().copied());
        inst.running_tasks_count += 1;
        groups.add(t.group.as_deref().unwrap_or_default(), 1);
    }
    Some((inst, groups))
}

/// Brings the view's record of instance `id` up to date (or drops it once the
/// instance is no longer registered).
pub fn sync_instance(families: &Families, c: &mut ClusterState, id: &str) {
    let Some(ci) = c.instances.get(id) else {
        return;
    };
    let registered = ci.is_registered();
    match (registered, instance_entry(families, c, ci)) {
        (true, Some((inst, groups))) => c.view.upsert(inst, groups),
        (_, Some((inst, _))) => {
            c.view.remove(&inst.id);
        }
        _ => {}
    }
}

/// [`sync_instance`] for an instance named by cluster and id in an account.
pub fn sync_account_instance(acct: &mut Account, cluster: &str, id: &str) {
    let Account {
        clusters, families, ..
    } = acct;
    if let Some(c) = clusters.get_mut(cluster) {
        sync_instance(families, c, id);
    }
}

/// Rebuilds the whole view of a cluster (at load).
pub fn rebuild_view(families: &Families, c: &mut ClusterState) {
    c.view = ClusterView::new();
    let ids: Vec<String> = c.instances.keys().cloned().collect();
    for id in ids {
        sync_instance(families, c, &id);
    }
}

/// The `remainingResources` DescribeContainerInstances shows, from the view.
pub fn remaining_resources(c: &ClusterState, ci: &ecs::ContainerInstance) -> Vec<ecs::Resource> {
    let registered = ci.registered_resources.clone().unwrap_or_default();
    let Some((inst, _)) = ci
        .container_instance_arn
        .as_deref()
        .and_then(|arn| c.view.get(arn))
    else {
        return registered;
    };
    registered
        .into_iter()
        .map(|mut r| {
            match r.name.as_deref() {
                Some("CPU") => r.integer_value = Some(inst.remaining.cpu as i32),
                Some("MEMORY") => r.integer_value = Some(inst.remaining.memory as i32),
                Some("PORTS") => {
                    r.string_set_value =
                        Some(inst.used_tcp_ports.iter().map(u16::to_string).collect())
                }
                Some("PORTS_UDP") => {
                    r.string_set_value =
                        Some(inst.used_udp_ports.iter().map(u16::to_string).collect())
                }
                _ => {}
            }
            r
        })
        .collect()
}

/// A ListContainerInstances `filter` in the Cluster Query Language.
pub struct Filter(Expression);

impl Filter {
    pub fn parse(expression: &str) -> ApiResult<Filter> {
        Expression::parse(expression)
            .map(Filter)
            .map_err(|e| ApiError::invalid(format!("filter: {e}")))
    }

    pub fn matches(&self, c: &ClusterState, ci: &ecs::ContainerInstance) -> bool {
        let Some((inst, groups)) = ci
            .container_instance_arn
            .as_deref()
            .and_then(|arn| c.view.get(arn))
        else {
            return false;
        };
        self.0.matches(inst, groups)
    }
}
