//! The agent gateway: one WebSocket per container instance.
//!
//! `GET /v1/agent/connect?cluster=NAME&containerInstance=ARN`, SigV4-signed
//! (presigned query or `Authorization` header). Desired state flows down: on
//! connect and after every durable change that alters the instance's set, the
//! gateway pushes the complete set of tasks the instance should run, versioned
//! by the store revision (so versions keep rising across restarts). Observed
//! state flows up as batched `StateChanges`. Heartbeats keep `agentConnected`
//! true; a connection silent for [`HEARTBEAT_TIMEOUT`] is dropped and the
//! instance marked disconnected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use flotilla_auth::RequestParts;
use flotilla_model::agent::{AgentMessage, DesiredTask, ServerMessage};
use flotilla_model::arn::{name_from_ref, Scope};
use serde::Deserialize;

use crate::ecs::resources::definition_of;
use crate::ecs::tasks::apply_task_change;
use crate::http::{error_response, App};
use crate::state::{now, Account, Key, State};

/// How long a connection may stay silent before the instance counts as
/// disconnected. Agents send a heartbeat every 5 s.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(20);

/// Which session currently speaks for each instance: a newer connection
/// replaces an older one, and only the current one may mark it disconnected.
#[derive(Default)]
pub struct Sessions {
    next: AtomicU64,
    current: Mutex<HashMap<InstanceKey, u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct InstanceKey {
    scope: Scope,
    cluster: String,
    id: String,
}

impl Sessions {
    fn begin(&self, key: &InstanceKey) -> u64 {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        self.current.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), id);
        id
    }

    fn is_current(&self, key: &InstanceKey, session: u64) -> bool {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).get(key) == Some(&session)
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
    let rid = uuid::Uuid::new_v4().to_string();
    let parts = RequestParts { method: method.as_str(), path: uri.path(), query: uri.query().unwrap_or(""), headers: &headers, body: &[] };
    let caller = match app.credentials.verify(parts, SystemTime::now()) {
        Ok(c) => c,
        Err(e) => {
            let status = StatusCode::from_u16(e.http_status().as_u16()).unwrap_or(StatusCode::FORBIDDEN);
            return error_response(&rid, status, e.aws_code(), &e.to_string());
        }
    };
    let scope = Scope::new(caller.principal.account_id.clone(), caller.region.clone());
    let cluster = params.cluster.unwrap_or_else(|| "default".into());
    let cluster = name_from_ref(&cluster, "cluster").unwrap_or(&cluster).to_string();
    let reference = params.container_instance.unwrap_or_default();
    let Some(id) = name_from_ref(&reference, "container-instance").map(str::to_string) else {
        return error_response(&rid, StatusCode::BAD_REQUEST, "InvalidParameterException", "containerInstance is not a valid identifier.");
    };
    let registered = app.state.read(&scope, |acct| {
        acct.clusters
            .get(&cluster)
            .filter(|c| c.is_active())
            .and_then(|c| c.instances.get(&id))
            .is_some_and(crate::ecs::instances::is_registered)
    });
    if !registered {
        return error_response(
            &rid,
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            &format!("Container instance {reference} is not registered in cluster {cluster}."),
        );
    }
    let key = InstanceKey { scope, cluster, id };
    let delta = params.delta.as_deref() == Some("1");
    ws.on_upgrade(move |socket| async move {
        if let Err(e) = session(app, key, delta, socket).await {
            tracing::debug!(error = %e, "agent session ended");
        }
    })
    .into_response()
}

