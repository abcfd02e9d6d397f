//! End to end: a CANARY deployment behind an application load balancer,
//! with real parts only: a control plane in-process, a real agent on the
//! Docker Engine running the test image (`serve 8080 BODY`), a real
//! load-balancer node (`flotilla_lb`) on this test's own loopback address,
//! the real AWS CLI, and a bounded loader sending requests through the
//! listener the whole time. The deployment shifts 25 % of production
//! traffic to `v2` for its one-minute canary bake: the share of `v2`
//! answers in that window is 25 % ± 5 % of at least 1,000 requests; then all
//! traffic is on `v2`, the deployment SUCCESSFUL, the `v1` tasks gone, and
//! no request failed.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lb::{
    aws, create_service, failures, healthy, load, s, serving, share, LbNode, ShiftingLb,
};
use common::{wait_for, Env};
use serde_json::json;

/// The load-balancer node's address and the agent's (this test's own).
const LB_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 4, 1);
const AGENT_ADDRESS: &str = "127.0.4.2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_sends_a_quarter_of_the_traffic_to_the_new_revision_without_a_failed_request() {
    let test_start = Instant::now();
    let env = Env::start("e2e-deploy").await;
    let agent = env.agent("a", AGENT_ADDRESS).await;
    env.wait_connected(&agent.arn, true).await;
    let node = LbNode::start(&env, "e2e-deploy-node", &[IpAddr::V4(LB_ADDRESS)]);

    // A load balancer, two target groups, a listener and its production rule.
    let ShiftingLb {
        dns,
        addr,
        blue,
        green,
        production_rule: prod,
        ..
    } = ShiftingLb::create(&env, "canary", false).await;

    // Four `v1` tasks, then a canary to `v2`.
    let v1 = env
        .register_task_definition("e2e-deploy-web", serving("v1"))
        .await;
    let v2 = env
        .register_task_definition("e2e-deploy-web", serving("v2"))
        .await;
    let lbs = json!([{"targetGroupArn": blue, "containerName": "app", "containerPort": 8080,
        "advancedConfiguration": {"alternateTargetGroupArn": green, "productionListenerRule": prod,
            "roleArn": "arn:aws:iam::111111111111:role/ecs"}}])
    .to_string();
    let dc = json!({"strategy": "CANARY", "bakeTimeInMinutes": 0,
        "canaryConfiguration": {"canaryPercent": 25.0, "canaryBakeTimeInMinutes": 1}})
    .to_string();
    create_service(
        &env,
        "web",
        &v1,
        4,
        &lbs,
        &["--deployment-configuration", &dc],
    )
    .await;
    wait_for(
        "four healthy v1 targets",
        Duration::from_secs(90),
        || async { (healthy(&env, &blue).await == 4).then_some(()) },
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let loader_start = Instant::now();
    let loader = tokio::spawn(load(
        addr.clone(),
        dns.clone(),
        "/",
        3,
        Duration::from_millis(5),
        stop.clone(),
        Duration::from_secs(150),
        60_000,
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let updated_at = loader_start.elapsed().as_secs_f64();
    aws(
        &env,
        "ecs",
        &[
            "update-service",
            "--cluster",
            &env.cluster,
            "--service",
            "web",
            "--task-definition",
            &v2,
        ],
    )
    .await;
    let list = aws(
        &env,
        "ecs",
        &[
            "list-service-deployments",
            "--cluster",
            &env.cluster,
            "--service",
            "web",
        ],
    )
    .await;
    let arn = s(&list["serviceDeployments"][0]["serviceDeploymentArn"]);
    let describe = || async {
        aws(
            &env,
            "ecs",
            &[
                "describe-service-deployments",
                "--service-deployment-arns",
                &arn,
            ],
        )
        .await["serviceDeployments"][0]
            .clone()
    };
    // The canary window: from the 25 % shift to the rest.
    let canary_from = wait_for("the canary shift", Duration::from_secs(90), || async {
        let d = describe().await;
        (d["targetServiceRevision"]["requestedProductionTrafficWeight"] == 25.0)
            .then(|| loader_start.elapsed().as_secs_f64())
    })
    .await;
    let canary_to = wait_for("the rest shifted", Duration::from_secs(90), || async {
        let d = describe().await;
        (d["targetServiceRevision"]["requestedProductionTrafficWeight"] == 100.0)
            .then(|| loader_start.elapsed().as_secs_f64())
    })
    .await;
    let done = wait_for("SUCCESSFUL", Duration::from_secs(60), || async {
        let d = describe().await;
        (d["status"] == "SUCCESSFUL").then_some(d)
    })
    .await;
    wait_for("the v1 tasks gone", Duration::from_secs(60), || async {
        let svc = aws(
            &env,
            "ecs",
            &[
                "describe-services",
                "--cluster",
                &env.cluster,
                "--services",
                "web",
            ],
        )
        .await;
        let svc = &svc["services"][0];
        (svc["deployments"].as_array().map(Vec::len) == Some(1) && svc["runningCount"] == 4)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = loader.await.expect("loader");

    let failed = failures(&outcomes);
    // The window without its edges (a node applies a new rule within a
    // heartbeat of it).
    let (in_canary, canary_v2) = share(&outcomes, canary_from + 2.0, canary_to - 1.0, "v2");
    let v2_share = canary_v2 as f64 / in_canary.max(1) as f64;
    let first_v2 = outcomes
        .iter()
        .find(|(_, r)| matches!(r, Ok((_, b)) if b == "v2"))
        .map(|(at, _)| at - updated_at);
    let (tail, tail_v2) = share(&outcomes, canary_to + 2.0, f64::INFINITY, "v2");
    eprintln!(
        "deploy e2e: {} requests, {} failed; canary window {:.1}–{:.1} s: {} requests, v2 share {:.1} %; after: {}/{} on v2; first v2 answer {:.1} s after update-service; whole test {:.1} s",
        outcomes.len(), failed.len(), canary_from, canary_to, in_canary, v2_share * 100.0, tail_v2, tail,
        first_v2.unwrap_or(f64::NAN), test_start.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "failed requests: {:?}",
        failed.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        in_canary >= 1000,
        "only {} requests in the canary window",
        in_canary
    );
    assert!(
        (0.20..=0.30).contains(&v2_share),
        "v2 share in the canary {v2_share}"
    );
    assert_eq!(tail_v2, tail, "after the canary everything is v2");
    assert_eq!(done["lifecycleStage"], "CLEAN_UP", "{done:#}");

    env.call(
        "DeleteService",
        json!({"cluster": env.cluster, "service": "web", "force": true}),
    )
    .await;
    wait_for(
        "the service's tasks stopped",
        Duration::from_secs(60),
        || async {
            let l = env
                .call(
                    "ListTasks",
                    json!({"cluster": env.cluster, "serviceName": "web"}),
                )
                .await;
            l["taskArns"]
                .as_array()
                .is_none_or(|a| a.is_empty())
                .then_some(())
        },
    )
    .await;
    node.stop().await;
    agent.stop().await;
    env.stop().await;
}
