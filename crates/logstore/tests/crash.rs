//! kill -9 during ingestion: a child process (this test binary, running
//! `crash_child`) appends batches to several streams at once and prints
//! each acknowledgement; the parent kills it with SIGKILL at a varying
//! moment, reopens the store, and checks that every acknowledged batch is
//! there exactly once, that no batch is there in part, and that resending
//! the first unacknowledged batch with its token stores it exactly once
//! (DataAlreadyAcceptedException if it had made it to disk).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flotilla_logstore::*;

const DIR_VAR: &str = "FLOTILLA_LOGSTORE_CRASH_DIR";
const ROUND_VAR: &str = "FLOTILLA_LOGSTORE_CRASH_ROUND";
const BASE_VAR: &str = "FLOTILLA_LOGSTORE_CRASH_BASE";
const STREAMS: usize = 4;
const EVENTS: usize = 100;

fn scope() -> Scope {
    Scope::new("123456789012", "us-east-1")
}

fn stream_name(round: usize, s: usize) -> String {
    format!("r{round}/s{s}")
}

/// Streams are spread over two groups, so that a round commits two
/// segment files and a kill can fall between them.
fn group_name(s: usize) -> String {
    format!("crash-{}", s % 2)
}

/// Batch `n` of a stream: the same events every time it is built.
fn batch(base: i64, s: usize, n: usize) -> Vec<InputLogEvent> {
    (0..EVENTS)
        .map(|i| {
            InputLogEvent::new(
                base + (n * EVENTS + i) as i64,
                format!("s{s} b{n} e{i} {}", "x".repeat(i % 50)),
            )
        })
        .collect()
}

