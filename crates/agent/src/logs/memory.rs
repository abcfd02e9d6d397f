//! [`MemoryLogSink`]: CloudWatch Logs in memory, for tests of the shipper.
//! It keeps the classic sequence-token rules the control plane implements:
//!
//! - a PutLogEvents carrying the stream's current token (none for a new
//!   stream) is accepted, and the token advances (`nextSequenceToken`);
//! - repeating the previous token with the same batch answers
//!   DataAlreadyAcceptedException with `expectedSequenceToken`, and stores
//!   nothing;
//! - any other token answers InvalidSequenceTokenException with
//!   `expectedSequenceToken`.
//!
//! It checks PutLogEvents' batch rules too (count, bytes, span, order), so
//! a shipper that breaks one fails its test. Faults can be queued to play
//! a control plane that goes away ([`Fault`]).
//!
//! [`serve_http`] puts it behind the real wire protocol (AWS JSON 1.1,
//! `X-Amz-Target: Logs_20140328.*`, AWS error bodies) for tests that run the
//! agent as a process. It checks no signatures: a test double only.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::BoxFuture;

use super::batch::{EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MS};
use super::sink::{InputLogEvent, LogSink, PutOutcome, SinkError, StreamTarget};

/// Something to go wrong with the next PutLogEvents calls, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Refuse the call as unreachable (nothing stored).
    Unavailable,
    /// Store the batch, then fail as if the answer was lost on the way.
    LoseAnswer,
    /// Store the batch, then never answer (the caller waits until it gives
    /// up or is killed): a crash between acceptance and the agent saving
    /// its place.
    Hang,
}

#[derive(Debug, Default)]
struct Stream {
    events: Vec<InputLogEvent>,
    /// The token the next batch must carry (`None` until the first one).
    token: Option<String>,
    /// The token and batch of the last accepted call.
    previous: Option<(Option<String>, Vec<InputLogEvent>)>,
}

#[derive(Debug, Default)]
struct State {
    /// group → stream name → stream
    groups: BTreeMap<String, BTreeMap<String, Stream>>,
    faults: VecDeque<Fault>,
    /// While set, every PutLogEvents is refused as unreachable.
    paused: bool,
    counts: Counts,
    next_token: u64,
}

/// How the calls went, for assertions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub accepted: u64,
    pub already_accepted: u64,
    pub invalid_token: u64,
    pub unavailable: u64,
}

/// CloudWatch Logs in memory (see the module docs). Clones share state.
#[derive(Clone, Default)]
pub struct MemoryLogSink {
    state: Arc<Mutex<State>>,
}

impl MemoryLogSink {
    pub fn new() -> MemoryLogSink {
        MemoryLogSink::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a fault for a coming PutLogEvents call.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Refuses every PutLogEvents as unreachable until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.lock().paused = true;
    }

    pub fn resume(&self) {
        self.lock().paused = false;
    }

    /// Faults queued and not yet played.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    /// A log group made outside the agent.
    pub fn create_group(&self, group: &str) {
        self.lock().groups.entry(group.to_string()).or_default();
    }

    pub fn groups(&self) -> Vec<String> {
        self.lock().groups.keys().cloned().collect()
    }

