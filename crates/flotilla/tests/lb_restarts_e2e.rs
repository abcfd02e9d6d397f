//! End to end: restarts and lost hosts under an application load balancer,
//! with real parts only (issue 12's "lost hosts, agent restarts,
//! control-plane restarts and lb-node restarts leave no stale target and
//! lose no registration"). Each test has its own control plane, cluster,
//! agents on the real Docker Engine (the test image serving `/env` on a
//! dynamic host port, so each answer names the container that served it), a
//! real `flotilla lb` node as a child process and an ALB whose listener
//! forwards to a 4-task service spread over two agents; everything is
//! asserted through DescribeTargetHealth (the AWS CLI) and real traffic
//! through the listener (a bounded loader, plus 40-request sweeps that must
//! reach every task).
//!
//! 1. The lb node is SIGKILLed and a new one started with the same name and
//!    address: it serves again, every task reached, the same targets, healthy.
//! 2. The control plane (`flotilla server`, a child process) is SIGKILLed
//!    and restarted on the same data dir and address: the node serves
//!    throughout, the registrations are the same, the node and the agents
//!    reconnect; a `docker kill` and a scale-in after the restart leave
//!    exactly the running tasks as targets.
//! 3. An agent is SIGKILLed and restarted within the lost-host grace: no
//!    target changes, no duplicate, no failed request.
//! 4. An agent is SIGKILLed for good (a 2 s lost-host grace): its tasks'
//!    targets are deregistered although their containers still answer,
//!    the replacements registered and healthy, the lost tasks never served
//!    again; when the agent returns its old containers are removed and never
//!    registered.
//!
//! Addresses: 127.0.14.1-.2 (agents) and .10 (node) for 1; .20 (control
//! plane), .21-.22, .23 for 2; .31-.32, .33 for 3; .41-.42, .43 for 4.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lb::{
    failures, forward_listener, hostname, hostnames, hostnames_answering, http_target_group, load,
    load_balancer, s, service, serving, target_health, target_keys, task_target, tasks_of, Conn,
    LbProcess, Outcome, TargetKey,
};
use common::{data_dir, wait_for, Env};
use flotilla_server::controllers::ControllerConfig;
use serde_json::{json, Value};

fn log(what: impl AsRef<str>) {
    eprintln!("lb restarts e2e: {}", what.as_ref());
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 14, last))
}

/// The ALB in front of the service `web`.
struct Web {
    /// `DNS:80`.
    addr: String,
    dns: String,
    tg: String,
}

/// An ALB `name` (on the node's one address), an HTTP target group
/// (interval 5 s, deregistration delay 5 s), a listener on port 80
/// forwarding to it, and the service `web` of `count` tasks of the test
/// image behind it, spread over the instances.
async fn web(env: &Env, name: &str, count: u32) -> Web {
    let (arn, dns) = load_balancer(env, name, "application").await;
    let tg = http_target_group(env, name).await;
    forward_listener(env, &arn, "HTTP", 80, &tg).await;
    let td = env
        .register_task_definition(&format!("{name}-web"), serving("web"))
        .await;
    service(env, "web", &td, count, &tg).await;
    Web {
        addr: format!("{dns}:80"),
        dns,
        tg,
    }
}

/// The service's RUNNING tasks (desired RUNNING too).
async fn running(env: &Env) -> Vec<Value> {
    tasks_of(env, "web")
        .await
        .into_iter()
        .filter(|t| t["lastStatus"] == "RUNNING" && t["desiredStatus"] == "RUNNING")
        .collect()
}

/// Waits until `n` tasks run, none of them in `gone`, and the target group
/// holds exactly their targets (nothing draining, nothing stale), all
/// healthy. The tasks and the targets.
async fn settled(
    env: &Env,
    web: &Web,
    n: usize,
    gone: &BTreeSet<String>,
    what: &str,
) -> (Vec<Value>, BTreeSet<TargetKey>) {
    wait_for(what, Duration::from_secs(60), || async {
        let tasks = running(env).await;
        if tasks.len() != n || tasks.iter().any(|t| gone.contains(&s(&t["taskArn"]))) {
            return None;
        }
        let want: BTreeSet<TargetKey> = tasks.iter().map(task_target).collect();
        let t = target_health(env, &web.tg).await;
        let healthy = t.iter().all(|d| d["TargetHealth"]["State"] == "healthy");
        (t.len() == n && healthy && target_keys(&t) == want).then_some((tasks, want))
    })
    .await
}

