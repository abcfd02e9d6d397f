//! The contract between the API front and the services it serves.
//!
//! The front (`crate::front`) knows HTTP, the wire protocols and SigV4; a
//! service (`crate::services::*`) knows its operations. Between them:
//! - [`ServiceDef`]: what a service declares (signing names, protocols,
//!   target prefix, Query version, CBOR service name, operations, errors);
//! - [`Call`]: one decoded request for one operation, whichever protocol
//!   carried it, with the caller's [`Ctx`];
//! - [`Reply`]: the operation's output, for the front to encode.
//!
//! An operation is a function from a typed input to a typed output; it never
//! sees which protocol carried it (STYLE.md rule 11).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_model::arn::Scope;
use flotilla_model::Shape;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::core::State;
use crate::error::{ApiError, ApiResult};

pub use flotilla_model::wire::schema::{ErrorSchema, OperationSchema, Protocol, ServiceSchema};

/// Who is calling, in which account and region, and when.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub scope: Scope,
    /// `arn:aws:iam::ACCOUNT:user/NAME`: what `registeredBy`/`createdBy` show.
    pub principal_arn: String,
    /// The principal's name in the credentials file.
    pub principal_name: String,
    /// The access key the request was signed with.
    pub access_key_id: String,
    /// Seconds since the epoch.
    pub now: f64,
    /// The base URL clients reached us at (what DiscoverPollEndpoint answers).
    pub endpoint: String,
    /// The id the answer carries (`x-amzn-RequestId`, `<RequestId>`).
    pub request_id: String,
}

/// Everything the services and controllers reach: the cluster state, and
/// the log and metric stores. Shared by every request.
pub struct Env {
    pub state: Arc<State>,
    pub logs: flotilla_logstore::LogStore,
    pub metrics: flotilla_metrics::MetricStore,
    /// Alarm state changes whose actions are to run (and CloudWatch's
    /// once-a-minute repeats of Auto Scaling actions), as the alarm
    /// controller publishes them once durable. The consumers of an action
    /// (Application Auto Scaling policies by ARN; deployments watching alarm
    /// names) subscribe and record each delivery with
    /// `MetricStore::record_action`. A subscriber that lags re-reads the
    /// alarms' states (`MetricStore::describe_alarms`): this is a hint, the
    /// metric store holds the truth.
    pub alarm_actions: tokio::sync::broadcast::Sender<Arc<flotilla_metrics::AlarmTransition>>,
}

/// How many alarm transitions a subscriber may fall behind by.
pub const ALARM_ACTIONS_CAPACITY: usize = 1024;

/// A request's input as the front decoded it.
pub enum Input<'a> {
    /// A JSON body (AWS JSON 1.0/1.1): decoded straight into the request type.
    Json(&'a [u8]),
    /// A value a codec built from a Query form or a CBOR body, in the JSON
    /// shape the request type deserializes from.
    Value(serde_json::Value),
}

/// How the front wants the output: JSON bytes for the JSON protocols, a
/// value for the codecs that re-encode it (XML, CBOR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    JsonBytes,
    Value,
}

/// One operation call.
pub struct Call<'a> {
    pub ctx: Ctx,
    /// The operation, as the service's model defines it.
    pub operation: &'static OperationSchema,
    pub input: Input<'a>,
    pub encoding: Encoding,
}

/// An operation's output.
pub enum Reply {
    Json(Vec<u8>),
    Value(serde_json::Value),
}