    pub fn streams(&self, group: &str) -> Vec<String> {
        self.lock()
            .groups
            .get(group)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every event a stream holds, in the order accepted.
    pub fn events(&self, group: &str, stream: &str) -> Vec<InputLogEvent> {
        self.lock()
            .groups
            .get(group)
            .and_then(|g| g.get(stream))
            .map(|s| s.events.clone())
            .unwrap_or_default()
    }

    /// How many events a stream holds (cheaper than [`events`](Self::events)).
    pub fn event_count(&self, group: &str, stream: &str) -> usize {
        self.lock()
            .groups
            .get(group)
            .and_then(|g| g.get(stream))
            .map_or(0, |s| s.events.len())
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    fn put(
        &self,
        target: &StreamTarget,
        events: &[InputLogEvent],
        token: Option<&str>,
    ) -> (Result<PutOutcome, SinkError>, Option<Fault>) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Err(e) = check_batch(events) {
            return (Err(e), None);
        }
        if st.paused {
            st.counts.unavailable += 1;
            return (Err(SinkError::Unavailable("paused".into())), None);
        }
        let fault = st.faults.pop_front();
        if fault == Some(Fault::Unavailable) {
            st.counts.unavailable += 1;
            return (Err(SinkError::Unavailable("injected fault".into())), None);
        }
        let Some(group) = st.groups.get_mut(&target.group) else {
            return (
                Err(SinkError::NotFound(
                    "The specified log group does not exist.".into(),
                )),
                None,
            );
        };
        let Some(stream) = group.get_mut(&target.stream) else {
            return (
                Err(SinkError::NotFound(
                    "The specified log stream does not exist.".into(),
                )),
                None,
            );
        };
        let token = token.map(str::to_string);
        if token == stream.token {
            st.next_token += 1;
            let next = format!("{:056}", st.next_token);
            stream.events.extend_from_slice(events);
            stream.previous = Some((token, events.to_vec()));
            stream.token = Some(next.clone());
            st.counts.accepted += 1;
            let outcome = PutOutcome {
                next_sequence_token: Some(next),
                rejected_log_events_info: None,
            };
            return (Ok(outcome), fault);
        }
        let expected = stream.token.clone();
        if stream
            .previous
            .as_ref()
            .is_some_and(|(t, batch)| *t == token && batch == events)
        {
            st.counts.already_accepted += 1;
            return (Err(SinkError::AlreadyAccepted { expected }), None);
        }
        st.counts.invalid_token += 1;
        (Err(SinkError::InvalidToken { expected }), None)
    }
}

/// PutLogEvents' rules, as CloudWatch enforces them.
fn check_batch(events: &[InputLogEvent]) -> Result<(), SinkError> {
    let invalid = |m: &str| SinkError::Rejected {
        code: "InvalidParameterException".into(),
        message: m.to_string(),
    };
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Err(invalid("logEvents must hold 1 to 10000 events"));
    }
    let bytes: usize = events
        .iter()
        .map(|e| e.message.len() + EVENT_OVERHEAD)
        .sum();
    if bytes > MAX_BATCH_BYTES {
        return Err(invalid("the batch is over 1,048,576 bytes"));
    }
    if events.iter().any(|e| e.message.is_empty()) {
        return Err(invalid("an event's message is empty"));
    }
    if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
        return Err(invalid(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    let span = events.last().map(|e| e.timestamp).unwrap_or(0) - events[0].timestamp;
    if span > MAX_BATCH_SPAN_MS {
        return Err(invalid("The batch of log events in a single PutLogEvents request cannot span more than 24 hours."));
    }
    Ok(())
}

impl LogSink for MemoryLogSink {
    fn create_log_group<'a>(
        &'a self,
        target: &'a StreamTarget,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut st = self.lock();
            if st.groups.contains_key(&target.group) {
                return Err(SinkError::AlreadyExists);
            }
            st.groups.insert(target.group.clone(), BTreeMap::new());
            Ok(())
        })
    }

    fn create_log_stream<'a>(
        &'a self,
        target: &'a StreamTarget,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut st = self.lock();
            let Some(group) = st.groups.get_mut(&target.group) else {
                return Err(SinkError::NotFound(
                    "The specified log group does not exist.".into(),
                ));
            };
            if group.contains_key(&target.stream) {
                return Err(SinkError::AlreadyExists);
            }
            group.insert(target.stream.clone(), Stream::default());
            Ok(())
        })
    }

    fn put_log_events<'a>(
        &'a self,
        target: &'a StreamTarget,
        events: &'a [InputLogEvent],
        sequence_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<PutOutcome, SinkError>> {
        Box::pin(async move {
            match self.put(target, events, sequence_token) {
                (Ok(_), Some(Fault::LoseAnswer)) => {
                    Err(SinkError::Unavailable("injected fault: answer lost".into()))
                }
                (Ok(_), Some(Fault::Hang)) => std::future::pending().await,
                (result, _) => result,
            }
        })
    }
}

