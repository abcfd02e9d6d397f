//! The metric store at a realistic size: durable PutMetricData throughput
//! (every call acknowledged only once fsynced, group commit), then
//! GetMetricStatistics and alarm evaluation latency over 10,000 series with
//! an hour of one-minute data each.
//!
//! `cargo bench -p flotilla-metrics --bench store` runs 10,000 series, 5 s
//! of writes per writer configuration and 1,000 alarms;
//! `cargo bench -p flotilla-metrics --bench store -- 2000 3 200` runs 2,000
//! series, 3 s of writes and 200 alarms.

use std::io::Write;
use std::time::{Duration, Instant};

use flotilla_metrics::*;
use flotilla_model::arn::Scope;

fn scope() -> Scope {
    Scope::new("111122223333", "us-east-1")
}

fn series_datum(series: usize, value: f64, at: Timestamp) -> MetricDatum {
    MetricDatum {
        metric_name: "RequestCount".into(),
        dimensions: vec![
            Dimension::new("ClusterName", "bench"),
            Dimension::new("ServiceName", format!("svc-{series:05}")),
        ],
        timestamp: Some(at),
        value: Some(value),
        unit: Some(StandardUnit::Count),
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; take only numbers.
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let series = numbers.first().copied().unwrap_or(10_000);
    let seconds = numbers.get(1).copied().unwrap_or(5) as u64;
    let alarms = numbers.get(2).copied().unwrap_or(1_000).min(series);
    println!(
        "fsync of a 4 KiB write in the temp dir: {:.2} ms",
        fsync_ms()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store =
        MetricStore::open(&dir.path().join("bench.db"), MetricStoreOptions::default()).unwrap();
    let now = Timestamp::now().floor_to(60);

    // An hour of one-minute data for every series (the fill is also a write
    // measurement: 1,000 datums per call, as SDKs batch them).
    let started = Instant::now();
    runtime.block_on(async {
        let mut calls = Vec::new();
        for minute in 0..60 {
            let at = now.minus_secs(60 * (60 - minute));
            for chunk in (0..series).collect::<Vec<_>>().chunks(1000) {
                let data: Vec<MetricDatum> = chunk
                    .iter()
                    .map(|s| series_datum(*s, (*s % 100) as f64, at))
                    .collect();
                calls.push(PutMetricDataInput {
                    namespace: "Bench".into(),
                    metric_data: data,
                });
            }
        }
        let mut tasks = Vec::new();
        let per_task = calls.len().div_ceil(4);
        for part in calls.chunks(per_task).map(<[_]>::to_vec) {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for call in part {
                    store.put_metric_data(&scope(), &call, now).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let fill = started.elapsed();
    println!(
        "fill: {} series x 60 minutes = {} datapoints in {:.1} s ({:.0} datapoints/s durable, 1,000 per call, 4 writers)",
        series,
        series * 60,
        fill.as_secs_f64(),
        (series * 60) as f64 / fill.as_secs_f64()
    );

    for (writers, per_call) in [(1, 1), (32, 1), (32, 20), (8, 1000)] {
        write_phase(
            &runtime,
            &store,
            series,
            writers,
            per_call,
            Duration::from_secs(seconds),
            now,
        );
    }

    // GetMetricStatistics: one series, the last hour at one minute.
    let mut latencies = Vec::new();
    for i in 0..2000 {
        let s = (i * 7919) % series;
        let input = GetMetricStatisticsInput {
            namespace: "Bench".into(),
            metric_name: "RequestCount".into(),
            dimensions: vec![
                Dimension::new("ServiceName", format!("svc-{s:05}")),
                Dimension::new("ClusterName", "bench"),
            ],
            start_time: Some(now.minus_secs(3600)),
            end_time: Some(now),
            period: Some(60),
            statistics: vec![Statistic::Average, Statistic::Sum, Statistic::Maximum],
            extended_statistics: vec![],
            unit: None,
        };
        let t = Instant::now();
        let out = store.get_metric_statistics(&scope(), &input, now).unwrap();
        latencies.push(t.elapsed());
        assert_eq!(out.datapoints.len(), 60);
    }
    latencies.sort();
    println!(
        "GetMetricStatistics (1 h at 60 s, 60 datapoints) over {series} series: p50 {:.3} ms, p99 {:.3} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0))
    );

    // Alarms: one per series for the first `alarms` series, 3 of 3 at 60 s.
    let started = Instant::now();
    runtime.block_on(async {
        for s in 0..alarms {
            let input = PutMetricAlarmInput {
                alarm_name: format!("svc-{s:05}-requests-high"),
                metric_name: Some("RequestCount".into()),
                namespace: Some("Bench".into()),
                statistic: Some(Statistic::Sum),
                dimensions: vec![
                    Dimension::new("ClusterName", "bench"),
                    Dimension::new("ServiceName", format!("svc-{s:05}")),
                ],
                period: Some(60),
                evaluation_periods: Some(1),
                threshold: Some(50.0),
                comparison_operator: Some(ComparisonOperator::GreaterThanThreshold),
                alarm_actions: vec![
                    "arn:aws:autoscaling:us-east-1:111122223333:scalingPolicy:p".into()
                ],
                ..Default::default()
            };
            store.put_metric_alarm(&scope(), &input, now).await.unwrap();
        }
    });
    let put = started.elapsed();
    println!(
        "PutMetricAlarm: {alarms} alarms in {:.1} s ({:.2} ms each, durable, each evaluated at once)",
        put.as_secs_f64(),
        ms(put) / alarms as f64
    );
    // The alarms see the last minute (a Sum of s % 100 plus what the write
    // phases added); one evaluation as they are, then one after every
    // alarmed series got a value on the other side of the threshold.
    let due = store.next_evaluation().unwrap();
    for round in 0..2 {
        let at = due.plus_secs(60 * round);
        if round == 1 {
            runtime.block_on(async {
                for chunk in (0..alarms).collect::<Vec<_>>().chunks(1000) {
                    let data = chunk
                        .iter()
                        .map(|s| series_datum(*s, if s % 2 == 0 { 1_000_000.0 } else { 0.0 }, due))
                        .collect();
                    let call = PutMetricDataInput {
                        namespace: "Bench".into(),
                        metric_data: data,
                    };
                    store.put_metric_data(&scope(), &call, due).await.unwrap();
                }
            });
        }
        let started = Instant::now();
        let transitions = runtime.block_on(store.evaluate_due(at)).unwrap();
        let took = started.elapsed();
        println!(
            "evaluate_due: {alarms} alarms in {:.1} ms ({:.3} ms per alarm; {} transitions written with their history)",
            ms(took),
            ms(took) / alarms as f64,
            transitions.len()
        );
    }
    let size: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "store files: {:.1} MiB for {} series",
        size as f64 / (1024.0 * 1024.0),
        store.series_count()
    );
    store.close();
}

/// `writers` concurrent callers, each sending `per_call` datums per call
/// (spread over the series) for `duration`.
fn write_phase(
    runtime: &tokio::runtime::Runtime,
    store: &MetricStore,
    series: usize,
    writers: usize,
    per_call: usize,
    duration: Duration,
    now: Timestamp,
) {
    let started = Instant::now();
    let deadline = started + duration;
    let mut latencies: Vec<Duration> = runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut next = w * 7919;
                    while Instant::now() < deadline {
                        let data: Vec<MetricDatum> = (0..per_call)
                            .map(|k| series_datum((next + k) % series, k as f64, now))
                            .collect();
                        next = (next + per_call) % series;
                        let call = PutMetricDataInput {
                            namespace: "Bench".into(),
                            metric_data: data,
                        };
                        let t = Instant::now();
                        store.put_metric_data(&scope(), &call, now).await.unwrap();
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let calls = latencies.len();
    println!(
        "PutMetricData, {writers:>2} writers x {per_call:>4} datums/call: {:>9.0} datapoints/s durable ({:.0} calls/s), call p50 {:.2} ms, p99 {:.2} ms",
        (calls * per_call) as f64 / elapsed,
        calls as f64 / elapsed,
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0))
    );
}

fn fsync_ms() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("probe")).unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        file.write_all(&[0u8; 4096]).unwrap();
        file.sync_data().unwrap();
    }
    ms(started.elapsed()) / 20.0
}
