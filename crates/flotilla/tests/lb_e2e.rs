//! End to end: an application load balancer in front of an ECS service,
//! with real parts only. A control plane in-process, a real agent on the
//! Docker Engine running the test image (`serve 8080 BODY`, dynamic host
//! ports), a real load-balancer node (`flotilla_lb`, as `flotilla dev` runs
//! it) on its own loopback address, and the real AWS CLI driving ELBv2 and
//! ECS. The service's tasks register as targets, turn healthy, answer
//! through the listener, and a rolling deployment from `v1` to `v2` under a
//! steady stream of requests fails none of them (twice: minimum 100 %/maximum
//! 200 %, then 50 %/100 %). Last, `docker kill` of a task under load: no
//! request sent a second after the kill fails, and its replacement is
//! registered and healthy.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lb::{
    aws, create_service, forward_listener, http_target_group, s, serving, target_health, tasks_of,
    Conn, LbNode,
};
use common::{wait_for, Env};
use serde_json::{json, Value};

/// The load-balancer node's one address (no other test uses it).
const LB_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 90);

/// One request's outcome, `at` seconds after the loader started.
#[derive(Debug, Clone)]
struct Outcome {
    at: f64,
    /// How long it took (seconds), and whether it was a slow request.
    took: f64,
    slow: bool,
    result: Result<(u16, String), String>,
}