/// Serves `sink` as the CloudWatch Logs API (CreateLogGroup,
/// CreateLogStream, PutLogEvents) on `listener` until `shutdown`.
/// Signatures are not checked. For tests.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    sink: MemoryLogSink,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;

    fn error(status: StatusCode, code: &str, message: &str, extra: serde_json::Value) -> Response {
        let mut body = serde_json::json!({ "__type": code, "message": message });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        (
            status,
            [("x-amzn-errortype", code.to_string())],
            axum::Json(body),
        )
            .into_response()
    }

    async fn handle(
        axum::extract::State(sink): axum::extract::State<MemoryLogSink>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> Response {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Ok(req) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                "body is not JSON",
                serde_json::Value::Null,
            );
        };
        let text = |k: &str| {
            req.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let stream = StreamTarget {
            endpoint: None,
            region: String::new(),
            group: text("logGroupName"),
            stream: text("logStreamName"),
        };
        let result = match target.strip_prefix("Logs_20140328.") {
            Some("CreateLogGroup") => sink
                .create_log_group(&stream)
                .await
                .map(|()| serde_json::json!({})),
            Some("CreateLogStream") => sink
                .create_log_stream(&stream)
                .await
                .map(|()| serde_json::json!({})),
            Some("PutLogEvents") => {
                let Ok(events) =
                    serde_json::from_value::<Vec<InputLogEvent>>(req["logEvents"].clone())
                else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "SerializationException",
                        "logEvents",
                        serde_json::Value::Null,
                    );
                };
                let token = req.get("sequenceToken").and_then(|v| v.as_str());
                sink.put_log_events(&stream, &events, token)
                    .await
                    .map(|o| serde_json::json!({ "nextSequenceToken": o.next_sequence_token }))
            }
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "UnknownOperationException",
                    target,
                    serde_json::Value::Null,
                )
            }
        };
        let null = serde_json::Value::Null;
        match result {
            Ok(v) => axum::Json(v).into_response(),
            Err(SinkError::AlreadyExists) => error(
                StatusCode::BAD_REQUEST,
                "ResourceAlreadyExistsException",
                "The specified resource already exists.",
                null,
            ),
            Err(SinkError::NotFound(m)) => error(
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                &m,
                null,
            ),
            Err(SinkError::AlreadyAccepted { expected }) => error(
                StatusCode::BAD_REQUEST,
                "DataAlreadyAcceptedException",
                "The given batch of log events has already been accepted.",
                serde_json::json!({ "expectedSequenceToken": expected }),
            ),
            Err(SinkError::InvalidToken { expected }) => error(
                StatusCode::BAD_REQUEST,
                "InvalidSequenceTokenException",
                "The given sequenceToken is invalid.",
                serde_json::json!({ "expectedSequenceToken": expected }),
            ),
            Err(SinkError::Rejected { code, message }) => {
                error(StatusCode::BAD_REQUEST, &code, &message, null)
            }
            Err(SinkError::Unavailable(m)) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                &m,
                null,
            ),
        }
    }

    let app = axum::Router::new()
        .route("/", post(handle))
        .with_state(sink);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> StreamTarget {
        StreamTarget {
            endpoint: None,
            region: "us-east-1".into(),
            group: "g".into(),
            stream: "s".into(),
        }
    }

    fn ev(ts: i64, m: &str) -> InputLogEvent {
        InputLogEvent {
            timestamp: ts,
            message: m.into(),
        }
    }

    #[tokio::test]
    async fn sequence_tokens_make_resends_idempotent() {
        let sink = MemoryLogSink::new();
        let t = target();
        assert!(matches!(
            sink.create_log_stream(&t).await,
            Err(SinkError::NotFound(_))
        ));
        sink.create_log_group(&t).await.unwrap();
        assert_eq!(
            sink.create_log_group(&t).await,
            Err(SinkError::AlreadyExists)
        );
        sink.create_log_stream(&t).await.unwrap();
        let a = [ev(1, "a")];
        let t1 = sink
            .put_log_events(&t, &a, None)
            .await
            .unwrap()
            .next_sequence_token;
        // The same batch with the same (previous) token again: recognised.
        assert_eq!(
            sink.put_log_events(&t, &a, None).await,
            Err(SinkError::AlreadyAccepted {
                expected: t1.clone()
            })
        );
        // Another batch with a stale token: refused, naming the right one.
        assert_eq!(
            sink.put_log_events(&t, &[ev(2, "b")], None).await,
            Err(SinkError::InvalidToken {
                expected: t1.clone()
            })
        );
        let t2 = sink
            .put_log_events(&t, &[ev(2, "b")], t1.as_deref())
            .await
            .unwrap()
            .next_sequence_token;
        assert_ne!(t1, t2);
        assert_eq!(sink.events("g", "s"), [ev(1, "a"), ev(2, "b")]);
        assert_eq!(
            sink.counts(),
            Counts {
                accepted: 2,
                already_accepted: 1,
                invalid_token: 1,
                unavailable: 0
            }
        );
        // Batch rules.
        let e = sink
            .put_log_events(&t, &[ev(5, "x"), ev(4, "y")], t2.as_deref())
            .await;
        assert!(matches!(e, Err(SinkError::Rejected { .. })), "{e:?}");
    }

    #[tokio::test]
    async fn a_lost_answer_still_stores_the_batch() {
        let sink = MemoryLogSink::new();
        let t = target();
        sink.create_log_group(&t).await.unwrap();
        sink.create_log_stream(&t).await.unwrap();
        sink.inject(Fault::LoseAnswer);
        let a = [ev(1, "a")];
        assert!(matches!(
            sink.put_log_events(&t, &a, None).await,
            Err(SinkError::Unavailable(_))
        ));
        assert!(matches!(
            sink.put_log_events(&t, &a, None).await,
            Err(SinkError::AlreadyAccepted { .. })
        ));
        assert_eq!(sink.events("g", "s").len(), 1);
    }
}
