//! Where shipped events go: the narrow [`LogSink`] trait (the three
//! CloudWatch Logs calls the shipper makes), with [`HttpLogSink`] (the
//! CloudWatch Logs API over AWS JSON 1.1, SigV4 with signing name `logs`)
//! and [`super::memory::MemoryLogSink`] (in memory, for tests).
//!
//! Futures are boxed so the shipper can hold any sink as
//! `Arc<dyn LogSink>` without every engine type growing a parameter.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use flotilla_client::{Client, ClientError, LOGS_TARGET_PREFIX};

/// One event as PutLogEvents takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputLogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub message: String,
}

/// PutLogEvents' request, borrowing the events.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PutLogEventsBody<'a> {
    log_group_name: &'a str,
    log_stream_name: &'a str,
    log_events: &'a [InputLogEvent],
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_token: Option<&'a str>,
}

/// One log stream, and where its service is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamTarget {
    /// `awslogs-endpoint`; `None`: the sink's own endpoint (the agent's
    /// control plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub region: String,
    pub group: String,
    pub stream: String,
}

/// What PutLogEvents answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutOutcome {
    /// The token the next batch must carry.
    #[serde(default)]
    pub next_sequence_token: Option<String>,
    /// Events CloudWatch took the batch but not these (too old, too new).
    #[serde(default)]
    pub rejected_log_events_info: Option<serde_json::Value>,
}

/// A sink's refusal or failure, sorted by what the shipper does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// ResourceAlreadyExistsException: fine for a create.
    #[error("already exists")]
    AlreadyExists,
    /// ResourceNotFoundException: the group or stream is missing.
    #[error("not found: {0}")]
    NotFound(String),
    /// DataAlreadyAcceptedException: this very batch was accepted before
    /// (a resend after a lost answer); carries the token for the next one.
    #[error("the batch was already accepted")]
    AlreadyAccepted { expected: Option<String> },
    /// InvalidSequenceTokenException: the stream expects another token.
    #[error("invalid sequence token (the stream expects {expected:?})")]
    InvalidToken { expected: Option<String> },
    /// Any other refusal of the request itself (not retried).
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
    /// The service could not be reached or could not answer (retried).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

pub trait LogSink: Send + Sync + 'static {
    fn create_log_group<'a>(
        &'a self,
        target: &'a StreamTarget,
    ) -> BoxFuture<'a, Result<(), SinkError>>;
    fn create_log_stream<'a>(
        &'a self,
        target: &'a StreamTarget,
    ) -> BoxFuture<'a, Result<(), SinkError>>;
    /// Sends one batch with the stream's sequence token (`None` for a new
    /// stream).
    fn put_log_events<'a>(
        &'a self,
        target: &'a StreamTarget,
        events: &'a [InputLogEvent],
        sequence_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<PutOutcome, SinkError>>;
}

/// How long a call may take before it counts as unanswered (and is retried:
/// a PutLogEvents resent with the same token is recognised if the first
/// one was accepted after all).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The CloudWatch Logs API, signed with the agent's credentials.
#[derive(Clone)]
pub struct HttpLogSink {
    /// Its endpoint is the default; region and endpoint change per target.
    client: Client,
}

impl HttpLogSink {
    /// A sink on `client`'s endpoint and credentials (the agent's ECS
    /// client will do: only the signing name and target prefix change).
    pub fn new(client: &Client) -> HttpLogSink {
        HttpLogSink {
            client: client.for_service("logs", LOGS_TARGET_PREFIX),
        }
    }

    fn client_for(&self, target: &StreamTarget) -> Client {
        let client = self.client.with_region(&target.region);
        match &target.endpoint {
            Some(endpoint) => client.with_endpoint(endpoint),
            None => client,
        }
    }

    async fn call<B: Serialize>(
        &self,
        target: &StreamTarget,
        op: &str,
        body: &B,
    ) -> Result<serde_json::Value, SinkError> {
        let client = self.client_for(target);
        match tokio::time::timeout(REQUEST_TIMEOUT, client.call(op, body)).await {
            Ok(answer) => answer.map_err(sink_error),
            Err(_) => Err(SinkError::Unavailable(format!(
                "{op}: no answer from {} within {REQUEST_TIMEOUT:?}",
                client.endpoint()
            ))),
        }
    }
}

fn sink_error(e: ClientError) -> SinkError {
    match e {
        ClientError::Api {
            status,
            code,
            message,
            body,
        } => {
            let expected = || {
                body.get("expectedSequenceToken")
                    .and_then(|t| t.as_str())
                    .map(str::to_string)
            };
            match code.as_str() {
                "ResourceAlreadyExistsException" => SinkError::AlreadyExists,
                "ResourceNotFoundException" => SinkError::NotFound(message),
                "DataAlreadyAcceptedException" => SinkError::AlreadyAccepted {
                    expected: expected(),
                },
                "InvalidSequenceTokenException" => SinkError::InvalidToken {
                    expected: expected(),
                },
                "ThrottlingException" | "ServiceUnavailableException" | "RequestTimeout" => {
                    SinkError::Unavailable(format!("{code}: {message}"))
                }
                // The endpoint does not serve CloudWatch Logs (yet): like a
                // service that is down, wait for it (the lines wait in the
                // container's log file) rather than fail the container.
                "UnknownOperationException" => SinkError::Unavailable(format!(
                    "the endpoint does not serve CloudWatch Logs: {code}: {message}"
                )),
                _ if status >= 500 || status == 429 => {
                    SinkError::Unavailable(format!("HTTP {status} {code}: {message}"))
                }
                _ => SinkError::Rejected { code, message },
            }
        }
        // A body that is not the answer expected: the service is not well.
        ClientError::Decode(e) => SinkError::Unavailable(format!("undecodable answer: {e}")),
        ClientError::Transport(e) => SinkError::Unavailable(e),
        ClientError::Signing(e) => SinkError::Rejected {
            code: "SigningError".into(),
            message: e,
        },
    }
}

impl LogSink for HttpLogSink {
    fn create_log_group<'a>(
        &'a self,
        target: &'a StreamTarget,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.call(
                target,
                "CreateLogGroup",
                &serde_json::json!({ "logGroupName": target.group }),
            )
            .await
            .map(drop)
        })
    }

    fn create_log_stream<'a>(
        &'a self,
        target: &'a StreamTarget,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.call(
                target,
                "CreateLogStream",
                &serde_json::json!({ "logGroupName": target.group, "logStreamName": target.stream }),
            )
            .await
            .map(drop)
        })
    }

    fn put_log_events<'a>(
        &'a self,
        target: &'a StreamTarget,
        events: &'a [InputLogEvent],
        sequence_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<PutOutcome, SinkError>> {
        Box::pin(async move {
            // Encoded straight from the events (no JSON tree, no copies).
            let body = PutLogEventsBody {
                log_group_name: &target.group,
                log_stream_name: &target.stream,
                log_events: events,
                sequence_token,
            };
            let answer = self.call(target, "PutLogEvents", &body).await?;
            serde_json::from_value(answer).map_err(|e| {
                SinkError::Unavailable(format!("undecodable PutLogEvents answer: {e}"))
            })
        })
    }
}
