//! The gateways: long-lived WebSocket sessions of the parts that run
//! elsewhere and hold a connection to the control plane. Desired state
//! flows down to them, observed state flows up (DESIGN.md rule 1).
//!
//! - [`agents`]: one session per container instance's agent.
//! - [`lb`]: one session per load-balancer node (`flotilla lb`).
//!
//! The sessions are authenticated with SigV4 like API requests, but they are
//! not API requests: they live outside the front's timeouts and limits.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use flotilla_auth::Credentials;

use crate::core::State;

pub mod agents;
pub mod lb;

/// What the gateway's sessions share.
#[derive(Clone)]
pub struct Gateway {
    pub state: Arc<State>,
    pub credentials: Arc<Credentials>,
    pub sessions: Arc<agents::Sessions>,
    pub lb_sessions: Arc<lb::LbSessions>,
    /// Where load-balancer nodes' metrics go.
    pub metrics: flotilla_metrics::MetricStore,
    /// Becomes true when the server is shutting down: sessions end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Where sessions run: the background runtime, below the API (see
    /// `crate::background`).
    pub sessions_runtime: tokio::runtime::Handle,
    /// Where agents' container stats go (`AWS/ECS` utilization).
    pub usage: Arc<crate::core::usage::Usage>,
}

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/v1/agent/connect", axum::routing::get(agents::connect))
        .route("/v1/lb/connect", axum::routing::get(lb::connect))
        .with_state(gateway)
}

/// A refused connection, in the AWS JSON error shape the agents read.
fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(code) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}
