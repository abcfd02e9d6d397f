//! Answers in the protocol the client spoke, through `flotilla-protocol`:
//! success bodies and, in one place, errors — the HTTP status and code from
//! the service's error table (generated from its model), the body and
//! headers in the protocol's error shape.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use flotilla_protocol as wire;

use crate::api::{common_error, ErrorSchema, OperationSchema, Protocol, Reply, ServiceDef};
use crate::error::ApiError;

/// The HTTP response of a protocol reply.
fn respond(reply: wire::Reply) -> Response {
    let mut resp = Response::new(Body::from(reply.body));
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    resp
}

/// A successful answer.
pub fn success(
    protocol: Protocol,
    service: &ServiceDef,
    op: &OperationSchema,
    request_id: &str,
    reply: Reply,
) -> Response {
    let encoded = match reply {
        Reply::Json(bytes) => Ok(wire::json_reply(protocol, bytes, request_id)),
        Reply::Value(value) => wire::output_reply(protocol, service.schema, op, &value, request_id),
    };
    match encoded {
        Ok(reply) => respond(reply),
        Err(e) => {
            tracing::error!(error = %e, op = op.name, "could not encode a response");
            let e = ApiError::new(
                wire::common::INTERNAL_FAILURE.code,
                "The response could not be encoded.",
            );
            error(protocol, Some(service), request_id, &e)
        }
    }
}

/// An error answer, with the status the service's error table gives (or,
/// before a service is known, the common errors').
pub fn error(
    protocol: Protocol,
    service: Option<&ServiceDef>,
    request_id: &str,
    e: &ApiError,
) -> Response {
    let schema = service.map_or_else(|| common_error(e.code), |s| s.error_schema(e.code));
    error_as(protocol, service, request_id, &schema, e)
}

/// An error answer with a status decided by the front (authentication,
/// body too large, load shedding).
pub fn error_with_status(
    protocol: Protocol,
    service: Option<&ServiceDef>,
    request_id: &str,
    e: &ApiError,
    status: StatusCode,
) -> Response {
    let mut schema = service.map_or_else(|| common_error(e.code), |s| s.error_schema(e.code));
    schema.status = status.as_u16();
    error_as(protocol, service, request_id, &schema, e)
}

fn error_as(
    protocol: Protocol,
    service: Option<&ServiceDef>,
    request_id: &str,
    schema: &ErrorSchema,
    e: &ApiError,
) -> Response {
    // Before routing, the protocol's own shape with no service's extras
    // (ECS's schema serves: it is query-compatible with nothing).
    let service_schema = service.map_or(&flotilla_model::wire::ecs::SERVICE, |s| s.schema);
    let mut reply = wire::error_reply(protocol, service_schema, schema, &e.message, request_id);
    let json = matches!(protocol, Protocol::AwsJson1_0 | Protocol::AwsJson1_1);
    // JSON errors name the code in the header too, for the SDKs that read it there.
    if json && reply.header("x-amzn-errortype").is_none() {
        reply
            .headers
            .push(("x-amzn-errortype", schema.shape.to_string()));
    }
    if json && !e.fields.is_empty() {
        add_fields(&mut reply.body, &e.fields);
    }
    respond(reply)
}

/// Puts an error's other members beside `message` in a JSON error body.
/// (The one service whose errors have such members, CloudWatch Logs,
/// speaks only JSON; other protocols would send `message` alone.)
fn add_fields(body: &mut Vec<u8>, fields: &[(&'static str, String)]) {
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_slice(body) else {
        return;
    };
    for (name, value) in fields {
        object.insert((*name).to_string(), value.clone().into());
    }
    *body = serde_json::Value::Object(object).to_string().into_bytes();
}
