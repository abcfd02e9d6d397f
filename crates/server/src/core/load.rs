//! Rebuilding the state from the store at start (DESIGN.md rule 2: nothing
//! that matters lives only in memory). Each key's namespace and kind say
//! which object it holds; derived state (the scheduler's views, service
//! counts) is recomputed from the objects, never stored.

use std::sync::Arc;

use flotilla_model::arn::Scope;
use flotilla_model::ecs;
use flotilla_store::{Store, StoreError};

use super::placement;
use super::state::{
    Account, Db, FamilyRecord, ServiceMeta, State, StoredTaskDefinition, NAMESPACES,
};
use super::stored::{self, TaskProgress};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    #[error("stored object {key} cannot be read: {why}")]
    Corrupt { key: String, why: String },
}

/// A progress record read before its task may be: (scope, cluster, task id, record).
type PendingProgress = (Scope, String, String, TaskProgress);

impl State {
    /// Rebuilds the in-memory state from everything in the store.
    pub fn open(store: Arc<dyn Store>) -> Result<Arc<State>, LoadError> {
        let mut db = Db::default();
        let mut progress = Vec::new();
        let mut revision = 0;
        for namespace in NAMESPACES {
            let (kvs, rev) = store.range(&format!("{namespace}/"))?;
            revision = revision.max(rev);
            for kv in kvs {
                load_one(&mut db, &mut progress, &kv.key, &kv.value).map_err(|e| {
                    LoadError::Corrupt {
                        key: kv.key.clone(),
                        why: e,
                    }
                })?;
            }
        }
        // Progress records apply once every task is in (the store's order
        // is not relied on). A task and its record are deleted together, so
        // a record without its task has nothing to apply to.
        for (scope, cluster, id, p) in progress {
            let task = db
                .accounts
                .get_mut(&scope)
                .and_then(|a| a.clusters.get_mut(&cluster))
                .and_then(|c| c.tasks.get_mut(&id));
            if let Some(task) = task {
                p.apply(task);
            }
        }
        for acct in db.accounts.values_mut() {
            let Account {
                clusters, families, ..
            } = acct;
            for c in clusters.values_mut() {
                placement::rebuild_view(families, c);
            }
        }
        Ok(State::new(db, store, revision))
    }
}

fn load_one(
    db: &mut Db,
    progress: &mut Vec<PendingProgress>,
    key: &str,
    value: &[u8],
) -> Result<(), String> {
    let value = stored::decode(value)?;
    let value = value.as_ref();
    // NAMESPACE/ACCOUNT/REGION/KIND/REST
    let mut parts = key.splitn(5, '/');
    let (namespace, account, region, kind, rest) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    );
    let (Some(namespace), Some(account), Some(region), Some(kind), Some(rest)) =
        (namespace, account, region, kind, rest)
    else {
        return Err("malformed key".into());
    };
    let scope = Scope::new(account, region);
    match namespace {
        "ecs" => load_ecs(
            db.accounts.entry(scope.clone()).or_default(),
            progress,
            &scope,
            kind,
            rest,
            value,
        ),
        super::autoscaling::NAMESPACE => {
            super::autoscaling::load(db.accounts.entry(scope).or_default(), kind, rest, value)
        }
        "elbv2" => {
            let _ = rest;
            super::lb::load(&mut db.accounts.entry(scope).or_default().lb, kind, value)
        }
        other => Err(format!("unknown namespace {other}")),
    }
}

fn load_ecs(
    acct: &mut Account,
    progress: &mut Vec<PendingProgress>,
    scope: &Scope,
    kind: &str,
    rest: &str,
    value: &[u8],
) -> Result<(), String> {
    let de = |e: serde_json::Error| e.to_string();
    let split2 = |s: &str| {
        s.split_once('/')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .ok_or("malformed key")
    };
    match kind {
        "cluster" => {
            let cluster: ecs::Cluster = serde_json::from_slice(value).map_err(de)?;
            acct.clusters.entry(rest.to_string()).or_default().cluster = cluster;
        }
        "family" => {
            let rec: FamilyRecord = serde_json::from_slice(value).map_err(de)?;
            acct.families
                .entry(rest.to_string())
                .or_default()
                .last_revision = rec.last_revision;
        }
        "taskdef" => {
            let (family, rev) = split2(rest)?;
            let rev: i32 = rev.parse().map_err(|_| "malformed revision")?;
            let td: StoredTaskDefinition = serde_json::from_slice(value).map_err(de)?;
            let fam = acct.families.entry(family).or_default();
            fam.last_revision = fam.last_revision.max(rev);
            fam.revisions.insert(rev, td);
        }
        "instance" => {
            let (cluster, id) = split2(rest)?;
            let mut ci: ecs::ContainerInstance = serde_json::from_slice(value).map_err(de)?;
            // No agent is connected to a server that has just started, whatever
            // was stored before a crash: each counts as disconnected until it
            // reconnects, so the lost-host grace period runs from startup.
            ci.agent_connected = Some(false);
            acct.clusters
                .entry(cluster)
                .or_default()
                .instances
                .insert(id, ci);
        }
        "task" => {
            let (cluster, id) = split2(rest)?;
            let task: ecs::Task = serde_json::from_slice(value).map_err(de)?;
            acct.clusters
                .entry(cluster)
                .or_default()
                .insert_task(id, task);
        }
        "taskprogress" => {
            let (cluster, id) = split2(rest)?;
            let p: TaskProgress = serde_json::from_slice(value).map_err(de)?;
            progress.push((scope.clone(), cluster, id, p));
        }
        "service" => {
            let (cluster, name) = split2(rest)?;
            let svc: ecs::Service = serde_json::from_slice(value).map_err(de)?;
            acct.clusters
                .entry(cluster)
                .or_default()
                .services
                .insert(name, svc);
        }
        "servicemeta" => {
            let (cluster, name) = split2(rest)?;
            let meta: ServiceMeta = serde_json::from_slice(value).map_err(de)?;
            acct.clusters
                .entry(cluster)
                .or_default()
                .service_meta
                .insert(name, meta);
        }
        "taskprotection" => {
            let (cluster, id) = split2(rest)?;
            let until: f64 = serde_json::from_slice(value).map_err(de)?;
            acct.clusters
                .entry(cluster)
                .or_default()
                .task_protection
                .insert(id, until);
        }
        "setting" => {
            let s: ecs::Setting = serde_json::from_slice(value).map_err(de)?;
            acct.settings.insert(rest.to_string(), s);
        }
        other => return Err(format!("unknown kind {other}")),
    }
    Ok(())
}
