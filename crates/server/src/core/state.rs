//! The cluster state: an in-memory copy of every object, written through the
//! store before any write is acknowledged.
//!
//! - Every object lives in the store under a key that names its account,
//!   region and kind (see [`Key`]); the value is the object's wire JSON.
//! - [`State::write`] runs a handler on the account's in-memory state under
//!   one lock, queues the handler's store writes in the same critical section
//!   (so commit order is mutation order), releases the lock and waits until the
//!   store says the writes are durable. Only then does the caller answer.
//! - At start, [`State::open`] rebuilds memory from the store: nothing that
//!   matters lives only in memory.
//!
//! Handlers must check everything before they mutate: an error returned by a
//! handler leaves memory untouched and writes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use flotilla_model::arn::Scope;
use flotilla_model::ecs;
use flotilla_store::{Op, Store, Txn};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch, Notify};

use super::events::{Event, Published};
use super::stored::TaskProgress;
use crate::error::ApiResult;
use crate::telemetry::TELEMETRY;

/// Everything one account sees in one region.
#[derive(Debug, Default)]
pub struct Account {
    pub clusters: BTreeMap<String, ClusterState>,
    pub families: Families,
    /// Account-level defaults set with PutAccountSettingDefault / PutAccountSetting.
    pub settings: BTreeMap<String, ecs::Setting>,
    /// Application Auto Scaling's scalable targets, policies, scheduled
    /// actions and activities.
    pub autoscaling: super::autoscaling::Scaling,
    /// Load balancers, target groups and their nodes (ELBv2).
    pub lb: super::lb::LbAccount,
}

/// A cluster and the objects that live in it.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// The stored cluster; counts and statistics are derived when described.
    pub cluster: ecs::Cluster,
    /// Container instances by id (the last segment of their ARN).
    pub instances: BTreeMap<String, ecs::ContainerInstance>,
    /// Tasks by id. Add with [`ClusterState::insert_task`], which keeps the
    /// indexes below current.
    pub tasks: Tasks,
    /// Task slots by container instance ARN, and by group (`service:NAME`,
    /// `family:NAME`): derived indexes, so that an agent's desired set and a
    /// service's snapshot never scan the whole cluster and never look a task
    /// up by id. A task never changes its instance or group.
    tasks_by_instance: HashMap<String, BTreeSet<u32>>,
    tasks_by_group: HashMap<String, BTreeSet<u32>>,
    /// Task ids by `startedBy` and by task definition family, in id order:
    /// ListTasks pages through them without scanning (neither ever changes).
    tasks_by_started_by: HashMap<String, BTreeSet<String>>,
    tasks_by_family: HashMap<String, BTreeSet<String>>,
    /// Task scale-in protection (UpdateTaskProtection): when it expires, by
    /// task id. A service's scale-in never chooses a task protected now.
    pub task_protection: BTreeMap<String, f64>,
    /// Services by name; a deleted service stays INACTIVE until its name is reused.
    pub services: BTreeMap<String, ecs::Service>,
    /// What the service controller remembers about each service beyond its
    /// wire shape (by service name).
    pub service_meta: BTreeMap<String, ServiceMeta>,
    /// The scheduler's view of the instances: derived, kept current by
    /// `super::placement` (see there).
    pub view: flotilla_scheduler::ClusterView,
}

/// An account's task definition families, by name.
pub type Families = BTreeMap<String, Family>;

impl ClusterState {
    pub fn name(&self) -> &str {
        self.cluster.cluster_name.as_deref().unwrap_or_default()
    }

    pub fn is_active(&self) -> bool {
        self.cluster.is_active()
    }

    pub fn insert_task(&mut self, id: String, task: ecs::Task) {
        index(
            &mut self.tasks_by_started_by,
            task.started_by.as_deref(),
            id.clone(),
        );
        index(&mut self.tasks_by_family, family_of(&task), id.clone());
        let (instance, group) = (task.container_instance_arn.clone(), task.group.clone());
        let slot = self.tasks.insert(id, task);
        index(&mut self.tasks_by_instance, instance.as_deref(), slot);
        index(&mut self.tasks_by_group, group.as_deref(), slot);
    }

    /// Forgets a task (retention of STOPPED tasks has passed).
    pub fn remove_task(&mut self, id: &str) -> Option<ecs::Task> {
        self.task_protection.remove(id);
        let (slot, task) = self.tasks.remove(id)?;
        unindex(
            &mut self.tasks_by_instance,
            task.container_instance_arn.as_deref(),
            &slot,
        );
        unindex(&mut self.tasks_by_group, task.group.as_deref(), &slot);
        unindex(
            &mut self.tasks_by_started_by,
            task.started_by.as_deref(),
            id,
        );
        unindex(&mut self.tasks_by_family, family_of(&task), id);
        Some(task)
    }

    /// The ids of the tasks with this `startedBy`, in id order.
    pub fn task_ids_started_by(&self, started_by: &str) -> Option<&BTreeSet<String>> {
        self.tasks_by_started_by.get(started_by)
    }

