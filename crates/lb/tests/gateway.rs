//! The node's connection to the control plane: heartbeats, and what a
//! reconnect brings (the whole health view, the configuration answered
//! again) without disturbing traffic.

mod common;

use common::*;
use flotilla_model::lb::*;

const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/a/1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_resend_the_health_view_and_keep_serving() {
    let cp = ControlPlane::start().await;
    let a = Backend::start("a", "127.0.1.81").await;
    let _node = start_node(&cp, &["127.0.0.39"]);
    cp.apply(
        7,
        config(
            vec![listener("127.0.0.39", 8080, vec![], forward(TG))],
            vec![group(TG, vec![a.target()])],
        ),
    )
    .await;
    cp.wait_latest(a.addr, ObservedHealth::Healthy).await;
    // Heartbeats every 5 s.
    assert!(cp.wait_for(|m| m.contains(&NodeMessage::Heartbeat)).await);

    let client = http_client("127.0.0.1");
    let before = cp.messages().len();
    cp.disconnect();
    // The node comes back on its own: a new signed connection, the whole
    // health view first, then Applied for the configuration pushed again.
    let ok = cp
        .wait_for(|m| {
            let after = &m[before.min(m.len())..];
            let view = after.iter().position(|m| {
                matches!(m, NodeMessage::Health { reports }
                    if reports.iter().any(|r| r.port == a.addr.port() && r.health == ObservedHealth::Healthy))
            });
            let applied = after.iter().position(|m| *m == NodeMessage::Applied { version: 7 });
            matches!((view, applied), (Some(v), Some(p)) if v < p)
        })
        .await;
    assert!(ok, "{:?}", &cp.messages()[before..]);
    assert_eq!(cp.query.lock().unwrap().len(), 2);
    // Traffic never depended on the connection.
    assert_eq!(get(&client, "http://127.0.0.39:8080/").await.body, "a");
}
