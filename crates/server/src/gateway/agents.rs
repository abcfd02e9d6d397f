//! The agent sessions: one WebSocket per container instance.
//!
//! `GET /v1/agent/connect?cluster=NAME&containerInstance=ARN`, SigV4-signed
//! (presigned query or `Authorization` header). Desired state flows down: on
//! connect and after every durable change that alters the instance's set, the
//! gateway pushes the complete set of tasks the instance should run, versioned
//! by the store revision (so versions keep rising across restarts). Observed
//! state flows up as batched `StateChanges`. Heartbeats keep `agentConnected`
//! true; a connection silent for [`HEARTBEAT_TIMEOUT`] is dropped and the
//! instance marked disconnected.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use flotilla_auth::RequestParts;
use flotilla_model::agent::{AgentMessage, ServerMessage};
use flotilla_model::arn::{name_from_ref, Scope};
use flotilla_model::ecs;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{refuse, Gateway as App};
use crate::core::instances::put_instance;
use crate::core::resources::definition_of;
use crate::core::state::{Account, InstanceInbox};
use crate::core::tasks::apply_task_change;
use crate::core::{now, State};

/// How long a connection may stay silent before the instance counts as
/// disconnected. Agents send a heartbeat every 5 s.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(20);

/// Which session currently speaks for each instance: a newer connection
/// replaces an older one, and only the current one may mark it disconnected.
pub struct Sessions {
    next: AtomicU64,
    current: Mutex<HashMap<InstanceKey, u64>>,
    /// Reports of all sessions waiting for durability at once: see
    /// [`REPORTS_QUEUED`].
    reports: Arc<tokio::sync::Semaphore>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            next: AtomicU64::new(0),
            current: Mutex::default(),
            reports: Arc::new(tokio::sync::Semaphore::new(REPORTS_QUEUED)),
        }
    }
}

/// How many agents' reports may wait in the store's queue at once, across
/// all sessions: about one store batch. The store commits in arrival order,
/// so an API write waits behind whatever is queued; without this bound,
/// 10,000 busy agents kept some 10,000 commits queued ahead of every
/// CreateService (seconds, at a million tasks). Past it, sessions wait
/// before applying more, and their agents' reports wait in their sockets.
const REPORTS_QUEUED: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct InstanceKey {
    scope: Scope,
    cluster: String,
    id: String,
}

impl Sessions {
    /// Agents connected now (one session each).
    pub fn connected(&self) -> usize {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn begin(&self, key: &InstanceKey) -> u64 {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), id);
        id
    }

    fn is_current(&self, key: &InstanceKey, session: u64) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            == Some(&session)
    }

    /// Ends `session`; true if it was the current one.
    fn end(&self, key: &InstanceKey, session: u64) -> bool {
        let mut map = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(key) == Some(&session) {
            map.remove(key);
            true
        } else {
            false
        }
    }
}

#[derive(Deserialize)]
pub struct ConnectParams {
    cluster: Option<String>,
    #[serde(rename = "containerInstance")]
    container_instance: Option<String>,
    /// `1`: the agent understands [`ServerMessage::DesiredDelta`].
    delta: Option<String>,
}

pub async fn connect(
    AxumState(app): AxumState<App>,
    Query(params): Query<ConnectParams>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let parts = RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &headers,
        body: &[],
    };
    let caller = match app.credentials.verify(parts, SystemTime::now()) {
        Ok(c) => c,
        Err(e) => {
            let status =
                StatusCode::from_u16(e.http_status().as_u16()).unwrap_or(StatusCode::FORBIDDEN);
            return refuse(status, e.aws_code(), &e.to_string());
        }
    };
    let scope = Scope::new(caller.principal.account_id.clone(), caller.region.clone());
    let cluster = params.cluster.unwrap_or_else(|| "default".into());
    let cluster = name_from_ref(&cluster, "cluster")
        .unwrap_or(&cluster)
        .to_string();
    let reference = params.container_instance.unwrap_or_default();
    let Some(id) = name_from_ref(&reference, "container-instance").map(str::to_string) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "containerInstance is not a valid identifier.",
        );
    };
    let registered = app.state.read(&scope, |acct| {
        acct.clusters
            .get(&cluster)
            .filter(|c| c.is_active())
            .and_then(|c| c.instances.get(&id))
            .is_some_and(ecs::ContainerInstance::is_registered)
    });
    if !registered {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            &format!("Container instance {reference} is not registered in cluster {cluster}."),
        );
    }
    let key = InstanceKey { scope, cluster, id };
    let delta = params.delta.as_deref() == Some("1");
    ws.read_buffer_size(flotilla_model::agent::SOCKET_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            // The session runs on the sessions' own runtime (see `Gateway::sessions_runtime`).
            let runtime = app.sessions_runtime.clone();
            runtime.spawn(async move {
                if let Err(e) = session(app, key, delta, socket).await {
                    tracing::debug!(error = %e, "agent session ended");
                }
            });
        })
        .into_response()
}

