//! CloudWatch alarms and metrics through the whole control plane: an alarm
//! that goes to ALARM and back to OK at the right evaluations, its
//! transitions published on `Env::alarm_actions`; `AWS/ECS` utilization
//! computed from simulated hosts' stats; and alarms, history and data that
//! survive a restart.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types as cwt;
use aws_sdk_ecs::config::{BehaviorVersion, Credentials as SdkCredentials, Region};
use common::{eventually, ALICE, REGION};
use flotilla_metrics::{AlarmTransition, StateValue};
use flotilla_model::agent::{AgentMessage, ContainerStats, TaskStats};
use flotilla_server::api::Env;
use flotilla_sim::{Behaviour, HostSpec, SimAgent, TaskUsage};
use flotilla_store::sqlite::SqliteStore;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server whose `Env` the test holds, so it can listen on
/// `alarm_actions` as auto scaling and deployments do.
struct Server {
    endpoint: String,
    env: Arc<Env>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

fn credentials() -> flotilla_auth::Credentials {
    flotilla_auth::Credentials::from_toml(&format!(
        "[[principal]]\nname = \"alice\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\naccount_id = \"{}\"\n",
        ALICE.access_key_id, ALICE.secret, ALICE.account
    ))
    .expect("credentials")
}

impl Server {
    async fn start(dir: &Path) -> Server {
        let store = SqliteStore::open(&dir.join("flotilla.db")).expect("open store");
        let stores = flotilla_server::Stores::with_state(dir, Arc::new(store)).expect("stores");
        let env = flotilla_server::open_env(stores).expect("env");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let served = env.clone();
        let handle = tokio::spawn(async move {
            flotilla_server::serve(
                listener,
                served.clone(),
                credentials(),
                Default::default(),
                async {
                    let _ = rx.await;
                },
            )
            .await
            .expect("server");
            served.metrics.close();
            served.logs.close();
        });
        Server {
            endpoint,
            env,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }

    fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        let config = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_cloudwatch::config::Region::new(REGION))
            .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
                ALICE.access_key_id,
                ALICE.secret,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_cloudwatch::Client::from_conf(config)
    }

