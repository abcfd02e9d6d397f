//! The load-balancer node sessions: one WebSocket per node (`flotilla lb`).
//!
//! `GET /v1/lb/connect?node=NAME&addresses=IP[,IP…]`, SigV4-signed like the
//! agents' (presigned query or `Authorization` header); the node serves the
//! load balancers of the signer's account and region. The protocol is
//! `flotilla_model::lb`:
//! - on connect the node's addresses are recorded and load balancers waiting
//!   for an address get one of them (`crate::core::lb::nodes`);
//! - the node's complete configuration is pushed on connect and whenever a
//!   durable change alters it, versioned by the store revision (rising
//!   across restarts); `Applied` marks the load balancers it held `active`;
//! - `Health` reports feed DescribeTargetHealth (and ECS services' health);
//!   `Metrics` become CloudWatch metrics (`AWS/ApplicationELB`,
//!   `AWS/NetworkELB`);
//! - a node silent for [`HEARTBEAT_TIMEOUT`] is dropped.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use flotilla_auth::RequestParts;
use flotilla_metrics::{
    Dimension, MetricDatum, PutMetricDataInput, StandardUnit, StatisticSet, Timestamp,
};
use flotilla_model::arn::Scope;
use flotilla_model::lb::{ControlMessage, LbMetrics, NodeConfig, NodeMessage};
use flotilla_model::wire::elbv2::LoadBalancerTypeEnum;
use serde::Deserialize;

use super::{refuse, Gateway as App};
use crate::core::lb::nodes;
use crate::core::now;

/// How long a node may stay silent (it sends a heartbeat every 5 s).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(20);

/// Which session speaks for each node: a newer connection replaces an older.
#[derive(Default)]
pub struct LbSessions {
    next: AtomicU64,
    current: Mutex<HashMap<(Scope, String), u64>>,
}

impl LbSessions {
    /// Load-balancer nodes connected now (one session each).
    pub fn connected(&self) -> usize {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn begin(&self, key: &(Scope, String)) -> u64 {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), id);
        id
    }

    fn is_current(&self, key: &(Scope, String), session: u64) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            == Some(&session)
    }

    fn end(&self, key: &(Scope, String), session: u64) -> bool {
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
    node: Option<String>,
    addresses: Option<String>,
}

/// Node names: what a host name or a label may hold.
fn valid_node_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// At most this many addresses per node.
const MAX_ADDRESSES: usize = 256;

