//! The API front: the only code that knows HTTP, the AWS wire protocols,
//! `X-Amz-Target`, `Action=`, error bodies and SigV4.
//!
//! A request's path through it:
//! 1. the tower layers ([`layers`]): load shedding, a concurrency limit, a
//!    timeout;
//! 2. [`protocol::detect`]: which protocol the client speaks, so every
//!    answer (even an authentication failure) is in that protocol's shape;
//! 3. the body, read up to [`MAX_BODY`];
//! 4. SigV4 (`flotilla-auth`): who the caller is, in which account and region;
//! 5. routing: the service (JSON target prefix, CBOR path, or for Query the
//!    credential scope's service) and the operation;
//! 6. decoding into the operation's input, the service's handler, encoding
//!    the output ([`encode`]);
//! 7. errors: one mapping from the service's error codes to HTTP status and
//!    the protocol's error body ([`encode::error`]).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{any, post};
use axum::Router;
use flotilla_auth::{Credentials, RequestParts};
use flotilla_model::arn::Scope;

use crate::api::{Call, Ctx, Encoding, Env, Input, Protocol, ServiceDef};
use crate::core::now;
use crate::error::ApiError;

pub mod encode;
pub mod layers;
pub mod protocol;

/// The largest request body read before the service is known, when no
/// service is registered (each service declares its own limit).
const MAX_BODY: usize = 1024 * 1024;

/// What every API request shares.
#[derive(Clone)]
pub struct Front {
    pub env: Arc<Env>,
    pub credentials: Arc<Credentials>,
    pub services: &'static [&'static ServiceDef],
}

/// The API routes: every protocol at `/`, RPC v2 CBOR at its own path,
/// behind the layers.
pub fn router(front: Front, limits: layers::Limits) -> Router {
    let api = Router::new()
        .route("/", any(serve))
        .route("/service/{service}/operation/{operation}", post(serve))
        // We enforce the body limit ourselves, reading at most MAX_BODY + 1
        // bytes, so that the answer is in the client's protocol.
        .layer(DefaultBodyLimit::disable())
        .with_state(front);
    layers::apply(api, limits)
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn serve(
    AxumState(front): AxumState<Front>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rid = request_id();
    let protocol = protocol::detect(&method, uri.path(), &headers);
    let answer = |service: Option<&ServiceDef>, e: ApiError| {
        tracing::debug!(code = e.code, message = %e.message, "request failed");
        encode::error(protocol, service, &rid, &e)
    };
    // The service, where the headers or the path name it (a Query request
    // names it only in its signature).
    let named = match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => protocol::json_target(&headers)
            .and_then(|(prefix, _)| protocol::find_service(front.services, protocol, prefix)),
        Protocol::RpcV2Cbor => protocol::cbor_route(uri.path())
            .and_then(|(name, _)| protocol::find_service(front.services, protocol, name)),
        Protocol::AwsQuery => None,
    };
    let limit = named.map_or_else(
        || {
            front
                .services
                .iter()
                .map(|s| s.max_body)
                .max()
                .unwrap_or(MAX_BODY)
        },
        |s| s.max_body,
    );
    let too_large = |service: Option<&ServiceDef>, limit: usize| {
        let code = service.map_or("ClientException", |s| s.body_too_large);
        let e = ApiError::new(
            code,
            format!("The request body is larger than {limit} bytes."),
        );
        encode::error_with_status(protocol, service, &rid, &e, StatusCode::PAYLOAD_TOO_LARGE)
    };
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return too_large(named, limit);
    };
    let parts = RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let caller = match front.credentials.verify(parts, SystemTime::now()) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "authentication failed");
            let status =
                StatusCode::from_u16(e.http_status().as_u16()).unwrap_or(StatusCode::FORBIDDEN);
            return encode::error_with_status(
                protocol,
                named,
                &rid,
                &ApiError::new(e.aws_code(), e.to_string()),
                status,
            );
        }
    };
    if method != Method::POST && protocol != Protocol::AwsQuery {
        return answer(
            named,
            ApiError::new(
                "UnknownOperationException",
                "The AWS JSON and CBOR APIs take POST requests.",
            ),
        );
    }
    // Which service and operation, and the input as the protocol carries it.
    let routed = match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => named
            .zip(protocol::json_target(&headers))
            .map(|(s, (_, op))| (s, op.to_string(), Input::Json(&body))),
        Protocol::RpcV2Cbor => named
            .zip(protocol::cbor_route(uri.path()))
            .map(|(s, (_, op))| (s, op.to_string(), Input::Json(&body))),
        Protocol::AwsQuery => protocol::find_service(front.services, protocol, &caller.service)
            .map(|s| (s, String::new(), Input::Json(&body))),
    };
    let unknown = |what: String| {
        ApiError::new(
            "UnknownOperationException",
            format!("Unknown operation {what}."),
        )
    };
    let target = || {
        format!(
            "'{}'",
            headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        )
    };
    let Some((service, operation, input)) = routed else {
        let what = match protocol {
            Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => target(),
            Protocol::RpcV2Cbor => format!("'{}'", uri.path()),
            Protocol::AwsQuery => format!("for service '{}'", caller.service),
        };
        return answer(None, unknown(what));
    };
    if body.len() > service.max_body {
        return too_large(Some(service), service.max_body);
    }
    let (operation, input) = match decode_input(protocol, service, &operation, input) {
        Ok(decoded) => decoded,
        Err(e) => return answer(Some(service), e),
    };
    if !service.signing_names.contains(&caller.service.as_str()) {
        return answer(
            Some(service),
            ApiError::new(
                "InvalidSignatureException",
                format!(
                    "Credential should be scoped to correct service: '{}', not '{}'.",
                    service.signing_names[0], caller.service
                ),
            ),
        );
    }
    if !(service.has_operation)(&operation) {
        let what = match protocol {
            Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => target(),
            _ => format!("'{operation}'"),
        };
        return answer(Some(service), unknown(what));
    }
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let account = caller.principal.account_id.clone();
    let ctx = Ctx {
        scope: Scope::new(account.clone(), caller.region.clone()),
        principal_arn: format!("arn:aws:iam::{account}:user/{}", caller.principal.name),
        principal_name: caller.principal.name.clone(),
        access_key_id: caller.principal.access_key_id.clone(),
        now: now(),
        endpoint: format!("http://{host}"),
        request_id: rid.clone(),
    };
    let encoding = match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => Encoding::JsonBytes,
        Protocol::AwsQuery | Protocol::RpcV2Cbor => Encoding::Value,
    };
    let span =
        tracing::debug_span!("api", service = service.name, op = %operation, request_id = %rid);
    let _enter = span.enter();
    let call = Call {
        ctx,
        operation: &operation,
        input,
        encoding,
    };
    match (service.dispatch)(&front.env, call).await {
        Ok(reply) => encode::success(protocol, service, &operation, &rid, reply),
        Err(e) => answer(Some(service), e),
    }
}

/// The operation's name and its input, in the form the service decodes.
fn decode_input<'a>(
    protocol: Protocol,
    service: &ServiceDef,
    operation: &str,
    input: Input<'a>,
) -> Result<(String, Input<'a>), ApiError> {
    match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => Ok((operation.to_string(), input)),
        Protocol::AwsQuery | Protocol::RpcV2Cbor => Err(ApiError::new(
            "UnknownOperationException",
            format!("{} is not served over {protocol:?} yet.", service.name),
        )),
    }
}