    fn ecs(&self) -> aws_sdk_ecs::Client {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(REGION))
            .credentials_provider(SdkCredentials::new(
                ALICE.access_key_id,
                ALICE.secret,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_ecs::Client::from_conf(config)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The next transition of `alarm` on the channel, within `secs`.
async fn next_transition(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<AlarmTransition>>,
    alarm: &str,
    secs: u64,
) -> Arc<AlarmTransition> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let t = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no transition of {alarm} within {secs} s"))
            .expect("the channel stays open");
        if t.alarm_name == alarm && !t.repeat {
            return t;
        }
    }
}

/// Waits until the wall clock is 1 to 6 s into a 10 s period.
async fn aligned() {
    let into = now_secs() % 10.0;
    if !(1.0..6.0).contains(&into) {
        let wait = (11.0 - into) % 10.0;
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

async fn put(cw: &aws_sdk_cloudwatch::Client, value: f64) {
    cw.put_metric_data()
        .namespace("Flotilla/Queue")
        .metric_data(
            cwt::MetricDatum::builder()
                .metric_name("Depth")
                .value(value)
                .storage_resolution(1)
                .build(),
        )
        .send()
        .await
        .expect("put-metric-data");
}

/// A high-resolution alarm (10 s periods) goes to ALARM at the first
/// evaluation after a breaching datapoint and back to OK at the first after
/// a healthy one; both transitions are published on `alarm_actions` (with
/// the state's actions) and recorded in the history.
#[tokio::test]
async fn high_resolution_alarm_fires_and_recovers_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let mut actions = server.env.alarm_actions.subscribe();
    let cw = server.cloudwatch();
    let policy = "arn:aws:autoscaling:us-east-1:111111111111:scalingPolicy:1:resource/ecs/service/default/web:policyName/out";
    cw.put_metric_alarm()
        .alarm_name("queue-high")
        .namespace("Flotilla/Queue")
        .metric_name("Depth")
        .statistic(cwt::Statistic::Maximum)
        .period(10)
        .evaluation_periods(1)
        .threshold(50.0)
        .comparison_operator(cwt::ComparisonOperator::GreaterThanThreshold)
        .treat_missing_data("ignore")
        .alarm_actions(policy)
        .send()
        .await
        .expect("put-metric-alarm");

    // Datapoints go in early in a 10 s period, so the evaluation at its end
    // certainly reads them (a put racing the boundary would be judged at
    // the next one).
    aligned().await;
    put(&cw, 80.0).await;
    let put_at = now_secs();
    let fired = next_transition(&mut actions, "queue-high", 60).await;
    let lateness = now_secs() - (put_at / 10.0).ceil() * 10.0;
    println!("ALARM published {lateness:.2} s after the end of the breaching period");
    assert_eq!(fired.new_state, StateValue::Alarm, "{fired:?}");
    assert_eq!(fired.actions, vec![policy.to_string()]);
    assert_eq!(fired.recent_datapoints.last(), Some(&80.0), "{fired:?}");
    assert!(
        fired.reason.starts_with("Threshold Crossed"),
        "{}",
        fired.reason
    );

    aligned().await;
    put(&cw, 5.0).await;
    let put_at = now_secs();
    let recovered = next_transition(&mut actions, "queue-high", 60).await;
    let lateness = now_secs() - (put_at / 10.0).ceil() * 10.0;
    println!("OK published {lateness:.2} s after the end of the healthy period");
    assert_eq!(recovered.old_state, StateValue::Alarm);
    assert_eq!(recovered.new_state, StateValue::Ok);
    assert!(recovered.actions.is_empty(), "no OK actions configured");

    let described = cw
        .describe_alarms()
        .alarm_names("queue-high")
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.metric_alarms()[0].state_value(),
        Some(&cwt::StateValue::Ok)
    );
    let history = cw
        .describe_alarm_history()
        .alarm_name("queue-high")
        .history_item_type(cwt::HistoryItemType::StateUpdate)
        .scan_by(cwt::ScanBy::TimestampAscending)
        .send()
        .await
        .unwrap();
    let summaries: Vec<&str> = history
        .alarm_history_items()
        .iter()
        .map(|h| h.history_summary().unwrap())
        .collect();
    assert_eq!(
        summaries,
        vec![
            "Alarm updated from INSUFFICIENT_DATA to ALARM",
            "Alarm updated from ALARM to OK"
        ],
        "{history:?}"
    );
    server.stop().await;
}

fn stats(task_arn: &str, cpu_units: f64, memory_mib: f64) -> TaskStats {
    TaskStats {
        task_arn: task_arn.to_string(),
        containers: vec![ContainerStats {
            container_name: "app".into(),
            cpu_units,
            memory_mib,
            timestamp: now_secs(),
            interval: 5.0,
        }],
    }
}

/// `AWS/ECS` `CPUUtilization` and `MemoryUtilization` per cluster and per
/// service, from the stats hosts send: Σ used / Σ reserved × 100, above
/// 100 when tasks use more than they reserve.
#[tokio::test]
async fn ecs_utilization_comes_from_agents_stats() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let ecs = server.ecs();
    ecs.create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .unwrap();
    let raw =
        flotilla_client::Client::ecs(&server.endpoint, ALICE.access_key_id, ALICE.secret, REGION);
    let host = SimAgent::start(
        &raw,
        HostSpec::new("prod", 4096, 8192),
        Behaviour::default(),
    )
    .await
    .expect("sim host");
    ecs.register_task_definition()
        .family("web")
        .cpu("256")
        .memory("512")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image("flotilla-test:latest")
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .cluster("prod")
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    let tasks = eventually(60, "two running tasks", || async {
        let list = ecs
            .list_tasks()
            .cluster("prod")
            .service_name("web")
            .send()
            .await
            .ok()?;
        let arns = list.task_arns().to_vec();
        let described = ecs
            .describe_tasks()
            .cluster("prod")
            .set_tasks(Some(arns.clone()))
            .send()
            .await
            .ok()?;
        let running = described
            .tasks()
            .iter()
            .filter(|t| t.last_status() == Some("RUNNING"))
            .count();
        (arns.len() == 2 && running == 2).then_some(arns)
    })
    .await;