/// The hostnames (container short ids) `n` `GET /env` on a new connection
/// were answered by.
async fn reached(web: &Web, n: usize) -> BTreeSet<String> {
    let mut conn = Conn::open(&web.addr)
        .await
        .expect("connect to the listener");
    hostnames_answering(&mut conn, &web.dns, "/env", n)
        .await
        .into_iter()
        .collect()
}

/// A loader through the listener: 2 keep-alive connections sending `GET
/// /env` 10 ms apart, for at most 120 s.
fn loader(web: &Web) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<Outcome>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = tokio::spawn(load(
        web.addr.clone(),
        web.dns.clone(),
        "/env",
        2,
        Duration::from_millis(10),
        stop.clone(),
        Duration::from_secs(120),
        100_000,
    ));
    (stop, handle)
}

/// The hostname that served each answered outcome, with its time.
fn served(outcomes: &[Outcome]) -> Vec<(f64, String)> {
    outcomes
        .iter()
        .filter_map(|(at, r)| match r {
            Ok((200, body)) => hostname(body).map(|h| (*at, h.to_string())),
            _ => None,
        })
        .collect()
}

/// `docker kill` (SIGKILL) of the task's container.
async fn docker_kill(env: &Env, task_arn: &str) {
    let container = env.containers_of(task_arn).await[0].id.clone().unwrap();
    env.docker
        .kill_container(
            &container,
            Some(bollard::query_parameters::KillContainerOptions {
                signal: "SIGKILL".into(),
            }),
        )
        .await
        .unwrap();
}

fn short_id(c: &bollard::models::ContainerSummary) -> String {
    c.id.clone().unwrap_or_default()[..12].to_string()
}

