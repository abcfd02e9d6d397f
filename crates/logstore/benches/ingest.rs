//! Log ingestion and search figures, every append durable before it is
//! acknowledged. Prints, for this machine:
//!
//! 1. the fsync cost of the temp directory's disk, for scale;
//! 2. lines/s from one writer sending agent-sized batches (10,000 lines,
//!    under 1 MiB) to one stream, and the PutLogEvents latency;
//! 3. lines/s from many concurrent streams (several groups), flat out and
//!    then paced at the target of 100,000 lines/s, with meanwhile:
//!    the write-to-searchable latency (a marker line appended, then
//!    FilterLogEvents polled until it returns it), and the latency of
//!    tail-like FilterLogEvents and GetLogEvents calls;
//!    and many streams sending small batches (PutLogEvents calls/s);
//! 4. the same lines appended to a plain file with one fdatasync per
//!    batch: the floor any durable shipper pays (Fluent Bit and Vector are
//!    not installable here to compare with).
//!
//! `cargo bench -p flotilla-logstore --bench ingest` (5 s per phase);
//! `FLOTILLA_BENCH_SECONDS=20` for longer phases.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flotilla_logstore::*;

const LINES_PER_BATCH: usize = 10_000;

fn scope() -> Scope {
    Scope::new("123456789012", "us-east-1")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An access-log-like line of about 75 bytes (10,000 of them plus 26
/// bytes each stay under PutLogEvents' 1 MiB).
fn line(stream: usize, n: u64) -> String {
    let status = [200, 200, 200, 201, 304, 404, 500][(n % 7) as usize];
    format!(
        "INFO req={:08x} GET /api/v1/items/{} status={status} ms={} s={stream}",
        n.wrapping_mul(2654435761) as u32,
        n % 100_000,
        n % 997
    )
}

fn batch(stream: usize, first: u64, count: usize) -> Vec<InputLogEvent> {
    let ts = now_ms();
    (0..count as u64)
        .map(|i| InputLogEvent::new(ts, line(stream, first + i)))
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn summary(name: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "  {name}: {} samples, p50 {}, p99 {}, max {}",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
}

fn fsync_ms(dir: &std::path::Path) -> f64 {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        file.write_all(&[0u8; 4096]).unwrap();
        file.sync_data().unwrap();
    }
    let per = started.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
    std::fs::remove_file(path).unwrap();
    per
}

async fn setup(store: &LogStore, group: &str, streams: &[String]) {
    store
        .create_log_group(
            &scope(),
            CreateLogGroupRequest {
                log_group_name: group.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for s in streams {
        store.create_log_stream(&scope(), group, s).await.unwrap();
    }
}

async fn put(store: &LogStore, group: &str, stream: &str, events: Vec<InputLogEvent>) -> Duration {
    let started = Instant::now();
    store
        .put_log_events(
            &scope(),
            PutLogEventsRequest {
                log_group_name: group.into(),
                log_stream_name: stream.into(),
                log_events: events,
                sequence_token: None,
            },
        )
        .await
        .unwrap();
    started.elapsed()
}

fn main() {
    let seconds: u64 = std::env::var("FLOTILLA_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let phase = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "fsync of a 4 KiB append in the temp dir: {:.2} ms",
        fsync_ms(dir.path())
    );
    let store = LogStore::open(dir.path()).unwrap();

    runtime.block_on(single_writer(&store, phase));
    runtime.block_on(concurrent(&store, phase, 4, 8, 1000, None));
    runtime.block_on(concurrent(&store, phase, 4, 8, LINES_PER_BATCH, None));
    runtime.block_on(concurrent(&store, phase, 4, 8, 1000, Some(100_000)));
    // Many small calls: what thousands of quiet containers look like.
    runtime.block_on(concurrent(&store, phase, 16, 16, 10, None));
    let bytes: u64 = store
        .describe_log_groups(&scope(), &Default::default())
        .unwrap()
        .log_groups
        .iter()
        .map(|g| g.stored_bytes.unwrap_or(0) as u64)
        .sum();
    println!(
        "stored: {:.1} MiB on disk (frames, compressed)",
        bytes as f64 / (1 << 20) as f64
    );
    store.close();
    plain_file(dir.path(), phase);
}

async fn single_writer(store: &LogStore, phase: Duration) {
    println!("\none writer, one stream, {LINES_PER_BATCH} lines per PutLogEvents:");
    setup(store, "single", &["s".to_string()]).await;
    let started = Instant::now();
    let mut lines = 0u64;
    let mut latencies = Vec::new();
    while started.elapsed() < phase {
        let events = batch(0, lines, LINES_PER_BATCH);
        latencies.push(put(store, "single", "s", events).await);
        lines += LINES_PER_BATCH as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "  {:.0} lines/s durable ({lines} lines in {elapsed:.1} s)",
        lines as f64 / elapsed
    );
    summary("PutLogEvents", latencies);
}

async fn concurrent(
    store: &LogStore,
    phase: Duration,
    groups: usize,
    per_group: usize,
    batch_lines: usize,
    lines_per_second: Option<u64>,
) {
    let streams = groups * per_group;
    let pace = match lines_per_second {
        Some(rate) => format!("paced at {rate} lines/s in total"),
        None => "flat out".to_string(),
    };
    println!(
        "\n{streams} streams in {groups} groups, {batch_lines} lines per PutLogEvents, {pace}; meanwhile probes and readers:"
    );
    // Each stream sends one batch per interval to make up the total rate.
    let interval = lines_per_second
        .map(|rate| Duration::from_secs_f64(batch_lines as f64 * streams as f64 / rate as f64));
    let tag = format!(
        "c{batch_lines}{}",
        lines_per_second.map_or(String::new(), |r| format!("r{r}"))
    );
    for g in 0..groups {
        let names: Vec<String> = (0..per_group).map(|s| format!("task/{s}")).collect();
        setup(store, &format!("{tag}-{g}"), &names).await;
    }
    setup(store, &format!("{tag}-probe"), &["probe".to_string()]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let lines = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut writers = Vec::new();
    for g in 0..groups {
        for s in 0..per_group {
            let (store, stop, lines, tag) =
                (store.clone(), stop.clone(), lines.clone(), tag.clone());
            writers.push(tokio::spawn(async move {
                let group = format!("{tag}-{g}");
                let stream = format!("task/{s}");
                let mut n = 0u64;
                let mut latencies = Vec::new();
                let mut ticker = interval.map(|i| {
                    let mut t = tokio::time::interval(i);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                while !stop.load(Ordering::Relaxed) {
                    if let Some(t) = &mut ticker {
                        t.tick().await;
                    }
                    let events = batch(g * 100 + s, n, batch_lines);
                    latencies.push(put(&store, &group, &stream, events).await);
                    n += batch_lines as u64;
                    lines.fetch_add(batch_lines as u64, Ordering::Relaxed);
                }
                latencies
            }));
        }
    }
    // Write-to-searchable: a marker, then FilterLogEvents until it shows.
    let probe = {
        let (store, stop, tag) = (store.clone(), stop.clone(), tag.clone());
        tokio::spawn(async move {
            let group = format!("{tag}-probe");
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let marker = format!("marker-{i}");
                let t0 = Instant::now();
                let ts = now_ms();
                put(
                    &store,
                    &group,
                    "probe",
                    vec![InputLogEvent::new(ts, marker.clone())],
                )
                .await;
                loop {
                    let out = store
                        .filter_log_events(
                            &scope(),
                            FilterLogEventsRequest {
                                log_group_name: Some(group.clone()),
                                start_time: Some(ts),
                                filter_pattern: Some(marker.clone()),
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap();
                    if !out.events.is_empty() {
                        break;
                    }
                    if t0.elapsed() > Duration::from_secs(10) {
                        panic!("marker not searchable after 10 s");
                    }
                }
                latencies.push(t0.elapsed());
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            latencies
        })
    };
    // Readers: what `aws logs tail` and `get-log-events` ask, on a busy group.
    let reader = {
        let (store, stop, tag) = (store.clone(), stop.clone(), tag.clone());
        tokio::spawn(async move {
            let group = format!("{tag}-0");
            let (mut filters, mut gets) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                store
                    .filter_log_events(
                        &scope(),
                        FilterLogEventsRequest {
                            log_group_name: Some(group.clone()),
                            start_time: Some(now_ms() - 2_000),
                            limit: Some(100),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                filters.push(t0.elapsed());
                let t0 = Instant::now();
                store
                    .get_log_events(
                        &scope(),
                        GetLogEventsRequest {
                            log_group_name: Some(group.clone()),
                            log_stream_name: "task/0".into(),
                            limit: Some(100),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                gets.push(t0.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (filters, gets)
        })
    };
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Relaxed);
    let mut put_latencies = Vec::new();
    for w in writers {
        put_latencies.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = lines.load(Ordering::Relaxed);
    println!(
        "  {:.0} lines/s durable ({total} lines in {elapsed:.1} s), {:.0} PutLogEvents/s",
        total as f64 / elapsed,
        put_latencies.len() as f64 / elapsed
    );
    summary("PutLogEvents", put_latencies);
    summary(
        "write-to-searchable (put + FilterLogEvents until found)",
        probe.await.unwrap(),
    );
    let (filters, gets) = reader.await.unwrap();
    summary(
        "FilterLogEvents, last 2 s of a busy group, limit 100",
        filters,
    );
    summary("GetLogEvents, latest 100 of a busy stream", gets);
}

/// The floor: the same lines appended to one file, one fdatasync per
/// batch of 10,000.
fn plain_file(dir: &std::path::Path, phase: Duration) {
    println!("\nbaseline: the same lines appended to a plain file, fdatasync per {LINES_PER_BATCH} lines:");
    let path = dir.join("plain.log");
    let mut file = std::fs::File::create(&path).unwrap();
    let started = Instant::now();
    let mut lines = 0u64;
    let mut buf = String::new();
    while started.elapsed() < phase {
        buf.clear();
        for i in 0..LINES_PER_BATCH as u64 {
            buf.push_str(&line(0, lines + i));
            buf.push('\n');
        }
        file.write_all(buf.as_bytes()).unwrap();
        file.sync_data().unwrap();
        lines += LINES_PER_BATCH as u64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("  {:.0} lines/s durable", lines as f64 / elapsed);
    drop(file);
    std::fs::remove_file(path).unwrap();
}