    /// The ids of the tasks of this task definition family, in id order.
    pub fn task_ids_of_family(&self, family: &str) -> Option<&BTreeSet<String>> {
        self.tasks_by_family.get(family)
    }

    fn indexed<'a>(
        &'a self,
        slots: Option<&'a BTreeSet<u32>>,
    ) -> impl Iterator<Item = (&'a String, &'a ecs::Task)> + 'a {
        slots
            .into_iter()
            .flatten()
            .filter_map(|slot| self.tasks.slot(*slot))
    }

    /// The tasks placed on the instance with this ARN, stopped ones included.
    pub fn tasks_on<'a>(
        &'a self,
        instance_arn: &str,
    ) -> impl Iterator<Item = (&'a String, &'a ecs::Task)> + 'a {
        self.indexed(self.tasks_by_instance.get(instance_arn))
    }

    /// How many tasks a group has, stopped ones included.
    pub fn tasks_in_group_len(&self, group: &str) -> usize {
        self.tasks_by_group.get(group).map_or(0, BTreeSet::len)
    }

    /// The tasks of a group, stopped ones included.
    pub fn tasks_in_group<'a>(
        &'a self,
        group: &str,
    ) -> impl Iterator<Item = (&'a String, &'a ecs::Task)> + 'a {
        self.indexed(self.tasks_by_group.get(group))
    }
}

/// The task definition family a task runs.
pub fn family_of(task: &ecs::Task) -> Option<&str> {
    flotilla_model::arn::task_definition_parts(task.task_definition_arn.as_deref()?)
        .map(|(family, _)| family)
}

/// Adds `item` to the index entry for `key` (if the task has one).
fn index<T: Ord>(map: &mut HashMap<String, BTreeSet<T>>, key: Option<&str>, item: T) {
    let Some(key) = key else { return };
    // Most keys are there already: no new String for them.
    match map.get_mut(key) {
        Some(set) => {
            set.insert(item);
        }
        None => {
            map.insert(key.to_string(), BTreeSet::from([item]));
        }
    }
}

/// Takes `item` out of the index entry for `key`, dropping the entry once empty.
fn unindex<T: Ord + std::borrow::Borrow<Q>, Q: Ord + ?Sized>(
    map: &mut HashMap<String, BTreeSet<T>>,
    key: Option<&str>,
    item: &Q,
) {
    let Some(key) = key else { return };
    if let Some(set) = map.get_mut(key) {
        set.remove(item);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// A cluster's tasks: kept in slots, so the indexes can point at a task
/// without a lookup by id, and ordered by id for paging.
#[derive(Debug, Default)]
pub struct Tasks {
    /// Boxed: a task is over 800 bytes, and a vector of a million of them
    /// inline copied (and faulted in) most of a gigabyte each time it grew.
    slots: Vec<Option<Box<(String, ecs::Task)>>>,
    free: Vec<u32>,
    ids: BTreeMap<TaskKey, u32>,
}

/// A task id as the id index orders it. Flotilla's ids are 32 lowercase hex
/// digits, kept as the number they spell: one integer comparison per step
/// rather than a string comparison through a prefix that time-ordered ids
/// share (about 7% of the control plane's CPU went to those at a million
/// tasks). For such ids the order is the string order. Anything else (no id
/// Flotilla makes) sorts after them, by its text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TaskKey {
    Hex(u128),
    Other(String),
}

impl TaskKey {
    fn of(id: &str) -> TaskKey {
        let hex = id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match hex.then(|| u128::from_str_radix(id, 16).ok()).flatten() {
            Some(n) => TaskKey::Hex(n),
            None => TaskKey::Other(id.to_string()),
        }
    }
}

impl Tasks {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.ids.contains_key(&TaskKey::of(id))
    }

    pub fn get(&self, id: &str) -> Option<&ecs::Task> {
        self.slot(*self.ids.get(&TaskKey::of(id))?).map(|(_, t)| t)
    }

    /// A task to change in place. Its instance and group must stay as they
    /// are (the indexes rely on it).
    pub fn get_mut(&mut self, id: &str) -> Option<&mut ecs::Task> {
        let slot = *self.ids.get(&TaskKey::of(id))?;
        self.slots
            .get_mut(slot as usize)?
            .as_mut()
            .map(|b| &mut b.1)
    }

    /// Every task, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &ecs::Task> {
        self.slots.iter().flatten().map(|b| &b.1)
    }

    /// Every task with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ecs::Task)> {
        self.range_from(std::ops::Bound::Unbounded)
    }

    /// The tasks from `start` on, in id order.
    pub fn range_from(
        &self,
        start: std::ops::Bound<String>,
    ) -> impl Iterator<Item = (&String, &ecs::Task)> {
        let start = start.map(|id| TaskKey::of(&id));
        self.ids
            .range((start, std::ops::Bound::Unbounded))
            .filter_map(|(_, slot)| self.slot(*slot))
    }

    fn slot(&self, slot: u32) -> Option<(&String, &ecs::Task)> {
        self.slots
            .get(slot as usize)?
            .as_ref()
            .map(|b| (&b.0, &b.1))
    }

    /// Stores a task, in the slot it already has if its id is known.
    fn insert(&mut self, id: String, task: ecs::Task) -> u32 {
        let key = TaskKey::of(&id);
        if let Some(&slot) = self.ids.get(&key) {
            self.slots[slot as usize] = Some(Box::new((id, task)));
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(Box::new((id.clone(), task)));
                slot
            }
            None => {
                self.slots.push(Some(Box::new((id.clone(), task))));
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(key, slot);
        slot
    }

    fn remove(&mut self, id: &str) -> Option<(u32, ecs::Task)> {
        let slot = self.ids.remove(&TaskKey::of(id))?;
        let (_, task) = *self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some((slot, task))
    }
}