/// A bounded loader: `connections` keep-alive connections, each sending
/// requests one after the other with a short pause (the first connection
/// slow ones), until `stop` is set,
/// `limit` passes or `max_requests` are sent.
async fn load(
    addr: String,
    host: String,
    connections: usize,
    stop: Arc<AtomicBool>,
    limit: Duration,
    max_requests: usize,
) -> Vec<Outcome> {
    let start = Instant::now();
    let per_conn = max_requests / connections;
    let mut handles = Vec::new();
    for i in 0..connections {
        let (addr, host, stop) = (addr.clone(), host.clone(), stop.clone());
        // The first connection's requests take 1.5 s each at the target, so
        // some are in flight whenever a target is deregistered.
        let path = if i == 0 { "/slow/1500" } else { "/" };
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut conn: Option<Conn> = None;
            while !stop.load(Ordering::Relaxed) && start.elapsed() < limit && out.len() < per_conn {
                let sent = Instant::now();
                let result = async {
                    if conn.is_none() {
                        conn = Some(Conn::open(&addr).await?);
                    }
                    conn.as_mut().unwrap().get_path(&host, path).await
                }
                .await;
                let result = result.map_err(|e| {
                    conn = None;
                    e.to_string()
                });
                out.push(Outcome {
                    at: start.elapsed().as_secs_f64(),
                    took: sent.elapsed().as_secs_f64(),
                    slow: i == 0,
                    result,
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            out
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("loader"));
    }
    all.sort_by(|a, b| a.at.total_cmp(&b.at));
    all
}

async fn service(env: &Env) -> Value {
    let d = env
        .call(
            "DescribeServices",
            json!({"cluster": env.cluster, "services": ["web"]}),
        )
        .await;
    d["services"][0].clone()
}

/// The load balancer under test: its listener's address, its DNS name, its
/// target group.
struct Lb {
    addr: String,
    dns: String,
    tg_arn: String,
}

/// A rolling deployment of the service `web` from the task definition
/// answering `from` to `to_td` answering `to`, with the deployment's
/// (minimumHealthyPercent, maximumPercent), while a bounded loader sends
/// requests through the load balancer: none fails, the answers move from
/// `from` to `to`, the deployment completes and the old tasks are gone.
async fn rollout(
    env: &Env,
    lb: &Lb,
    (from, to, to_td): (&str, &str, &str),
    (min, max): (u32, u32),
) {
    let stop = Arc::new(AtomicBool::new(false));
    let loader_start = Instant::now();
    let loader = tokio::spawn(load(
        lb.addr.clone(),
        lb.dns.clone(),
        3,
        stop.clone(),
        Duration::from_secs(60),
        10_000,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old_tasks: Vec<String> = tasks_of(env, "web")
        .await
        .iter()
        .map(|t| s(&t["taskArn"]))
        .collect();
    assert_eq!(old_tasks.len(), 2);
    let deploy_start = Instant::now();
    let update_at = loader_start.elapsed().as_secs_f64();
    let deployment_configuration = format!("minimumHealthyPercent={min},maximumPercent={max}");
    aws(
        env,
        "ecs",
        &[
            "update-service",
            "--cluster",
            &env.cluster,
            "--service",
            "web",
            "--task-definition",
            to_td,
            "--deployment-configuration",
            &deployment_configuration,
        ],
    )
    .await;
    wait_for(
        "the deployment to complete",
        Duration::from_secs(60),
        || async {
            let svc = service(env).await;
            let deployments = svc["deployments"].as_array().cloned().unwrap_or_default();
            let done = deployments.len() == 1
                && svc["runningCount"] == 2
                && deployments[0]["rolloutState"] == "COMPLETED";
            done.then_some(())
        },
    )
    .await;
    let deploy_secs = deploy_start.elapsed().as_secs_f64();
    aws(
        env,
        "ecs",
        &[
            "wait",
            "services-stable",
            "--cluster",
            &env.cluster,
            "--services",
            "web",
        ],
    )
    .await;
    // Let the loader see the settled service for a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = loader.await.expect("loader");

    let failures: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(&o.result, Ok((200, _))))
        .collect();
    let answered = |body: &str| {
        outcomes
            .iter()
            .filter(|o| matches!(&o.result, Ok((_, b)) if b == body))
            .map(|o| o.at)
            .collect::<Vec<f64>>()
    };
    let (olds, news) = (answered(from), answered(to));
    let first_new = news.first().copied().unwrap_or(f64::NAN);
    let last_old = olds.last().copied().unwrap_or(f64::NAN);
    let span = outcomes.last().map(|o| o.at).unwrap_or(0.0);
    let mut fast: Vec<&Outcome> = outcomes.iter().filter(|o| !o.slow).collect();
    fast.sort_by(|a, b| a.took.total_cmp(&b.took));
    let p99 = fast[fast.len() * 99 / 100].took;
    let slowest = fast.last().unwrap();
    let slow_max = outcomes
        .iter()
        .filter(|o| o.slow)
        .map(|o| o.took)
        .fold(0.0f64, f64::max);
    eprintln!(
        "lb e2e: rolling {from} -> {to} (min {min} %, max {max} %): {} requests in {span:.1} s \
         ({:.0}/s) over 3 keep-alive connections, one of 1.5 s requests: {} failed, {} {from}, {} {to}; \
         update-service at {update_at:.1} s, first {to} at {first_new:.1} s, \
         last {from} at {last_old:.1} s (both answering for {:.1} s); latency of `GET /` p99 \
         {:.0} ms, max {:.0} ms (at {:.1} s), of `/slow/1500` max {:.0} ms; deployment COMPLETED {deploy_secs:.1} s after update-service",
        outcomes.len(),
        outcomes.len() as f64 / span.max(0.001),
        failures.len(),
        olds.len(),
        news.len(),
        (last_old - first_new).max(0.0),
        p99 * 1000.0,
        slowest.took * 1000.0,
        slowest.at - slowest.took,
        slow_max * 1000.0,
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failures.len(),
        outcomes.len(),
        failures.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        !olds.is_empty() && !news.is_empty(),
        "responses moved from {from} to {to}"
    );
    assert!(
        matches!(&outcomes.last().unwrap().result, Ok((_, b)) if b == to),
        "the last response is {to}"
    );
    assert!(
        answered(from).iter().all(|&at| at < first_new + 15.0),
        "{from} stops answering once {to} answers"
    );

    // The old tasks are gone; the two new ones are the targets, healthy.
    let now: Vec<Value> = tasks_of(env, "web").await;
    assert_eq!(now.len(), 2, "{now:?}");
    for t in &now {
        assert!(!old_tasks.contains(&s(&t["taskArn"])), "old task {t}");
        assert_eq!(s(&t["taskDefinitionArn"]), to_td);
    }
    for arn in &old_tasks {
        let t = env.task(arn).await;
        assert_eq!(s(&t["lastStatus"]), "STOPPED", "{t}");
        // Deregistered when it was told to stop; stopped only once drained.
        let held = t["stoppedAt"].as_f64().unwrap() - t["stoppingAt"].as_f64().unwrap();
        eprintln!("lb e2e: old task stopped {held:.1} s after it began stopping (deregistration delay 5 s)");
        assert!(held >= 4.5, "stopped before its target drained: {t}");
        assert!(env
            .containers_of(arn)
            .await
            .iter()
            .all(|c| c.state != Some(bollard::models::ContainerSummaryStateEnum::RUNNING)));
    }
    let t = target_health(env, &lb.tg_arn).await;
    assert_eq!(t.len(), 2, "only the new tasks are targets: {t:?}");
    assert!(
        t.iter().all(|d| d["TargetHealth"]["State"] == "healthy"),
        "{t:?}"
    );
    let mut conn = Conn::open(&lb.addr).await.expect("connect");
    for _ in 0..4 {
        assert_eq!(conn.get(&lb.dns).await.unwrap(), (200, to.to_string()));
    }
}

/// `docker kill` of one task's container under load: requests sent a second
/// after the kill do not fail; the replacement is registered and healthy.
async fn kill_one(env: &Env, lb: &Lb) {
    let stop = Arc::new(AtomicBool::new(false));
    let loader_start = Instant::now();
    let loader = tokio::spawn(load(
        lb.addr.clone(),
        lb.dns.clone(),
        3,
        stop.clone(),
        Duration::from_secs(40),
        10_000,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tasks = tasks_of(env, "web").await;
    let victim = s(&tasks[0]["taskArn"]);
    let container = env.containers_of(&victim).await[0].id.clone().unwrap();
    let killed_at = loader_start.elapsed().as_secs_f64();
    env.docker
        .kill_container(
            &container,
            Some(bollard::query_parameters::KillContainerOptions {
                signal: "SIGKILL".into(),
            }),
        )
        .await
        .unwrap();
    wait_for(
        "a replacement, healthy",
        Duration::from_secs(40),
        || async {
            let now = tasks_of(env, "web").await;
            let t = target_health(env, &lb.tg_arn).await;
            (now.len() == 2
                && now.iter().all(|t| s(&t["taskArn"]) != victim)
                && t.len() == 2
                && t.iter().all(|d| d["TargetHealth"]["State"] == "healthy"))
            .then_some(())
        },
    )
    .await;
    let healthy_at = loader_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = loader.await.expect("loader");
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(&o.result, Ok((200, _))))
        .collect();
    let late: Vec<&&Outcome> = failed
        .iter()
        .filter(|o| o.at - o.took > killed_at + 1.0)
        .collect();
    eprintln!(
        "lb e2e: docker kill at {killed_at:.1} s: {} requests, {} failed (sent at {:?}), {} of them sent over 1 s after the kill; replacement healthy at {healthy_at:.1} s",
        outcomes.len(),
        failed.len(),
        failed.iter().map(|o| format!("{:.2}: {:?}", o.at - o.took, o.result)).collect::<Vec<_>>(),
        late.len()
    );
    assert!(
        late.is_empty(),
        "requests failed over a second after the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alb_in_front_of_a_service_rolls_from_v1_to_v2_without_a_failed_request() {
    let test_start = Instant::now();
    let env = Env::start("e2e-lb").await;
    let agent = env.agent("a", "127.0.0.1").await;
    env.wait_connected(&agent.arn, true).await;

    // A real load-balancer node, in-process as `flotilla dev` runs one.
    let node = LbNode::start(&env, "e2e-lb-node", &[IpAddr::V4(LB_ADDRESS)]);

    // 1. The load balancer, its target group and listener.
    let lb = aws(
        &env,
        "elbv2",
        &[
            "create-load-balancer",
            "--name",
            "web",
            "--type",
            "application",
            "--subnets",
            "subnet-1",
            "subnet-2",
        ],
    )
    .await;
    let lb_arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]);
    aws(
        &env,
        "elbv2",
        &[
            "wait",
            "load-balancer-available",
            "--load-balancer-arns",
            &lb_arn,
        ],
    )
    .await;
    let d = aws(
        &env,
        "elbv2",
        &["describe-load-balancers", "--load-balancer-arns", &lb_arn],
    )
    .await;
    let dns = s(&d["LoadBalancers"][0]["DNSName"]);
    assert_eq!(s(&d["LoadBalancers"][0]["State"]["Code"]), "active");
    assert_eq!(dns, LB_ADDRESS.to_string(), "DNSName is the node's address");
    let tg_arn = http_target_group(&env, "web").await;
    forward_listener(&env, &lb_arn, "HTTP", 80, &tg_arn).await;
    let addr = format!("{dns}:80");

    // 2. A service of two `v1` tasks behind the target group.
    let v1 = env
        .register_task_definition("e2e-lb-web", serving("v1"))
        .await;
    let v2 = env
        .register_task_definition("e2e-lb-web", serving("v2"))
        .await;
    let lbs = format!("targetGroupArn={tg_arn},containerName=app,containerPort=8080");
    create_service(&env, "web", &v1, 2, &lbs, &[]).await;
    let registered_at = Instant::now();
    let targets = wait_for("two healthy targets", Duration::from_secs(60), || async {
        let t = target_health(&env, &tg_arn).await;
        let healthy = t
            .iter()
            .filter(|d| d["TargetHealth"]["State"] == "healthy")
            .count();
        (t.len() == 2 && healthy == 2).then_some(t)
    })
    .await;
    eprintln!(
        "lb e2e: 2 targets healthy {:.1} s after create-service",
        registered_at.elapsed().as_secs_f64()
    );
    let mut target_args = vec![
        "wait".to_string(),
        "target-in-service".into(),
        "--target-group-arn".into(),
        tg_arn.clone(),
        "--targets".into(),
    ];
    for t in &targets {
        let id = s(&t["Target"]["Id"]);
        let port = t["Target"]["Port"].as_i64().expect("port");
        assert_ne!(port, 8080, "the host port is Docker's dynamic one");
        target_args.push(format!("Id={id},Port={port}"));
    }
    let target_args: Vec<&str> = target_args.iter().map(String::as_str).collect();
    aws(&env, "elbv2", &target_args).await;

    // Both tasks answer `v1` through the listener: `/env` tells which
    // container (its HOSTNAME) served.
    let mut conn = Conn::open(&addr).await.expect("connect to the listener");
    let mut hosts = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let (status, body) = conn.get(&dns).await.expect("GET through the LB");
        assert_eq!((status, body.as_str()), (200, "v1"));
    }
    for _ in 0..10 {
        let (status, env_body) = conn.get_path(&dns, "/env").await.expect("GET /env");
        assert_eq!(status, 200);
        let hostname = env_body
            .lines()
            .find_map(|l| l.strip_prefix("HOSTNAME="))
            .unwrap_or_else(|| panic!("no HOSTNAME in {env_body}"))
            .to_string();
        hosts.insert(hostname);
    }
    assert_eq!(hosts.len(), 2, "both tasks answer: {hosts:?}");
    drop(conn);

    // 3. Rolling deployments under load: to `v2` as ECS does by default
    // (minimum 100 %, maximum 200 %: new tasks first), then to `v3` with
    // minimum 50 %, maximum 100 % (an old task stops first).
    let v3 = env
        .register_task_definition("e2e-lb-web", serving("v3"))
        .await;
    let lb = Lb {
        addr: addr.clone(),
        dns: dns.clone(),
        tg_arn: tg_arn.clone(),
    };
    rollout(&env, &lb, ("v1", "v2", &v2), (100, 200)).await;
    rollout(&env, &lb, ("v2", "v3", &v3), (50, 100)).await;
    kill_one(&env, &lb).await;
    let svc = service(&env).await;
    let mut events: Vec<Value> = svc["events"].as_array().cloned().unwrap_or_default();
    events.reverse();
    for e in &events {
        eprintln!("lb e2e: event {} {}", e["createdAt"], s(&e["message"]));
    }
    // Tear down: the service first (its targets drain), then the node.
    env.call(
        "DeleteService",
        json!({"cluster": env.cluster, "service": "web", "force": true}),
    )
    .await;
    node.stop().await;
    agent.stop().await;
    env.stop().await;
    eprintln!(
        "lb e2e: whole test {:.1} s",
        test_start.elapsed().as_secs_f64()
    );
}