impl Call<'_> {
    /// Decodes the input into `T` and checks the model's rules. Malformed
    /// JSON and wrong types are `SerializationException` naming the field;
    /// rule violations are `InvalidParameterException`.
    pub fn decode<T: DeserializeOwned + Shape>(&self) -> ApiResult<T> {
        let value: T = match &self.input {
            Input::Json(body) => decode_json(body)?,
            Input::Value(v) => serde_path_to_error::deserialize(v).map_err(|e| {
                let path = e.path().to_string();
                ApiError::new(
                    "SerializationException",
                    format!("Could not read {path}: {}", e.into_inner()),
                )
            })?,
        };
        value.validate()?;
        Ok(value)
    }

    /// Encodes an output as the front asked.
    pub fn reply<T: Serialize>(&self, out: &T) -> ApiResult<Reply> {
        let encoded = match self.encoding {
            Encoding::JsonBytes => serde_json::to_vec(out).map(Reply::Json),
            Encoding::Value => serde_json::to_value(out).map(Reply::Value),
        };
        encoded.map_err(|e| ApiError::server(format!("encoding the response: {e}")))
    }

    /// The operation's name as the model spells it (`CreateCluster`).
    pub fn name(&self) -> &'static str {
        self.operation.name
    }

    /// The answer to an operation the model has but Flotilla does not serve.
    pub fn unsupported(&self, service: &str) -> ApiError {
        ApiError::new(
            "UnknownOperationException",
            format!(
                "Operation {} is not supported by Flotilla's {service}.",
                self.operation.name
            ),
        )
    }
}

/// Decodes a JSON request body into `T` and checks the model's rules, as
/// the front does for the JSON protocols.
pub fn decode_json_input<T: DeserializeOwned + Shape>(body: &[u8]) -> ApiResult<T> {
    let value: T = decode_json(body)?;
    value.validate()?;
    Ok(value)
}

/// Runs `operation` of `service` on a JSON body, as the front does for the
/// JSON protocols after authentication (for benchmarks and fuzzing, which
/// skip HTTP). An operation the model does not have is
/// `UnknownOperationException`.
pub async fn call_json(
    env: &Env,
    service: &ServiceDef,
    operation: &str,
    ctx: Ctx,
    body: &[u8],
) -> ApiResult<Reply> {
    let Some(op) = service.schema.operation(operation) else {
        return Err(ApiError::new(
            "UnknownOperationException",
            format!("Unknown operation '{operation}'."),
        ));
    };
    let call = Call {
        ctx,
        operation: op,
        input: Input::Json(body),
        encoding: Encoding::JsonBytes,
    };
    (service.dispatch)(env, call).await
}

/// Decodes a JSON body into `T`. Exactly one JSON object: serde would also
/// take an array for a struct. An empty body is `{}`.
fn decode_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            "SerializationException",
            "Could not read the request body: it must be a JSON object.",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path.is_empty() || path == "." {
            format!("Could not read the request body: {inner}")
        } else {
            format!("Could not read {path}: {inner}")
        };
        ApiError::new("SerializationException", message)
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            "SerializationException",
            format!("Could not read the request body: unexpected data after the JSON object ({e})"),
        )
    })?;
    Ok(value)
}

/// An operation's future.
pub type Pending<'a> = Pin<Box<dyn Future<Output = ApiResult<Reply>> + Send + 'a>>;

/// What a service declares to the front: its model's schema (signing name,
/// protocols, JSON target prefix, Query version and namespace, CBOR service
/// name, operations, errors — all generated from the AWS model) and how to
/// run an operation.
pub struct ServiceDef {
    pub schema: &'static ServiceSchema,
    /// Runs one operation.
    pub dispatch: for<'a> fn(&'a Env, Call<'a>) -> Pending<'a>,
    /// The largest request body it takes, and the error code it refuses a
    /// larger one with (HTTP 413).
    pub max_body: usize,
    pub body_too_large: &'static str,
}

impl ServiceDef {
    /// A short name for logs and messages (`ecs`).
    pub fn name(&self) -> &'static str {
        self.schema.module
    }

    pub fn speaks(&self, protocol: Protocol) -> bool {
        self.schema.speaks(protocol)
    }

    /// How `code` travels for this service: the model's error of that name
    /// or Query code (its status and fault), else a common error — 500 for
    /// the server's faults, 400 for the caller's.
    pub fn error_schema(&self, code: &'static str) -> ErrorSchema {
        match self.schema.error(code) {
            Some(e) => *e,
            None => common_error(code),
        }
    }
}

/// An error no model lists, by its code.
pub fn common_error(code: &'static str) -> ErrorSchema {
    let server = matches!(
        code,
        "ServerException" | "InternalFailure" | "InternalServiceError" | "InternalServiceException"
    );
    ErrorSchema::common(code, if server { 500 } else { 400 })
}
