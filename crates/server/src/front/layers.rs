//! The tower layers around every API request, outermost first, each there
//! for a reason:
//! - **load shedding**: when the concurrency limit is reached, a new request
//!   is refused at once with a throttling error (which every SDK retries
//!   with back-off) rather than queued without bound: a queue only adds
//!   latency to every request behind it;
//! - **concurrency limit**: at most [`Limits::concurrency`] requests are
//!   served at once, so a burst cannot take the memory and the CPU the
//!   agents' sessions and the controllers need;
//! - **timeout**: a request that takes longer than [`Limits::timeout`] is
//!   answered with a server error (SDKs retry it) instead of holding its
//!   client and its concurrency slot forever.
//!
//! The body limit is not a layer: the front reads at most `MAX_BODY` bytes
//! itself, so that the refusal is in the client's protocol.

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::{BoxError, Router};
use tower::ServiceBuilder;

use super::{encode, protocol, request_id};
use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct Limits {
    pub concurrency: usize,
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            concurrency: 512,
            timeout: Duration::from_secs(60),
        }
    }
}

pub fn apply(router: Router, limits: Limits) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(refusal))
            .load_shed()
            .concurrency_limit(limits.concurrency)
            .timeout(limits.timeout),
    )
}

/// The answer to a request the layers refused, in the client's protocol.
async fn refusal(method: Method, uri: Uri, headers: HeaderMap, err: BoxError) -> Response {
    let protocol = protocol::detect(&method, uri.path(), &headers);
    let rid = request_id();
    if err.is::<tower::load_shed::error::Overloaded>() {
        let e = ApiError::new("ThrottlingException", "Rate exceeded");
        return encode::error_with_status(protocol, None, &rid, &e, StatusCode::BAD_REQUEST);
    }
    if err.is::<tower::timeout::error::Elapsed>() {
        let e = ApiError::server("The request took too long to serve.");
        return encode::error_with_status(
            protocol,
            None,
            &rid,
            &e,
            StatusCode::INTERNAL_SERVER_ERROR,
        );
    }
    let e = ApiError::server(format!("Unexpected error: {err}"));
    encode::error_with_status(protocol, None, &rid, &e, StatusCode::INTERNAL_SERVER_ERROR)
}
