//! What the scheduler knows about one container instance.
//!
//! These are the scheduler's own input types, not the wire types: the server
//! adapts its state (container instances, their attributes and the tasks on
//! them) into [`Instance`] and [`TaskGroups`] once, and the
//! [`ClusterView`](crate::ClusterView) keeps them current as tasks are placed
//! and stopped.

use std::collections::{BTreeMap, BTreeSet};

/// Well-known attribute names the built-in strategies and defaults use.
pub mod attributes {
    /// The zone a host is in; the default spread for services.
    pub const AVAILABILITY_ZONE: &str = "ecs.availability-zone";
    pub const INSTANCE_TYPE: &str = "ecs.instance-type";
    pub const OS_TYPE: &str = "ecs.os-type";
    pub const OS_FAMILY: &str = "ecs.os-family";
    pub const CPU_ARCHITECTURE: &str = "ecs.cpu-architecture";
}

/// A container instance's `status`, as ECS reports it: the model's
/// lifecycle enum, shared with the server and the agent.
pub use flotilla_model::lifecycle::InstanceStatus;

/// CPU (1/1024 of a core) and memory (MiB), as in ECS `Resource` lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpu: u32,
    pub memory: u32,
}

impl Resources {
    pub fn new(cpu: u32, memory: u32) -> Self {
        Resources { cpu, memory }
    }
}

/// One container instance as the scheduler sees it.
///
/// `remaining` and the used port sets are the instance's current free
/// capacity (ECS `remainingResources`); the server fills them from its state,
/// including ports the agent reserves for itself (22, 2375, 2376, 51678,
/// 51679 on a stock ECS host). From then on only the
/// [`ClusterView`](crate::ClusterView) changes them, so the view's
/// accounting and the instance never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The container instance ARN (or any id the server uses); placements
    /// and failures name instances by it.
    pub id: String,
    pub ec2_instance_id: Option<String>,
    pub status: InstanceStatus,
    pub agent_connected: bool,
    /// The agent's version string, e.g. `1.82.1`.
    pub agent_version: Option<String>,
    /// Registration time, epoch seconds.
    pub registered_at: i64,
    /// Built-in (`ecs.availability-zone`, `ecs.instance-type`, …) and custom
    /// attributes. Attributes that only exist (capabilities) have an empty
    /// value.
    pub attributes: BTreeMap<String, String>,
    pub registered: Resources,
    pub remaining: Resources,
    pub used_tcp_ports: BTreeSet<u16>,
    pub used_udp_ports: BTreeSet<u16>,
    /// Tasks on the instance in any non-stopped state (ECS
    /// `runningTasksCount` plus `pendingTasksCount`: both hold resources).
    pub running_tasks_count: u32,
}

impl Instance {
    /// An ACTIVE, connected instance with `registered` capacity all free and
    /// no attributes; set the other fields directly.
    pub fn new(id: impl Into<String>, registered: Resources) -> Self {
        Instance {
            id: id.into(),
            ec2_instance_id: None,
            status: InstanceStatus::Active,
            agent_connected: true,
            agent_version: None,
            registered_at: 0,
            attributes: BTreeMap::new(),
            registered,
            remaining: registered,
            used_tcp_ports: BTreeSet::new(),
            used_udp_ports: BTreeSet::new(),
            running_tasks_count: 0,
        }
    }

    /// Builder-style helper for an attribute.
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    /// The instance's availability zone, if the agent reported one.
    pub fn availability_zone(&self) -> Option<&str> {
        self.attribute(attributes::AVAILABILITY_ZONE)
    }
}

/// How many tasks of each task group are on one instance, e.g.
/// `service:web → 2`, `family:nginx → 1`. `spread`, `distinctInstance` and
/// the `task:group` query subject all count within a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskGroups(BTreeMap<String, u32>);

impl TaskGroups {
    pub fn new() -> Self {
        TaskGroups::default()
    }

    /// Tasks of `group` on the instance (0 if none).
    pub fn count(&self, group: &str) -> u32 {
        self.0.get(group).copied().unwrap_or(0)
    }

    pub fn contains(&self, group: &str) -> bool {
        self.count(group) > 0
    }

    pub fn add(&mut self, group: &str, n: u32) {
        if n == 0 {
            return;
        }
        match self.0.get_mut(group) {
            Some(c) => *c = c.saturating_add(n),
            None => {
                self.0.insert(group.to_owned(), n);
            }
        }
    }

    /// Removes up to `n` tasks of `group`; returns how many were removed.
    pub fn remove(&mut self, group: &str, n: u32) -> u32 {
        let Some(c) = self.0.get_mut(group) else {
            return 0;
        };
        let removed = n.min(*c);
        *c -= removed;
        if *c == 0 {
            self.0.remove(group);
        }
        removed
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Groups with at least one task, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0.iter().map(|(g, c)| (g.as_str(), *c))
    }
}

impl<S: Into<String>> FromIterator<(S, u32)> for TaskGroups {
    fn from_iter<I: IntoIterator<Item = (S, u32)>>(iter: I) -> Self {
        let mut groups = TaskGroups::new();
        for (g, n) in iter {
            groups.add(&g.into(), n);
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_wire_names() {
        for s in InstanceStatus::ALL {
            assert_eq!(InstanceStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(InstanceStatus::parse("active"), None);
    }

    #[test]
    fn task_groups_count_add_and_remove() {
        let mut g: TaskGroups = [("service:web", 2), ("family:nginx", 0)]
            .into_iter()
            .collect();
        assert_eq!(g.count("service:web"), 2);
        assert!(!g.contains("family:nginx"), "zero counts are not stored");
        g.add("service:web", 1);
        assert_eq!(g.remove("service:web", 5), 3);
        assert!(g.is_empty());
        assert_eq!(g.remove("nope", 1), 0);
    }
}
