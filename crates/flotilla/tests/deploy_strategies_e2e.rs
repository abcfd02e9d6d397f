//! End to end: LINEAR, CANARY with alarm rollback and a PAUSE hook, each
//! on a 4-task service behind an application load balancer, with real
//! parts only: a control plane in-process, a real agent on the Docker
//! Engine running the test image (`serve 8080 BODY`), a real
//! load-balancer node (`flotilla_lb`), the real AWS CLI, and a bounded
//! loader sending requests through the listener the whole time. Not one
//! request may fail in any of them.
//!
//! - LINEAR in 3 steps (stepPercent 33.4, one-minute step bake): the
//!   share of `v2` answers in each step's window is the step's ± 5 %, then
//!   100 %; SUCCESSFUL; the `v1` tasks gone.
//! - CANARY 25 % watched by an alarm, the alarm set to ALARM during the
//!   canary (by SetAlarmState, and by PutMetricData breaching a
//!   high-resolution metric alarm's threshold): ROLLBACK_SUCCESSFUL, all
//!   answers `v1` again, the alarm named in DescribeServiceDeployments.
//! - BLUE_GREEN with a PAUSE hook at POST_TEST_TRAFFIC_SHIFT: held there
//!   (production traffic all `v1`, test traffic all `v2`, both observed)
//!   until ContinueServiceDeployment CONTINUE; then all `v2`, SUCCESSFUL.
//!
//! The tests run at once (each its own control plane, its own load
//! balancer node on 127.0.9.x and agent on 127.0.9.x), so the file takes
//! about as long as the longest (the linear one: two one-minute steps).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lb::{
    aws, create_service, failures, healthy, load, s, serving, share, LbNode, Outcome, ShiftingLb,
};
use common::{wait_for, Env, TestAgent};
use serde_json::{json, Value};

/// Each loader: 2 keep-alive connections, 10 ms between requests on each
/// (four tests run at once on a small machine).
const CONNECTIONS: usize = 2;
const PAUSE: Duration = Duration::from_millis(10);

/// A 4-task service `web` on `v1` behind a [`ShiftingLb`], the `v2`
/// revision registered, a loader ready to start.
struct Rig {
    env: Env,
    agent: TestAgent,
    node: LbNode,
    lb: ShiftingLb,
    v2: String,
    start: Instant,
}

impl Rig {
    async fn new(name: &str, lb_ip: Ipv4Addr, agent_ip: &str, dc: Value, test_rule: bool) -> Rig {
        let start = Instant::now();
        let env = Env::start(name).await;
        let agent = env.agent("a", agent_ip).await;
        env.wait_connected(&agent.arn, true).await;
        let node = LbNode::start(&env, &format!("{name}-node"), &[IpAddr::V4(lb_ip)]);
        let lb = ShiftingLb::create(&env, name, test_rule).await;
        let family = format!("{name}-web");
        let v1 = env.register_task_definition(&family, serving("v1")).await;
        let v2 = env.register_task_definition(&family, serving("v2")).await;
        let dc = dc.to_string();
        create_service(
            &env,
            "web",
            &v1,
            4,
            &lb.service_load_balancers(),
            &["--deployment-configuration", &dc],
        )
        .await;
        wait_for(
            "four healthy v1 targets",
            Duration::from_secs(120),
            || async { (healthy(&env, &lb.blue).await == 4).then_some(()) },
        )
        .await;
        Rig {
            env,
            agent,
            node,
            lb,
            v2,
            start,
        }
    }

    /// Starts a loader on `path` through the listener, bounded to
    /// `limit`; its clock starts now.
    fn loader(&self, path: &'static str, stop: &Arc<AtomicBool>, limit: Duration) -> Loader {
        let started = Instant::now();
        let task = tokio::spawn(load(
            self.lb.addr.clone(),
            self.lb.dns.clone(),
            path,
            CONNECTIONS,
            PAUSE,
            stop.clone(),
            limit,
            200_000,
        ));
        Loader { started, task }
    }

