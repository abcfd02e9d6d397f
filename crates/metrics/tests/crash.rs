//! `kill -9` while datapoints are being written loses no acknowledged
//! datapoint, and the store opens again (DESIGN.md, rule 5).
//!
//! The test re-runs this test binary as a child, selecting the ignored
//! `crash_child` test with an environment variable. The child writes from
//! many tasks at once, each datapoint of its own (task T's i-th datapoint is
//! the value i at second i of T's own high-resolution metric), and prints a
//! line for each only after PutMetricData returned. The parent kills it
//! (SIGKILL) after some of those lines, reopens the store, and finds every
//! acknowledged datapoint with its value.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_metrics::*;
use flotilla_model::arn::Scope;

const CHILD_ENV: &str = "FLOTILLA_METRICS_CRASH_CHILD_DB";
const TASKS: usize = 16;
/// Seconds of data one task may write (timestamps stay within two hours
/// ahead of the fixed clock).
const MAX_PER_TASK: i64 = 5000;

fn scope() -> Scope {
    Scope::new("111122223333", "us-east-1")
}

/// The fixed clock of child and parent.
fn t0() -> Timestamp {
    Timestamp::from_secs(1_781_258_400)
}

fn datum(task: usize, i: i64) -> MetricDatum {
    MetricDatum {
        metric_name: format!("task-{task:02}"),
        dimensions: vec![Dimension::new("Test", "crash")],
        timestamp: Some(t0().plus_secs(i)),
        value: Some(i as f64),
        storage_resolution: Some(1),
        ..Default::default()
    }
}

#[test]
#[ignore = "the writer half of kill_9_while_writing_loses_no_acknowledged_datapoint, which runs it"]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = MetricStore::open(Path::new(&db), MetricStoreOptions::default()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60); // in case nobody kills us
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..MAX_PER_TASK {
                    let input = PutMetricDataInput {
                        namespace: "Crash".into(),
                        metric_data: vec![datum(task, i)],
                    };
                    store.put_metric_data(&scope(), &input, t0()).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "ACK {task} {i}")
                        .and_then(|()| out.flush())
                        .is_err()
                        || Instant::now() > deadline
                    {
                        std::process::exit(1); // the parent is gone
                    }
                }
            }));
        }
        // And alarms, acknowledged the same way, as task ALARM_TASK.
        let alarms = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..MAX_PER_TASK {
                alarms
                    .put_metric_alarm(&scope(), &alarm(i), t0())
                    .await
                    .unwrap();
                let mut out = std::io::stdout().lock();
                if writeln!(out, "ACK {ALARM_TASK} {i}")
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    std::process::exit(1);
                }
            }
        }));
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// The "task" whose acknowledgements are alarms.
const ALARM_TASK: usize = 1000;

fn alarm(i: i64) -> PutMetricAlarmInput {
    PutMetricAlarmInput {
        alarm_name: format!("crash-{i:05}"),
        metric_name: Some("task-00".into()),
        namespace: Some("Crash".into()),
        statistic: Some(Statistic::Sum),
        dimensions: vec![Dimension::new("Test", "crash")],
        period: Some(60),
        evaluation_periods: Some(1),
        threshold: Some(1.0),
        comparison_operator: Some(ComparisonOperator::GreaterThanThreshold),
        ..Default::default()
    }
}

#[test]
fn kill_9_while_writing_loses_no_acknowledged_datapoint() {
    let mut alarms_verified = 0;
    for kill_after in [25, 400, 2500] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("metrics.db");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked: Vec<(usize, i64)> = Vec::new();
        let mut killed = false;
        for line in lines.by_ref() {
            if let Some(ack) = parse_ack(&line.unwrap()) {
                acked.push(ack);
            }
            if acked.len() >= kill_after {
                child.kill().unwrap(); // SIGKILL
                killed = true;
                break;
            }
        }
        assert!(killed, "the child exited after {} acks", acked.len());
        // What the child printed before it died was acknowledged too.
        for line in lines {
            acked.extend(line.ok().as_deref().and_then(parse_ack));
        }
        child.wait().unwrap();
        alarms_verified += verify(&db, &acked);
    }
    assert!(
        alarms_verified > 0,
        "no alarm was acknowledged before a kill"
    );
}

