//! The CloudWatch Logs API (AWS JSON 1.1, target prefix `Logs_20140328`,
//! signed as `logs`): log groups, retention, tags, log streams and their
//! events, over the log store (`flotilla_logstore`, kept apart from the
//! cluster state so a chatty container never slows ECS).
//!
//! Handlers only translate: the wire request (generated from the model, its
//! shape rules already checked) becomes the store's request type, the
//! store's answer becomes the wire response, and a [`LogsError`] becomes the
//! model's error shape in [`logs_error`]. Every rule that needs state or
//! wording of AWS's own (name alphabets, batch rules, tokens) is the
//! store's.

use flotilla_logstore::{LogsError, Scope};
use flotilla_model::wire::logs::{self, Operation};

use crate::api::{Call, Ctx, Env, Reply, ServiceDef};
use crate::error::{ApiError, ApiResult};

mod events;
mod groups;
mod streams;

pub use events::{EVENTS_STORED, EVENT_BYTES_STORED, PUTS_ACCEPTED};

/// Amazon CloudWatch Logs: AWS JSON 1.1, signed as `logs`.
pub static SERVICE: ServiceDef = ServiceDef {
    schema: &logs::SERVICE,
    dispatch: |env, call| Box::pin(dispatch(env, call)),
    // PutLogEvents takes 1,048,576 bytes of events (messages plus 26 bytes
    // each); their JSON encoding (escapes, field names, timestamps) can be
    // several times that. A body past this is refused before it is read.
    max_body: 8 * 1024 * 1024,
    body_too_large: "InvalidParameterException",
};

/// Runs one CloudWatch Logs operation.
async fn dispatch(env: &Env, call: Call<'_>) -> ApiResult<Reply> {
    let Some(op) = Operation::from_name(call.name()) else {
        return Err(call.unsupported("CloudWatch Logs"));
    };
    let store = &env.logs;
    let scope = scope(&call.ctx);
    macro_rules! ops {
        ($($name:ident => $handler:path),* $(,)?) => {
            match op {
                $(Operation::$name => call.reply(&$handler(store, &scope, decode(&call)?).await?),)*
            }
        };
    }
    ops! {
        CreateLogGroup => groups::create_log_group,
        DeleteLogGroup => groups::delete_log_group,
        DescribeLogGroups => groups::describe_log_groups,
        PutRetentionPolicy => groups::put_retention_policy,
        DeleteRetentionPolicy => groups::delete_retention_policy,
        TagLogGroup => groups::tag_log_group,
        UntagLogGroup => groups::untag_log_group,
        ListTagsLogGroup => groups::list_tags_log_group,
        TagResource => groups::tag_resource,
        UntagResource => groups::untag_resource,
        ListTagsForResource => groups::list_tags_for_resource,
        CreateLogStream => streams::create_log_stream,
        DeleteLogStream => streams::delete_log_stream,
        DescribeLogStreams => streams::describe_log_streams,
        PutLogEvents => events::put_log_events,
        GetLogEvents => events::get_log_events,
        FilterLogEvents => events::filter_log_events,
    }
}

/// Decodes the request. A value outside an enum's set is a model rule
/// broken, InvalidParameterException as CloudWatch Logs answers it, not a
/// body that cannot be read.
fn decode<T: serde::de::DeserializeOwned + flotilla_model::Shape>(call: &Call<'_>) -> ApiResult<T> {
    call.decode().map_err(|e| {
        if e.code == "SerializationException" && e.message.contains("unknown variant") {
            ApiError::invalid(e.message)
        } else {
            e
        }
    })
}

/// The store's scope of a caller: its account and the signature's region.
fn scope(ctx: &Ctx) -> Scope {
    Scope::new(ctx.scope.account.clone(), ctx.scope.region.clone())
}

/// An operation with no output members answers `{}`.
#[derive(serde::Serialize)]
pub struct Empty {}

/// The model's error shape of a store error: its code, AWS's message, and
/// the shape's other members (`expectedSequenceToken`, `resourceName`).
/// A store failure is logged here with its detail; the client sees AWS's
/// generic ServiceUnavailableException.
pub fn logs_error(e: LogsError) -> ApiError {
    let code = e.code();
    let message = e.to_string();
    match e {
        LogsError::DataAlreadyAccepted {
            expected_sequence_token,
        }
        | LogsError::InvalidSequenceToken {
            expected_sequence_token,
        } => {
            let error = ApiError::new(code, message);
            match expected_sequence_token {
                Some(token) => error.with_field("expectedSequenceToken", token),
                None => error,
            }
        }
        LogsError::TooManyTags { resource_name, .. } => {
            ApiError::new(code, message).with_field("resourceName", resource_name)
        }
        LogsError::ServiceUnavailable { detail } => {
            tracing::error!(%detail, "log store failure");
            ApiError::new(code, message)
        }
        _ => ApiError::new(code, message),
    }
}

/// A member the model marks required, already checked by the shape rules
/// when the request was decoded.
fn required<T>(value: Option<T>, field: &str) -> ApiResult<T> {
    value.ok_or_else(|| ApiError::invalid(format!("{field} is required")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_token_errors_carry_the_expected_token() {
        let e = logs_error(LogsError::InvalidSequenceToken {
            expected_sequence_token: Some("42".into()),
        });
        assert_eq!(e.code, "InvalidSequenceTokenException");
        assert_eq!(e.fields, [("expectedSequenceToken", "42".to_string())]);
        let e = logs_error(LogsError::DataAlreadyAccepted {
            expected_sequence_token: None,
        });
        assert_eq!(e.code, "DataAlreadyAcceptedException");
        assert!(e.fields.is_empty(), "no token yet: the member is absent");
    }

    #[test]
    fn store_failures_hide_their_detail() {
        let e = logs_error(LogsError::ServiceUnavailable {
            detail: "disk full".into(),
        });
        assert_eq!(e.code, "ServiceUnavailableException");
        assert!(!e.message.contains("disk full"));
    }
}