async fn set_connected(state: &State, key: &InstanceKey, connected: bool) {
    let result = state
        .write(&key.scope, |acct, tx| {
            let Some(i) = acct
                .clusters
                .get(&key.cluster)
                .and_then(|c| c.instances.get(&key.id))
            else {
                return Ok(());
            };
            if i.agent_connected != Some(connected) {
                let mut i = i.clone();
                i.agent_connected = Some(connected);
                put_instance(acct, tx, &key.cluster, &key.id, i);
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not record agentConnected");
    }
}

/// What the agent was last sent: for each task (by id) its ARN, what the
/// agent acts on, and the number of the pass that last saw it in the
/// desired set.
#[derive(Default)]
struct Sent {
    tasks: HashMap<String, SentTask>,
    /// Passes so far (0: nothing sent yet).
    pass: u64,
}

struct SentTask {
    arn: String,
    wanted: Wanted,
    seen: u64,
}

/// What an agent needs to hear again about a task it was sent: whether the
/// task is to stop (its desired status only ever moves from RUNNING to
/// STOPPED). Everything else it acts on (definition, overrides, containers)
/// never changes, and what it reported itself (RUNNING, health) it knows:
/// echoing each report back would double the gateway's traffic.
type Wanted = bool;

fn wanted(acct: &Account, t: &ecs::Task) -> Wanted {
    t.stop_requested() && !held(acct, t)
}

/// Whether a task asked to stop must keep running a while: it is still a
/// load-balancer target (registered, or draining). ECS deregisters a task,
/// waits for the draining to end and only then stops it, so that no
/// request in flight is cut; `crate::core::lb::ecs` deregisters it and
/// writes the task again once drained, which brings the stop here.
fn held(acct: &Account, t: &ecs::Task) -> bool {
    t.stop_requested()
        && !t.is_stopped()
        && t.task_arn
            .as_deref()
            .is_some_and(|arn| crate::core::lb::is_target(&acct.lb, arn))
}

/// Whether a task belongs in its instance's desired set: placed there and
/// not yet STOPPED (whatever its desired status).
fn in_desired_set(t: &ecs::Task) -> bool {
    !t.is_stopped()
}

/// [`ServerMessage`]'s desired-set messages as the gateway writes them: the
/// same JSON, but borrowing each task and its definition from the state
/// instead of cloning both for every message (a test reads one back as a
/// `ServerMessage`).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Desired<'a> {
    Desired {
        version: u64,
        tasks: Vec<DesiredRef<'a>>,
    },
    DesiredDelta {
        version: u64,
        upsert: Vec<DesiredRef<'a>>,
        remove: Vec<String>,
    },
}

/// A borrowed [`flotilla_model::agent::DesiredTask`].
#[derive(Serialize)]
struct DesiredRef<'a> {
    /// Borrowed, except for a task held running (see [`held`]): a copy
    /// that still wants to run.
    task: std::borrow::Cow<'a, ecs::Task>,
    definition: &'a ecs::TaskDefinition,
}

fn desired_task<'a>(acct: &'a Account, t: &'a ecs::Task) -> Option<DesiredRef<'a>> {
    let task = if held(acct, t) {
        let mut running = t.clone();
        running.desired_status = Some(ecs::DesiredStatus::Running);
        std::borrow::Cow::Owned(running)
    } else {
        std::borrow::Cow::Borrowed(t)
    };
    Some(DesiredRef {
        task,
        definition: definition_of(&acct.families, t)?,
    })
}

