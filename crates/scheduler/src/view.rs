//! The snapshot placement works on, kept current incrementally.
//!
//! A [`ClusterView`] owns the cluster's instances and the task groups on
//! them. Placement reserves on it as it goes, which is what keeps the tasks
//! of one batch from over-committing an instance; the server releases a
//! task's demand when it stops, and upserts an instance when its record
//! changes. Keep one view per cluster alive and update it, rather than
//! rebuilding it per decision: the indexes below are what make a decision
//! cheap at 10,000 instances.
//!
//! Besides the instances themselves the view keeps, always in sync:
//! - hot columns (`cpu_left`, `mem_left`, `eligible`) so the per-decision scan
//!   touches a few bytes per instance instead of a whole [`Instance`];
//! - one interned column per attribute name (value id per instance), so an
//!   attribute predicate or a spread is evaluated once per distinct value,
//!   not once per instance;
//! - per task group, the instances holding tasks of it and how many.

use std::collections::{BTreeMap, HashMap};

use crate::cql::{Comparison, Expression, Operand, Predicate, Subject, Test, Version};
use crate::feasibility::Rejection;
use crate::instance::{Instance, InstanceStatus, TaskGroups};
use crate::request::Demand;

/// Errors from updating the view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("container instance {0} is not in the cluster view")]
    UnknownInstance(String),
    #[error("container instance {id} cannot hold the task: {rejection}")]
    DoesNotFit { id: String, rejection: Rejection },
}

/// Interned values of one attribute across instances. Id 0 means "absent".
#[derive(Debug, Clone, Default)]
pub(crate) struct Column {
    ids: Vec<u32>,
    /// `values[id - 1]`; freed slots hold an empty string until reused.
    values: Vec<String>,
    refs: Vec<u32>,
    lookup: HashMap<String, u32>,
    free: Vec<u32>,
    present: usize,
}

impl Column {
    pub(crate) fn id(&self, instance: usize) -> u32 {
        self.ids.get(instance).copied().unwrap_or(0)
    }

    /// One past the largest id: size tables indexed by id with this.
    pub(crate) fn id_space(&self) -> usize {
        self.values.len() + 1
    }

    pub(crate) fn value(&self, id: u32) -> Option<&str> {
        if id == 0 {
            return None;
        }
        let slot = id as usize - 1;
        if self.refs.get(slot).copied().unwrap_or(0) == 0 {
            return None;
        }
        self.values.get(slot).map(String::as_str)
    }

    pub(crate) fn lookup(&self, value: &str) -> Option<u32> {
        self.lookup.get(value).copied()
    }

    fn set(&mut self, instance: usize, value: Option<&str>) {
        let old = self.ids[instance];
        if let Some(v) = value {
            if self.value(old) == Some(v) {
                return;
            }
        } else if old == 0 {
            return;
        }
        self.release(old);
        self.ids[instance] = match value {
            None => 0,
            Some(v) => self.acquire(v),
        };
    }

    fn acquire(&mut self, value: &str) -> u32 {
        self.present += 1;
        if let Some(&id) = self.lookup.get(value) {
            self.refs[id as usize - 1] += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.values[id as usize - 1] = value.to_owned();
                self.refs[id as usize - 1] = 1;
                id
            }
            None => {
                self.values.push(value.to_owned());
                self.refs.push(1);
                self.values.len() as u32
            }
        };
        self.lookup.insert(value.to_owned(), id);
        id
    }

    fn release(&mut self, id: u32) {
        if id == 0 {
            return;
        }
        self.present -= 1;
        let slot = id as usize - 1;
        self.refs[slot] -= 1;
        if self.refs[slot] == 0 {
            let value = std::mem::take(&mut self.values[slot]);
            self.lookup.remove(&value);
            self.free.push(id);
        }
    }
}

/// The cluster as placement sees it. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    instances: Vec<Instance>,
    groups: Vec<TaskGroups>,
    index: HashMap<String, usize>,
    pub(crate) cpu_left: Vec<u32>,
    pub(crate) mem_left: Vec<u32>,
    /// ACTIVE with a connected agent: the only instances that take tasks.
    eligible: Vec<bool>,
    agent_versions: Vec<Option<Version>>,
    columns: HashMap<String, Column>,
    /// group → instance → tasks of the group on it (never 0).
    members: HashMap<String, HashMap<usize, u32>>,
}