    // One stats message with two samples of each task. Task 1: 384 and
    // 640 CPU units (mean 512) of its 256, 128 MiB of its 512; task 2: 128
    // units, 384 MiB. The service: (512 + 128) / (256 + 256) = 125 % CPU,
    // (128 + 384) / (512 + 512) = 50 % memory. One message is counted in
    // one flush whole, so every datapoint says the same.
    let cw = server.cloudwatch();
    let start = DateTime::from_secs(now_secs() as i64 - 300);
    let end = DateTime::from_secs(now_secs() as i64 + 300);
    let query = |metric: &'static str, dims: Vec<cwt::Dimension>| {
        let cw = cw.clone();
        async move {
            cw.get_metric_statistics()
                .namespace("AWS/ECS")
                .metric_name(metric)
                .set_dimensions(Some(dims))
                .start_time(start)
                .end_time(end)
                .period(60)
                .statistics(cwt::Statistic::Maximum)
                .send()
                .await
                .ok()
                .and_then(|o| {
                    o.datapoints()
                        .iter()
                        .filter_map(|d| d.maximum())
                        .reduce(f64::max)
                })
        }
    };
    let cluster = cwt::Dimension::builder()
        .name("ClusterName")
        .value("prod")
        .build();
    let service = cwt::Dimension::builder()
        .name("ServiceName")
        .value("web")
        .build();
    // Send until a flush has written them (the sim's tick and the server's
    // 10 s flush are not aligned); every message says the same.
    let cpu = eventually(60, "service CPUUtilization", || {
        assert!(host.send(AgentMessage::Stats {
            samples: vec![
                stats(&tasks[0], 384.0, 128.0),
                stats(&tasks[1], 128.0, 384.0),
                stats(&tasks[0], 640.0, 128.0),
                stats(&tasks[1], 128.0, 384.0),
            ],
        }));
        query("CPUUtilization", vec![cluster.clone(), service.clone()])
    })
    .await;
    assert_eq!(cpu, 125.0, "above 100: tasks use more than they reserve");
    let memory = query("MemoryUtilization", vec![cluster.clone(), service.clone()])
        .await
        .expect("service MemoryUtilization");
    assert_eq!(memory, 50.0);
    let cluster_cpu = query("CPUUtilization", vec![cluster.clone()])
        .await
        .expect("cluster CPUUtilization");
    assert_eq!(cluster_cpu, 125.0);

    let listed = cw.list_metrics().namespace("AWS/ECS").send().await.unwrap();
    assert_eq!(listed.metrics().len(), 4, "{listed:?}");
    // Clients may not write AWS/ namespaces; the control plane may.
    let err = cw
        .put_metric_data()
        .namespace("AWS/ECS")
        .metric_data(
            cwt::MetricDatum::builder()
                .metric_name("CPUUtilization")
                .value(1.0)
                .build(),
        )
        .send()
        .await
        .expect_err("reserved namespace");
    assert!(format!("{err:?}").contains("InvalidParameterValue"));

    // The Prometheus endpoint counts them (no signature needed).
    let req = axum::http::Request::builder()
        .method("GET")
        .uri(format!("{}/metrics", server.endpoint))
        .body(Vec::new())
        .unwrap();
    let r = raw.send(req).await.unwrap();
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 200, "{text}");
    let figure = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
            .parse()
            .unwrap()
    };
    assert!(
        figure("flotilla_agent_task_stats_received_total") >= 4.0,
        "{text}"
    );
    assert!(
        figure("flotilla_ecs_utilization_datapoints_total") >= 4.0,
        "{text}"
    );
    assert_eq!(figure("flotilla_cloudwatch_metric_series"), 4.0, "{text}");
    assert_eq!(figure("flotilla_agent_sessions"), 1.0, "{text}");
    assert!(figure("flotilla_tasks_placed_total") >= 2.0, "{text}");
    assert!(
        figure("flotilla_store_commit_wait_seconds_count") >= 1.0,
        "{text}"
    );
    // Latency histograms per operation and outcome: the refused
    // PutMetricData above is an error, ListMetrics a success.
    let calls = |operation: &str, outcome: &str| -> f64 {
        let labels = format!("operation=\"{operation}\",outcome=\"{outcome}\"}} ");
        text.lines()
            .filter(|l| l.starts_with("flotilla_api_request_duration_seconds_count{"))
            .find_map(|l| l.split_once(&labels).map(|(_, v)| v))
            .unwrap_or_else(|| panic!("no {operation} {outcome} count: {text}"))
            .parse()
            .unwrap()
    };
    assert!(calls("PutMetricData", "error") >= 1.0, "{text}");
    assert!(calls("ListMetrics", "success") >= 1.0, "{text}");
    assert!(
        text.contains("flotilla_api_request_duration_seconds_bucket{")
            && text.contains("le=\"+Inf\"}"),
        "{text}"
    );
    drop(host);
    server.stop().await;
}