/// The message that brings the agent from `sent` to the current desired set,
/// if anything changed, and updates `sent` to match.
///
/// - `changed` names the tasks that changed since the last pass (from the
///   instance's inbox): a delta agent's update looks at those alone, so a
///   task placed on an instance costs the same however many it holds.
/// - The first message, a full-set agent's messages, and a pass whose
///   changes overflowed the inbox look at every task on the instance; tasks
///   are then compared by [`Wanted`] in place (unchanged ones cost a lookup).
///
/// The first message is always sent (an empty set too), and it is always
/// the whole set.
fn desired_message<'a>(
    acct: &'a Account,
    key: &InstanceKey,
    sent: &mut Sent,
    changed: Option<HashSet<String>>,
    delta: bool,
    version: u64,
) -> Option<Desired<'a>> {
    let c = acct.clusters.get(&key.cluster);
    let arn = c.and_then(|c| c.instances.get(&key.id)?.container_instance_arn.as_ref());
    let first = sent.pass == 0;
    sent.pass += 1;
    let pass = sent.pass;
    if let (Some(c), Some(arn), Some(changed), true, false) = (c, arn, &changed, delta, first) {
        let mut upsert = Vec::new();
        let mut remove = Vec::new();
        for id in changed {
            let task = c
                .tasks
                .get(id)
                .filter(|t| t.container_instance_arn.as_ref() == Some(arn) && in_desired_set(t));
            match (task, sent.tasks.get_mut(id)) {
                (Some(t), Some(s)) if s.wanted == wanted(acct, t) => s.seen = pass,
                (Some(t), Some(s)) => {
                    s.wanted = wanted(acct, t);
                    s.seen = pass;
                    upsert.extend(desired_task(acct, t));
                }
                (Some(t), None) => {
                    let arn = t.task_arn.clone().unwrap_or_default();
                    sent.tasks.insert(
                        id.clone(),
                        SentTask {
                            arn,
                            wanted: wanted(acct, t),
                            seen: pass,
                        },
                    );
                    upsert.extend(desired_task(acct, t));
                }
                (None, Some(_)) => remove.extend(sent.tasks.remove(id).map(|s| s.arn)),
                (None, None) => {}
            }
        }
        return (!upsert.is_empty() || !remove.is_empty()).then_some(Desired::DesiredDelta {
            version,
            upsert,
            remove,
        });
    }
    let current: Vec<(&String, &ecs::Task)> = match (c, arn) {
        (Some(c), Some(arn)) => c.tasks_on(arn).filter(|(_, t)| in_desired_set(t)).collect(),
        _ => Vec::new(),
    };
    let mut upsert = Vec::new();
    for (id, t) in &current {
        match sent.tasks.get_mut(*id) {
            Some(s) => {
                if s.wanted != wanted(acct, t) {
                    s.wanted = wanted(acct, t);
                    upsert.push(*t);
                }
                s.seen = pass;
            }
            None => {
                let arn = t.task_arn.clone().unwrap_or_default();
                sent.tasks.insert(
                    (*id).clone(),
                    SentTask {
                        arn,
                        wanted: wanted(acct, t),
                        seen: pass,
                    },
                );
                upsert.push(*t);
            }
        }
    }
    let mut remove = Vec::new();
    sent.tasks.retain(|_, s| {
        let keep = s.seen == pass;
        if !keep {
            remove.push(std::mem::take(&mut s.arn));
        }
        keep
    });
    if !first && upsert.is_empty() && remove.is_empty() {
        return None;
    }
    Some(if delta && !first {
        Desired::DesiredDelta {
            version,
            upsert: upsert
                .into_iter()
                .filter_map(|t| desired_task(acct, t))
                .collect(),
            remove,
        }
    } else {
        Desired::Desired {
            version,
            tasks: current
                .into_iter()
                .filter_map(|(_, t)| desired_task(acct, t))
                .collect(),
        }
    })
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("websocket: {0}")]
    Socket(#[from] axum::Error),
    #[error("agent sent an unreadable message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("no heartbeat for {0:?}")]
    Silent(Duration),
    #[error("replaced by a newer connection")]
    Replaced,
}

