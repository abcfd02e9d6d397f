//! Group commit under load: committed txns/s and commit latency of the SQLite
//! store, with concurrent committers each writing ~1 KB values. Every ack is
//! durable (WAL fsynced), so without batching the ceiling would be one txn per
//! fsync; the fsync cost of the temp dir's disk is printed first for scale.
//!
//! `cargo bench -p flotilla-store` runs 1, 16 and 64 committers for 5 s each;
//! `cargo bench -p flotilla-store -- 64 10` runs 64 committers for 10 s.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_store::sqlite::SqliteStore;
use flotilla_store::{Compare, Store, Txn};

const VALUE_BYTES: usize = 1024;

fn main() {
    // `cargo bench` passes `--bench`; take only numbers.
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (committer_counts, seconds) = match numbers[..] {
        [committers, seconds, ..] => (vec![committers as usize], seconds),
        [committers] => (vec![committers as usize], 5),
        [] => (vec![1, 16, 64], 5),
    };
    println!(
        "fsync of a 4 KiB write in the temp dir: {:.2} ms",
        fsync_ms()
    );
    for committers in committer_counts {
        run(committers, Duration::from_secs(seconds));
    }
}

fn run(committers: usize, duration: Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    let started = Instant::now();
    let deadline = started + duration;
    let mut latencies: Vec<Duration> = runtime.block_on(async {
        let tasks: Vec<_> = (0..committers)
            .map(|task| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let value = vec![b'v'; VALUE_BYTES];
                    let mut latencies = Vec::new();
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let key = format!("bench/{task:03}/{i:09}");
                        let txn = Txn::new()
                            .when(Compare::Absent(key.clone()))
                            .put(key, value.clone());
                        let t0 = Instant::now();
                        store.commit(txn).await.unwrap();
                        latencies.push(t0.elapsed());
                        i += 1;
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed();
    let revision = store.revision();
    drop(store);
    assert_eq!(
        revision as usize,
        latencies.len(),
        "every acked txn got a revision"
    );
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{committers:>3} committers, {VALUE_BYTES} B values: {:>7.0} durable txns/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} txns in {:.1} s)",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(pct(1.0)),
        latencies.len(),
        elapsed.as_secs_f64(),
    );
}

fn fsync_ms() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("probe")).unwrap();
    let block = [0u8; 4096];
    let n = 100;
    let t0 = Instant::now();
    for _ in 0..n {
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
    }
    t0.elapsed().as_secs_f64() * 1e3 / f64::from(n)
}