async fn set_connected(state: &State, key: &InstanceKey, connected: bool) {
    let result = state
        .write(&key.scope, |acct, tx| {
            let Some(i) = acct.clusters.get_mut(&key.cluster).and_then(|c| c.instances.get_mut(&key.id)) else {
                return Ok(());
            };
            if i.agent_connected != Some(connected) {
                i.agent_connected = Some(connected);
                tx.put(Key::Instance(&key.cluster, &key.id), &*i);
                acct.sync_instance(&key.cluster, &key.id);
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not record agentConnected");
    }
}

/// What the agent was last sent: for each task (by ARN) what the agent acts
/// on, and the number of the pass that last saw it in the desired set.
#[derive(Default)]
struct Sent {
    versions: HashMap<String, (Wanted, u64)>,
    /// Passes so far (0: nothing sent yet).
    pass: u64,
}

/// What an agent needs to hear again about a task it was sent: whether the
/// task is to stop (its desired status only ever moves from RUNNING to
/// STOPPED). Everything else it acts on (definition, overrides, containers)
/// never changes, and what it reported itself (RUNNING, health) it knows:
/// echoing each report back would double the gateway's traffic.
type Wanted = bool;

fn wanted(t: &flotilla_model::ecs::Task) -> Wanted {
    t.desired_status.as_deref() == Some("STOPPED")
}

/// The message that brings the agent from `sent` to the current desired set
/// (every task placed on the instance that has not yet stopped, whatever its
/// desired status), if anything changed, and updates `sent` to match. Tasks
/// are compared by [`Wanted`] in place, so unchanged ones cost a lookup: no
/// cloning, no encoding, no rebuilt map. The first message is always sent
/// (an empty set too), and it is always the whole set.
fn desired_message(acct: &Account, key: &InstanceKey, sent: &mut Sent, delta: bool, version: u64) -> Option<ServerMessage> {
    let arn = acct
        .clusters
        .get(&key.cluster)
        .and_then(|c| Some((c, c.instances.get(&key.id)?.container_instance_arn.as_ref()?)));
    let current: Vec<&flotilla_model::ecs::Task> = match arn {
        Some((c, arn)) => c.tasks_on(arn).map(|(_, t)| t).filter(|t| t.last_status.as_deref() != Some("STOPPED")).collect(),
        None => Vec::new(),
    };
    let first = sent.pass == 0;
    sent.pass += 1;
    let pass = sent.pass;
    let mut changed = Vec::new();
    for t in &current {
        let arn = t.task_arn.as_deref().unwrap_or_default();
        let v = wanted(t);
        match sent.versions.get_mut(arn) {
            Some(entry) => {
                if entry.0 != v {
                    entry.0 = v;
                    changed.push(*t);
                }
                entry.1 = pass;
            }
            None => {
                sent.versions.insert(arn.to_string(), (v, pass));
                changed.push(*t);
            }
        }
    }
    let mut removed = Vec::new();
    sent.versions.retain(|arn, (_, seen)| {
        let keep = *seen == pass;
        if !keep {
            removed.push(arn.clone());
        }
        keep
    });
    if !first && changed.is_empty() && removed.is_empty() {
        return None;
    }
    let whole = |t: &flotilla_model::ecs::Task| Some(DesiredTask { task: t.clone(), definition: definition_of(&acct.families, t)?.clone() });
    Some(if delta && !first {
        ServerMessage::DesiredDelta { version, upsert: changed.into_iter().filter_map(whole).collect(), remove: removed }
    } else {
        ServerMessage::Desired { version, tasks: current.into_iter().filter_map(whole).collect() }
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

async fn session(app: App, key: InstanceKey, delta: bool, mut socket: WebSocket) -> Result<(), SessionError> {
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

async fn converse(app: &App, key: &InstanceKey, session: u64, delta: bool, socket: &mut WebSocket) -> Result<(), SessionError> {
    let instance_arn = app.state.read(&key.scope, |acct| {
        acct.clusters.get(&key.cluster).and_then(|c| c.instances.get(&key.id)).and_then(|i| i.container_instance_arn.clone())
    });
    // Taken before the first desired set is computed: a write that lands in
    // between leaves a permit, so nothing is missed.
    let waker = app.state.instance_waker(instance_arn.as_deref().unwrap_or_default());
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
        let msg = app.state.read(&key.scope, |acct| desired_message(acct, key, &mut sent, delta, app.state.revision()));
        if let Some(msg) = msg {
            socket.send(Message::Text(serde_json::to_string(&msg)?.into())).await?;
        }
        tokio::select! {
            _ = waker.notified() => {}
            msg = socket.recv() => {
                let Some(msg) = msg else { return Ok(()) };
                deadline.as_mut().reset(tokio::time::Instant::now() + HEARTBEAT_TIMEOUT);
                match msg? {
                    Message::Text(text) => handle(app, key, socket, serde_json::from_str(text.as_str())?).await?,
                    Message::Close(_) => return Ok(()),
                    _ => {}
                }
            }
            _ = &mut deadline => return Err(SessionError::Silent(HEARTBEAT_TIMEOUT)),
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return Ok(()),
        }
    }
}

async fn handle(app: &App, key: &InstanceKey, socket: &mut WebSocket, msg: AgentMessage) -> Result<(), SessionError> {
    match msg {
        AgentMessage::Heartbeat => {
            socket.send(Message::Text(serde_json::to_string(&ServerMessage::HeartbeatAck)?.into())).await?;
        }
        AgentMessage::Applied { version } => tracing::trace!(instance = %key.id, version, "agent applied desired set"),
        AgentMessage::StateChanges { changes } => {
            let instance_arn = app.state.read(&key.scope, |acct| {
                acct.clusters.get(&key.cluster).and_then(|c| c.instances.get(&key.id)).and_then(|i| i.container_instance_arn.clone())
            });
            let result = app
                .state
                .write(&key.scope, |acct, tx| {
                    let Account { clusters, families, .. } = acct;
                    let Some(c) = clusters.get_mut(&key.cluster) else { return Ok(()) };
                    let t = now();
                    for change in &changes {
                        // An agent speaks only for the tasks placed on its own instance.
                        let task_id = name_from_ref(change.task_arn(), "task").unwrap_or_default();
                        let ours = c.tasks.get(task_id).is_some_and(|task| task.container_instance_arn == instance_arn);
                        if !ours {
                            tracing::debug!(task = change.task_arn(), "ignoring a report for a task not on this instance");
                            continue;
                        }
                        if let Err(e) = apply_task_change(families, c, tx, t, change) {
                            tracing::debug!(task = change.task_arn(), error = %e, "ignoring a state change");
                        }
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not record state changes");
            }
        }
    }
    Ok(())
}