async fn session(
    app: App,
    key: InstanceKey,
    delta: bool,
    mut socket: WebSocket,
) -> Result<(), SessionError> {
    let session = app.sessions.begin(&key);
    set_connected(&app.state, &key, true).await;
    tracing::debug!(instance = %key.id, "agent connected");
    let result = converse(&app, &key, session, delta, &mut socket).await;
    if app.sessions.end(&key, session) {
        set_connected(&app.state, &key, false).await;
        tracing::debug!(instance = %key.id, "agent disconnected");
    }
    result
}

async fn converse(
    app: &App,
    key: &InstanceKey,
    session: u64,
    delta: bool,
    socket: &mut WebSocket,
) -> Result<(), SessionError> {
    let instance_arn = app.state.read(&key.scope, |acct| {
        acct.clusters
            .get(&key.cluster)
            .and_then(|c| c.instances.get(&key.id))
            .and_then(|i| i.container_instance_arn.clone())
    });
    // Opened before the first desired set is computed: a write that lands in
    // between is in the inbox and leaves a permit, so nothing is missed.
    let instance_arn = instance_arn.unwrap_or_default();
    let inbox = app.state.open_instance_inbox(&instance_arn);
    let result = converse_with(app, key, session, delta, socket, &inbox).await;
    app.state.close_instance_inbox(&instance_arn, &inbox);
    result
}

/// How many of its reports a session lets wait for durability at once
/// before it reads no further: reports are applied at once and their commits
/// overlap, so a session keeps reading (heartbeats too) while the store
/// works, and a burst of reports becomes one batch rather than a queue of
/// commits one after another.
const REPORTS_IN_FLIGHT: usize = 8;

/// A report's commit, resolving once it is durable (and its changes are
/// published to the controllers and other sessions).
type Durable<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = crate::error::ApiResult<()>> + Send + 'a>>;

/// A session's reports waiting for durability, oldest first.
type Writes<'a> = futures_util::stream::FuturesOrdered<Durable<'a>>;

async fn converse_with(
    app: &App,
    key: &InstanceKey,
    session: u64,
    delta: bool,
    socket: &mut WebSocket,
    inbox: &InstanceInbox,
) -> Result<(), SessionError> {
    let mut writes = Writes::new();
    let result = serve(app, key, session, delta, socket, inbox, &mut writes).await;
    // Whatever the session's end, its accepted reports are seen through to
    // durability, so their wakes are not lost.
    while let Some(done) = writes.next().await {
        log_report_failure(done);
    }
    result
}

async fn serve<'a>(
    app: &'a App,
    key: &InstanceKey,
    session: u64,
    delta: bool,
    socket: &mut WebSocket,
    inbox: &InstanceInbox,
    writes: &mut Writes<'a>,
) -> Result<(), SessionError> {
    let mut shutdown = app.shutdown.clone();
    let mut sent = Sent::default();
    let deadline = tokio::time::sleep(HEARTBEAT_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        if !app.sessions.is_current(key, session) {
            return Err(SessionError::Replaced);
        }
        // Push the desired set (or what changed in it) whenever it differs
        // from what the agent last got.
        let changed = inbox.take();
        let text = app.state.read(&key.scope, |acct| {
            desired_message(acct, key, &mut sent, changed, delta, app.state.revision())
                .map(|msg| serde_json::to_string(&msg))
        });
        if let Some(text) = text {
            send(socket, text?, writes).await?;
        }
        // Biased, so that a message already waiting is read before the
        // deadline is looked at: after a long send, both can be ready.
        tokio::select! {
            biased;
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return Ok(()),
            msg = socket.recv(), if writes.len() < REPORTS_IN_FLIGHT => {
                let Some(msg) = msg else { return Ok(()) };
                match msg? {
                    Message::Text(text) => handle(app, key, socket, serde_json::from_str(text.as_str())?, writes).await?,
                    Message::Close(_) => return Ok(()),
                    _ => {}
                }
                deadline.as_mut().reset(tokio::time::Instant::now() + HEARTBEAT_TIMEOUT);
            }
            Some(done) = writes.next(), if !writes.is_empty() => {
                log_report_failure(done);
                // While its reports waited on the store, the session was not
                // listening: that was not the agent's silence.
                deadline.as_mut().reset(tokio::time::Instant::now() + HEARTBEAT_TIMEOUT);
            }
            _ = inbox.notified() => {}
            _ = &mut deadline, if writes.is_empty() => return Err(SessionError::Silent(HEARTBEAT_TIMEOUT)),
        }
    }
}

