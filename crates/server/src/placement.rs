//! The bridge between the cluster state and the scheduler: builds the
//! scheduler's view of a cluster, asks it where tasks go, and turns its
//! answer into ECS `failures`.
//!
//! Interim: a first-fit over CPU, memory and static ports until the
//! `flotilla-scheduler` crate (constraints, strategies, the Cluster Query
//! Language) is wired in behind the same functions.

use flotilla_model::ecs;

use crate::ecs::resources::{integer, needs, remaining};
use crate::error::{ApiError, ApiResult};
use crate::state::{Account, ClusterState};

pub struct PlacementRequest<'a> {
    pub definition: &'a ecs::TaskDefinition,
    pub overrides: Option<&'a ecs::TaskOverride>,
    /// `family:NAME` or `service:NAME`.
    pub group: &'a str,
    pub constraints: &'a [ecs::PlacementConstraint],
    pub strategies: &'a [ecs::PlacementStrategy],
    pub count: usize,
    /// StartTask: exactly these instance ids, one task each.
    pub only: Option<&'a [String]>,
}

/// ECS's limits: 10 constraints, 5 strategies.
pub fn check_limits(constraints: Option<&[ecs::PlacementConstraint]>, strategies: Option<&[ecs::PlacementStrategy]>) -> ApiResult<()> {
    if constraints.map_or(0, |c| c.len()) > 10 {
        return Err(ApiError::invalid("placementConstraints can have at most 10 items."));
    }
    if strategies.map_or(0, |s| s.len()) > 5 {
        return Err(ApiError::invalid("placementStrategy can have at most 5 items."));
    }
    Ok(())
}

/// Chooses an instance id for each task, or says why none fits.
pub fn place(acct: &Account, cluster: &ClusterState, req: &PlacementRequest<'_>) -> ApiResult<(Vec<String>, Vec<ecs::Failure>)> {
    let need = needs(req.definition, req.overrides);
    let mut free: Vec<(String, String, i64, i64, Vec<String>)> = cluster
        .instances
        .iter()
        .filter(|(id, _)| req.only.is_none_or(|only| only.contains(id)))
        .map(|(id, i)| {
            let rem = remaining(acct, cluster, i);
            let ports = rem.iter().filter(|r| r.name.as_deref() == Some("PORTS")).flat_map(|r| r.string_set_value.clone().unwrap_or_default()).collect();
            (
                id.clone(),
                i.status.clone().unwrap_or_default() + if i.agent_connected == Some(true) { "" } else { "/disconnected" },
                integer(&rem, "CPU").unwrap_or(0),
                integer(&rem, "MEMORY").unwrap_or(0),
                ports,
            )
        })
        .collect();
    let mut placed = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..req.count {
        let mut reason = "RESOURCE:MEMORY";
        let mut chosen = None;
        for (id, status, cpu, mem, ports) in free.iter_mut() {
            if status != "ACTIVE" {
                reason = "AGENT";
                continue;
            }
            if *cpu < need.cpu {
                reason = "RESOURCE:CPU";
                continue;
            }
            if *mem < need.memory {
                reason = "RESOURCE:MEMORY";
                continue;
            }
            if need.tcp_ports.iter().any(|p| ports.contains(&p.to_string())) {
                reason = "RESOURCE:PORTS";
                continue;
            }
            *cpu -= need.cpu;
            *mem -= need.memory;
            ports.extend(need.tcp_ports.iter().map(u16::to_string));
            chosen = Some(id.clone());
            break;
        }
        match chosen {
            Some(id) => placed.push(id),
            None => failures.push(ecs::Failure { arn: None, reason: Some(reason.into()), detail: None }),
        }
    }
    Ok((placed, failures))
}

/// A ListContainerInstances `filter` in the Cluster Query Language.
pub struct Filter;

impl Filter {
    pub fn parse(_expression: &str) -> ApiResult<Filter> {
        Err(ApiError::invalid("filter is not supported yet."))
    }

    pub fn matches(&self, _acct: &Account, _c: &ClusterState, _i: &ecs::ContainerInstance) -> bool {
        true
    }
}
