//! The API front: the only code that knows HTTP, `X-Amz-Target`, SigV4 and
//! the AWS JSON 1.1 error shape. It authenticates the caller, picks the
//! operation, hands the body to [`crate::ecs::dispatch`] and encodes the answer.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use flotilla_auth::{Credentials, RequestParts};
use flotilla_model::arn::Scope;
use flotilla_model::ecs::{Operation, TARGET_PREFIX};

use crate::ecs::{dispatch, Ctx};
use crate::error::ApiError;
use crate::state::{now, State};

/// The largest request body accepted. ECS's largest requests (a
/// RegisterTaskDefinition with many containers) are far below this.
pub const MAX_BODY: usize = 1024 * 1024;

const JSON_1_1: &str = "application/x-amz-json-1.1";

/// What every request handler shares.
#[derive(Clone)]
pub struct App {
    pub state: Arc<State>,
    pub credentials: Arc<Credentials>,
    pub sessions: Arc<crate::gateway::Sessions>,
    /// Becomes true when the server is shutting down: agent sessions end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The HTTP routes: the AWS JSON API at `/`.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", any(aws_json))
        .route("/v1/agent/connect", axum::routing::get(crate::gateway::connect))
        // We enforce the limit ourselves, reading at most MAX_BODY + 1 bytes,
        // so that the answer is in the AWS shape.
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn error_response(request_id: &str, status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static(JSON_1_1));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Ok(v) = HeaderValue::from_str(code) {
        h.insert("x-amzn-errortype", v);
    }
    resp
}

fn api_error_response(request_id: &str, e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_response(request_id, status, e.code, &e.message)
}

async fn aws_json(AxumState(app): AxumState<App>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let rid = request_id();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return error_response(
            &rid,
            StatusCode::PAYLOAD_TOO_LARGE,
            "ClientException",
            &format!("The request body is larger than {MAX_BODY} bytes."),
        );
    };
    let parts = RequestParts { method: method.as_str(), path: uri.path(), query: uri.query().unwrap_or(""), headers: &headers, body: &body };
    let caller = match app.credentials.verify(parts, SystemTime::now()) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "authentication failed");
            let status = StatusCode::from_u16(e.http_status().as_u16()).unwrap_or(StatusCode::FORBIDDEN);
            return error_response(&rid, status, e.aws_code(), &e.to_string());
        }
    };
    if method != Method::POST {
        return error_response(&rid, StatusCode::BAD_REQUEST, "UnknownOperationException", "The AWS JSON API takes POST requests.");
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let op = target
        .strip_prefix(TARGET_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(Operation::from_name);
    let Some(op) = op else {
        return error_response(&rid, StatusCode::BAD_REQUEST, "UnknownOperationException", &format!("Unknown operation '{target}'."));
    };
    if caller.service != "ecs" {
        return error_response(
            &rid,
            StatusCode::BAD_REQUEST,
            "InvalidSignatureException",
            &format!("Credential should be scoped to correct service: 'ecs', not '{}'.", caller.service),
        );
    }
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let ctx = Ctx {
        scope: Scope::new(caller.principal.account_id.clone(), caller.region.clone()),
        principal_arn: format!("arn:aws:iam::{}:user/{}", caller.principal.account_id, caller.principal.name),
        now: now(),
        endpoint: format!("http://{host}"),
    };
    let span = tracing::debug_span!("ecs", op = op.name(), request_id = %rid);
    let _enter = span.enter();
    match dispatch(&app.state, &ctx, op, &body).await {
        Ok(out) => {
            let mut resp = Response::new(Body::from(out));
            let h = resp.headers_mut();
            h.insert("content-type", HeaderValue::from_static(JSON_1_1));
            if let Ok(v) = HeaderValue::from_str(&rid) {
                h.insert("x-amzn-requestid", v);
            }
            resp
        }
        Err(e) => {
            tracing::debug!(code = e.code, message = %e.message, "request failed");
            api_error_response(&rid, &e)
        }
    }
}