/// What the service controller keeps about a service that the ECS Service
/// shape has no field for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceMeta {
    /// The task definition of the last deployment that COMPLETED: the circuit
    /// breaker's rollback target, kept after that deployment has drained
    /// away and left the service's `deployments`.
    #[serde(
        rename = "lastCompletedTaskDefinition",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_completed_task_definition: Option<String>,
    /// The service's deployments and revisions (ListServiceDeployments,
    /// DescribeServiceDeployments, DescribeServiceRevisions).
    #[serde(default, skip_serializing_if = "is_empty_history")]
    pub history: super::deployments::History,
}

fn is_empty_history(h: &super::deployments::History) -> bool {
    h.deployments.is_empty() && h.revisions.is_empty()
}

/// A task definition family: its revisions and the last revision number ever
/// used, so a deleted revision's number is never handed out again.
#[derive(Debug, Default)]
pub struct Family {
    pub last_revision: i32,
    pub revisions: BTreeMap<i32, StoredTaskDefinition>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FamilyRecord {
    #[serde(rename = "lastRevision")]
    pub last_revision: i32,
}

/// A task definition revision with its tags (tags are not part of the
/// TaskDefinition shape; DescribeTaskDefinition returns them beside it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredTaskDefinition {
    pub definition: ecs::TaskDefinition,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<ecs::Tag>,
}

/// Where an object lives in the store.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Cluster(&'a str),
    Family(&'a str),
    TaskDefinition(&'a str, i32),
    Instance(&'a str, &'a str),
    Task(&'a str, &'a str),
    /// A task's [`TaskProgress`] since it was last stored whole.
    TaskProgress(&'a str, &'a str),
    Service(&'a str, &'a str),
    ServiceMeta(&'a str, &'a str),
    /// A task's scale-in protection: when it expires.
    TaskProtection(&'a str, &'a str),
    Setting(&'a str),
    /// An Application Auto Scaling target (by resource id) with its
    /// policies and scheduled actions.
    ScalableTarget(&'a str),
    /// A scaling activity (resource id, activity id).
    ScalingActivity(&'a str, &'a str),
    /// An ELBv2 object: kind and id (see `super::lb`).
    Elbv2(&'static str, &'a str),
}

/// The first segment of every key: which part of the domain owns it. The
/// state loads each namespace it knows (see `super::load`).
pub const NAMESPACES: &[&str] = &[Key::ECS, super::autoscaling::NAMESPACE, Key::ELBV2];

impl Key<'_> {
    const ECS: &'static str = "ecs";
    const ELBV2: &'static str = "elbv2";

    fn namespace(&self) -> &'static str {
        match self {
            Key::Cluster(_)
            | Key::Family(_)
            | Key::TaskDefinition(..)
            | Key::Instance(..)
            | Key::Task(..)
            | Key::TaskProgress(..)
            | Key::Service(..)
            | Key::ServiceMeta(..)
            | Key::TaskProtection(..)
            | Key::Setting(_) => Key::ECS,
            Key::ScalableTarget(_) | Key::ScalingActivity(..) => super::autoscaling::NAMESPACE,
            Key::Elbv2(..) => Key::ELBV2,
        }
    }

    /// `NAMESPACE/ACCOUNT/REGION/KIND/…`
    pub(crate) fn render(&self, scope: &Scope) -> String {
        use std::fmt::Write;
        // One buffer, written once (a task's key is rendered for every write).
        let mut key = String::with_capacity(112);
        let _ = write!(
            key,
            "{}/{}/{}/",
            self.namespace(),
            scope.account,
            scope.region
        );
        let _ = match self {
            Key::Cluster(c) => write!(key, "cluster/{c}"),
            Key::Family(f) => write!(key, "family/{f}"),
            Key::TaskDefinition(f, r) => write!(key, "taskdef/{f}/{r:010}"),
            Key::Instance(c, id) => write!(key, "instance/{c}/{id}"),
            Key::Task(c, id) => write!(key, "task/{c}/{id}"),
            Key::TaskProgress(c, id) => write!(key, "taskprogress/{c}/{id}"),
            Key::Service(c, n) => write!(key, "service/{c}/{n}"),
            Key::ServiceMeta(c, n) => write!(key, "servicemeta/{c}/{n}"),
            Key::TaskProtection(c, id) => write!(key, "taskprotection/{c}/{id}"),
            Key::Setting(n) => write!(key, "setting/{n}"),
            Key::ScalableTarget(r) => write!(key, "target/{r}"),
            Key::ScalingActivity(r, id) => write!(key, "activity/{r}/{id}"),
            Key::Elbv2(kind, id) => write!(key, "{kind}/{id}"),
        };
        key
    }
}

/// A service, named by account, region, cluster and name.
pub type ServiceKey = (Scope, String, String);

/// A container instance, named by account, region, cluster and id.
pub type InstanceKey = (Scope, String, String);

/// The store writes of one handler call, and what they touched (for
/// targeted wake-ups once they are durable).
pub struct Tx<'s> {
    scope: &'s Scope,
    ops: Vec<Op>,
    /// Tasks (instance ARN, task id) whose instance's desired set may have
    /// changed.
    instances: Vec<(String, String)>,
    /// Services whose tasks or record changed.
    services: Vec<ServiceKey>,
    /// Clusters whose instances changed: every service there may decide
    /// differently (room to place, a draining or lost host, a new daemon host).
    clusters: Vec<String>,
    /// Instances written (cluster, id).
    instances_written: Vec<(String, String)>,
    /// Lifecycle events, published once the writes are durable.
    events: Vec<Event>,
    /// Whether anybody subscribes to events: if not, none are built.
    listening: bool,
}

