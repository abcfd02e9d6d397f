//! End to end: routing, weights, health and TCP through a real
//! load-balancer node, with real parts only. A control plane in-process,
//! two agents on the real Docker Engine (host addresses 127.0.3.1 and
//! 127.0.3.2) running the test image on dynamic host ports, a real
//! `flotilla_lb` node on 127.0.3.10–11, in-test HTTP and TCP servers as `ip`
//! targets, and the real AWS CLI driving ELBv2 and ECS.
//!
//! - An application load balancer in front of a 4-task service spread over
//!   the two agents: every task answers through the listener.
//! - A path rule and a host-header rule send traffic to a second service;
//!   fixed-response and redirect rules answer at the node, a group without
//!   targets answers 503; a weighted forward splits 1,000 requests 3:1
//!   between two target groups (±5 %).
//! - An in-test target answering 500 goes `unhealthy`
//!   (`Target.ResponseCodeMismatch`) after the threshold and comes back.
//! - An ECS task whose health-check path answers 500 is stopped and
//!   replaced ("Task failed ELB health checks in (target-group …)", and the
//!   service events ECS writes).
//! - A network load balancer spreads TCP connections over four in-test
//!   servers; every byte of a connection reaches one of them.
//! - `TooManyTargets` from the CLI (the other ELBv2 errors the issue names
//!   are asserted from the CLI in `crates/server/tests/elbv2_api.rs`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::lb::{
    aws, aws_fails, forward_listener, healthy_targets, hostnames, hostnames_answering,
    load_balancer, rule, s, service, serving, target_group, target_health, tasks_of, Conn, LbNode,
};
use common::{wait_for, Env};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// This test's loopback addresses: the agents', the node's, the in-test
/// targets'.
const AGENT_A: &str = "127.0.3.1";
const AGENT_B: &str = "127.0.3.2";
const NODE_ADDRESSES: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 3, 10), Ipv4Addr::new(127, 0, 3, 11)];
const FLAKY: Ipv4Addr = Ipv4Addr::new(127, 0, 3, 20);
const TCP_TARGETS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(127, 0, 3, 21),
    Ipv4Addr::new(127, 0, 3, 22),
    Ipv4Addr::new(127, 0, 3, 23),
    Ipv4Addr::new(127, 0, 3, 24),
];

fn log(what: impl AsRef<str>) {
    eprintln!("lb routing e2e: {}", what.as_ref());
}

