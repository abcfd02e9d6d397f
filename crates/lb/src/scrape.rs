//! `GET /metrics` on a node's own address (`flotilla lb --metrics ADDR`):
//! the node's figures in the Prometheus text format (0.0.4). Gauges are read
//! at the scrape from the routing table in effect; the request counters are
//! the per-load-balancer counters summed each report interval (10 s), so
//! they trail by up to one interval.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Shared;

/// Serves `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, connected: watch::Receiver<bool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (shared, connected) = (Arc::clone(&shared), connected.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = if req.uri().path() == "/metrics" {
                    Response::builder()
                        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                        .body(Full::new(Bytes::from(render(&shared, *connected.borrow()))))
                } else {
                    Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Full::new(Bytes::from_static(b"not found\n")))
                };
                std::future::ready(Ok::<_, Infallible>(answer.unwrap_or_default()))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The node's figures now.
pub fn render(shared: &Shared, connected: bool) -> String {
    let table = shared.table.load();
    let (healthy, unhealthy) = table
        .groups
        .values()
        .map(|g| g.host_counts())
        .fold((0u64, 0u64), |(h, u), (gh, gu)| {
            (h + u64::from(gh), u + u64::from(gu))
        });
    let totals = shared.metrics.totals();
    let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
    let mut out = String::new();
    let mut figure = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    figure(
        "flotilla_lb_control_plane_connected",
        "gauge",
        "1 while the node's session with the control plane is open.",
        &[("", f64::from(u8::from(connected)))],
    );
    figure(
        "flotilla_lb_config_version",
        "gauge",
        "The configuration version in effect.",
        &[("", table.version as f64)],
    );
    figure(
        "flotilla_lb_listeners",
        "gauge",
        "Listeners (HTTP and TCP) in the configuration in effect.",
        &[("", table.listeners.len() as f64)],
    );
    figure(
        "flotilla_lb_targets",
        "gauge",
        "Targets of the configuration's target groups, by health.",
        &[
            ("{health=\"healthy\"}", healthy as f64),
            ("{health=\"unhealthy\"}", unhealthy as f64),
        ],
    );
    figure(
        "flotilla_lb_requests_total",
        "counter",
        "Requests (HTTP) and new flows (TCP) taken by the node's listeners (summed every report interval).",
        &[("", count(&totals.requests))],
    );
    figure(
        "flotilla_lb_target_responses_total",
        "counter",
        "Responses from targets by status class (summed every report interval).",
        &[
            ("{class=\"2xx\"}", count(&totals.target_2xx)),
            ("{class=\"3xx\"}", count(&totals.target_3xx)),
            ("{class=\"4xx\"}", count(&totals.target_4xx)),
            ("{class=\"5xx\"}", count(&totals.target_5xx)),
        ],
    );
    figure(
        "flotilla_lb_elb_5xx_total",
        "counter",
        "5xx answers the node made itself: 502, 503, 504 (summed every report interval).",
        &[("", count(&totals.elb_5xx))],
    );
    out
}