/// Sends one message. Meanwhile the session's reports that become durable
/// are seen through, so a slow reader on the other end never holds
/// [`REPORTS_QUEUED`] permits that other sessions wait for.
async fn send<'a>(
    socket: &mut WebSocket,
    text: String,
    writes: &mut Writes<'a>,
) -> Result<(), SessionError> {
    let sending = socket.send(Message::Text(text.into()));
    tokio::pin!(sending);
    loop {
        tokio::select! {
            biased;
            sent = &mut sending => return Ok(sent?),
            Some(done) = writes.next(), if !writes.is_empty() => log_report_failure(done),
        }
    }
}

fn log_report_failure(done: crate::error::ApiResult<()>) {
    if let Err(e) = done {
        tracing::warn!(error = %e, "could not record state changes");
    }
}

async fn handle<'a>(
    app: &'a App,
    key: &InstanceKey,
    socket: &mut WebSocket,
    msg: AgentMessage,
    writes: &mut Writes<'a>,
) -> Result<(), SessionError> {
    match msg {
        AgentMessage::Heartbeat => {
            send(
                socket,
                serde_json::to_string(&ServerMessage::HeartbeatAck)?,
                writes,
            )
            .await?;
        }
        AgentMessage::Applied { version } => {
            tracing::trace!(instance = %key.id, version, "agent applied desired set")
        }
        // Container stats: gathered in memory, written as AWS/ECS metrics
        // by the usage controller (`crate::controllers::usage`).
        AgentMessage::Stats { samples } => {
            tracing::trace!(instance = %key.id, tasks = samples.len(), "agent stats");
            app.usage.record(&key.scope, &key.cluster, &samples);
        }
        AgentMessage::StateChanges { changes } => {
            // Waiting for room, this session's own queued reports are seen
            // through: their permits come back only once they are polled.
            let acquire = Arc::clone(&app.sessions.reports).acquire_owned();
            tokio::pin!(acquire);
            let permit = loop {
                tokio::select! {
                    biased;
                    p = &mut acquire => match p {
                        Ok(p) => break p,
                        Err(_) => return Ok(()), // never closed
                    },
                    Some(done) = writes.next(), if !writes.is_empty() => log_report_failure(done),
                }
            };
            // Applied now; durable once the future in `writes` resolves. The
            // agent hears no acknowledgement: after a reconnect it sends its
            // changes again, which covers a crash before the commit.
            let submitted = app.state.submit(&key.scope, |acct, tx| {
                let Account { clusters, families, .. } = acct;
                let Some(c) = clusters.get_mut(&key.cluster) else { return Ok(()) };
                let Some(instance_arn) = c.instances.get(&key.id).and_then(|i| i.container_instance_arn.clone()) else { return Ok(()) };
                let t = now();
                for change in &changes {
                    // An agent speaks only for the tasks placed on its own instance.
                    let task_id = name_from_ref(change.task_arn(), "task").unwrap_or_default();
                    let ours = c.tasks.get(task_id).is_some_and(|task| task.container_instance_arn.as_ref() == Some(&instance_arn));
                    if !ours {
                        tracing::debug!(task = change.task_arn(), "ignoring a report for a task not on this instance");
                        continue;
                    }
                    if let Err(e) = apply_task_change(families, c, tx, t, change) {
                        tracing::debug!(task = change.task_arn(), error = %e, "ignoring a state change");
                    }
                }
                Ok(())
            });
            match submitted {
                Ok(((), durable)) => writes.push_back(Box::pin(async move {
                    let done = durable.await;
                    drop(permit);
                    done
                })),
                Err(e) => tracing::warn!(error = %e, "could not record state changes"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::{Family, StoredTaskDefinition};
    use flotilla_model::lifecycle::{ContainerStatus, TaskStatus};

    const INSTANCE: &str = "arn:aws:ecs:us-east-1:111111111111:container-instance/default/i1";
    const TD: &str = "arn:aws:ecs:us-east-1:111111111111:task-definition/web:1";

    fn account() -> Account {
        let mut acct = Account::default();
        let mut family = Family::default();
        let definition = ecs::TaskDefinition {
            task_definition_arn: Some(TD.into()),
            family: Some("web".into()),
            ..Default::default()
        };
        family.revisions.insert(
            1,
            StoredTaskDefinition {
                definition,
                tags: Vec::new(),
            },
        );
        acct.families.insert("web".into(), family);
        let c = acct.clusters.entry("default".into()).or_default();
        let instance = ecs::ContainerInstance {
            container_instance_arn: Some(INSTANCE.into()),
            ..Default::default()
        };
        c.instances.insert("i1".into(), instance);
        acct
    }

    fn task(id: &str, instance: &str) -> ecs::Task {
        ecs::Task {
            task_arn: Some(format!(
                "arn:aws:ecs:us-east-1:111111111111:task/default/{id}"
            )),
            task_definition_arn: Some(TD.into()),
            container_instance_arn: Some(instance.into()),
            last_status: Some(TaskStatus::Pending),
            desired_status: Some(ecs::DesiredStatus::Running),
            ..Default::default()
        }
    }

    fn key() -> InstanceKey {
        InstanceKey {
            scope: Scope::new("111111111111", "us-east-1"),
            cluster: "default".into(),
            id: "i1".into(),
        }
    }

    fn ids(changed: &[&str]) -> Option<HashSet<String>> {
        Some(changed.iter().map(|s| s.to_string()).collect())
    }

    /// What the agent reads: the message as JSON, read back as the
    /// protocol's own type.
    fn short(msg: Option<Desired<'_>>) -> Option<(Vec<String>, Vec<String>)> {
        let msg: Option<ServerMessage> =
            msg.map(|m| serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap());
        let name = |t: &flotilla_model::agent::DesiredTask| {
            t.task
                .task_arn
                .as_deref()
                .unwrap_or_default()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        };
        match msg? {
            ServerMessage::Desired { tasks, .. } => {
                Some((tasks.iter().map(name).collect(), vec!["<full>".into()]))
            }
            ServerMessage::DesiredDelta { upsert, remove, .. } => Some((
                upsert.iter().map(name).collect(),
                remove
                    .iter()
                    .map(|a| a.rsplit('/').next().unwrap_or_default().to_string())
                    .collect(),
            )),
            ServerMessage::HeartbeatAck => None,
        }
    }

    /// The inbox path sends exactly what changed: new tasks, tasks to stop,
    /// and removals once STOPPED; never the agent's own RUNNING report, nor
    /// tasks of other instances.
    #[test]
    fn deltas_from_the_inbox_carry_only_what_the_agent_needs() {
        let mut acct = account();
        let mut sent = Sent::default();
        let c = acct.clusters.get_mut("default").unwrap();
        c.insert_task("a".into(), task("a", INSTANCE));
        // The first message is the whole set, whatever the inbox says.
        assert_eq!(
            short(desired_message(&acct, &key(), &mut sent, ids(&[]), true, 1)),
            Some((vec!["a".into()], vec!["<full>".into()]))
        );
        assert_eq!(
            short(desired_message(&acct, &key(), &mut sent, ids(&[]), true, 2)),
            None
        );

        let c = acct.clusters.get_mut("default").unwrap();
        c.insert_task("b".into(), task("b", INSTANCE));
        c.insert_task(
            "x".into(),
            task(
                "x",
                "arn:aws:ecs:us-east-1:111111111111:container-instance/default/other",
            ),
        );
        c.tasks.get_mut("a").unwrap().last_status = Some(TaskStatus::Running);
        assert_eq!(
            short(desired_message(
                &acct,
                &key(),
                &mut sent,
                ids(&["a", "b", "x"]),
                true,
                3
            )),
            Some((vec!["b".into()], vec![]))
        );

        let c = acct.clusters.get_mut("default").unwrap();
        c.tasks.get_mut("a").unwrap().desired_status = Some(ecs::DesiredStatus::Stopped);
        assert_eq!(
            short(desired_message(
                &acct,
                &key(),
                &mut sent,
                ids(&["a"]),
                true,
                4
            )),
            Some((vec!["a".into()], vec![]))
        );
        let c = acct.clusters.get_mut("default").unwrap();
        c.tasks.get_mut("a").unwrap().last_status = Some(TaskStatus::Stopped);
        assert_eq!(
            short(desired_message(
                &acct,
                &key(),
                &mut sent,
                ids(&["a"]),
                true,
                5
            )),
            Some((vec![], vec!["a".into()]))
        );

        // An overflowed inbox (None) looks at everything and agrees.
        let c = acct.clusters.get_mut("default").unwrap();
        c.insert_task("c".into(), task("c", INSTANCE));
        c.tasks.get_mut("b").unwrap().desired_status = Some(ecs::DesiredStatus::Stopped);
        let full = short(desired_message(&acct, &key(), &mut sent, None, true, 6)).unwrap();
        assert_eq!(
            (sorted(full.0), full.1),
            (vec!["b".to_string(), "c".to_string()], vec![])
        );
        assert_eq!(
            short(desired_message(&acct, &key(), &mut sent, None, true, 7)),
            None
        );
    }

    /// An agent without deltas gets the whole set whenever it changed.
    #[test]
    fn full_set_agents_get_the_whole_set_on_change() {
        let mut acct = account();
        let mut sent = Sent::default();
        acct.clusters
            .get_mut("default")
            .unwrap()
            .insert_task("a".into(), task("a", INSTANCE));
        assert!(short(desired_message(
            &acct,
            &key(),
            &mut sent,
            ids(&[]),
            false,
            1
        ))
        .is_some());
        assert_eq!(
            short(desired_message(
                &acct,
                &key(),
                &mut sent,
                ids(&["a"]),
                false,
                2
            )),
            None
        );
        acct.clusters
            .get_mut("default")
            .unwrap()
            .insert_task("b".into(), task("b", INSTANCE));
        let (tasks, marker) = short(desired_message(
            &acct,
            &key(),
            &mut sent,
            ids(&["b"]),
            false,
            3,
        ))
        .unwrap();
        assert_eq!(
            (sorted(tasks), marker),
            (
                vec!["a".to_string(), "b".to_string()],
                vec!["<full>".to_string()]
            )
        );
    }

    /// The borrowed messages are byte for byte the protocol's own.
    #[test]
    fn borrowed_messages_are_the_protocols_json() {
        let acct = account();
        let mut t = task("a", INSTANCE);
        t.overrides = Some(ecs::TaskOverride {
            container_overrides: Some(Vec::new()),
            ..Default::default()
        });
        t.containers = Some(vec![ecs::Container {
            name: Some("app".into()),
            last_status: Some(ContainerStatus::Pending),
            ..Default::default()
        }]);
        let definition = definition_of(&acct.families, &t).unwrap().clone();
        let owned = vec![flotilla_model::agent::DesiredTask {
            task: t.clone(),
            definition,
        }];
        let borrowed = || vec![desired_task(&acct, &t).unwrap()];
        assert_eq!(
            serde_json::to_string(&Desired::Desired {
                version: 7,
                tasks: borrowed()
            })
            .unwrap(),
            serde_json::to_string(&ServerMessage::Desired {
                version: 7,
                tasks: owned.clone()
            })
            .unwrap()
        );
        assert_eq!(
            serde_json::to_string(&Desired::DesiredDelta {
                version: 8,
                upsert: borrowed(),
                remove: vec!["x".into()]
            })
            .unwrap(),
            serde_json::to_string(&ServerMessage::DesiredDelta {
                version: 8,
                upsert: owned,
                remove: vec!["x".into()]
            })
            .unwrap()
        );
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }
}
