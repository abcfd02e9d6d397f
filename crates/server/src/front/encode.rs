//! Answers in the protocol the client spoke: success bodies and, in one
//! place, errors — the HTTP status and code from the service's error table,
//! the body in the protocol's error shape.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::{default_error_info, ErrorInfo, Protocol, Reply, ServiceDef};
use crate::error::ApiError;

fn content_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::AwsJson1_0 => "application/x-amz-json-1.0",
        Protocol::AwsJson1_1 => "application/x-amz-json-1.1",
        Protocol::AwsQuery => "text/xml",
        Protocol::RpcV2Cbor => "application/cbor",
    }
}

fn with_headers(mut resp: Response, protocol: Protocol, request_id: &str) -> Response {
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static(content_type(protocol)),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if protocol == Protocol::RpcV2Cbor {
        h.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    }
    resp
}

/// A successful answer.
pub fn success(
    protocol: Protocol,
    _service: &ServiceDef,
    _operation: &str,
    request_id: &str,
    reply: Reply,
) -> Response {
    let body = match reply {
        Reply::Json(bytes) => bytes,
        Reply::Value(v) => serde_json::to_vec(&v).unwrap_or_default(),
    };
    with_headers(Response::new(Body::from(body)), protocol, request_id)
}

/// How `e` travels for `service` (or, before a service is known, by default).
fn info(service: Option<&ServiceDef>, e: &ApiError) -> ErrorInfo {
    service.map_or_else(|| default_error_info(e.code), |s| (s.error_info)(e.code))
}

/// An error answer, with the status the service's error table gives.
pub fn error(
    protocol: Protocol,
    service: Option<&ServiceDef>,
    request_id: &str,
    e: &ApiError,
) -> Response {
    let status = StatusCode::from_u16(info(service, e).status).unwrap_or(StatusCode::BAD_REQUEST);
    error_with_status(protocol, service, request_id, e, status)
}

/// An error answer with a status decided by the front (authentication,
/// body too large, load shedding).
pub fn error_with_status(
    protocol: Protocol,
    _service: Option<&ServiceDef>,
    request_id: &str,
    e: &ApiError,
    status: StatusCode,
) -> Response {
    let code = e.code;
    let body = serde_json::json!({ "__type": code, "message": e.message }).to_string();
    let mut resp = with_headers((status, body).into_response(), protocol, request_id);
    if let Ok(v) = HeaderValue::from_str(code) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}