/// Simulated hosts report what a test says their tasks use, on their own
/// and for tasks started later: what auto scaling tests drive load with.
#[tokio::test]
async fn sim_hosts_report_the_usage_they_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let ecs = server.ecs();
    ecs.create_cluster().send().await.unwrap();
    let raw =
        flotilla_client::Client::ecs(&server.endpoint, ALICE.access_key_id, ALICE.secret, REGION);
    let host = SimAgent::start(
        &raw,
        HostSpec::new("default", 4096, 8192),
        Behaviour::default(),
    )
    .await
    .expect("sim host");
    host.set_usage(
        "api",
        Some(TaskUsage {
            cpu_units: 768.0,
            memory_mib: 256.0,
        }),
    );
    ecs.register_task_definition()
        .family("api")
        .cpu("512")
        .memory("1024")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image("flotilla-test:latest")
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .service_name("api")
        .task_definition("api")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    let cw = server.cloudwatch();
    let start = DateTime::from_secs(now_secs() as i64 - 300);
    let end = DateTime::from_secs(now_secs() as i64 + 300);
    let dims = vec![
        cwt::Dimension::builder()
            .name("ClusterName")
            .value("default")
            .build(),
        cwt::Dimension::builder()
            .name("ServiceName")
            .value("api")
            .build(),
    ];
    let (cpu, memory) = eventually(90, "api utilization", || {
        let cw = cw.clone();
        let dims = dims.clone();
        async move {
            let get = |metric: &'static str| {
                cw.get_metric_statistics()
                    .namespace("AWS/ECS")
                    .metric_name(metric)
                    .set_dimensions(Some(dims.clone()))
                    .start_time(start)
                    .end_time(end)
                    .period(60)
                    .statistics(cwt::Statistic::Average)
                    .send()
            };
            let cpu = get("CPUUtilization").await.ok()?;
            let memory = get("MemoryUtilization").await.ok()?;
            Some((
                cpu.datapoints().first()?.average()?,
                memory.datapoints().first()?.average()?,
            ))
        }
    })
    .await;
    assert_eq!((cpu, memory), (150.0, 25.0));
    drop(host);
    server.stop().await;
}

/// Metric data, alarms (with their state, tags and actions setting) and
/// history are durable: a restarted server has them all.
#[tokio::test]
async fn alarms_history_and_data_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let cw = server.cloudwatch();
    put(&cw, 7.0).await;
    cw.put_metric_alarm()
        .alarm_name("durable")
        .namespace("Flotilla/Queue")
        .metric_name("Depth")
        .statistic(cwt::Statistic::Average)
        .period(60)
        .evaluation_periods(3)
        .threshold(100.0)
        .comparison_operator(cwt::ComparisonOperator::GreaterThanOrEqualToThreshold)
        .tags(cwt::Tag::builder().key("team").value("a").build())
        .send()
        .await
        .unwrap();
    cw.disable_alarm_actions()
        .alarm_names("durable")
        .send()
        .await
        .unwrap();
    server.stop().await;

    let server = Server::start(dir.path()).await;
    let cw = server.cloudwatch();
    let alarm = cw
        .describe_alarms()
        .alarm_names("durable")
        .send()
        .await
        .unwrap()
        .metric_alarms()[0]
        .clone();
    assert_eq!(alarm.evaluation_periods(), Some(3));
    assert_eq!(alarm.actions_enabled(), Some(false));
    let tags = cw
        .list_tags_for_resource()
        .resource_arn(alarm.alarm_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags()[0].key(), Some("team"));
    let history = cw
        .describe_alarm_history()
        .alarm_name("durable")
        .send()
        .await
        .unwrap();
    assert!(!history.alarm_history_items().is_empty());
    let stats = cw
        .get_metric_statistics()
        .namespace("Flotilla/Queue")
        .metric_name("Depth")
        .start_time(DateTime::from_secs(now_secs() as i64 - 600))
        .end_time(DateTime::from_secs(now_secs() as i64 + 60))
        .period(60)
        .statistics(cwt::Statistic::Sum)
        .send()
        .await
        .unwrap();
    let sum: f64 = stats.datapoints().iter().filter_map(|d| d.sum()).sum();
    assert_eq!(sum, 7.0);
    server.stop().await;
}
