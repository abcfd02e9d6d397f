//! What a task takes from its container instance, and what an instance has
//! left: CPU units, MiB of memory, and static host ports (TCP and UDP).

use std::collections::BTreeSet;

use flotilla_model::ecs;
use flotilla_model::task_definition::{parse_task_cpu, parse_task_memory};

use crate::state::{Account, ClusterState};

/// The resources one task holds on its instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub cpu: i64,
    pub memory: i64,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
}

/// What a task of `def` with `overrides` needs: the task-level cpu/memory when
/// set, else the sum over containers (memory, else memoryReservation), and
/// every static host port. Dynamic ports (hostPort 0 or absent in bridge mode)
/// are not counted here: the agent reports them once bound.
pub fn needs(def: &ecs::TaskDefinition, overrides: Option<&ecs::TaskOverride>) -> Needs {
    let containers = def.container_definitions.as_deref().unwrap_or_default();
    let over = |name: &Option<String>| {
        overrides
            .and_then(|o| o.container_overrides.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name.is_some() && c.name == *name))
    };
    let task_cpu = overrides.and_then(|o| o.cpu.as_deref()).or(def.cpu.as_deref()).and_then(|c| parse_task_cpu(c).ok());
    let task_mem = overrides.and_then(|o| o.memory.as_deref()).or(def.memory.as_deref()).and_then(|m| parse_task_memory(m).ok());
    let cpu = task_cpu.map(i64::from).unwrap_or_else(|| {
        containers.iter().map(|c| over(&c.name).and_then(|o| o.cpu).or(c.cpu).unwrap_or(0) as i64).sum()
    });
    let memory = task_mem.map(i64::from).unwrap_or_else(|| {
        containers
            .iter()
            .map(|c| {
                let o = over(&c.name);
                let hard = o.and_then(|o| o.memory).or(c.memory);
                let soft = o.and_then(|o| o.memory_reservation).or(c.memory_reservation);
                hard.or(soft).unwrap_or(0) as i64
            })
            .sum()
    });
    let host_mode = def.network_mode == Some(ecs::NetworkMode::Host);
    let mut n = Needs { cpu, memory, ..Default::default() };
    for c in containers {
        for pm in c.port_mappings.as_deref().unwrap_or_default() {
            // In host mode the container port is the host port.
            let host = if host_mode { pm.host_port.or(pm.container_port) } else { pm.host_port };
            let Some(port) = host.filter(|p| *p > 0).and_then(|p| u16::try_from(p).ok()) else { continue };
            match pm.protocol {
                Some(ecs::TransportProtocol::Udp) => n.udp_ports.push(port),
                _ => n.tcp_ports.push(port),
            }
        }
    }
    n
}

/// The task definition revision a task runs, if the account still has it.
pub fn definition_of<'a>(acct: &'a Account, task: &ecs::Task) -> Option<&'a ecs::TaskDefinition> {
    let arn = task.task_definition_arn.as_deref()?;
    let rest = arn.rsplit_once("task-definition/")?.1;
    let (family, rev) = rest.split_once(':')?;
    acct.families.get(family)?.revisions.get(&rev.parse().ok()?).map(|td| &td.definition)
}

/// A task holds resources from placement until it is STOPPED.
pub fn holds_resources(task: &ecs::Task) -> bool {
    task.last_status.as_deref() != Some("STOPPED")
}

/// The instance's registered resources less what its tasks hold, as the
/// `remainingResources` list ECS shows (CPU, MEMORY, PORTS, PORTS_UDP).
pub fn remaining(acct: &Account, cluster: &ClusterState, instance: &ecs::ContainerInstance) -> Vec<ecs::Resource> {
    let arn = instance.container_instance_arn.as_deref();
    let mut used = Needs::default();
    let mut reported_tcp = BTreeSet::new();
    let mut reported_udp = BTreeSet::new();
    for t in cluster.tasks.values().filter(|t| t.container_instance_arn.as_deref() == arn && holds_resources(t)) {
        if let Some(def) = definition_of(acct, t) {
            let n = needs(def, t.overrides.as_ref());
            used.cpu += n.cpu;
            used.memory += n.memory;
            used.tcp_ports.extend(n.tcp_ports);
            used.udp_ports.extend(n.udp_ports);
        }
        // Ports the agent bound (dynamic ones included) are in use too.
        for c in t.containers.as_deref().unwrap_or_default() {
            for b in c.network_bindings.as_deref().unwrap_or_default() {
                if let Some(p) = b.host_port.and_then(|p| u16::try_from(p).ok()) {
                    match b.protocol {
                        Some(ecs::TransportProtocol::Udp) => reported_udp.insert(p),
                        _ => reported_tcp.insert(p),
                    };
                }
            }
        }
    }
    let registered = instance.registered_resources.as_deref().unwrap_or_default();
    registered
        .iter()
        .map(|r| {
            let mut r = r.clone();
            match r.name.as_deref() {
                Some("CPU") => r.integer_value = r.integer_value.map(|v| (v as i64 - used.cpu) as i32),
                Some("MEMORY") => r.integer_value = r.integer_value.map(|v| (v as i64 - used.memory) as i32),
                Some("PORTS") => add_ports(&mut r, used.tcp_ports.iter().copied().chain(reported_tcp.iter().copied())),
                Some("PORTS_UDP") => add_ports(&mut r, used.udp_ports.iter().copied().chain(reported_udp.iter().copied())),
                _ => {}
            }
            r
        })
        .collect()
}

fn add_ports(r: &mut ecs::Resource, ports: impl Iterator<Item = u16>) {
    let mut set: BTreeSet<u16> = r.string_set_value.iter().flatten().filter_map(|p| p.parse().ok()).collect();
    set.extend(ports);
    r.string_set_value = Some(set.iter().map(u16::to_string).collect());
}

/// An integer resource of a resource list by name.
pub fn integer(resources: &[ecs::Resource], name: &str) -> Option<i64> {
    resources.iter().find(|r| r.name.as_deref() == Some(name)).and_then(|r| r.integer_value.map(i64::from).or(r.long_value))
}