fn parse_addresses(s: &str) -> Option<Vec<IpAddr>> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let ip: IpAddr = part.trim().parse().ok()?;
        if ip.is_unspecified() {
            return None;
        }
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    (!out.is_empty() && out.len() <= MAX_ADDRESSES).then_some(out)
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
    let node = params.node.unwrap_or_default();
    if !valid_node_name(&node) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "node must be 1 to 255 letters, digits, '-', '_' or '.'.",
        );
    }
    let Some(addresses) = params.addresses.as_deref().and_then(parse_addresses) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "addresses must be a comma-separated list of 1 to 256 IP addresses (not 0.0.0.0 or ::).",
        );
    };
    ws.on_upgrade(move |socket| async move {
        let runtime = app.sessions_runtime.clone();
        runtime.spawn(async move {
            if let Err(e) = session(app, (scope, node), addresses, socket).await {
                tracing::debug!(error = %e, "lb node session ended");
            }
        });
    })
    .into_response()
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("websocket: {0}")]
    Socket(#[from] axum::Error),
    #[error("node sent an unreadable message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("no heartbeat for {0:?}")]
    Silent(Duration),
    #[error("replaced by a newer connection")]
    Replaced,
    #[error("state: {0}")]
    State(#[from] crate::error::ApiError),
}

async fn session(
    app: App,
    key: (Scope, String),
    addresses: Vec<IpAddr>,
    mut socket: WebSocket,
) -> Result<(), SessionError> {
    let id = app.lb_sessions.begin(&key);
    let (scope, node) = (&key.0, key.1.as_str());
    app.state
        .write(scope, |acct, tx| {
            nodes::connected(&mut acct.lb, tx, node, addresses);
            Ok(())
        })
        .await?;
    tracing::debug!(node, "lb node connected");
    let result = serve(&app, &key, id, &mut socket).await;
    if app.lb_sessions.end(&key, id) {
        let _ = app
            .state
            .write(scope, |acct, _| {
                nodes::disconnected(&mut acct.lb, node);
                Ok(())
            })
            .await;
        tracing::debug!(node, "lb node disconnected");
    }
    result
}

async fn serve(
    app: &App,
    key: &(Scope, String),
    id: u64,
    socket: &mut WebSocket,
) -> Result<(), SessionError> {
    let (scope, node) = (&key.0, key.1.as_str());
    let mut shutdown = app.shutdown.clone();
    let mut changes = app.state.subscribe();
    // The configuration last sent, and the load balancers it stood for (a
    // load balancer without listeners adds nothing to the configuration,
    // but its node must still confirm it to make it active).
    let mut sent: Option<(NodeConfig, Vec<String>)> = None;
    let mut version = 0u64;
    // Versions sent and the load balancers each held, until applied.
    let mut pending: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let deadline = tokio::time::sleep(HEARTBEAT_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        if !app.lb_sessions.is_current(key, id) {
            return Err(SessionError::Replaced);
        }
        changes.borrow_and_update();
        let (config, served) = app.state.read(scope, |acct| {
            (
                nodes::config_for(&acct.lb, node, now()),
                nodes::load_balancers_on(&acct.lb, node),
            )
        });
        let unchanged = sent
            .as_ref()
            .is_some_and(|(c, s)| c == &config && s == &served);
        if !unchanged {
            version = app.state.revision().max(version + 1);
            let text = serde_json::to_string(&ControlMessage::Config {
                version,
                config: config.clone(),
            })?;
            socket.send(Message::Text(text.into())).await?;
            pending.insert(version, served.clone());
            // Only the latest few matter; a node that never applies must not
            // grow this.
            while pending.len() > 16 {
                pending.pop_first();
            }
            sent = Some((config, served));
        }
        tokio::select! {
            biased;
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return Ok(()),
            msg = socket.recv() => {
                let Some(msg) = msg else { return Ok(()) };
                match msg? {
                    Message::Text(text) => {
                        let msg: NodeMessage = serde_json::from_str(text.as_str())?;
                        handle(app, scope, node, socket, msg, &mut pending).await?;
                    }
                    Message::Close(_) => return Ok(()),
                    _ => {}
                }
                deadline.as_mut().reset(tokio::time::Instant::now() + HEARTBEAT_TIMEOUT);
            }
            r = changes.changed() => if r.is_err() { return Ok(()) },
            _ = &mut deadline => return Err(SessionError::Silent(HEARTBEAT_TIMEOUT)),
        }
    }
}

async fn handle(
    app: &App,
    scope: &Scope,
    node: &str,
    socket: &mut WebSocket,
    msg: NodeMessage,
    pending: &mut BTreeMap<u64, Vec<String>>,
) -> Result<(), SessionError> {
    match msg {
        NodeMessage::Heartbeat => {
            let text = serde_json::to_string(&ControlMessage::HeartbeatAck)?;
            socket.send(Message::Text(text.into())).await?;
        }
        NodeMessage::Applied { version } => {
            // Applying a version applies everything sent before it too.
            let mut served: Vec<String> = Vec::new();
            while let Some((&v, _)) = pending.first_key_value() {
                if v > version {
                    break;
                }
                if let Some((_, lbs)) = pending.pop_first() {
                    if v == version {
                        served = lbs;
                    }
                }
            }
            if !served.is_empty() {
                app.state
                    .write(scope, |acct, tx| {
                        nodes::applied(&mut acct.lb, tx, node, &served);
                        Ok(())
                    })
                    .await?;
            }
        }
        NodeMessage::Health { reports } => {
            let t = now();
            app.state
                .write(scope, |acct, tx| {
                    let changed = nodes::report_health(&mut acct.lb, node, reports, t);
                    crate::core::lb::ecs::touch_services(acct, tx, &changed);
                    Ok(())
                })
                .await?;
        }
        NodeMessage::Metrics { samples } => {
            let inputs = app
                .state
                .read(scope, |acct| metric_data(&acct.lb, node, &samples));
            for input in inputs {
                if let Err(e) = app
                    .metrics
                    .put_internal_metric_data(
                        scope,
                        &input,
                        Timestamp::from_secs_f64(now()).unwrap_or(Timestamp(0)),
                    )
                    .await
                {
                    tracing::debug!(error = %e, "could not store load balancer metrics");
                }
            }
        }
    }
    Ok(())
}

/// A node's counters as CloudWatch data: `AWS/ApplicationELB` and
/// `AWS/NetworkELB` with ELBv2's metric names and dimensions
/// (`LoadBalancer=app/NAME/ID`, `TargetGroup=targetgroup/NAME/ID`). Samples
/// of load balancers the node does not serve are ignored.
fn metric_data(
    lb: &crate::core::lb::LbAccount,
    node: &str,
    samples: &[LbMetrics],
) -> Vec<PutMetricDataInput> {
    let mut app_data = Vec::new();
    let mut net_data = Vec::new();
    for s in samples {
        let Some(l) = lb.load_balancers.get(&s.load_balancer_arn) else {
            continue;
        };
        if l.node.as_deref() != Some(node) {
            continue;
        }
        let Some(at) = Timestamp::from_secs_f64(s.end) else {
            continue;
        };
        let mut dims = vec![Dimension::new("LoadBalancer", l.dimension())];
        if let Some(tg) = &s.target_group_arn {
            let Some(tg) = lb.target_groups.get(tg) else {
                continue;
            };
            dims.insert(0, Dimension::new("TargetGroup", tg.dimension()));
        }
        let datum = |name: &str, value: f64, unit: StandardUnit| MetricDatum {
            metric_name: name.to_string(),
            dimensions: dims.clone(),
            timestamp: Some(at),
            value: Some(value),
            unit: Some(unit),
            ..Default::default()
        };
        let per_group = s.target_group_arn.is_some();
        if l.kind() == LoadBalancerTypeEnum::Network {
            net_data.push(datum(
                "NewFlowCount",
                s.request_count as f64,
                StandardUnit::Count,
            ));
            if per_group {
                net_data.push(datum(
                    "HealthyHostCount",
                    f64::from(s.healthy_hosts),
                    StandardUnit::Count,
                ));
                net_data.push(datum(
                    "UnHealthyHostCount",
                    f64::from(s.unhealthy_hosts),
                    StandardUnit::Count,
                ));
            }
            continue;
        }
        app_data.push(datum(
            "RequestCount",
            s.request_count as f64,
            StandardUnit::Count,
        ));
        for (name, v) in [
            ("HTTPCode_Target_2XX_Count", s.target_2xx),
            ("HTTPCode_Target_3XX_Count", s.target_3xx),
            ("HTTPCode_Target_4XX_Count", s.target_4xx),
            ("HTTPCode_Target_5XX_Count", s.target_5xx),
        ] {
            if v > 0 {
                app_data.push(datum(name, v as f64, StandardUnit::Count));
            }
        }
        if !per_group && s.elb_5xx > 0 {
            app_data.push(datum(
                "HTTPCode_ELB_5XX_Count",
                s.elb_5xx as f64,
                StandardUnit::Count,
            ));
        }
        if s.target_response_count > 0 {
            let mean = s.target_response_time_sum / s.target_response_count as f64;
            app_data.push(MetricDatum {
                value: None,
                statistic_values: Some(StatisticSet {
                    sample_count: s.target_response_count as f64,
                    sum: s.target_response_time_sum,
                    minimum: mean,
                    maximum: mean,
                }),
                ..datum("TargetResponseTime", 0.0, StandardUnit::Seconds)
            });
        }
        if per_group {
            app_data.push(datum(
                "HealthyHostCount",
                f64::from(s.healthy_hosts),
                StandardUnit::Count,
            ));
            app_data.push(datum(
                "UnHealthyHostCount",
                f64::from(s.unhealthy_hosts),
                StandardUnit::Count,
            ));
            let targets = f64::from(s.healthy_hosts.max(1));
            app_data.push(datum(
                "RequestCountPerTarget",
                s.request_count as f64 / targets,
                StandardUnit::Count,
            ));
        }
    }
    let mut out = Vec::new();
    for (namespace, data) in [
        ("AWS/ApplicationELB", app_data),
        ("AWS/NetworkELB", net_data),
    ] {
        for chunk in data.chunks(flotilla_metrics::MAX_METRICS_PER_CALL) {
            out.push(PutMetricDataInput {
                namespace: namespace.to_string(),
                metric_data: chunk.to_vec(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use flotilla_model::wire::elbv2 as w;

    use super::*;
    use crate::core::lb::{LbAccount, StoredLoadBalancer, StoredTargetGroup};

    fn sample(lb: &str, tg: Option<&str>) -> LbMetrics {
        LbMetrics {
            load_balancer_arn: lb.into(),
            target_group_arn: tg.map(str::to_string),
            start: 1_700_000_000.0,
            end: 1_700_000_060.0,
            request_count: 10,
            target_2xx: 9,
            target_3xx: 0,
            target_4xx: 0,
            target_5xx: 1,
            elb_5xx: 2,
            target_response_time_sum: 0.5,
            target_response_count: 10,
            healthy_hosts: 2,
            unhealthy_hosts: 1,
        }
    }

    /// Counters become AWS/ApplicationELB metrics with ELBv2's names and
    /// dimensions; samples of load balancers another node serves are dropped.
    #[test]
    fn metrics_are_named_as_elbv2_names_them() {
        let lb_arn = "arn:aws:elasticloadbalancing:us-east-1:111111111111:loadbalancer/app/web/0123456789abcdef";
        let tg_arn =
            "arn:aws:elasticloadbalancing:us-east-1:111111111111:targetgroup/tg/fedcba9876543210";
        let mut lb = LbAccount::default();
        lb.load_balancers.insert(
            lb_arn.into(),
            StoredLoadBalancer {
                load_balancer: w::LoadBalancer {
                    load_balancer_arn: Some(lb_arn.into()),
                    r#type: Some(w::LoadBalancerTypeEnum::Application),
                    ..Default::default()
                },
                node: Some("n1".into()),
                ..Default::default()
            },
        );
        lb.target_groups.insert(
            tg_arn.into(),
            StoredTargetGroup {
                target_group: w::TargetGroup {
                    target_group_arn: Some(tg_arn.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let out = metric_data(
            &lb,
            "n1",
            &[sample(lb_arn, None), sample(lb_arn, Some(tg_arn))],
        );
        let app = out
            .iter()
            .find(|i| i.namespace == "AWS/ApplicationELB")
            .expect("ALB metrics");
        let find = |name: &str, per_group: bool| {
            app.metric_data
                .iter()
                .find(|d| {
                    d.metric_name == name
                        && d.dimensions.iter().any(|x| x.name == "TargetGroup") == per_group
                })
                .unwrap_or_else(|| panic!("{name} (per group: {per_group})"))
        };
        let rc = find("RequestCount", false);
        assert_eq!(rc.value, Some(10.0));
        assert_eq!(
            rc.dimensions,
            vec![Dimension::new("LoadBalancer", "app/web/0123456789abcdef")]
        );
        assert_eq!(find("HTTPCode_ELB_5XX_Count", false).value, Some(2.0));
        assert_eq!(find("HTTPCode_Target_5XX_Count", true).value, Some(1.0));
        let per_group = find("HealthyHostCount", true);
        assert_eq!(per_group.value, Some(2.0));
        assert!(per_group.dimensions.contains(&Dimension::new(
            "TargetGroup",
            "targetgroup/tg/fedcba9876543210"
        )));
        assert_eq!(find("UnHealthyHostCount", true).value, Some(1.0));
        assert_eq!(find("RequestCountPerTarget", true).value, Some(5.0));
        let rt = find("TargetResponseTime", false).statistic_values.unwrap();
        assert_eq!((rt.sample_count, rt.sum), (10.0, 0.5));

        assert!(metric_data(&lb, "n2", &[sample(lb_arn, None)]).is_empty());
    }
}
