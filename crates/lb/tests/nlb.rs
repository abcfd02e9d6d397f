//! Network load balancer behaviour through a real node: TCP flows to real
//! TCP backends on their own loopback addresses.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use common::*;
use flotilla_model::lb::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/tcp/1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_spread_over_targets_and_each_stays_on_one() {
    let cp = ControlPlane::start().await;
    let (a, a_count, _ta) = tcp_backend("a", "127.0.1.71").await;
    let (b, b_count, _tb) = tcp_backend("b", "127.0.1.72").await;
    let (c, c_count, _tc) = tcp_backend("c", "127.0.1.73").await;
    let _node = start_node(&cp, &["127.0.0.38"]);
    let target = |addr: std::net::SocketAddr| TargetConfig {
        id: addr.ip().to_string(),
        address: addr.ip(),
        port: addr.port(),
        state: TargetState::Active,
        registered_at: 0.0,
    };
    let mut g = group(TG, vec![target(a), target(b), target(c)]);
    g.protocol = Protocol::Tcp;
    g.health_check.protocol = Protocol::Tcp;
    let mut l = listener("127.0.0.38", 7000, vec![], forward(TG));
    l.kind = LoadBalancerKind::Network;
    l.protocol = Protocol::Tcp;
    cp.apply(1, config(vec![l], vec![g])).await;
    // TCP health checks pass on connect.
    cp.wait_health(a, ObservedHealth::Healthy, None).await;

    let mut per_target: BTreeMap<String, usize> = BTreeMap::new();
    let flows = 60;
    for i in 0..flows {
        let stream = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect("127.0.0.38:7000"))
            .await
            .unwrap()
            .unwrap();
        let mut stream = BufReader::new(stream);
        let mut name = String::new();
        tokio::time::timeout(WAIT, stream.read_line(&mut name))
            .await
            .unwrap()
            .unwrap();
        // Every byte of the flow reaches the same target, which echoes it.
        for j in 0..3 {
            let line = format!("flow {i} line {j}\n");
            stream.get_mut().write_all(line.as_bytes()).await.unwrap();
            let mut echo = String::new();
            tokio::time::timeout(WAIT, stream.read_line(&mut echo))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(echo, line);
        }
        *per_target.entry(name.trim().to_string()).or_default() += 1;
    }
    assert_eq!(per_target.values().sum::<usize>(), flows);
    assert_eq!(per_target.len(), 3, "{per_target:?}");
    assert!(per_target.values().all(|&n| n >= 5), "{per_target:?}");
    let total = a_count.load(Ordering::SeqCst)
        + b_count.load(Ordering::SeqCst)
        + c_count.load(Ordering::SeqCst);
    // Flows plus the health checks' connections.
    assert!(total >= flows);
}