/// An in-test HTTP target answering every request with `status` (and body
/// `flaky`); it counts the health checks it answered and keeps the
/// `X-Forwarded-*` headers of the last request that was not one.
struct Flaky {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    checks: Arc<Mutex<Vec<u16>>>,
    forwarded: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Flaky {
    async fn start() -> Flaky {
        let listener = TcpListener::bind((FLAKY, 0))
            .await
            .expect("bind the flaky target");
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let checks: Arc<Mutex<Vec<u16>>> = Arc::default();
        let forwarded: Arc<Mutex<Vec<String>>> = Arc::default();
        let (st, ch, fw) = (status.clone(), checks.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (st, ch, fw) = (st.clone(), ch.clone(), fw.clone());
                tokio::spawn(async move {
                    let _ = Flaky::answer(stream, st, ch, fw).await;
                });
            }
        });
        Flaky {
            addr,
            status,
            checks,
            forwarded,
            task,
        }
    }

    async fn answer(
        stream: TcpStream,
        status: Arc<AtomicU16>,
        checks: Arc<Mutex<Vec<u16>>>,
        forwarded: Arc<Mutex<Vec<String>>>,
    ) -> std::io::Result<()> {
        let mut stream = BufReader::new(stream);
        loop {
            let mut head = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                if stream.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line.trim_end().is_empty() {
                    break;
                }
                head.push(line.trim_end().to_ascii_lowercase());
            }
            let code = status.load(Ordering::Relaxed);
            let close = head.iter().any(|h| h == "connection: close");
            if head
                .iter()
                .any(|h| h.starts_with("user-agent: elb-healthchecker/"))
            {
                checks.lock().unwrap().push(code);
            } else {
                *forwarded.lock().unwrap() = head
                    .iter()
                    .filter(|h| h.starts_with("x-forwarded-"))
                    .cloned()
                    .collect();
            }
            let answer = format!(
                "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n{}\r\nflaky\n",
                if close { "Connection: close\r\n" } else { "" }
            );
            stream.get_mut().write_all(answer.as_bytes()).await?;
            if close {
                return Ok(());
            }
        }
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A target that answers 200, then 500 (unhealthy with
/// `Target.ResponseCodeMismatch` after two checks), then 200 again (healthy
/// after two more), observed through `describe-target-health`; while it is
/// the group's only, unhealthy target, requests still reach it (ELBv2 fails
/// open).
async fn flaky_target_goes_unhealthy_and_back(env: &Env, flaky: &Flaky, tg: &str, lb: &str) {
    let started = Instant::now();
    wait_state(env, tg, "healthy").await;
    let healthy_at = started.elapsed().as_secs_f64();
    let checks_before = flaky.checks.lock().unwrap().len();
    flaky.status.store(500, Ordering::Relaxed);
    let broke = Instant::now();
    let health = wait_state(env, tg, "unhealthy").await;
    let unhealthy_after = broke.elapsed().as_secs_f64();
    let failed_checks = flaky.checks.lock().unwrap()[checks_before..]
        .iter()
        .filter(|c| **c == 500)
        .count();
    assert_eq!(health["Reason"], "Target.ResponseCodeMismatch", "{health}");
    assert_eq!(
        health["Description"], "Health checks failed with these codes: [500]",
        "{health}"
    );
    assert!(
        failed_checks >= 2,
        "unhealthy only after the threshold (2 failed checks), saw {failed_checks}"
    );
    // Fails open: the only target, unhealthy, still takes requests.
    let mut conn = Conn::open(&format!("{lb}:80")).await.expect("connect");
    let (status, body) = conn.get_path(lb, "/flaky").await.expect("GET /flaky");
    assert_eq!((status, body.as_str()), (500, "flaky"));
    let fwd = flaky.forwarded.lock().unwrap().clone();
    assert!(
        fwd.iter().any(|h| h.starts_with("x-forwarded-for: 127."))
            && fwd.contains(&"x-forwarded-proto: http".to_string())
            && fwd.contains(&"x-forwarded-port: 80".to_string()),
        "X-Forwarded-* headers: {fwd:?}"
    );
    flaky.status.store(200, Ordering::Relaxed);
    let mended = Instant::now();
    wait_state(env, tg, "healthy").await;
    log(format!(
        "flaky target healthy {healthy_at:.1} s after registration; answering 500: unhealthy \
         (Target.ResponseCodeMismatch) {unhealthy_after:.1} s later after {failed_checks} failed \
         checks; answering 200: healthy again {:.1} s later (interval 5 s, thresholds 2)",
        mended.elapsed().as_secs_f64()
    ));
}

/// Waits until the group's one target is in `state`; its `TargetHealth`.
async fn wait_state(env: &Env, tg: &str, state: &str) -> Value {
    wait_for(
        &format!("the target {state}"),
        Duration::from_secs(40),
        || async {
            let t = target_health(env, tg).await;
            (t.len() == 1 && t[0]["TargetHealth"]["State"] == state)
                .then(|| t[0]["TargetHealth"].clone())
        },
    )
    .await
}

/// An ECS task whose target fails its health checks (the group checks
/// `/status/500`) is stopped with ECS's reason and replaced.
async fn sick_task_is_replaced(env: &Env, tg: &str) {
    let started = Instant::now();
    let reason = format!("Task failed ELB health checks in (target-group {tg})");
    let first = wait_for("the sick task running", Duration::from_secs(60), || async {
        tasks_of(env, "sick")
            .await
            .first()
            .map(|t| s(&t["taskArn"]))
    })
    .await;
    let stopped = wait_for("the sick task stopped", Duration::from_secs(60), || async {
        let t = env.task(&first).await;
        (t["lastStatus"] == "STOPPED").then_some(t)
    })
    .await;
    assert_eq!(s(&stopped["stoppedReason"]), reason, "{stopped}");
    let stopped_after = started.elapsed().as_secs_f64();
    let replacement = wait_for("a replacement task", Duration::from_secs(30), || async {
        tasks_of(env, "sick")
            .await
            .into_iter()
            .map(|t| s(&t["taskArn"]))
            .find(|a| *a != first)
    })
    .await;
    let svc = env
        .call(
            "DescribeServices",
            json!({"cluster": env.cluster, "services": ["sick"]}),
        )
        .await;
    let events: Vec<String> = svc["services"][0]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| s(&e["message"]))
        .collect();
    // In ECS's words: which target, why; then the stop.
    let id = first.rsplit('/').next().unwrap();
    let why = format!(
        "is unhealthy in (target-group {tg}) due to (reason Health checks failed with these codes: [500])."
    );
    assert!(
        events
            .iter()
            .any(|m| m.starts_with("(service sick) (instance ") && m.ends_with(&why)),
        "service events say which target and why: {events:?}"
    );
    let stop = format!("(service sick) has stopped 1 running tasks: (task {id}).");
    assert!(
        events.contains(&stop),
        "service events say {stop}: {events:?}"
    );
    log(format!(
        "sick task stopped ({reason}) {stopped_after:.1} s after create-service; replacement {replacement}"
    ));
    env.call(
        "DeleteService",
        json!({"cluster": env.cluster, "service": "sick", "force": true}),
    )
    .await;
}