#[cfg(test)]
impl<'s> Tx<'s> {
    /// A transaction that goes nowhere, for unit tests of domain code.
    pub(crate) fn for_test(scope: &'s Scope) -> Tx<'s> {
        Tx {
            scope,
            ops: Vec::new(),
            instances: Vec::new(),
            services: Vec::new(),
            clusters: Vec::new(),
            instances_written: Vec::new(),
            events: Vec::new(),
            listening: false,
        }
    }
}

impl Tx<'_> {
    /// Writes a task, noting its instance and service for wake-ups.
    pub fn put_task(&mut self, cluster: &str, id: &str, task: &ecs::Task) {
        self.put(Key::Task(cluster, id), task);
        self.wake_service_of(cluster, task);
        if let Some(arn) = &task.container_instance_arn {
            self.instances.push((arn.clone(), id.to_string()));
        }
    }

    /// Writes what a task's own agent reported, when nothing but what a
    /// [`TaskProgress`] holds changed (it is RUNNING, healthy…): that record,
    /// not the whole task. The service hears of it; the agent's session is
    /// not woken for what the agent itself said.
    pub fn put_task_progress(&mut self, cluster: &str, id: &str, task: &ecs::Task) {
        self.put(Key::TaskProgress(cluster, id), &TaskProgress::of(task));
        self.wake_service_of(cluster, task);
    }

    /// Forgets a task, its progress record and its scale-in protection.
    pub fn delete_task(&mut self, cluster: &str, id: &str) {
        self.delete(Key::Task(cluster, id));
        self.delete(Key::TaskProgress(cluster, id));
        self.delete(Key::TaskProtection(cluster, id));
    }

    fn wake_service_of(&mut self, cluster: &str, task: &ecs::Task) {
        let Some(service) = task
            .group
            .as_deref()
            .and_then(|g| g.strip_prefix("service:"))
        else {
            return;
        };
        // A controller's batch writes a service's tasks one after another:
        // one entry for the run, not one (and four strings) per task.
        if self
            .services
            .last()
            .is_some_and(|(_, c, s)| c == cluster && s == service)
        {
            return;
        }
        self.services
            .push((self.scope.clone(), cluster.to_string(), service.to_string()));
    }

    /// Wakes the service controller for a service, though nothing of the
    /// service itself is written (a task's scale-in protection changed).
    pub fn touch_service(&mut self, cluster: &str, name: &str) {
        self.services
            .push((self.scope.clone(), cluster.to_string(), name.to_string()));
    }

    pub fn put<T: Serialize>(&mut self, key: Key<'_>, value: &T) {
        match key {
            Key::Service(cluster, name) => {
                self.services
                    .push((self.scope.clone(), cluster.to_string(), name.to_string()))
            }
            Key::Instance(cluster, id) => {
                self.clusters.push(cluster.to_string());
                self.instances_written
                    .push((cluster.to_string(), id.to_string()));
            }
            _ => {}
        }
        // Serializing our own wire types cannot fail: they hold only strings,
        // numbers, maps with string keys and lists.
        let value = super::stored::encode(serde_json::to_vec(value).unwrap_or_default());
        self.ops.push(Op::Put {
            key: key.render(self.scope),
            value,
        });
    }

    pub fn delete(&mut self, key: Key<'_>) {
        self.ops.push(Op::Delete {
            key: key.render(self.scope),
        });
    }