impl ClusterView {
    pub fn new() -> Self {
        ClusterView::default()
    }

    /// Builds a view; a later entry with the same id replaces an earlier one.
    pub fn from_instances(instances: impl IntoIterator<Item = (Instance, TaskGroups)>) -> Self {
        let mut view = ClusterView::new();
        for (instance, groups) in instances {
            view.upsert(instance, groups);
        }
        view
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<(&Instance, &TaskGroups)> {
        self.index
            .get(id)
            .map(|&i| (&self.instances[i], &self.groups[i]))
    }

    /// All instances with their task groups, in view order (insertion order,
    /// except that [`remove`](Self::remove) moves the last one into the gap).
    pub fn iter(&self) -> impl Iterator<Item = (&Instance, &TaskGroups)> {
        self.instances.iter().zip(&self.groups)
    }

    pub(crate) fn instance(&self, i: usize) -> &Instance {
        &self.instances[i]
    }

    pub(crate) fn groups_at(&self, i: usize) -> &TaskGroups {
        &self.groups[i]
    }

    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub(crate) fn is_eligible(&self, i: usize) -> bool {
        self.eligible[i]
    }

    pub(crate) fn column(&self, name: &str) -> Option<&Column> {
        self.columns.get(name)
    }

    /// Instances holding tasks of `group`, with their counts.
    pub(crate) fn members(&self, group: &str) -> Option<&HashMap<usize, u32>> {
        self.members.get(group)
    }

    /// Adds an instance, or replaces the one with the same id (its record
    /// and its task groups: the caller's state is the truth).
    pub fn upsert(&mut self, instance: Instance, groups: TaskGroups) {
        let i = match self.index.get(&instance.id) {
            Some(&i) => {
                self.unindex_groups(i);
                self.instances[i] = instance;
                i
            }
            None => {
                let i = self.instances.len();
                self.index.insert(instance.id.clone(), i);
                self.instances.push(instance);
                self.groups.push(TaskGroups::new());
                self.cpu_left.push(0);
                self.mem_left.push(0);
                self.eligible.push(false);
                self.agent_versions.push(None);
                for col in self.columns.values_mut() {
                    col.ids.push(0);
                }
                i
            }
        };
        let attributes = std::mem::take(&mut self.instances[i].attributes);
        self.set_attributes_at(i, &attributes);
        let inst = &mut self.instances[i];
        inst.attributes = attributes;
        self.cpu_left[i] = inst.remaining.cpu;
        self.mem_left[i] = inst.remaining.memory;
        self.agent_versions[i] = inst
            .agent_version
            .as_deref()
            .and_then(Version::parse_lenient);
        self.groups[i] = groups;
        self.refresh_eligible(i);
        self.index_groups(i);
    }

    /// Removes an instance (deregistered); returns what the view held.
    pub fn remove(&mut self, id: &str) -> Option<(Instance, TaskGroups)> {
        let i = self.index.remove(id)?;
        self.unindex_groups(i);
        self.set_attributes_at(i, &BTreeMap::new());
        let last = self.instances.len() - 1;
        if i != last {
            self.unindex_groups(last);
        }
        let instance = self.instances.swap_remove(i);
        let groups = self.groups.swap_remove(i);
        self.cpu_left.swap_remove(i);
        self.mem_left.swap_remove(i);
        self.eligible.swap_remove(i);
        self.agent_versions.swap_remove(i);
        for col in self.columns.values_mut() {
            col.ids.swap_remove(i);
        }
        self.columns.retain(|_, c| c.present > 0);
        if i != last {
            self.index.insert(self.instances[i].id.clone(), i);
            self.index_groups(i);
        }
        Some((instance, groups))
    }

    pub fn set_status(&mut self, id: &str, status: InstanceStatus) -> Result<(), ViewError> {
        let i = self.require(id)?;
        self.instances[i].status = status;
        self.refresh_eligible(i);
        Ok(())
    }

    pub fn set_agent_connected(&mut self, id: &str, connected: bool) -> Result<(), ViewError> {
        let i = self.require(id)?;
        self.instances[i].agent_connected = connected;
        self.refresh_eligible(i);
        Ok(())
    }

    /// Replaces the instance's attributes (PutAttributes / DeleteAttributes).
    pub fn set_attributes(
        &mut self,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<(), ViewError> {
        let i = self.require(id)?;
        self.set_attributes_at(i, &attributes);
        self.instances[i].attributes = attributes;
        Ok(())
    }

    /// Records a task of `group` holding `demand` on the instance, after
    /// checking it fits: the view never over-commits, whoever calls it.
    pub fn reserve(&mut self, id: &str, group: &str, demand: &Demand) -> Result<(), ViewError> {
        let i = self.require(id)?;
        if let Some(rejection) = self.resource_rejection(i, demand) {
            return Err(ViewError::DoesNotFit {
                id: id.to_owned(),
                rejection,
            });
        }
        self.reserve_at(i, group, demand);
        Ok(())
    }

    /// Gives back what a stopped task of `group` held. Capacity never rises
    /// above what the instance registered, so a duplicate stop report
    /// cannot invent resources.
    pub fn release(&mut self, id: &str, group: &str, demand: &Demand) -> Result<(), ViewError> {
        let i = self.require(id)?;
        let inst = &mut self.instances[i];
        inst.remaining.cpu = inst
            .remaining
            .cpu
            .saturating_add(demand.cpu)
            .min(inst.registered.cpu.max(inst.remaining.cpu));
        inst.remaining.memory = inst
            .remaining
            .memory
            .saturating_add(demand.memory)
            .min(inst.registered.memory.max(inst.remaining.memory));
        for p in &demand.tcp_ports {
            inst.used_tcp_ports.remove(p);
        }
        for p in &demand.udp_ports {
            inst.used_udp_ports.remove(p);
        }
        inst.running_tasks_count = inst.running_tasks_count.saturating_sub(1);
        self.cpu_left[i] = inst.remaining.cpu;
        self.mem_left[i] = inst.remaining.memory;
        if self.groups[i].remove(group, 1) > 0 {
            if let Some(m) = self.members.get_mut(group) {
                if let Some(c) = m.get_mut(&i) {
                    *c -= 1;
                    if *c == 0 {
                        m.remove(&i);
                    }
                }
                if m.is_empty() {
                    self.members.remove(group);
                }
            }
        }
        Ok(())
    }

    /// The first resource the instance lacks for `demand`, in pipeline order.
    pub(crate) fn resource_rejection(&self, i: usize, demand: &Demand) -> Option<Rejection> {
        let inst = &self.instances[i];
        if self.cpu_left[i] < demand.cpu {
            return Some(Rejection::Cpu {
                needed: demand.cpu,
                remaining: self.cpu_left[i],
            });
        }
        if self.mem_left[i] < demand.memory {
            return Some(Rejection::Memory {
                needed: demand.memory,
                remaining: self.mem_left[i],
            });
        }
        if let Some(&port) = demand
            .tcp_ports
            .iter()
            .find(|p| inst.used_tcp_ports.contains(p))
        {
            return Some(Rejection::Ports { port });
        }
        if let Some(&port) = demand
            .udp_ports
            .iter()
            .find(|p| inst.used_udp_ports.contains(p))
        {
            return Some(Rejection::PortsUdp { port });
        }
        None
    }

    /// Reserves without checking; placement has checked already.
    pub(crate) fn reserve_at(&mut self, i: usize, group: &str, demand: &Demand) {
        let inst = &mut self.instances[i];
        inst.remaining.cpu -= demand.cpu;
        inst.remaining.memory -= demand.memory;
        inst.used_tcp_ports.extend(demand.tcp_ports.iter().copied());
        inst.used_udp_ports.extend(demand.udp_ports.iter().copied());
        inst.running_tasks_count = inst.running_tasks_count.saturating_add(1);
        self.cpu_left[i] = inst.remaining.cpu;
        self.mem_left[i] = inst.remaining.memory;
        self.groups[i].add(group, 1);
        *self
            .members
            .entry(group.to_owned())
            .or_default()
            .entry(i)
            .or_insert(0) += 1;
    }

    /// Which instances the expression matches, by view position. Attribute
    /// predicates are evaluated once per distinct value and task-group
    /// equality through the group index, so a filter over 10,000 instances
    /// costs a few passes over small arrays. Agrees exactly with
    /// [`Expression::matches`] per instance.
    pub fn select(&self, expr: &Expression) -> Vec<bool> {
        match expr {
            Expression::Or(l, r) => {
                let mut a = self.select(l);
                for (x, y) in a.iter_mut().zip(self.select(r)) {
                    *x |= y;
                }
                a
            }
            Expression::And(l, r) => {
                let mut a = self.select(l);
                for (x, y) in a.iter_mut().zip(self.select(r)) {
                    *x &= y;
                }
                a
            }
            Expression::Not(e) => {
                let mut a = self.select(e);
                for x in a.iter_mut() {
                    *x = !*x;
                }
                a
            }
            Expression::Predicate(p) => self.select_predicate(p),
        }
    }

    /// ListContainerInstances `filter`: ids of the matching instances, in
    /// view order.
    pub fn filter(&self, expr: &Expression) -> Vec<&str> {
        self.select(expr)
            .into_iter()
            .zip(&self.instances)
            .filter_map(|(hit, inst)| hit.then_some(inst.id.as_str()))
            .collect()
    }

    fn select_predicate(&self, p: &Predicate) -> Vec<bool> {
        let n = self.instances.len();
        match &p.subject {
            Subject::Attribute(name) => match self.columns.get(name) {
                Some(col) => {
                    let table: Vec<bool> = (0..col.id_space() as u32)
                        .map(|id| p.test_text(col.value(id)))
                        .collect();
                    col.ids.iter().map(|&id| table[id as usize]).collect()
                }
                None => vec![p.test_text(None); n],
            },
            Subject::TaskGroup => {
                let named = |names: &mut dyn Iterator<Item = &String>| {
                    let mut mask = vec![false; n];
                    for g in names {
                        for &i in self.members.get(g).into_iter().flat_map(|m| m.keys()) {
                            mask[i] = true;
                        }
                    }
                    mask
                };
                let texts = |list: &[Operand]| -> Vec<String> {
                    list.iter()
                        .filter_map(|o| match o {
                            Operand::Text(t) => Some(t.clone()),
                            _ => None,
                        })
                        .collect()
                };
                let negate = |mut m: Vec<bool>| {
                    m.iter_mut().for_each(|x| *x = !*x);
                    m
                };
                match &p.test {
                    Test::Compare(Comparison::Eq, Operand::Text(g)) => {
                        named(&mut std::iter::once(g))
                    }
                    Test::Compare(Comparison::Ne, Operand::Text(g)) => {
                        negate(named(&mut std::iter::once(g)))
                    }
                    Test::In(list) => named(&mut texts(list).iter()),
                    Test::NotIn(list) => negate(named(&mut texts(list).iter())),
                    _ => (0..n)
                        .map(|i| p.matches(&self.instances[i], &self.groups[i]))
                        .collect(),
                }
            }
            Subject::AgentVersion => (0..n)
                .map(|i| {
                    p.test_version(
                        self.instances[i].agent_version.as_deref(),
                        self.agent_versions[i].as_ref(),
                    )
                })
                .collect(),
            _ => (0..n)
                .map(|i| p.matches(&self.instances[i], &self.groups[i]))
                .collect(),
        }
    }

    fn require(&self, id: &str) -> Result<usize, ViewError> {
        self.position(id)
            .ok_or_else(|| ViewError::UnknownInstance(id.to_owned()))
    }

    fn refresh_eligible(&mut self, i: usize) {
        let inst = &self.instances[i];
        self.eligible[i] = inst.status == InstanceStatus::Active && inst.agent_connected;
    }

    /// Points instance `i`'s entries in every attribute column at `attrs`.
    fn set_attributes_at(&mut self, i: usize, attrs: &BTreeMap<String, String>) {
        let n = self.instances.len();
        for (name, col) in self.columns.iter_mut() {
            if !attrs.contains_key(name) {
                col.set(i, None);
            }
        }
        for (name, value) in attrs {
            let col = self.columns.entry(name.clone()).or_insert_with(|| Column {
                ids: vec![0; n],
                ..Column::default()
            });
            col.set(i, Some(value));
        }
        // Names no instance has any more would only cost memory.
        self.columns.retain(|_, c| c.present > 0);
    }

    fn index_groups(&mut self, i: usize) {
        for (g, c) in self.groups[i].iter() {
            self.members.entry(g.to_owned()).or_default().insert(i, c);
        }
    }

    fn unindex_groups(&mut self, i: usize) {
        for (g, _) in self.groups[i].iter() {
            if let Some(m) = self.members.get_mut(g) {
                m.remove(&i);
                if m.is_empty() {
                    self.members.remove(g);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::Resources;

    fn inst(id: &str, az: &str) -> Instance {
        Instance::new(id, Resources::new(1024, 2048)).with_attribute("ecs.availability-zone", az)
    }

    #[test]
    fn reserve_and_release_account_for_everything() {
        let mut view = ClusterView::from_instances([(inst("a", "z1"), TaskGroups::new())]);
        let d = Demand {
            tcp_ports: vec![80],
            udp_ports: vec![53],
            ..Demand::new(512, 1024)
        };
        view.reserve("a", "service:web", &d).unwrap();
        let (i, g) = view.get("a").unwrap();
        assert_eq!(i.remaining, Resources::new(512, 1024));
        assert!(i.used_tcp_ports.contains(&80) && i.used_udp_ports.contains(&53));
        assert_eq!((g.count("service:web"), i.running_tasks_count), (1, 1));
        let again = view.reserve("a", "service:web", &d).unwrap_err();
        assert!(matches!(
            again,
            ViewError::DoesNotFit {
                rejection: Rejection::Ports { port: 80 },
                ..
            }
        ));
        let big = Demand::new(2048, 1);
        assert!(matches!(
            view.reserve("a", "x", &big),
            Err(ViewError::DoesNotFit {
                rejection: Rejection::Cpu { .. },
                ..
            })
        ));
        view.release("a", "service:web", &d).unwrap();
        view.release("a", "service:web", &d).unwrap(); // duplicate stop report
        let (i, g) = view.get("a").unwrap();
        assert_eq!(
            i.remaining,
            Resources::new(1024, 2048),
            "never above registered"
        );
        assert!(
            g.is_empty() && i.used_tcp_ports.is_empty() && view.members("service:web").is_none()
        );
        assert_eq!(
            view.reserve("nope", "g", &d),
            Err(ViewError::UnknownInstance("nope".into()))
        );
    }

    #[test]
    fn columns_follow_upserts_and_removals() {
        let mut view = ClusterView::new();
        view.upsert(inst("a", "z1"), TaskGroups::new());
        view.upsert(inst("b", "z2"), [("g", 2)].into_iter().collect());
        view.upsert(
            inst("c", "z1").with_attribute("gpu", ""),
            [("g", 1)].into_iter().collect(),
        );
        let e = Expression::parse("attribute:ecs.availability-zone == z1").unwrap();
        assert_eq!(view.filter(&e), vec!["a", "c"]);
        view.remove("a").unwrap();
        assert_eq!(view.filter(&e), vec!["c"], "c moved into a's slot");
        assert_eq!(
            view.members("g").unwrap().get(&0),
            Some(&1),
            "group index follows the move"
        );
        view.set_attributes(
            "c",
            BTreeMap::from([("ecs.availability-zone".into(), "z2".into())]),
        )
        .unwrap();
        assert!(view.filter(&e).is_empty());
        assert!(
            view.column("gpu").is_none(),
            "a column nobody has is dropped"
        );
        view.upsert(inst("b", "z1"), TaskGroups::new());
        assert_eq!(view.filter(&e), vec!["b"]);
        assert_eq!(
            view.members("g").map(|m| m.len()),
            Some(1),
            "only c still runs g"
        );
        assert_eq!(view.len(), 2);
        assert!(view.remove("zzz").is_none());
    }

    #[test]
    fn eligibility_tracks_status_and_agent() {
        let mut view = ClusterView::from_instances([(inst("a", "z1"), TaskGroups::new())]);
        assert!(view.is_eligible(0));
        view.set_status("a", InstanceStatus::Draining).unwrap();
        assert!(!view.is_eligible(0));
        view.set_status("a", InstanceStatus::Active).unwrap();
        view.set_agent_connected("a", false).unwrap();
        assert!(!view.is_eligible(0));
    }

    #[test]
    fn interned_values_are_reused_after_release() {
        let mut view = ClusterView::new();
        for k in 0..50 {
            view.upsert(inst("a", &format!("zone-{k}")), TaskGroups::new());
        }
        let col = view.column("ecs.availability-zone").unwrap();
        assert_eq!(
            col.id_space(),
            2,
            "re-labelling one instance does not grow the table"
        );
        assert_eq!(col.value(col.id(0)), Some("zone-49"));
    }
}