/// Four in-test TCP servers behind a network load balancer: each echoes
/// every line back prefixed with its index and records the lines it got.
async fn nlb_spreads_connections(env: &Env) {
    let mut ports = Vec::new();
    let received: Arc<Mutex<Vec<Vec<String>>>> =
        Arc::new(Mutex::new(vec![Vec::new(); TCP_TARGETS.len()]));
    let mut servers = Vec::new();
    for (i, ip) in TCP_TARGETS.iter().enumerate() {
        let listener = TcpListener::bind((*ip, 0))
            .await
            .expect("bind a TCP target");
        ports.push(listener.local_addr().unwrap().port());
        let received = received.clone();
        servers.push(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let received = received.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let mut line = String::new();
                    while let Ok(n) = stream.read_line(&mut line).await {
                        if n == 0 {
                            break;
                        }
                        received.lock().unwrap()[i].push(line.trim_end().to_string());
                        let echo = format!("{i} {line}");
                        if stream.get_mut().write_all(echo.as_bytes()).await.is_err() {
                            break;
                        }
                        line.clear();
                    }
                });
            }
        }));
    }
    let (lb_arn, dns) = load_balancer(env, "tcp", "network").await;
    let tg = target_group(
        env,
        "tcp",
        &["--protocol", "TCP", "--port", "9", "--target-type", "ip"],
    )
    .await;
    let targets: Vec<String> = TCP_TARGETS
        .iter()
        .zip(&ports)
        .map(|(ip, port)| format!("Id={ip},Port={port}"))
        .collect();
    let mut args = vec!["register-targets", "--target-group-arn", &tg, "--targets"];
    args.extend(targets.iter().map(String::as_str));
    aws(env, "elbv2", &args).await;
    forward_listener(env, &lb_arn, "TCP", 7000, &tg).await;
    healthy_targets(env, &tg, 4, "four healthy TCP targets").await;
    let addr = format!("{dns}:7000");
    const CONNECTIONS: usize = 40;
    const LINES: usize = 5;
    let mut per_target = [0usize; TCP_TARGETS.len()];
    let start = Instant::now();
    for c in 0..CONNECTIONS {
        let stream = TcpStream::connect(&addr).await.expect("connect to the NLB");
        let mut stream = BufReader::new(stream);
        let mut served_by = BTreeSet::new();
        for l in 0..LINES {
            stream
                .get_mut()
                .write_all(format!("c{c} l{l}\n").as_bytes())
                .await
                .unwrap();
            let mut echo = String::new();
            tokio::time::timeout(Duration::from_secs(5), stream.read_line(&mut echo))
                .await
                .expect("an echo within 5 s")
                .unwrap();
            let (server, text) = echo.trim_end().split_once(' ').expect("an echo");
            assert_eq!(text, format!("c{c} l{l}"));
            served_by.insert(server.parse::<usize>().unwrap());
        }
        assert_eq!(served_by.len(), 1, "connection {c} reached {served_by:?}");
        per_target[*served_by.first().unwrap()] += 1;
        // Closing half the connections first from our side, half by
        // shutting down writes: both end the flow.
        if c % 2 == 0 {
            let _ = stream.get_mut().shutdown().await;
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        }
    }
    let took = start.elapsed().as_secs_f64();
    // Every line of a connection arrived at one server, in order, whole.
    let received = received.lock().unwrap().clone();
    for c in 0..CONNECTIONS {
        let tag = format!("c{c} ");
        let at: Vec<usize> = (0..TCP_TARGETS.len())
            .filter(|i| received[*i].iter().any(|l| l.starts_with(&tag)))
            .collect();
        assert_eq!(at.len(), 1, "connection {c}'s bytes reached {at:?}");
        let lines: Vec<&String> = received[at[0]]
            .iter()
            .filter(|l| l.starts_with(&tag))
            .collect();
        let want: Vec<String> = (0..LINES).map(|l| format!("c{c} l{l}")).collect();
        assert_eq!(lines, want.iter().collect::<Vec<_>>());
    }
    log(format!(
        "NLB: {CONNECTIONS} connections of {LINES} round trips in {took:.2} s spread over the 4 targets as {per_target:?}"
    ));
    assert!(
        per_target.iter().all(|n| *n > 0),
        "every target took connections: {per_target:?}"
    );
    for s in servers {
        s.abort();
    }
}