    /// Publishes a lifecycle event once this transaction is durable. The
    /// event is built only if somebody subscribes.
    pub fn emit(&mut self, event: impl FnOnce() -> Event) {
        if self.listening {
            self.events.push(event());
        }
    }

    /// The account and region this transaction writes in.
    pub fn scope(&self) -> &Scope {
        self.scope
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many writes are queued.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

#[derive(Debug, Default)]
pub(super) struct Db {
    pub(super) accounts: HashMap<Scope, Account>,
}

/// The control plane's state. Cheap to share behind an `Arc`.
pub struct State {
    /// Readers (Describe*, List*, the agents' desired sets) share the lock;
    /// a writer holds it only while its handler runs, never while it waits
    /// for durability. A task-fair lock, and writers hand it on fairly: the
    /// controller writes batch after batch, and must not starve the API's
    /// writers and the agents' reports waiting for it.
    db: RwLock<Db>,
    store: Arc<dyn Store>,
    /// Bumped after every durable write: controllers and the agent gateway
    /// wait on it instead of polling.
    changed: watch::Sender<u64>,
    /// The latest durable store revision: versions the agents' desired sets,
    /// so they keep increasing across restarts.
    revision: AtomicU64,
    /// One inbox per connected instance (by ARN): the tasks placed there
    /// that durable writes touched, and a wake-up.
    instance_wakers: Mutex<HashMap<String, Arc<InstanceInbox>>>,
    /// Each controller that watches services: the services durable writes
    /// touched since it last looked.
    service_watchers: Mutex<Vec<Arc<ServiceChanges>>>,
    /// Likewise for instances written.
    instance_watchers: Mutex<Vec<Arc<InstanceChanges>>>,
    /// Lifecycle events of durable commits (see `super::events`).
    events: broadcast::Sender<Arc<Published>>,
}

impl State {
    /// A state over `db`, loaded from `store` at `revision` (see
    /// `super::load`, which builds the `Db`).
    pub(super) fn new(db: Db, store: Arc<dyn Store>, revision: u64) -> Arc<State> {
        let (changed, _) = watch::channel(0);
        let (events, _) = broadcast::channel(super::events::CAPACITY);
        Arc::new(State {
            db: RwLock::new(db),
            store,
            changed,
            revision: AtomicU64::new(revision),
            instance_wakers: Mutex::default(),
            service_watchers: Mutex::default(),
            instance_watchers: Mutex::default(),
            events,
        })
    }

    // parking_lot's lock is not poisoned by a panicking handler: one cannot
    // have left a half-applied change that is also in the store (store writes
    // are queued after the handler returns).
    fn lock_read(&self) -> RwLockReadGuard<'_, Db> {
        self.db.read()
    }

    fn lock_write(&self) -> RwLockWriteGuard<'_, Db> {
        self.db.write()
    }

    /// Runs a read-only view over one account.
    pub fn read<R>(&self, scope: &Scope, f: impl FnOnce(&Account) -> R) -> R {
        let db = self.lock_read();
        match db.accounts.get(scope) {
            Some(acct) => f(acct),
            None => f(&Account::default()),
        }
    }

