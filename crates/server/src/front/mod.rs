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
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{any, post};
use axum::Router;
use flotilla_auth::{Credentials, RequestParts};
use flotilla_model::arn::Scope;

use flotilla_protocol::cbor::RpcPath;

use crate::api::{Call, Ctx, Encoding, Env, Input, OperationSchema, Protocol, ServiceDef};
use crate::core::now;
use crate::error::ApiError;
use crate::telemetry::{ApiLabels, Outcome, TELEMETRY};

mod body;
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
    /// Where log ingestion (PutLogEvents) is served, whole, from reading
    /// its body to its answer: a runtime of lower priority
    /// ([`crate::background::ingest_runtime`]), so that a chatty container
    /// never keeps the API's threads from other requests. `None`: here.
    pub ingest: Option<tokio::runtime::Handle>,
}

/// The request that [`Front::ingest`] serves.
const INGEST_TARGET: &str = "Logs_20140328.PutLogEvents";

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
    // The latency recorded is the client's: from here, so that a log
    // batch's wait for the ingest runtime counts too.
    let arrived = Instant::now();
    let ingest = headers
        .get("x-amz-target")
        .is_some_and(|t| t.as_bytes() == INGEST_TARGET.as_bytes());
    match front.ingest.clone() {
        Some(runtime) if ingest => {
            match runtime
                .spawn(handle(front, arrived, method, uri, headers, body))
                .await
            {
                Ok(response) => response,
                Err(e) => {
                    // A panic in the handler, or the runtime shutting down.
                    tracing::error!(error = %e, "the log ingestion runtime failed a request");
                    let protocol = Protocol::AwsJson1_1;
                    encode::error(
                        protocol,
                        None,
                        &request_id(),
                        &ApiError::new(
                            "ServiceUnavailableException",
                            "The service is unavailable. Try again later.",
                        ),
                    )
                }
            }
        }
        _ => handle(front, arrived, method, uri, headers, body).await,
    }
}

async fn handle(
    front: Front,
    arrived: Instant,
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
    let rpc_path = RpcPath::parse(uri.path());
    let named = match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => protocol::json_target(&headers)
            .and_then(|(prefix, _)| protocol::json_service(front.services, protocol, prefix)),
        Protocol::RpcV2Cbor => rpc_path
            .as_ref()
            .and_then(|p| protocol::cbor_service(front.services, p)),
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
    let service = match protocol {
        Protocol::AwsQuery => protocol::query_service(front.services, &caller.service),
        _ => named,
    };
    let Some(service) = service else {
        let what = match protocol {
            Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => target(&headers),
            Protocol::RpcV2Cbor => format!("'{}'", uri.path()),
            Protocol::AwsQuery => format!("for service '{}'", caller.service),
        };
        return answer(
            None,
            ApiError::new(
                "UnknownOperationException",
                format!("Unknown operation {what}."),
            ),
        );
    };
    // CloudWatch's SDKs compress large bodies (`Content-Encoding: gzip`).
    let body = match body::inflate(&headers, body, service.max_body) {
        Ok(body) => body,
        Err(body::TooLarge) => return too_large(Some(service), service.max_body),
    };
    if body.len() > service.max_body {
        return too_large(Some(service), service.max_body);
    }
    if caller.service != service.schema.signing_name {
        return answer(
            Some(service),
            ApiError::new(
                "InvalidSignatureException",
                format!(
                    "Credential should be scoped to correct service: '{}', not '{}'.",
                    service.schema.signing_name, caller.service
                ),
            ),
        );
    }
    let query_string = uri.query().unwrap_or("").to_string();
    let decoded = decode_input(
        protocol,
        service,
        &headers,
        rpc_path.as_ref(),
        &body,
        &method,
        &query_string,
    );
    let (op, input) = match decoded {
        Ok(decoded) => decoded,
        Err(e) => return answer(Some(service), e),
    };
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
        tracing::debug_span!("api", service = service.name(), op = op.name, request_id = %rid);
    let _enter = span.enter();
    let call = Call {
        ctx,
        operation: op,
        input,
        encoding,
    };
    let (response, outcome) = match (service.dispatch)(&front.env, call).await {
        Ok(reply) => (
            encode::success(protocol, service, op, &rid, reply),
            Outcome::Success,
        ),
        Err(e) => (answer(Some(service), e), Outcome::Error),
    };
    let labels = ApiLabels {
        service: service.name(),
        operation: op.name,
        outcome,
    };
    TELEMETRY.api_call(labels, arrived.elapsed());
    response
}

/// `'Prefix.Operation'` as the request's `X-Amz-Target` says it.
fn target(headers: &HeaderMap) -> String {
    format!(
        "'{}'",
        headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    )
}

/// The operation and its input, in the form the service decodes: JSON
/// bodies as they are (serde reads them straight into the request type),
/// Query forms and CBOR bodies through the codecs into a JSON value.
fn decode_input<'a>(
    protocol: Protocol,
    service: &ServiceDef,
    headers: &HeaderMap,
    rpc_path: Option<&RpcPath<'_>>,
    body: &'a [u8],
    method: &Method,
    query_string: &str,
) -> Result<(&'static OperationSchema, Input<'a>), ApiError> {
    let schema = service.schema;
    let malformed = |e: flotilla_protocol::DecodeError| {
        ApiError::new(
            flotilla_protocol::common::malformed_request(protocol).code,
            e.to_string(),
        )
    };
    match protocol {
        Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => {
            let name = protocol::json_target(headers)
                .map(|(_, op)| op)
                .unwrap_or_default();
            let op = schema.operation(name).ok_or_else(|| {
                ApiError::new(
                    "UnknownOperationException",
                    format!("Unknown operation {}.", target(headers)),
                )
            })?;
            Ok((op, Input::Json(body)))
        }
        Protocol::RpcV2Cbor => {
            if headers.contains_key("x-amz-target") || headers.contains_key("x-amzn-target") {
                return Err(ApiError::new(
                    "SerializationException",
                    "An RPC v2 CBOR request must not carry X-Amz-Target.",
                ));
            }
            let name = rpc_path.map(|p| p.operation).unwrap_or_default();
            let op = schema.operation(name).ok_or_else(|| {
                ApiError::new(
                    "UnknownOperationException",
                    format!("Unknown operation '{name}'."),
                )
            })?;
            let value =
                flotilla_protocol::cbor::decode_input(schema, op, body).map_err(malformed)?;
            Ok((op, Input::Value(value)))
        }
        Protocol::AwsQuery => {
            let encoded = if method == Method::GET {
                query_string.as_bytes()
            } else {
                body
            };
            let form = flotilla_protocol::Form::parse(encoded).map_err(malformed)?;
            let action = form.action().ok_or_else(|| {
                ApiError::new(
                    "MissingAction",
                    "The request must contain the parameter Action.",
                )
            })?;
            let op = schema.operation(action).ok_or_else(|| {
                ApiError::new(
                    "InvalidAction",
                    format!(
                        "Could not find operation {action} for version {}.",
                        schema.api_version
                    ),
                )
            })?;
            let value =
                flotilla_protocol::query::decode_input(schema, op, &form).map_err(malformed)?;
            Ok((op, Input::Value(value)))
        }
    }
}
