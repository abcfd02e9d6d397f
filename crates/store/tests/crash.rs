//! `kill -9` in the middle of a burst of commits loses no acknowledged commit
//! and leaves no half-written txn (DESIGN.md, rule 5).
//!
//! The test re-runs this test binary as a child, selecting the ignored
//! `crash_child` test with an environment variable. The child commits from
//! many tasks at once and prints a line for each commit only after its future
//! resolved. The parent kills it (SIGKILL) after a number of those lines,
//! reopens the database and checks every acknowledged commit against it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_store::sqlite::SqliteStore;
use flotilla_store::{Compare, Revision, Store, Txn};

const CHILD_ENV: &str = "FLOTILLA_STORE_CRASH_CHILD_DB";
const TASKS: usize = 32;
const PARTS: [&str; 3] = ["a", "b", "c"];

/// ~1 KB that can only be right for this key: the key, its hash, and filler
/// derived from the hash.
fn value_for(key: &str) -> Vec<u8> {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut value = format!("{key}|{hash:016x}|").into_bytes();
    let mut x = hash;
    while value.len() < 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        value.push(b'a' + (x % 26) as u8);
    }
    value
}

fn group_key(task: usize, i: u64, part: &str) -> String {
    format!("g/{task:02}/{i:07}/{part}")
}

#[test]
#[ignore = "the writer half of kill_9_mid_burst_loses_nothing_acknowledged, which runs it"]
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
        let store = Arc::new(SqliteStore::open(Path::new(&db)).unwrap());
        let deadline = Instant::now() + Duration::from_secs(30); // in case nobody kills us
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    // One txn: three group keys, and the task's high-water mark.
                    let mut txn = Txn::new().when(Compare::Absent(group_key(task, i, "a")));
                    for part in PARTS {
                        let key = group_key(task, i, part);
                        let value = value_for(&key);
                        txn = txn.put(key, value);
                    }
                    txn = txn.put(format!("last/{task:02}"), i.to_string());
                    let revision = store.commit(txn).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "ACK {task} {i} {revision}")
                        .and_then(|()| out.flush())
                        .is_err()
                        || Instant::now() > deadline
                    {
                        std::process::exit(1); // the parent is gone
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[test]
fn kill_9_mid_burst_loses_nothing_acknowledged() {
    let started = Instant::now();
    for kill_after in [40, 250, 700, 1200, 2000, 3500, 5000] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
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
        let mut acked: Vec<(usize, u64, Revision)> = Vec::new();
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
        verify(&db, &acked);
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

fn parse_ack(line: &str) -> Option<(usize, u64, Revision)> {
    let mut words = line.strip_prefix("ACK ")?.split(' ');
    Some((
        words.next()?.parse().ok()?,
        words.next()?.parse().ok()?,
        words.next()?.parse().ok()?,
    ))
}

fn verify(db: &Path, acked: &[(usize, u64, Revision)]) {
    let store = SqliteStore::open(db).unwrap();
    let (kvs, revision) = store.range("").unwrap();
    let max_acked = acked.iter().map(|a| a.2).max().unwrap_or(0);
    assert!(
        revision >= max_acked,
        "store at revision {revision}, but {max_acked} was acknowledged"
    );

    // Every value intact; every txn all or nothing.
    let mut groups: BTreeMap<(usize, u64), BTreeSet<String>> = BTreeMap::new();
    let mut mod_revisions = BTreeMap::new();
    let mut last = BTreeMap::new();
    for kv in &kvs {
        let words: Vec<&str> = kv.key.split('/').collect();
        match words[..] {
            ["g", task, i, part] => {
                assert_eq!(
                    kv.value,
                    value_for(&kv.key),
                    "value of {} is damaged",
                    kv.key
                );
                let id = (task.parse().unwrap(), i.parse().unwrap());
                groups.entry(id).or_default().insert(part.to_owned());
                let previous = mod_revisions.insert(id, kv.mod_revision);
                assert!(
                    previous.is_none_or(|r| r == kv.mod_revision),
                    "group {id:?} written by two txns"
                );
            }
            ["last", task] => {
                last.insert(
                    task.parse::<usize>().unwrap(),
                    std::str::from_utf8(&kv.value)
                        .unwrap()
                        .parse::<u64>()
                        .unwrap(),
                );
            }
            _ => panic!("unexpected key {}", kv.key),
        }
    }
    for (id, parts) in &groups {
        assert_eq!(
            parts.len(),
            PARTS.len(),
            "txn {id:?} is half written: {parts:?}"
        );
    }
    // Each task commits one txn at a time, so what survived of a task is a
    // gapless run from 0, and its high-water mark is the run's end.
    for task in 0..TASKS {
        let survived: Vec<u64> = groups
            .keys()
            .filter(|(t, _)| *t == task)
            .map(|(_, i)| *i)
            .collect();
        assert!(
            survived.iter().enumerate().all(|(n, i)| n as u64 == *i),
            "task {task} has gaps: {survived:?}"
        );
        assert_eq!(
            last.get(&task).copied(),
            survived.last().copied(),
            "task {task}'s high-water mark"
        );
    }
    // Nothing acknowledged is lost.
    for &(task, i, acked_revision) in acked {
        assert_eq!(
            mod_revisions.get(&(task, i)),
            Some(&acked_revision),
            "acknowledged txn ({task}, {i}) lost"
        );
    }
    // And the store goes on from where it was.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let next = runtime
        .block_on(store.commit(Txn::new().put("after", "crash")))
        .unwrap();
    assert_eq!(next, revision + 1);
    eprintln!(
        "killed after {} acks; {} txns survived at revision {revision}",
        acked.len(),
        groups.len()
    );
}