/// The child: appends until killed (or, as a backstop, for 60 s).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return; // only runs as the crash test's child
    };
    let round: usize = std::env::var(ROUND_VAR).unwrap().parse().unwrap();
    let base: i64 = std::env::var(BASE_VAR).unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = LogStore::open(std::path::Path::new(&dir)).unwrap();
        for g in 0..2 {
            let request = CreateLogGroupRequest {
                log_group_name: group_name(g),
                ..Default::default()
            };
            match store.create_log_group(&scope(), request).await {
                Ok(()) => {}
                Err(e) if e.code() == "ResourceAlreadyExistsException" => {}
                Err(e) => panic!("{e}"),
            }
        }
        for s in 0..STREAMS {
            store
                .create_log_stream(&scope(), &group_name(s), &stream_name(round, s))
                .await
                .unwrap();
        }
        println!("ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        let tasks: Vec<_> = (0..STREAMS)
            .map(|s| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut token: Option<String> = None;
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let out = store
                            .put_log_events(
                                &scope(),
                                PutLogEventsRequest {
                                    log_group_name: group_name(s),
                                    log_stream_name: stream_name(round, s),
                                    log_events: batch(base, s, n),
                                    sequence_token: token.clone(),
                                },
                            )
                            .await
                            .unwrap();
                        token = out.next_sequence_token;
                        println!("ack {s} {n} {}", token.as_deref().unwrap());
                        n += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn kill_9_loses_nothing_acknowledged_and_stores_nothing_twice() {
    if std::env::var(DIR_VAR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    let mut seed = base as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..4 {
        // Vary the moment of the kill: after 10 to ~200 acknowledgements.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let target = 10 + (seed >> 33) as usize % 190;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, dir.path())
            .env(ROUND_VAR, round.to_string())
            .env(BASE_VAR, base.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // stream -> (last acknowledged batch, the token it returned)
        let mut acked: HashMap<usize, (usize, String)> = HashMap::new();
        let mut count = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let record = |line: &str, acked: &mut HashMap<usize, (usize, String)>| {
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() == 4 && parts[0] == "ack" {
                let s: usize = parts[1].parse().unwrap();
                let n: usize = parts[2].parse().unwrap();
                acked.insert(s, (n, parts[3].to_owned()));
                true
            } else {
                false
            }
        };
        while count < target && Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if record(&line, &mut acked) {
                        count += 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("child died early"),
            }
        }
        assert!(count >= target, "child too slow: {count} acks in 60 s");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Acknowledgements printed before the kill count too.
        for line in rx.try_iter() {
            record(&line, &mut acked);
        }

        runtime.block_on(async {
            let store = LogStore::open(dir.path()).unwrap();
            for s in 0..STREAMS {
                let stream = stream_name(round, s);
                let stored = read_stream(&store, s, &stream).await;
                let batches = whole_batches(&stored, s);
                let last_acked = acked.get(&s).map(|(n, _)| *n);
                if let Some(n) = last_acked {
                    assert!(
                        batches > n,
                        "stream {s}: acked batch {n} missing ({batches} stored)"
                    );
                }
                // At most one batch past the last acknowledged (the one in
                // flight) can be stored.
                let next = last_acked.map_or(0, |n| n + 1);
                assert!(
                    batches <= next + 1,
                    "stream {s}: {batches} stored, {next} acked"
                );
                // Resend the first unacknowledged batch with its token.
                let token = acked.get(&s).map(|(_, t)| t.clone());
                let resend = store
                    .put_log_events(
                        &scope(),
                        PutLogEventsRequest {
                            log_group_name: group_name(s),
                            log_stream_name: stream.clone(),
                            log_events: batch(base, s, next),
                            sequence_token: token,
                        },
                    )
                    .await;
                match (batches == next + 1, resend) {
                    (true, Err(LogsError::DataAlreadyAccepted { .. })) => {}
                    (false, Ok(_)) => {}
                    (stored, other) => {
                        panic!("stream {s}: in-flight batch stored={stored}, resend gave {other:?}")
                    }
                }
                let stored = read_stream(&store, s, &stream).await;
                assert_eq!(
                    whole_batches(&stored, s),
                    next + 1,
                    "stream {s}: exactly once after resend"
                );
            }
            // Across each whole group: no event twice.
            let mut ids = HashSet::new();
            let mut messages = HashSet::new();
            for g in 0..2 {
                let mut token = None;
                loop {
                    let page = store
                        .filter_log_events(
                            &scope(),
                            FilterLogEventsRequest {
                                log_group_name: Some(group_name(g)),
                                next_token: token.clone(),
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap();
                    for e in page.events {
                        assert!(ids.insert(e.event_id), "duplicate event id");
                        assert!(
                            messages.insert((e.log_stream_name, e.message)),
                            "duplicate event"
                        );
                    }
                    token = page.next_token;
                    if token.is_none() {
                        break;
                    }
                }
            }
            store.close();
        });
    }
}

/// Every message of a stream, oldest first.
async fn read_stream(store: &LogStore, s: usize, stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store
            .get_log_events(
                &scope(),
                GetLogEventsRequest {
                    log_group_name: Some(group_name(s)),
                    log_stream_name: stream.into(),
                    start_from_head: Some(true),
                    next_token: token.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        out.extend(page.events.into_iter().map(|e| e.message));
        if token.as_deref() == Some(page.next_forward_token.as_str()) {
            return out;
        }
        token = Some(page.next_forward_token);
    }
}

/// Checks the stream holds batches 0..k, each whole and once, in order;
/// returns k.
fn whole_batches(messages: &[String], s: usize) -> usize {
    assert_eq!(
        messages.len() % EVENTS,
        0,
        "stream {s}: a partial batch is stored"
    );
    let mut per_batch: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, m) in messages.iter().enumerate() {
        let expected_n = i / EVENTS;
        let expected = format!("s{s} b{expected_n} e{} ", i % EVENTS);
        assert!(
            m.starts_with(&expected),
            "stream {s}: event {i} is {m:?}, expected {expected:?}"
        );
        *per_batch.entry(expected_n).or_default() += 1;
    }
    per_batch.len()
}