/// `TooManyTargets`: 1,001 targets in one call change nothing; 1,000 are
/// taken; one more is refused.
async fn too_many_targets(env: &Env) {
    let tg = target_group(
        env,
        "many",
        &["--protocol", "HTTP", "--port", "80", "--target-type", "ip"],
    )
    .await;
    let targets = |range: std::ops::Range<usize>| {
        Value::Array(
            range
                .map(|i| json!({"Id": format!("10.9.{}.{}", i / 250, i % 250 + 1), "Port": 80}))
                .collect(),
        )
        .to_string()
    };
    let register = |t: String| {
        let tg = tg.clone();
        async move {
            aws_fails(
                env,
                "elbv2",
                &[
                    "register-targets",
                    "--target-group-arn",
                    &tg,
                    "--targets",
                    &t,
                ],
                "TooManyTargets",
            )
            .await
        }
    };
    let err = register(targets(0..1001)).await;
    assert!(err.contains("1000"), "{err}");
    assert_eq!(target_health(env, &tg).await.len(), 0);
    aws(
        env,
        "elbv2",
        &[
            "register-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            &targets(0..1000),
        ],
    )
    .await;
    assert_eq!(target_health(env, &tg).await.len(), 1000);
    register(targets(1000..1001)).await;
    assert_eq!(target_health(env, &tg).await.len(), 1000);
    aws(
        env,
        "elbv2",
        &["delete-target-group", "--target-group-arn", &tg],
    )
    .await;
    log("TooManyTargets: 1,001 at once refused, 1,000 taken, the 1,001st refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alb_routes_weights_and_health_checks_and_nlb_spreads_tcp() {
    let test_start = Instant::now();
    let env = Env::start("e2e-lbr").await;
    let a = env.agent("a", AGENT_A).await;
    let b = env.agent("b", AGENT_B).await;
    env.wait_connected(&a.arn, true).await;
    env.wait_connected(&b.arn, true).await;
    let node = LbNode::start(&env, "e2e-lbr-node", &NODE_ADDRESSES.map(IpAddr::V4));
    let flaky = Flaky::start().await;

    // The application load balancer, its groups, listener and rules.
    let (lb_arn, dns) = load_balancer(&env, "front", "application").await;
    assert!(
        NODE_ADDRESSES.iter().any(|a| a.to_string() == dns),
        "DNSName {dns} is one of the node's addresses"
    );
    log(format!(
        "ALB active at {dns} {:.1} s into the test",
        test_start.elapsed().as_secs_f64()
    ));
    let instance_group = [
        "--protocol",
        "HTTP",
        "--port",
        "8080",
        "--target-type",
        "instance",
    ];
    let mut sick_args = instance_group.to_vec();
    sick_args.extend(["--health-check-path", "/status/500"]);
    let flaky_port = flaky.addr.port().to_string();
    let flaky_args = [
        "--protocol",
        "HTTP",
        "--port",
        &flaky_port,
        "--target-type",
        "ip",
    ];
    let (web_tg, api_tg, sick_tg, flaky_tg, empty_tg) = tokio::join!(
        target_group(&env, "web", &instance_group),
        target_group(&env, "api", &instance_group),
        target_group(&env, "sick", &sick_args),
        target_group(&env, "flaky", &flaky_args),
        target_group(&env, "empty", &instance_group),
    );
    // The sick task's target is deregistered at once when it is replaced
    // (the default delay would hold its stop for 300 s).
    aws(
        &env,
        "elbv2",
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &sick_tg,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=0",
        ],
    )
    .await;
    let listener = forward_listener(&env, &lb_arn, "HTTP", 80, &web_tg).await;
    let forward = |tg: &str| json!([{"Type": "forward", "TargetGroupArn": tg}]);
    let rules = [
        (10, "Field=path-pattern,Values=/api/*", forward(&api_tg)),
        (
            20,
            "Field=host-header,Values=api.example.com",
            forward(&api_tg),
        ),
        (
            30,
            "Field=path-pattern,Values=/fixed",
            json!([{"Type": "fixed-response", "FixedResponseConfig": {
                "StatusCode": "403", "ContentType": "text/plain", "MessageBody": "no entry"}}]),
        ),
        (
            40,
            "Field=path-pattern,Values=/old/*",
            json!([{"Type": "redirect", "RedirectConfig": {
                "Protocol": "HTTPS", "Host": "example.org", "Port": "443",
                "Path": "/new/#{path}", "StatusCode": "HTTP_301"}}]),
        ),
        (
            45,
            "Field=path-pattern,Values=/secure/*",
            json!([{"Type": "redirect", "RedirectConfig": {
                "Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_302"}}]),
        ),
        (
            50,
            "Field=path-pattern,Values=/split/*",
            json!([{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": web_tg, "Weight": 3},
                {"TargetGroupArn": api_tg, "Weight": 1}]}}]),
        ),
        (60, "Field=path-pattern,Values=/flaky", forward(&flaky_tg)),
        (70, "Field=path-pattern,Values=/sick", forward(&sick_tg)),
        (80, "Field=path-pattern,Values=/empty", forward(&empty_tg)),
    ];
    futures_util::future::join_all(rules.into_iter().map(|(priority, conditions, actions)| {
        rule(&env, &listener, priority, conditions, actions)
    }))
    .await;
    let rules = aws(
        &env,
        "elbv2",
        &["describe-rules", "--listener-arn", &listener],
    )
    .await;
    let priorities: Vec<String> = rules["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| s(&r["Priority"]))
        .collect();
    assert_eq!(
        priorities,
        ["10", "20", "30", "40", "45", "50", "60", "70", "80", "default"]
    );
    aws(
        &env,
        "elbv2",
        &[
            "register-targets",
            "--target-group-arn",
            &flaky_tg,
            "--targets",
            &format!("Id={FLAKY},Port={flaky_port}"),
        ],
    )
    .await;

    // The services: `web` (4 tasks over the 2 agents), `api` (2), `sick`
    // (1, its group checks a path that answers 500).
    let web_td = env
        .register_task_definition("e2e-lbr-web", serving("web"))
        .await;
    let api_td = env
        .register_task_definition("e2e-lbr-api", serving("api"))
        .await;
    let sick_td = env
        .register_task_definition("e2e-lbr-sick", serving("sick"))
        .await;
    tokio::join!(
        service(&env, "web", &web_td, 4, &web_tg),
        service(&env, "api", &api_td, 2, &api_tg),
        service(&env, "sick", &sick_td, 1, &sick_tg),
    );
    log(format!(
        "set up in {:.1} s",
        test_start.elapsed().as_secs_f64()
    ));

    let routing = async {
        let started = Instant::now();
        let web = healthy_targets(&env, &web_tg, 4, "4 healthy web targets").await;
        healthy_targets(&env, &api_tg, 2, "2 healthy api targets").await;
        log(format!(
            "web and api targets healthy {:.1} s after create-service",
            started.elapsed().as_secs_f64()
        ));
        // Two tasks on each agent, each on its own dynamic host port.
        let mut per_instance: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for t in &web {
            let port = t["Target"]["Port"].as_i64().unwrap();
            assert_ne!(port, 8080, "the host port is Docker's dynamic one");
            per_instance
                .entry(s(&t["Target"]["Id"]))
                .or_default()
                .insert(port);
        }
        let ids: BTreeSet<String> = [&a.arn, &b.arn]
            .iter()
            .map(|arn| arn.rsplit('/').next().unwrap().to_string())
            .collect();
        assert_eq!(
            per_instance.keys().cloned().collect::<BTreeSet<_>>(),
            ids,
            "targets are the two container instances: {per_instance:?}"
        );
        assert!(
            per_instance.values().all(|p| p.len() == 2),
            "{per_instance:?}"
        );

        // Every web task answers through the listener (round robin over the
        // four: 40 requests on one keep-alive connection).
        let addr = format!("{dns}:80");
        let mut conn = Conn::open(&addr).await.expect("connect to the listener");
        let web_hosts = hostnames(&env, "web").await;
        assert_eq!(web_hosts.len(), 4);
        let seen = hostnames_answering(&mut conn, &dns, "/env", 40).await;
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for h in &seen {
            *counts.entry(h.as_str()).or_default() += 1;
        }
        assert_eq!(
            counts
                .keys()
                .map(|h| h.to_string())
                .collect::<BTreeSet<_>>(),
            web_hosts,
            "every web task answers, and only they"
        );
        log(format!("40 × GET /env over the default rule: {counts:?}"));

        // Path and host rules reach the second service.
        for path in ["/api/x", "/api/v1/items?id=3"] {
            assert_eq!(
                conn.get_path(&dns, path).await.unwrap(),
                (200, "api".into())
            );
        }
        let api_hosts = hostnames(&env, "api").await;
        let seen: BTreeSet<String> = hostnames_answering(&mut conn, "api.example.com", "/env", 8)
            .await
            .into_iter()
            .collect();
        assert_eq!(seen, api_hosts, "the host rule reaches both api tasks");
        assert_eq!(
            conn.get_path("API.Example.com:80", "/").await.unwrap(),
            (200, "api".into()),
            "host-header matching ignores case and port"
        );
        assert_eq!(
            conn.get_path(&dns, "/apix").await.unwrap(),
            (200, "web".into())
        );
        assert_eq!(
            conn.get_path("other.example.com", "/").await.unwrap(),
            (200, "web".into())
        );

        // Fixed response and redirects, answered by the node.
        let r = conn.request(&dns, "/fixed").await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (403, "no entry"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        let r = conn.request(&dns, "/old/page?x=1").await.unwrap();
        assert_eq!(r.status, 301);
        assert_eq!(
            r.header("location"),
            Some("https://example.org/new/old/page?x=1"),
            "#{{path}} is the path without its leading /"
        );
        let r = conn
            .request("shop.example.com", "/secure/cart?id=7")
            .await
            .unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(
            r.header("location"),
            Some("https://shop.example.com/secure/cart?id=7"),
            "the parts not given keep the request's"
        );
        // A group without targets: 503, as ALB answers.
        let r = conn.request(&dns, "/empty").await.unwrap();
        assert_eq!(r.status, 503, "{r:?}");
        drop(conn);

        // Weighted forward 3:1 over 1,000 requests on 4 connections.
        let started = Instant::now();
        let mut loaders = Vec::new();
        for c in 0..4 {
            let (addr, dns) = (addr.clone(), dns.clone());
            loaders.push(tokio::spawn(async move {
                let mut conn = Conn::open(&addr).await.expect("connect");
                let mut bodies = Vec::new();
                for i in 0..250 {
                    let (status, body) = conn
                        .get_path(&dns, &format!("/split/{c}/{i}"))
                        .await
                        .expect("GET /split");
                    assert_eq!(status, 200);
                    bodies.push(body);
                }
                bodies
            }));
        }
        let mut split: BTreeMap<String, usize> = BTreeMap::new();
        for l in loaders {
            for body in l.await.unwrap() {
                *split.entry(body).or_default() += 1;
            }
        }
        let took = started.elapsed().as_secs_f64();
        let web_share = split.get("web").copied().unwrap_or(0) as f64 / 1000.0;
        log(format!(
            "weighted forward web:3/api:1 over 1,000 requests in {took:.2} s: {split:?} (web {:.1} %)",
            web_share * 100.0
        ));
        assert_eq!(split.values().sum::<usize>(), 1000, "{split:?}");
        assert!(
            (web_share - 0.75).abs() <= 0.05,
            "web's share {web_share} is 75 % ± 5"
        );
    };
    tokio::join!(
        routing,
        flaky_target_goes_unhealthy_and_back(&env, &flaky, &flaky_tg, &dns),
        sick_task_is_replaced(&env, &sick_tg),
        nlb_spreads_connections(&env),
        too_many_targets(&env),
    );

    for svc in ["web", "api"] {
        env.call(
            "DeleteService",
            json!({"cluster": env.cluster, "service": svc, "force": true}),
        )
        .await;
    }
    node.stop().await;
    a.stop().await;
    b.stop().await;
    env.stop().await;
    log(format!(
        "whole test {:.1} s",
        test_start.elapsed().as_secs_f64()
    ));
}