fn parse_ack(line: &str) -> Option<(usize, i64)> {
    let mut words = line.strip_prefix("ACK ")?.split(' ');
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

/// Every acknowledged datapoint is there, once, with its value; every
/// acknowledged alarm is there with its history.
fn verify(db: &Path, acked: &[(usize, i64)]) -> usize {
    type Acks = Vec<(usize, i64)>;
    let (alarms, acked): (Acks, Acks) = acked.iter().partition(|(task, _)| *task == ALARM_TASK);
    let mut highest: BTreeMap<usize, i64> = BTreeMap::new();
    for (task, i) in &acked {
        let h = highest.entry(*task).or_insert(*i);
        *h = (*h).max(*i);
    }
    let store = MetricStore::open(db, MetricStoreOptions::default()).unwrap();
    for (_, i) in &alarms {
        let name = format!("crash-{i:05}");
        let input = DescribeAlarmsInput {
            alarm_names: vec![name.clone()],
            ..Default::default()
        };
        assert_eq!(
            store
                .describe_alarms(&scope(), &input)
                .unwrap()
                .metric_alarms
                .len(),
            1,
            "alarm {name} lost"
        );
        let history = DescribeAlarmHistoryInput {
            alarm_name: Some(name.clone()),
            ..Default::default()
        };
        let items = store
            .describe_alarm_history(&scope(), &history)
            .unwrap()
            .alarm_history_items;
        assert!(
            items
                .iter()
                .any(|h| h.history_summary == format!("Alarm \"{name}\" created")),
            "{name}: {items:?}"
        );
    }
    for (task, top) in &highest {
        let input = GetMetricDataInput {
            metric_data_queries: vec![MetricDataQuery {
                id: "m".into(),
                metric_stat: Some(MetricStat {
                    namespace: "Crash".into(),
                    metric_name: format!("task-{task:02}"),
                    dimensions: vec![Dimension::new("Test", "crash")],
                    period: 1,
                    stat: "SampleCount".into(),
                    unit: None,
                }),
                ..Default::default()
            }],
            start_time: Some(t0()),
            end_time: Some(t0().plus_secs(top + 1)),
            scan_by: Some(ScanBy::TimestampAscending),
            ..Default::default()
        };
        let out = store.get_metric_data(&scope(), &input, t0()).unwrap();
        let result = &out.metric_data_results[0];
        let found: BTreeMap<i64, f64> = result
            .timestamps
            .iter()
            .zip(&result.values)
            .map(|(t, v)| ((t.millis() - t0().millis()) / 1000, *v))
            .collect();
        for (_, i) in acked.iter().filter(|(t, _)| t == task) {
            assert_eq!(
                found.get(i),
                Some(&1.0),
                "task {task}: acknowledged datapoint {i} lost or doubled"
            );
        }
        // Its value too: the Sum at second i is i.
        let sum = GetMetricDataInput {
            metric_data_queries: vec![MetricDataQuery {
                metric_stat: input.metric_data_queries[0]
                    .metric_stat
                    .clone()
                    .map(|mut m| {
                        m.stat = "Sum".into();
                        m
                    }),
                ..input.metric_data_queries[0].clone()
            }],
            ..input
        };
        let out = store.get_metric_data(&scope(), &sum, t0()).unwrap();
        let r = &out.metric_data_results[0];
        for (t, v) in r.timestamps.iter().zip(&r.values) {
            assert_eq!(((t.millis() - t0().millis()) / 1000) as f64, *v);
        }
    }
    alarms.len()
}