    /// UpdateService to `v2`; the new service deployment's ARN.
    async fn update(&self) -> String {
        aws(
            &self.env,
            "ecs",
            &[
                "update-service",
                "--cluster",
                &self.env.cluster,
                "--service",
                "web",
                "--task-definition",
                &self.v2,
            ],
        )
        .await;
        let list = aws(
            &self.env,
            "ecs",
            &[
                "list-service-deployments",
                "--cluster",
                &self.env.cluster,
                "--service",
                "web",
            ],
        )
        .await;
        s(&list["serviceDeployments"][0]["serviceDeploymentArn"])
    }

    async fn describe(&self, arn: &str) -> Value {
        aws(
            &self.env,
            "ecs",
            &[
                "describe-service-deployments",
                "--service-deployment-arns",
                arn,
            ],
        )
        .await["serviceDeployments"][0]
            .clone()
    }

    /// Polls deployment `arn` until `done` holds: the description then,
    /// and on `loader`'s clock when the last poll that did not see it
    /// began and when the one that saw it returned.
    async fn until(
        &self,
        what: &str,
        arn: &str,
        loader: &Loader,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> (Value, f64, f64) {
        let deadline = Instant::now() + limit;
        let mut last_not = loader.now();
        loop {
            let before = loader.now();
            let d = self.describe(arn).await;
            if done(&d) {
                return (d, last_not, loader.now());
            }
            last_not = before;
            assert!(Instant::now() < deadline, "never {what}: {d:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn service(&self) -> Value {
        aws(
            &self.env,
            "ecs",
            &[
                "describe-services",
                "--cluster",
                &self.env.cluster,
                "--services",
                "web",
            ],
        )
        .await["services"][0]
            .clone()
    }

    /// Waits until the service has one deployment, on `task_definition`,
    /// with 4 tasks running.
    async fn settled_on(&self, task_definition: &str) {
        wait_for(
            "one deployment of 4 running tasks",
            Duration::from_secs(90),
            || async {
                let svc = self.service().await;
                let deployments = svc["deployments"].as_array().cloned().unwrap_or_default();
                (deployments.len() == 1
                    && deployments[0]["taskDefinition"] == task_definition
                    && svc["runningCount"] == 4)
                    .then_some(())
            },
        )
        .await;
    }

    async fn stop(self) {
        self.env
            .call(
                "DeleteService",
                json!({"cluster": self.env.cluster, "service": "web", "force": true}),
            )
            .await;
        wait_for(
            "the service's tasks stopped",
            Duration::from_secs(60),
            || async {
                let l = self
                    .env
                    .call(
                        "ListTasks",
                        json!({"cluster": self.env.cluster, "serviceName": "web"}),
                    )
                    .await;
                l["taskArns"]
                    .as_array()
                    .is_none_or(|a| a.is_empty())
                    .then_some(())
            },
        )
        .await;
        self.node.stop().await;
        self.agent.stop().await;
        self.env.stop().await;
    }
}

struct Loader {
    started: Instant,
    task: tokio::task::JoinHandle<Vec<Outcome>>,
}

impl Loader {
    /// Seconds on this loader's clock.
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    async fn outcomes(self, stop: &Arc<AtomicBool>) -> Vec<Outcome> {
        stop.store(true, Ordering::Relaxed);
        self.task.await.expect("loader")
    }
}

fn assert_no_failure(what: &str, outcomes: &[Outcome]) {
    let failed = failures(outcomes);
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed, first: {:?}",
        failed.len(),
        outcomes.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
}

fn weight(d: &Value) -> f64 {
    d["targetServiceRevision"]["requestedProductionTrafficWeight"]
        .as_f64()
        .unwrap_or(-1.0)
}

/// A new weight reaches the load-balancer node with its next
/// configuration: a window starts this long after the weight was seen.
const SETTLE: f64 = 2.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linear_in_three_steps_shifts_the_observed_share_step_by_step() {
    let dc = json!({"strategy": "LINEAR", "bakeTimeInMinutes": 0,
        "linearConfiguration": {"stepPercent": 33.4, "stepBakeTimeInMinutes": 1}});
    let rig = Rig::new(
        "e2e-linear",
        Ipv4Addr::new(127, 0, 9, 1),
        "127.0.9.2",
        dc,
        false,
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let loader = rig.loader("/", &stop, Duration::from_secs(300));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arn = rig.update().await;

    // The steps: 33.4 %, 66.8 %, then all.
    let mut windows = Vec::new();
    let (_, _, mut from) = rig
        .until(
            "the first step",
            &arn,
            &loader,
            Duration::from_secs(120),
            |d| weight(d) == 33.4,
        )
        .await;
    for (next, expect) in [(66.8, 33.4), (100.0, 66.8)] {
        let (_, to, seen) = rig
            .until(
                "the next step",
                &arn,
                &loader,
                Duration::from_secs(90),
                |d| weight(d) == next,
            )
            .await;
        windows.push((expect, from + SETTLE, to));
        from = seen;
    }
    let all_from = from + SETTLE;
    rig.until("SUCCESSFUL", &arn, &loader, Duration::from_secs(90), |d| {
        d["status"] == "SUCCESSFUL"
    })
    .await;
    rig.settled_on(&rig.v2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all_to = loader.now();
    let outcomes = loader.outcomes(&stop).await;

    let mut report = Vec::new();
    for (expect, from, to) in &windows {
        let (n, v2) = share(&outcomes, *from, *to, "v2");
        report.push((*expect, n, v2 as f64 * 100.0 / n.max(1) as f64));
    }
    let (tail, tail_v2) = share(&outcomes, all_from, all_to, "v2");
    eprintln!(
        "linear e2e: {} requests, {} failed; steps (asked %, requests, v2 %): {report:.1?}; after: {tail_v2}/{tail} v2; whole test {:.1} s",
        outcomes.len(),
        failures(&outcomes).len(),
        rig.start.elapsed().as_secs_f64()
    );
    assert_no_failure("linear", &outcomes);
    for (expect, n, got) in &report {
        assert!(*n >= 300, "only {n} requests in the {expect} % step");
        assert!(
            (got - expect).abs() <= 5.0,
            "step {expect} %: v2 answered {got:.1} % of {n}"
        );
    }
    assert!(tail >= 100, "only {tail} requests after the last step");
    assert_eq!(tail_v2, tail, "after the last step everything is v2");
    rig.stop().await;
}

/// How the alarm is set to ALARM during the canary.
enum Trigger {
    SetAlarmState,
    Metric,
}

async fn a_canary_rolls_back_on_an_alarm(
    name: &str,
    lb_ip: Ipv4Addr,
    agent_ip: &str,
    trigger: Trigger,
) {
    let alarm = format!("{name}-errors");
    let dc = json!({"strategy": "CANARY", "bakeTimeInMinutes": 0,
        "canaryConfiguration": {"canaryPercent": 25.0, "canaryBakeTimeInMinutes": 1},
        "alarms": {"alarmNames": [alarm], "enable": true, "rollback": true}});
    let rig = Rig::new(name, lb_ip, agent_ip, dc, false).await;
    // Errors of the new revision, as a high-resolution custom metric:
    // ALARM on one 10 s period at 1 or more.
    aws(
        &rig.env,
        "cloudwatch",
        &[
            "put-metric-alarm",
            "--alarm-name",
            &alarm,
            "--namespace",
            "E2E/Web",
            "--metric-name",
            "Errors",
            "--statistic",
            "Maximum",
            "--period",
            "10",
            "--evaluation-periods",
            "1",
            "--threshold",
            "1",
            "--comparison-operator",
            "GreaterThanOrEqualToThreshold",
            "--treat-missing-data",
            "notBreaching",
        ],
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let loader = rig.loader("/", &stop, Duration::from_secs(240));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arn = rig.update().await;
    let (_, _, canary_from) = rig
        .until(
            "the canary shift",
            &arn,
            &loader,
            Duration::from_secs(120),
            |d| weight(d) == 25.0,
        )
        .await;
    // Some of the canary, then the alarm.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let canary_to = loader.now();
    let alarm_at = loader.now();
    match trigger {
        Trigger::SetAlarmState => {
            aws(
                &rig.env,
                "cloudwatch",
                &[
                    "set-alarm-state",
                    "--alarm-name",
                    &alarm,
                    "--state-value",
                    "ALARM",
                    "--state-reason",
                    "e2e: the canary errs",
                ],
            )
            .await;
        }
        Trigger::Metric => {
            // Until the alarm evaluates its period (every 10 s).
            wait_for("the alarm in ALARM", Duration::from_secs(45), || async {
                aws(
                    &rig.env,
                    "cloudwatch",
                    &[
                        "put-metric-data",
                        "--namespace",
                        "E2E/Web",
                        "--metric-data",
                        "MetricName=Errors,Value=5,StorageResolution=1",
                    ],
                )
                .await;
                let a = aws(
                    &rig.env,
                    "cloudwatch",
                    &["describe-alarms", "--alarm-names", &alarm],
                )
                .await;
                (a["MetricAlarms"][0]["StateValue"] == "ALARM").then_some(())
            })
            .await;
        }
    }
    let (rolling_back, _, back_seen) = rig
        .until(
            "the rollback",
            &arn,
            &loader,
            Duration::from_secs(60),
            |d| d["status"] == "ROLLBACK_IN_PROGRESS" || d["status"] == "ROLLBACK_SUCCESSFUL",
        )
        .await;
    let (done, _, _) = rig
        .until(
            "ROLLBACK_SUCCESSFUL",
            &arn,
            &loader,
            Duration::from_secs(90),
            |d| d["status"] == "ROLLBACK_SUCCESSFUL",
        )
        .await;
    let v1 = s(&done["sourceServiceRevisions"][0]["arn"]);
    let revisions = aws(
        &rig.env,
        "ecs",
        &["describe-service-revisions", "--service-revision-arns", &v1],
    )
    .await;
    let v1_task_definition = s(&revisions["serviceRevisions"][0]["taskDefinition"]);
    rig.settled_on(&v1_task_definition).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = loader.now();
    let outcomes = loader.outcomes(&stop).await;

    let (canary, canary_v2) = share(&outcomes, canary_from + SETTLE, canary_to, "v2");
    let (after, after_v1) = share(&outcomes, back_seen + SETTLE, end, "v1");
    let last_v2 = outcomes
        .iter()
        .rev()
        .find(|(_, r)| matches!(r, Ok((_, b)) if b == "v2"))
        .map(|(at, _)| at - alarm_at);
    eprintln!(
        "{name}: {} requests, {} failed; canary: {canary_v2}/{canary} v2; after the rollback: {after_v1}/{after} v1; last v2 answer {:.1} s after the alarm was set; whole test {:.1} s",
        outcomes.len(),
        failures(&outcomes).len(),
        last_v2.unwrap_or(f64::NAN),
        rig.start.elapsed().as_secs_f64()
    );
    assert_no_failure(name, &outcomes);
    assert!(
        canary >= 100 && canary_v2 * 100 >= canary * 20 && canary_v2 * 100 <= canary * 30,
        "the canary before the alarm: {canary_v2}/{canary} v2"
    );
    assert!(after >= 100, "only {after} requests after the rollback");
    assert_eq!(after_v1, after, "after the rollback everything is v1");
    assert_eq!(
        rolling_back["alarms"]["status"], "TRIGGERED",
        "{rolling_back:#}"
    );
    assert_eq!(
        done["alarms"]["triggeredAlarmNames"],
        json!([alarm]),
        "{done:#}"
    );
    assert!(
        done["rollback"]["reason"].as_str().is_some(),
        "the rollback says why: {done:#}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_rolls_back_when_its_alarm_is_set_to_alarm() {
    a_canary_rolls_back_on_an_alarm(
        "e2e-canary-set",
        Ipv4Addr::new(127, 0, 9, 11),
        "127.0.9.12",
        Trigger::SetAlarmState,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_rolls_back_when_its_metric_breaches_the_alarm() {
    a_canary_rolls_back_on_an_alarm(
        "e2e-canary-metric",
        Ipv4Addr::new(127, 0, 9, 21),
        "127.0.9.22",
        Trigger::Metric,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_hook_holds_a_blue_green_until_continue() {
    let dc = json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0,
        "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}]});
    let rig = Rig::new(
        "e2e-hook",
        Ipv4Addr::new(127, 0, 9, 31),
        "127.0.9.32",
        dc,
        true,
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let loader = rig.loader("/", &stop, Duration::from_secs(240));
    let tester = rig.loader("/test/x", &stop, Duration::from_secs(240));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arn = rig.update().await;
    let awaiting = |d: &Value| {
        d["lifecycleHookDetails"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["status"] == "AWAITING_ACTION")
            .map(|h| s(&h["hookId"]))
    };
    let (held, _, held_seen) = rig
        .until(
            "held by the hook",
            &arn,
            &loader,
            Duration::from_secs(120),
            |d| d["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT" && awaiting(d).is_some(),
        )
        .await;
    let hook = awaiting(&held).unwrap();
    // Held: the stage and the weights stay while traffic flows.
    let mut looks = 0;
    let hold_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < hold_until {
        let d = rig.describe(&arn).await;
        assert_eq!(d["status"], "IN_PROGRESS", "{d:#}");
        assert_eq!(d["lifecycleStage"], "POST_TEST_TRAFFIC_SHIFT", "{d:#}");
        assert_eq!(weight(&d), 0.0, "{d:#}");
        looks += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let continued_at = loader.now();
    aws(
        &rig.env,
        "ecs",
        &[
            "continue-service-deployment",
            "--service-deployment-arn",
            &arn,
            "--hook-id",
            &hook,
            "--action",
            "CONTINUE",
        ],
    )
    .await;
    let (_, _, shifted_seen) = rig
        .until(
            "the production shift",
            &arn,
            &loader,
            Duration::from_secs(60),
            |d| weight(d) == 100.0,
        )
        .await;
    rig.until("SUCCESSFUL", &arn, &loader, Duration::from_secs(90), |d| {
        d["status"] == "SUCCESSFUL"
    })
    .await;
    rig.settled_on(&rig.v2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = loader.now();
    // The two loaders started together, within a few milliseconds.
    let outcomes = loader.outcomes(&stop).await;
    let tests = tester.outcomes(&stop).await;

    let (held_n, held_v2) = share(&outcomes, held_seen, continued_at, "v2");
    let (test_n, test_v2) = share(&tests, held_seen + SETTLE, continued_at, "v2");
    let (after, after_v2) = share(&outcomes, shifted_seen + SETTLE, end, "v2");
    let first_v2 = outcomes
        .iter()
        .find(|(_, r)| matches!(r, Ok((_, b)) if b == "v2"))
        .map(|(at, _)| at - continued_at);
    eprintln!(
        "hook e2e: {} production and {} test requests, {} failed; held {looks} looks: production {held_v2}/{held_n} v2, test {test_v2}/{test_n} v2; first production v2 answer {:.1} s after continue; after: {after_v2}/{after} v2; whole test {:.1} s",
        outcomes.len(),
        tests.len(),
        failures(&outcomes).len() + failures(&tests).len(),
        first_v2.unwrap_or(f64::NAN),
        rig.start.elapsed().as_secs_f64()
    );
    assert_no_failure("production", &outcomes);
    assert_no_failure("test", &tests);
    assert!(held_n >= 300, "only {held_n} requests while held");
    assert_eq!(held_v2, 0, "no production traffic on v2 while held");
    assert!(test_n >= 300, "only {test_n} test requests while held");
    assert_eq!(test_v2, test_n, "test traffic all on v2 while held");
    assert!(
        first_v2.is_some_and(|t| t > 0.0),
        "production reaches v2 only after the continue"
    );
    assert!(after >= 100, "only {after} requests after the shift");
    assert_eq!(after_v2, after, "after the shift everything is v2");
    rig.stop().await;
}