    /// Runs `f` over one account, queues its writes, and returns once they are
    /// durable. `f` must check before it mutates: an `Err` must leave the
    /// account as it found it.
    pub async fn write<R>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&mut Account, &mut Tx<'_>) -> ApiResult<R>,
    ) -> ApiResult<R> {
        let (result, durable) = self.submit(scope, f)?;
        durable.await?;
        Ok(result)
    }

    /// The first half of [`State::write`]: runs `f` and queues its writes now,
    /// and returns its result with a future that resolves once they are
    /// durable. A caller that acts on many objects (the controllers) submits
    /// several batches and awaits them together, so one batch's fsync
    /// overlaps the next batch's work. Nothing may be acknowledged to a
    /// client before the future resolves.
    pub fn submit<R>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&mut Account, &mut Tx<'_>) -> ApiResult<R>,
    ) -> ApiResult<(R, impl Future<Output = ApiResult<()>> + Send + '_)> {
        let listening = self.events.receiver_count() > 0;
        let (result, durable, instances, services, instances_written, events) = {
            let mut db = self.lock_write();
            let acct = db.accounts.entry(scope.clone()).or_default();
            let mut tx = Tx {
                scope,
                ops: Vec::new(),
                instances: Vec::new(),
                services: Vec::new(),
                clusters: Vec::new(),
                instances_written: Vec::new(),
                events: Vec::new(),
                listening,
            };
            let result = f(acct, &mut tx)?;
            let durable = (!tx.is_empty()).then(|| {
                self.store.commit(Txn {
                    compares: Vec::new(),
                    ops: tx.ops,
                })
            });
            let mut services = tx.services;
            for cluster in tx.clusters {
                if let Some(c) = acct.clusters.get(&cluster) {
                    services.extend(
                        c.services
                            .keys()
                            .map(|name| (scope.clone(), cluster.clone(), name.clone())),
                    );
                }
            }
            RwLockWriteGuard::unlock_fair(db);
            let instances_written: Vec<InstanceKey> = tx
                .instances_written
                .into_iter()
                .map(|(c, i)| (scope.clone(), c, i))
                .collect();
            (
                result,
                durable,
                tx.instances,
                services,
                instances_written,
                tx.events,
            )
        };
        let scope = scope.clone();
        let queued = std::time::Instant::now();
        let done = async move {
            let Some(durable) = durable else {
                return Ok(());
            };
            match durable.await {
                Ok(revision) => {
                    TELEMETRY.commit.observe(queued.elapsed().as_secs_f64());
                    self.published(revision, instances, services, instances_written);
                    if !events.is_empty() {
                        // Nobody listening any more is not an error.
                        let _ = self.events.send(Arc::new(Published {
                            scope,
                            revision,
                            events,
                        }));
                    }
                    Ok(())
                }
                Err(e) => {
                    // Memory is now ahead of the store, and later writers may have
                    // built on it. The only state we can vouch for is the store's:
                    // stop, and let the restart rebuild from it (kill -9 safe by design).
                    tracing::error!(error = %e, "store commit failed; exiting so the state is rebuilt from the store");
                    if cfg!(test) {
                        return Err(e.into());
                    }
                    std::process::exit(70);
                }
            }
        };
        Ok((result, done))
    }

    /// After a durable commit: wakes the agent sessions and the controller
    /// for what it touched.
    fn published(
        &self,
        revision: u64,
        instances: Vec<(String, String)>,
        services: Vec<ServiceKey>,
        written: Vec<InstanceKey>,
    ) {
        self.revision.fetch_max(revision, Ordering::SeqCst);
        if !instances.is_empty() {
            let wakers = self
                .instance_wakers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for (arn, task) in instances {
                if let Some(inbox) = wakers.get(&arn) {
                    inbox.push(task);
                }
            }
        }
        if !services.is_empty() {
            let watchers = self
                .service_watchers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for w in watchers.iter() {
                w.extend(&services);
            }
        }
        if !written.is_empty() {
            let watchers = self
                .instance_watchers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for w in watchers.iter() {
                w.extend(&written);
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// A new inbox for an instance's agent session, told of every task
    /// placed there that a durable write touches from now on. It replaces an
    /// earlier session's (which no longer hears anything).
    pub fn open_instance_inbox(&self, instance_arn: &str) -> Arc<InstanceInbox> {
        let inbox = Arc::new(InstanceInbox::default());
        let mut wakers = self
            .instance_wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        wakers.insert(instance_arn.to_string(), inbox.clone());
        inbox
    }

    /// Forgets a session's inbox when the session ends (unless a newer
    /// session has replaced it already).
    pub fn close_instance_inbox(&self, instance_arn: &str, inbox: &Arc<InstanceInbox>) {
        let mut wakers = self
            .instance_wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if wakers
            .get(instance_arn)
            .is_some_and(|w| Arc::ptr_eq(w, inbox))
        {
            wakers.remove(instance_arn);
        }
    }

    /// A new watcher of services: it collects every service that durable
    /// writes touch from now on (its tasks, its record, or an instance of
    /// its cluster), until taken.
    pub fn watch_services(&self) -> Arc<ServiceChanges> {
        let watcher = Arc::new(ServiceChanges::default());
        self.service_watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(watcher.clone());
        watcher
    }

    /// A new watcher of container instances: every instance durable writes
    /// touch from now on, until taken.
    pub fn watch_instances(&self) -> Arc<InstanceChanges> {
        let watcher = Arc::new(InstanceChanges::default());
        self.instance_watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(watcher.clone());
        watcher
    }

    /// Lifecycle events of every durable commit from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<Published>> {
        self.events.subscribe()
    }

    /// Every account and region that has state.
    pub fn scopes(&self) -> Vec<Scope> {
        self.lock_read().accounts.keys().cloned().collect()
    }

    /// The latest durable store revision.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::SeqCst)
    }

    /// A receiver that changes after every durable write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The keys durable writes touched since their watcher last took them.
#[derive(Debug)]
pub struct Touched<K> {
    touched: Mutex<BTreeSet<K>>,
}

impl<K> Default for Touched<K> {
    fn default() -> Self {
        Touched {
            touched: Mutex::new(BTreeSet::new()),
        }
    }
}

impl<K: Ord + Clone> Touched<K> {
    fn extend(&self, keys: &[K]) {
        self.touched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(keys.iter().cloned());
    }

    /// The keys touched since the last call.
    pub fn take(&self) -> BTreeSet<K> {
        std::mem::take(&mut *self.touched.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Services touched: their tasks, their record, or an instance of their cluster.
pub type ServiceChanges = Touched<ServiceKey>;
/// Container instances written.
pub type InstanceChanges = Touched<InstanceKey>;

/// The tasks on one instance that changed since its agent's session last
/// looked, and the wake-up that tells it to look. An agent's desired set is
/// then brought up to date by looking at those tasks alone, not at every
/// task on the instance.
#[derive(Debug, Default)]
pub struct InstanceInbox {
    notify: Notify,
    changed: Mutex<Changed>,
}

#[derive(Debug, Default)]
struct Changed {
    tasks: HashSet<String>,
    /// More changed than is worth remembering (a session that stays away):
    /// the next look is at everything.
    overflow: bool,
}

/// An inbox remembers this many task ids, then asks for a full look.
const INBOX_LIMIT: usize = 10_000;

impl InstanceInbox {
    fn push(&self, task: String) {
        {
            let mut changed = self.changed.lock().unwrap_or_else(|e| e.into_inner());
            if changed.tasks.len() < INBOX_LIMIT {
                changed.tasks.insert(task);
            } else {
                changed.overflow = true;
            }
        }
        self.notify.notify_one();
    }

    /// Waits until a task changed (at once if one did since the last take).
    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// The ids of the tasks that changed since the last call, or `None` when
    /// everything must be looked at.
    pub fn take(&self) -> Option<HashSet<String>> {
        let mut changed = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        let tasks = std::mem::take(&mut changed.tasks);
        (!std::mem::take(&mut changed.overflow)).then_some(tasks)
    }
}

/// Seconds since the epoch, as the wire carries timestamps.
pub fn now() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Millisecond precision, as AWS reports.
    (d.as_millis() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use flotilla_model::lifecycle::{ClusterStatus, ContainerStatus, InstanceStatus, TaskStatus};
    use flotilla_store::memory::MemoryStore;

    use super::*;

    /// The id index walks tasks in the ids' string order (ListTasks pages
    /// by it), whether or not an id is one of Flotilla's hex ids, and
    /// whether or not a page's start is itself a task.
    #[test]
    fn the_id_index_keeps_string_order() {
        let mut ids: Vec<String> = (0..200).map(|_| flotilla_model::arn::new_id()).collect();
        ids.extend([
            "0".repeat(32),
            "f".repeat(32),
            "A".repeat(32),
            "not-hex".into(),
            "0123".into(),
        ]);
        let mut tasks = Tasks::default();
        for id in &ids {
            tasks.insert(
                id.clone(),
                ecs::Task {
                    task_arn: Some(id.clone()),
                    ..Default::default()
                },
            );
        }
        let hex = |id: &&String| TaskKey::of(id) != TaskKey::Other(id.to_string());
        let mut expected: Vec<&String> = ids.iter().filter(hex).collect();
        expected.sort();
        let mut others: Vec<&String> = ids.iter().filter(|id| !hex(id)).collect();
        others.sort();
        expected.extend(others);
        let walked: Vec<&String> = tasks.iter().map(|(id, _)| id).collect();
        assert_eq!(walked, expected);
        assert_eq!(expected.len(), 205);

        // A page starting after an id that is not (or no longer) there.
        let after = expected[100].clone();
        tasks.remove(&after);
        let page: Vec<&String> = tasks
            .range_from(std::ops::Bound::Excluded(after))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(page, expected[101..].to_vec());
        assert!(tasks.get(&expected[50].clone()).is_some());
        assert!(tasks.get(&"e".repeat(32)).is_none());
    }

    /// A report that changes only what the agent reports is stored as a
    /// progress record, not as the whole task; a restart rebuilds exactly the
    /// task that was in memory, whichever of the two was written last.
    #[tokio::test]
    async fn reported_progress_survives_a_restart() {
        use flotilla_model::agent::TaskStateChange;

        let store = Arc::new(MemoryStore::new());
        let scope = Scope::new("111111111111", "us-east-1");
        let state = State::open(store.clone()).unwrap();
        let id = "0123456789abcdef0123456789abcdef".to_string();
        let task = ecs::Task {
            task_arn: Some(scope.task_arn("default", &id)),
            last_status: Some(TaskStatus::Pending),
            desired_status: Some(ecs::DesiredStatus::Running),
            group: Some("service:web".into()),
            container_instance_arn: Some(scope.container_instance_arn("default", "abc")),
            version: Some(1),
            containers: Some(vec![
                ecs::Container {
                    name: Some("app".into()),
                    last_status: Some(ContainerStatus::Pending),
                    ..Default::default()
                },
                ecs::Container {
                    name: Some("sidecar".into()),
                    last_status: Some(ContainerStatus::Pending),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        state
            .write(&scope, |acct, tx| {
                let c = acct.clusters.entry("default".into()).or_default();
                c.cluster = ecs::Cluster {
                    cluster_name: Some("default".into()),
                    status: Some(ClusterStatus::Active),
                    ..Default::default()
                };
                tx.put(Key::Cluster("default"), &c.cluster);
                tx.put_task("default", &id, &task);
                c.insert_task(id.clone(), task.clone());
                Ok(())
            })
            .await
            .unwrap();
        let report = |status: &str, exit_code: Option<i32>| TaskStateChange {
            submit: ecs::SubmitTaskStateChangeRequest {
                task: Some(id.clone()),
                status: Some(status.into()),
                pull_started_at: Some(1.5),
                containers: Some(vec![ecs::ContainerStateChange {
                    container_name: Some("sidecar".into()),
                    status: Some(status.into()),
                    runtime_id: Some("docker-1234".into()),
                    exit_code,
                    network_bindings: Some(vec![ecs::NetworkBinding {
                        host_port: Some(32768),
                        container_port: Some(80),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            health_status: Some(ecs::HealthStatus::Healthy),
            container_health: [("app".to_string(), ecs::HealthStatus::Unhealthy)].into(),
            ..Default::default()
        };
        async fn apply(state: &State, scope: &Scope, change: TaskStateChange) -> bool {
            state
                .write(scope, |acct, tx| {
                    let Account {
                        clusters, families, ..
                    } = acct;
                    crate::core::tasks::apply_task_change(
                        families,
                        clusters.get_mut("default").unwrap(),
                        tx,
                        100.0,
                        &change,
                    )
                })
                .await
                .unwrap()
        }
        let in_memory = |state: &State| {
            state.read(&scope, |a| {
                a.clusters["default"].tasks.get(&id).cloned().unwrap()
            })
        };
        let reopened = || State::open(store.clone()).unwrap();
        let stored_status = || {
            let kv = store
                .get(&Key::Task("default", &id).render(&scope))
                .unwrap()
                .unwrap();
            let task: ecs::Task =
                serde_json::from_slice(&crate::core::stored::decode(&kv.value).unwrap()).unwrap();
            task.last_status
        };

        assert!(apply(&state, &scope, report("RUNNING", None)).await);
        let running = in_memory(&state);
        assert_eq!(running.last_status, Some(TaskStatus::Running));
        assert_eq!(running.version, Some(2));
        assert_eq!(
            stored_status(),
            Some(TaskStatus::Pending),
            "the whole task was stored again"
        );
        assert_eq!(in_memory(&reopened()), running);

        // A write of the whole task supersedes the record.
        state
            .write(&scope, |acct, tx| {
                let Account {
                    clusters, families, ..
                } = acct;
                let c = clusters.get_mut("default").unwrap();
                assert!(crate::core::tasks::request_stop(
                    families,
                    c,
                    tx,
                    &id,
                    200.0,
                    ecs::TaskStopCode::UserInitiated,
                    "by hand".into()
                ));
                Ok(())
            })
            .await
            .unwrap();
        let stopping = in_memory(&state);
        assert_eq!(in_memory(&reopened()), stopping);
        assert_eq!(stopping.desired_status, Some(ecs::DesiredStatus::Stopped));
        assert_eq!(stopping.last_status, Some(TaskStatus::Running));

        // A container's exit after that is a record again, newer than the task.
        assert!(
            apply(
                &state,
                &scope,
                TaskStateChange {
                    submit: ecs::SubmitTaskStateChangeRequest {
                        status: None,
                        ..report("STOPPED", Some(3)).submit
                    },
                    ..Default::default()
                }
            )
            .await
        );
        let exited = in_memory(&state);
        assert_eq!(exited.containers.as_ref().unwrap()[1].exit_code, Some(3));
        assert_eq!(in_memory(&reopened()), exited);

        // Stopping is stored whole; forgetting the task forgets both.
        assert!(apply(&state, &scope, report("STOPPED", Some(3))).await);
        let stopped = in_memory(&state);
        assert_eq!(stored_status(), Some(TaskStatus::Stopped));
        assert_eq!(in_memory(&reopened()), stopped);
        state
            .write(&scope, |acct, tx| {
                acct.clusters.get_mut("default").unwrap().remove_task(&id);
                tx.delete_task("default", &id);
                Ok(())
            })
            .await
            .unwrap();
        let (left, _) = store
            .range(&format!("ecs/{}/{}/task", scope.account, scope.region))
            .unwrap();
        assert!(
            left.is_empty(),
            "{:?}",
            left.iter().map(|kv| &kv.key).collect::<Vec<_>>()
        );
    }

    /// After a crash the stored `agentConnected: true` says nothing about the
    /// agents: a restarted server counts every instance as disconnected until
    /// its agent reconnects, so a host that died with the server is still
    /// found lost.
    #[tokio::test]
    async fn instances_load_disconnected() {
        let store = Arc::new(MemoryStore::new());
        let scope = Scope::new("111111111111", "us-east-1");
        let instance = ecs::ContainerInstance {
            container_instance_arn: Some(scope.container_instance_arn("default", "abc")),
            status: Some(InstanceStatus::Active),
            agent_connected: Some(true),
            ..Default::default()
        };
        let key = Key::Instance("default", "abc").render(&scope);
        store
            .commit(Txn::new().put(key, serde_json::to_vec(&instance).unwrap()))
            .await
            .unwrap();
        let state = State::open(store).unwrap();
        let connected = state.read(&scope, |acct| {
            acct.clusters["default"].instances["abc"].agent_connected
        });
        assert_eq!(connected, Some(false));
    }
}