/// 1. The lb node is SIGKILLed and a new one started on the same address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lb_node_restarted_serves_the_same_targets() {
    let t0 = Instant::now();
    let env = Env::start("lbr-node").await;
    let a = env.agent("a", "127.0.14.1").await;
    let b = env.agent("b", "127.0.14.2").await;
    env.wait_connected(&a.arn, true).await;
    env.wait_connected(&b.arn, true).await;
    let mut node = LbProcess::start(&env, "lbr-node", &[ip(10)]);
    let web = web(&env, "lbr-node", 4).await;
    let (_, targets) = settled(&env, &web, 4, &BTreeSet::new(), "4 healthy targets").await;
    let hosts = hostnames(&env, "web").await;
    assert_eq!(hosts.len(), 4, "{hosts:?}");
    assert_eq!(reached(&web, 40).await, hosts, "every task answers");
    log(format!(
        "node: set up in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));

    let (stop, load) = loader(&web);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // First a new node at once (its session replaces the old one's), then
    // one started only once the control plane has seen the node gone (its
    // reports dropped: every target `initial`, Elb.RegistrationInProgress).
    let mut windows = Vec::new();
    for wait_gone in [false, true] {
        let killed_at = start.elapsed().as_secs_f64();
        node.kill9();
        assert!(
            Conn::open(&web.addr).await.is_err(),
            "the listener closes with its node"
        );
        if wait_gone {
            wait_for(
                "the control plane to see the node gone",
                Duration::from_secs(10),
                || async {
                    let t = target_health(&env, &web.tg).await;
                    assert_eq!(target_keys(&t), targets, "the same targets: {t:?}");
                    t.iter()
                        .all(|d| d["TargetHealth"]["State"] == "initial")
                        .then_some(())
                },
            )
            .await;
        }
        let restarted = Instant::now();
        let restarted_at = start.elapsed().as_secs_f64();
        node = LbProcess::start(&env, "lbr-node", &[ip(10)]);
        wait_for("the new node to serve", Duration::from_secs(30), || async {
            let mut c = Conn::open(&web.addr).await.ok()?;
            let (status, body) = c.get_path(&web.dns, "/env").await.ok()?;
            (status == 200 && hostname(&body).is_some_and(|h| hosts.contains(h))).then_some(())
        })
        .await;
        let first_served = restarted.elapsed().as_secs_f64();
        // Every answer on the way: the same targets, none stale, none lost.
        let states = std::sync::Mutex::new(BTreeSet::new());
        wait_for(
            "the targets healthy again",
            Duration::from_secs(30),
            || async {
                let t = target_health(&env, &web.tg).await;
                assert_eq!(target_keys(&t), targets, "the same targets: {t:?}");
                states
                    .lock()
                    .unwrap()
                    .extend(t.iter().map(|d| s(&d["TargetHealth"]["State"])));
                t.iter()
                    .all(|d| d["TargetHealth"]["State"] == "healthy")
                    .then_some(())
            },
        )
        .await;
        let healthy_after = restarted.elapsed().as_secs_f64();
        let states = states.into_inner().unwrap();
        assert_eq!(reached(&web, 40).await, hosts, "every task answers again");
        log(format!(
            "node: killed at {killed_at:.2} s, new node started at {restarted_at:.2} s ({}): first request \
             served {first_served:.2} s after its start; target states seen after its start {states:?}, all \
             healthy {healthy_after:.1} s after it",
            if wait_gone {
                "once the control plane saw the node gone"
            } else {
                "at once"
            }
        ));
        windows.push((killed_at, restarted_at));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.expect("loader");

    // Requests fail only from a kill until the new node first serves.
    let ok = served(&outcomes);
    let failed = failures(&outcomes);
    let mut outside: Vec<&Outcome> = failed.clone();
    for (killed_at, restarted_at) in &windows {
        let back_at = ok
            .iter()
            .find(|(at, _)| at > restarted_at)
            .map(|(at, _)| *at)
            .expect("served after the restart");
        outside.retain(|(at, _)| !(at > killed_at && *at <= back_at));
        let after: BTreeSet<&str> = ok
            .iter()
            .filter(|(at, _)| *at > back_at)
            .map(|(_, h)| h.as_str())
            .collect();
        assert_eq!(
            after,
            hosts.iter().map(String::as_str).collect(),
            "the loader reached every task after the restart"
        );
        log(format!(
            "node: the loader served again {:.2} s after the kill at {killed_at:.2} s",
            back_at - killed_at
        ));
    }
    log(format!(
        "node: {} requests, {} failed, all between a kill and the new node's first answer; whole test {:.1} s",
        outcomes.len(),
        failed.len(),
        t0.elapsed().as_secs_f64()
    ));
    assert!(
        outside.is_empty(),
        "failed with a node serving: {outside:?}"
    );
    node.kill9();
    a.stop().await;
    b.stop().await;
    env.stop().await;
}

/// 2. The control plane is SIGKILLed and restarted on its data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_control_plane_restarted_keeps_every_registration() {
    let t0 = Instant::now();
    let mut env = Env::start_process("lbr-cp", ip(20)).await;
    let a = env.agent("a", "127.0.14.21").await;
    let b = env.agent("b", "127.0.14.22").await;
    env.wait_connected(&a.arn, true).await;
    env.wait_connected(&b.arn, true).await;
    let _node = LbProcess::start(&env, "lbr-cp", &[ip(23)]);
    let web = web(&env, "lbr-cp", 4).await;
    let none = BTreeSet::new();
    let (tasks, targets) = settled(&env, &web, 4, &none, "4 healthy targets").await;
    let arns: BTreeSet<String> = tasks.iter().map(|t| s(&t["taskArn"])).collect();
    let hosts = hostnames(&env, "web").await;
    assert_eq!(reached(&web, 40).await, hosts, "every task answers");
    log(format!("cp: set up in {:.1} s", t0.elapsed().as_secs_f64()));

    let (stop, load) = loader(&web);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    env.kill9_server();
    // The node serves on what it holds while the control plane is gone.
    assert_eq!(
        reached(&web, 40).await,
        hosts,
        "every task answers with the control plane down"
    );
    env.restart_server().await;
    let answering = killed.elapsed().as_secs_f64();
    // Straight after the restart: the same registrations, from the store.
    // (Health is kept in memory: `healthy` here means the node has
    // reconnected and sent its view again.)
    let first = target_health(&env, &web.tg).await;
    assert_eq!(target_keys(&first), targets, "the same targets: {first:?}");
    let first_states: Vec<String> = first
        .iter()
        .map(|d| s(&d["TargetHealth"]["State"]))
        .collect();
    wait_for(
        "the node to report the targets healthy",
        Duration::from_secs(30),
        || async {
            let t = target_health(&env, &web.tg).await;
            assert_eq!(target_keys(&t), targets, "the same targets: {t:?}");
            t.iter()
                .all(|d| d["TargetHealth"]["State"] == "healthy")
                .then_some(())
        },
    )
    .await;
    let healthy_after = killed.elapsed().as_secs_f64();
    env.wait_connected(&a.arn, true).await;
    env.wait_connected(&b.arn, true).await;
    let agents_after = killed.elapsed().as_secs_f64();
    let now: BTreeSet<String> = running(&env)
        .await
        .iter()
        .map(|t| s(&t["taskArn"]))
        .collect();
    assert_eq!(now, arns, "the same tasks run");
    let t = target_health(&env, &web.tg).await;
    assert_eq!(target_keys(&t), targets, "the same targets: {t:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.expect("loader");
    let failed = failures(&outcomes);
    log(format!(
        "cp: SIGKILL; serving again {answering:.2} s later; targets at the first DescribeTargetHealth after it \
         {first_states:?}; all healthy (the node reconnected and reported) {healthy_after:.1} s after the kill, both agents connected {agents_after:.1} s; \
         {} requests through the listener across it, {} failed",
        outcomes.len(),
        failed.len()
    ));
    assert!(failed.is_empty(), "failed requests: {failed:?}");

    // After the restart, changes still reach the targets: a killed task's
    // target goes and its replacement's comes...
    let victim = tasks[0].clone();
    let victim_arn = s(&victim["taskArn"]);
    let victim_target = task_target(&victim);
    let kill = Instant::now();
    docker_kill(&env, &victim_arn).await;
    let gone = BTreeSet::from([victim_arn.clone()]);
    let (_, replaced) = settled(
        &env,
        &web,
        4,
        &gone,
        "the replacement registered, the killed task's target gone",
    )
    .await;
    let replaced_after = kill.elapsed().as_secs_f64();
    assert!(!replaced.contains(&victim_target), "{replaced:?}");
    assert_eq!(
        replaced.intersection(&targets).count(),
        3,
        "the other three stay: {replaced:?}"
    );
    // ...and a scale-in leaves exactly the two tasks left.
    let scale = Instant::now();
    env.call(
        "UpdateService",
        json!({"cluster": env.cluster, "service": "web", "desiredCount": 2}),
    )
    .await;
    let (two_tasks, two) = settled(&env, &web, 2, &none, "2 tasks, 2 targets").await;
    let scaled_after = scale.elapsed().as_secs_f64();
    assert!(two.is_subset(&replaced), "{two:?} of {replaced:?}");
    let hosts = hostnames(&env, "web").await;
    assert_eq!(hosts.len(), 2);
    assert_eq!(reached(&web, 40).await, hosts, "only the two answer");

    // A task dies while the control plane is down: its agent reports it
    // once the control plane is back; its target goes, a replacement's
    // comes.
    let victim = &two_tasks[0];
    let (victim_arn, victim_target) = (s(&victim["taskArn"]), task_target(victim));
    let down = Instant::now();
    env.kill9_server();
    docker_kill(&env, &victim_arn).await;
    env.restart_server().await;
    let (two_tasks, two_after) = settled(
        &env,
        &web,
        2,
        &BTreeSet::from([victim_arn.clone()]),
        "the dead task's target gone, a replacement's healthy",
    )
    .await;
    let died_after = down.elapsed().as_secs_f64();
    assert!(!two_after.contains(&victim_target), "{two_after:?}");
    assert_eq!(two_after.intersection(&two).count(), 1, "{two_after:?}");
    let t = env.task(&victim_arn).await;
    assert_eq!(t["lastStatus"], "STOPPED", "{t}");
    let two = two_after;

    // A restart in the middle of a drain: scale in to 1, and SIGKILL the
    // control plane while the leaving task's target is `draining` (the
    // task held running for it). After the restart the drain completes:
    // the target goes, the task stops, one target is left.
    env.call(
        "UpdateService",
        json!({"cluster": env.cluster, "service": "web", "desiredCount": 1}),
    )
    .await;
    let draining = wait_for("a target draining", Duration::from_secs(30), || async {
        let t = target_health(&env, &web.tg).await;
        let d: Vec<TargetKey> = target_keys(
            &t.into_iter()
                .filter(|d| d["TargetHealth"]["State"] == "draining")
                .collect::<Vec<_>>(),
        )
        .into_iter()
        .collect();
        (d.len() == 1).then(|| d[0].clone())
    })
    .await;
    let leaving = two_tasks
        .iter()
        .find(|t| task_target(t) == draining)
        .map(|t| s(&t["taskArn"]))
        .expect("the draining target is one of the two tasks");
    let drain_kill = Instant::now();
    env.kill9_server();
    env.restart_server().await;
    let (_, one) = settled(
        &env,
        &web,
        1,
        &BTreeSet::from([leaving.clone()]),
        "1 task, 1 target, the drained one gone",
    )
    .await;
    assert!(!one.contains(&draining) && one.is_subset(&two), "{one:?}");
    let stopped = wait_for(
        "the drained task STOPPED",
        Duration::from_secs(30),
        || async {
            let t = env.task(&leaving).await;
            (t["lastStatus"] == "STOPPED").then_some(t)
        },
    )
    .await;
    let drained_after = drain_kill.elapsed().as_secs_f64();
    assert!(
        env.containers_of(&leaving)
            .await
            .iter()
            .all(|c| c.state != Some(bollard::models::ContainerSummaryStateEnum::RUNNING)),
        "the drained task's container stopped"
    );
    let held = stopped["stoppedAt"].as_f64().unwrap_or(0.0)
        - stopped["stoppingAt"].as_f64().unwrap_or(0.0);
    let hosts = hostnames(&env, "web").await;
    assert_eq!(hosts.len(), 1);
    assert_eq!(reached(&web, 20).await, hosts, "only the one answers");
    log(format!(
        "cp: after the restart, docker kill -> replacement registered and the target set exact in \
         {replaced_after:.1} s; scale 4 -> 2 exact in {scaled_after:.1} s (deregistration delay 5 s); \
         SIGKILL, docker kill of a task, restart: its target gone and a replacement's healthy {died_after:.1} s \
         after the SIGKILL; \
         SIGKILL during a drain (scale 2 -> 1): after the restart 1 target exact and the drained task STOPPED \
         {drained_after:.1} s after the kill (stoppedAt - stoppingAt {held:.1} s); whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    a.stop().await;
    b.stop().await;
    env.stop().await;
}

/// 3. An agent is SIGKILLed and restarted within the lost-host grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_restarted_within_the_grace_changes_no_target() {
    let t0 = Instant::now();
    let env = Env::start("lbr-agent").await;
    let (dir_a, dir_b) = (data_dir(&env, "agent-a"), data_dir(&env, "agent-b"));
    let mut agent_a = env.agent_process(&dir_a, "127.0.14.31");
    let mut agent_b = env.agent_process(&dir_b, "127.0.14.32");
    let a = env.registered(&dir_a).await;
    let b = env.registered(&dir_b).await;
    let _node = LbProcess::start(&env, "lbr-agent", &[ip(33)]);
    let web = web(&env, "lbr-agent", 4).await;
    let none = BTreeSet::new();
    let (tasks, targets) = settled(&env, &web, 4, &none, "4 healthy targets").await;
    let arns: BTreeSet<String> = tasks.iter().map(|t| s(&t["taskArn"])).collect();
    let on_a = tasks
        .iter()
        .filter(|t| t["containerInstanceArn"] == a.as_str())
        .count();
    assert_eq!(on_a, 2, "spread: two tasks on each agent");
    let hosts = hostnames(&env, "web").await;
    let containers: BTreeSet<String> = env
        .running_containers()
        .await
        .iter()
        .map(short_id)
        .collect();
    assert_eq!(containers, hosts);
    assert_eq!(reached(&web, 40).await, hosts, "every task answers");
    log(format!(
        "agent: set up in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));

    // The same targets, all healthy, the same tasks RUNNING and the same
    // containers in Docker (no duplicate).
    let unchanged = || async {
        let t = target_health(&env, &web.tg).await;
        assert_eq!(target_keys(&t), targets, "the same targets: {t:?}");
        assert!(
            t.iter().all(|d| d["TargetHealth"]["State"] == "healthy"),
            "{t:?}"
        );
        let now: BTreeSet<String> = running(&env)
            .await
            .iter()
            .map(|t| s(&t["taskArn"]))
            .collect();
        assert_eq!(now, arns, "the same tasks");
        let running: BTreeSet<String> = env
            .running_containers()
            .await
            .iter()
            .map(short_id)
            .collect();
        assert_eq!(running, containers, "the same containers, once each");
    };

    let (stop, load) = loader(&web);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    agent_a.kill9();
    env.wait_connected(&a, false).await;
    let noticed = killed.elapsed().as_secs_f64();
    unchanged().await;
    let _agent_a = env.agent_process(&dir_a, "127.0.14.31");
    env.wait_connected(&a, true).await;
    let back = killed.elapsed().as_secs_f64();
    // Longer than the lb-targets controller's 2 s poll and the agent's
    // first resync.
    let watch = Instant::now();
    let mut polls = 0;
    while watch.elapsed() < Duration::from_secs(4) {
        unchanged().await;
        polls += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(reached(&web, 40).await, hosts, "every task answers");
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.expect("loader");
    let failed = failures(&outcomes);
    log(format!(
        "agent: SIGKILL, seen disconnected after {noticed:.2} s, restarted and connected {back:.2} s after the \
         kill; {polls} checks over 4 s after: same 4 targets healthy, same tasks and containers; {} requests, {} \
         failed",
        outcomes.len(),
        failed.len(),
    ));
    assert!(failed.is_empty(), "failed requests: {failed:?}");

    // While B is down one of its containers dies (`docker kill`): nobody
    // but the node's health checks can see it until B is back, finds it
    // dead and reports the task stopped. Then its target goes and a
    // replacement's comes: the set is exact again, no stale target.
    let victim = tasks
        .iter()
        .find(|t| t["containerInstanceArn"] == b.as_str())
        .unwrap();
    let (victim_arn, victim_target) = (s(&victim["taskArn"]), task_target(victim));
    agent_b.kill9();
    env.wait_connected(&b, false).await;
    docker_kill(&env, &victim_arn).await;
    let restarted = Instant::now();
    let _agent_b = env.agent_process(&dir_b, "127.0.14.32");
    env.wait_connected(&b, true).await;
    let (_, replaced) = settled(
        &env,
        &web,
        4,
        &BTreeSet::from([victim_arn.clone()]),
        "the dead task's target gone, a replacement's healthy",
    )
    .await;
    let replaced_after = restarted.elapsed().as_secs_f64();
    assert!(!replaced.contains(&victim_target), "{replaced:?}");
    assert_eq!(
        replaced.intersection(&targets).count(),
        3,
        "the other three stay: {replaced:?}"
    );
    let t = env.task(&victim_arn).await;
    assert_eq!(t["lastStatus"], "STOPPED", "{t}");
    let hosts = hostnames(&env, "web").await;
    assert_eq!(reached(&web, 40).await, hosts, "every task answers");
    log(format!(
        "agent: a container killed while its agent was down: after the agent's restart its task STOPPED, its \
         target gone and the replacement's healthy in {replaced_after:.1} s; whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    env.stop().await;
}

/// How long a disconnected agent's tasks are kept in test 4.
const GRACE: Duration = Duration::from_secs(2);

/// 4. An agent is SIGKILLed for good; it returns only after its tasks were
/// replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_hosts_targets_go_and_never_come_back() {
    let t0 = Instant::now();
    let config = flotilla_server::Config {
        controllers: ControllerConfig {
            lost_host_grace: GRACE,
            ..Default::default()
        },
        ..Default::default()
    };
    let env = Env::start_with("lbr-lost", config).await;
    let (dir_a, dir_b) = (data_dir(&env, "agent-a"), data_dir(&env, "agent-b"));
    let mut agent_a = env.agent_process(&dir_a, "127.0.14.41");
    let _agent_b = env.agent_process(&dir_b, "127.0.14.42");
    let a = env.registered(&dir_a).await;
    env.registered(&dir_b).await;
    let a_id = a.rsplit('/').next().unwrap().to_string();
    let _node = LbProcess::start(&env, "lbr-lost", &[ip(43)]);
    let web = web(&env, "lbr-lost", 4).await;
    let none = BTreeSet::new();
    let (tasks, _) = settled(&env, &web, 4, &none, "4 healthy targets").await;
    let lost: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["containerInstanceArn"] == a.as_str())
        .collect();
    assert_eq!(lost.len(), 2, "spread: two tasks on each agent");
    let lost_arns: BTreeSet<String> = lost.iter().map(|t| s(&t["taskArn"])).collect();
    let lost_targets: BTreeSet<TargetKey> = lost.iter().map(|t| task_target(t)).collect();
    let mut lost_hosts = BTreeSet::new();
    for arn in &lost_arns {
        lost_hosts.extend(env.containers_of(arn).await.iter().map(short_id));
    }
    assert_eq!(lost_hosts.len(), 2);
    assert_eq!(
        reached(&web, 40).await,
        hostnames(&env, "web").await,
        "every task answers"
    );
    log(format!(
        "lost: set up in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));

    let (stop, load) = loader(&web);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    agent_a.kill9();
    for arn in &lost_arns {
        wait_for(
            "the lost task STOPPED",
            GRACE + Duration::from_secs(10),
            || async { (env.task(arn).await["lastStatus"] == "STOPPED").then_some(()) },
        )
        .await;
    }
    let stopped_after = killed.elapsed().as_secs_f64();
    let stopped_at = start.elapsed().as_secs_f64();
    let (now, targets) = settled(
        &env,
        &web,
        4,
        &lost_arns,
        "replacements registered and healthy, the lost targets gone",
    )
    .await;
    let in_service_at = start.elapsed().as_secs_f64();
    let in_service_after = killed.elapsed().as_secs_f64();
    assert!(targets.is_disjoint(&lost_targets), "{targets:?}");
    assert!(
        targets.iter().all(|(id, _)| *id != a_id),
        "nothing on the lost host: {targets:?}"
    );
    let hosts = hostnames(&env, "web").await;
    assert!(hosts.is_disjoint(&lost_hosts));
    // The lost containers still answer on their ports: a stale target
    // would still "work".
    for (_, port) in &lost_targets {
        let mut c = Conn::open(&format!("127.0.14.41:{port}"))
            .await
            .expect("the lost container still listens");
        let (status, body) = c.get_path("direct", "/env").await.expect("direct GET");
        assert_eq!(status, 200);
        assert!(lost_hosts.contains(hostname(&body).unwrap()), "{body}");
    }
    assert_eq!(
        reached(&web, 40).await,
        hosts,
        "the listener reaches the replacements and the survivors only"
    );

    // A returns: its old containers go and never come back as targets.
    let returned = Instant::now();
    let _agent_a = env.agent_process(&dir_a, "127.0.14.41");
    env.wait_connected(&a, true).await;
    wait_for(
        "the lost containers removed",
        Duration::from_secs(30),
        || async {
            let t = target_health(&env, &web.tg).await;
            assert_eq!(target_keys(&t), targets, "the same targets: {t:?}");
            for arn in &lost_arns {
                if !env.containers_of(arn).await.is_empty() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let removed_after = returned.elapsed().as_secs_f64();
    let watch = Instant::now();
    let now_arns: BTreeSet<String> = now.iter().map(|t| s(&t["taskArn"])).collect();
    while watch.elapsed() < Duration::from_secs(3) {
        let t = target_health(&env, &web.tg).await;
        assert_eq!(target_keys(&t), targets, "the same targets: {t:?}");
        let running: BTreeSet<String> = running(&env)
            .await
            .iter()
            .map(|t| s(&t["taskArn"]))
            .collect();
        assert_eq!(running, now_arns);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(reached(&web, 40).await, hosts);
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.expect("loader");
    let failed = failures(&outcomes);
    let ok = served(&outcomes);
    let lost_before = ok.iter().filter(|(_, h)| lost_hosts.contains(h)).count();
    let last_lost = ok
        .iter()
        .filter(|(_, h)| lost_hosts.contains(h))
        .map(|(at, _)| *at)
        .fold(0.0f64, f64::max);
    let lost_after: Vec<_> = ok
        .iter()
        .filter(|(at, h)| *at > in_service_at && lost_hosts.contains(h))
        .collect();
    log(format!(
        "lost: SIGKILL (grace {GRACE:?}): lost tasks STOPPED {stopped_after:.1} s after, replacements registered \
         and healthy with the lost targets gone {in_service_after:.1} s after; the lost containers still answered \
         directly; last request served by a lost task at {last_lost:.2} s (kill at {:.2} s, both seen STOPPED \
         at {stopped_at:.2} s, settled at {in_service_at:.2} s); agent back: old containers removed {removed_after:.1} s after its restart, never \
         re-registered; {} requests ({lost_before} by the lost tasks), {} failed; whole test {:.1} s",
        killed.duration_since(start).as_secs_f64(),
        outcomes.len(),
        failed.len(),
        t0.elapsed().as_secs_f64()
    ));
    assert!(
        lost_after.is_empty(),
        "a lost task served after its replacement was in service: {lost_after:?}"
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    env.stop().await;
}
