//! The store contract, run against both implementations, then what only the
//! SQLite store has (batches, reopening, write failures, close).

use std::sync::Arc;

use tempfile::TempDir;

use crate::memory::MemoryStore;
use crate::sqlite::{SqliteOptions, SqliteStore};
use crate::{Compare, Event, KeyValue, Revision, Store, StoreError, Txn};

/// A store under test, and the directory that holds it (if any).
struct Harness {
    store: Arc<dyn Store>,
    _dir: Option<TempDir>,
}

/// Opens a fresh store keeping this many revisions of history.
type Open = fn(u64) -> Harness;

fn memory(history: u64) -> Harness {
    Harness {
        store: Arc::new(MemoryStore::with_history(history)),
        _dir: None,
    }
}

fn sqlite(history: u64) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        history,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&dir.path().join("store.db"), options).unwrap();
    Harness {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

const HISTORY: u64 = 1000;

fn put(key: &str, value: &str) -> Txn {
    Txn::new().put(key, value.as_bytes())
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

fn value(store: &dyn Store, key: &str) -> Option<String> {
    store
        .get(key)
        .unwrap()
        .map(|kv| String::from_utf8(kv.value).unwrap())
}

fn assert_conflict(result: Result<Revision, StoreError>, key: &str) {
    match result {
        Err(StoreError::Conflict { key: k }) => assert_eq!(k, key),
        other => panic!("expected a conflict on {key}, got {other:?}"),
    }
}

/// Every event already sent on `rx`, without waiting.
fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Vec<(String, Revision, bool)> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push((e.key().to_owned(), e.revision(), matches!(e, Event::Put(_))));
    }
    out
}

fn ev(key: &str, revision: Revision, is_put: bool) -> (String, Revision, bool) {
    (key.to_owned(), revision, is_put)
}

/// A module `$module` that runs each contract test against the store `$open` opens.
macro_rules! contract_tests {
    ($module:ident, $open:ident: $($name:ident),* $(,)?) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::$open).await })*
        }
    };
}

macro_rules! for_both_stores {
    ($($name:ident),* $(,)?) => {
        contract_tests!(memory_store, memory: $($name),*);
        contract_tests!(sqlite_store, sqlite: $($name),*);
    };
}

for_both_stores!(
    revisions_increase_by_one_per_txn,
    create_revision_survives_updates_and_resets_after_delete,
    absent_compare_guards_creation,
    mod_revision_compare_is_compare_and_swap,
    range_by_prefix_in_key_order,
    delete_removes_key_and_missing_key_is_no_event,
    watch_from_past_revision_then_live,
    watch_too_far_back_is_compacted,
    watch_opened_during_commits_sees_each_later_revision_once,
    concurrent_commits_all_land,
);

/// The SQLite store as the control plane opens it: no change log, so its
/// writes make no events unless someone watches (see `put_unobserved`).
fn sqlite_unlogged(_history: u64) -> Harness {
    sqlite(0)
}

// The contract tests that watch nothing from the past, without a change log.
contract_tests!(
    sqlite_store_unlogged, sqlite_unlogged:
    revisions_increase_by_one_per_txn,
    create_revision_survives_updates_and_resets_after_delete,
    absent_compare_guards_creation,
    mod_revision_compare_is_compare_and_swap,
    range_by_prefix_in_key_order,
    concurrent_commits_all_land,
);

async fn revisions_increase_by_one_per_txn(open: Open) {
    let h = open(HISTORY);
    let s = &*h.store;
    assert_eq!(s.range("").unwrap(), (vec![], 0));
    assert_eq!(s.commit(put("a", "1")).await.unwrap(), 1);
    assert_eq!(s.commit(put("b", "1").put("c", "1")).await.unwrap(), 2);
    // A txn without ops still takes a revision.
    assert_eq!(s.commit(Txn::new()).await.unwrap(), 3);
    assert_eq!(s.commit(put("a", "2")).await.unwrap(), 4);
    let (kvs, revision) = s.range("").unwrap();
    assert_eq!(revision, 4);
    assert_eq!(keys(&kvs), ["a", "b", "c"]);
    assert_eq!(s.get("b").unwrap().unwrap().mod_revision, 2);
    assert_eq!(s.get("a").unwrap().unwrap().mod_revision, 4);
}

async fn create_revision_survives_updates_and_resets_after_delete(open: Open) {
    let h = open(HISTORY);
    let s = &*h.store;
    s.commit(put("k", "1")).await.unwrap();
    s.commit(put("k", "2")).await.unwrap();
    let kv = s.get("k").unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.value),
        (1, 2, b"2".to_vec())
    );
    s.commit(Txn::new().delete("k")).await.unwrap();
    s.commit(put("k", "4")).await.unwrap();
    let kv = s.get("k").unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (4, 4));
}

async fn absent_compare_guards_creation(open: Open) {
    let h = open(HISTORY);
    let s = &*h.store;
    let create = |v: &str| {
        Txn::new()
            .when(Compare::Absent("k".into()))
            .put("k", v.as_bytes())
            .put(format!("side/{v}"), "x")
    };
    assert_eq!(s.commit(create("1")).await.unwrap(), 1);
    assert_conflict(s.commit(create("2")).await, "k");
    // Nothing of the failed txn was written, and it took no revision.
    assert_eq!(value(s, "k").as_deref(), Some("1"));
    assert_eq!(s.get("side/2").unwrap(), None);
    assert_eq!(s.range("").unwrap().1, 1);
    assert_eq!(s.commit(put("z", "")).await.unwrap(), 2);
}

async fn mod_revision_compare_is_compare_and_swap(open: Open) {
    let h = open(HISTORY);
    let s = &*h.store;
    let r1 = s.commit(put("k", "1")).await.unwrap();
    let cas = |seen: Revision, v: &str| {
        Txn::new()
            .when(Compare::ModRevision("k".into(), seen))
            .put("k", v.as_bytes())
            .put(format!("log/{v}"), "x")
    };
    let r2 = s.commit(cas(r1, "2")).await.unwrap();
    assert_eq!(r2, r1 + 1);
    // A stale revision loses, atomically.
    assert_conflict(s.commit(cas(r1, "3")).await, "k");
    assert_eq!(value(s, "k").as_deref(), Some("2"));
    assert_eq!(s.get("log/3").unwrap(), None);
    // A compare on a missing key fails, and the conflict names the failing
    // compare even when an earlier one held.
    let both = Txn::new()
        .when(Compare::ModRevision("k".into(), r2))
        .when(Compare::ModRevision("missing".into(), r2))
        .put("k", "4");
    assert_conflict(s.commit(both).await, "missing");
    assert_eq!(value(s, "k").as_deref(), Some("2"));
    assert_eq!(s.range("").unwrap().1, r2);
}

async fn range_by_prefix_in_key_order(open: Open) {
    let h = open(HISTORY);
    let s = &*h.store;
    for key in ["a/2", "b/1", "a/é", "a0", "a/10", "a", "a//x", "a/z", "a/1"] {
        s.commit(put(key, key)).await.unwrap();
    }
    let (kvs, revision) = s.range("a/").unwrap();
    // Bytewise: '/' < '1' < '2' < 'z' < 'é' (0xC3 0xA9); "a0" and "a" are not under "a/".
    assert_eq!(keys(&kvs), ["a//x", "a/1", "a/10", "a/2", "a/z", "a/é"]);
    assert_eq!(revision, 9);
    assert!(kvs.iter().all(|kv| kv.value == kv.key.as_bytes()));
    assert_eq!(
        keys(&s.range("").unwrap().0),
        ["a", "a//x", "a/1", "a/10", "a/2", "a/z", "a/é", "a0", "b/1"]
    );
    assert_eq!(keys(&s.range("a/1").unwrap().0), ["a/1", "a/10"]);
    assert_eq!(s.range("c").unwrap(), (vec![], 9));
}

async fn delete_removes_key_and_missing_key_is_no_event(open: Open) {
    let h = open(HISTORY);
    let s = &*h.store;
    s.commit(put("k/1", "1").put("k/2", "2")).await.unwrap();
    let mut rx = s.watch("k/", 1).unwrap();
    assert_eq!(s.commit(Txn::new().delete("k/1")).await.unwrap(), 2);
    assert_eq!(s.get("k/1").unwrap(), None);
    assert_eq!(keys(&s.range("k/").unwrap().0), ["k/2"]);
    // Deleting a missing key succeeds (and takes a revision) but changes nothing.
    assert_eq!(s.commit(Txn::new().delete("k/1")).await.unwrap(), 3);
    // Put then delete in one txn leaves nothing.
    assert_eq!(s.commit(put("k/3", "3").delete("k/3")).await.unwrap(), 4);
    assert_eq!(s.get("k/3").unwrap(), None);
    assert_eq!(
        drain(&mut rx),
        [ev("k/1", 2, false), ev("k/3", 4, true), ev("k/3", 4, false)]
    );
}

async fn watch_from_past_revision_then_live(open: Open) {
    let h = open(HISTORY);
    let s = &*h.store;
    s.commit(put("a/1", "1")).await.unwrap(); // 1
    s.commit(put("b/1", "1")).await.unwrap(); // 2
    s.commit(put("a/2", "2").put("a/0", "0")).await.unwrap(); // 3
    s.commit(Txn::new().delete("a/1")).await.unwrap(); // 4

    let mut from_1 = s.watch("a/", 1).unwrap();
    let mut everything = s.watch("", 0).unwrap();
    let mut future = s.watch("a/", 10).unwrap();
    // Catch-up: in revision order, op order within a revision, prefix only.
    assert_eq!(
        drain(&mut from_1),
        [ev("a/2", 3, true), ev("a/0", 3, true), ev("a/1", 4, false)]
    );

    s.commit(put("a/3", "3")).await.unwrap(); // 5
    s.commit(put("b/2", "2")).await.unwrap(); // 6
                                              // A conflict is no event.
    assert_conflict(
        s.commit(
            Txn::new()
                .when(Compare::Absent("a/3".into()))
                .put("a/3", "x"),
        )
        .await,
        "a/3",
    );
    // Live events are queued by the time the commit resolves.
    assert_eq!(drain(&mut from_1), [ev("a/3", 5, true)]);
    let all = drain(&mut everything);
    let revisions: Vec<Revision> = all.iter().map(|e| e.1).collect();
    assert_eq!(revisions, [1, 2, 3, 3, 4, 5, 6]);
    assert_eq!(drain(&mut future), []);
    for n in 7..=11 {
        s.commit(put("a/x", &n.to_string())).await.unwrap();
    }
    assert_eq!(drain(&mut future), [ev("a/x", 11, true)]);

    // The values come through.
    let mut rx = s.watch("a/3", 4).unwrap();
    match rx.recv().await {
        Some(Event::Put(kv)) => assert_eq!(
            (kv.value, kv.create_revision, kv.mod_revision),
            (b"3".to_vec(), 5, 5)
        ),
        other => panic!("{other:?}"),
    }
    // A dropped receiver is fine.
    drop(rx);
    s.commit(put("a/3", "again")).await.unwrap();
}

async fn watch_too_far_back_is_compacted(open: Open) {
    let h = open(3);
    let s = &*h.store;
    for n in 1..=10 {
        s.commit(put("k", &n.to_string())).await.unwrap();
    }
    match s.watch("", 6) {
        Err(StoreError::Compacted(6)) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut rx = s.watch("", 7).unwrap();
    assert_eq!(
        drain(&mut rx),
        [ev("k", 8, true), ev("k", 9, true), ev("k", 10, true)]
    );
    let mut rx = s.watch("", 10).unwrap();
    assert_eq!(drain(&mut rx), []);
}

async fn watch_opened_during_commits_sees_each_later_revision_once(open: Open) {
    let h = open(HISTORY * 10);
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&h.store);
            tokio::spawn(async move {
                for i in 0..250 {
                    store.commit(put(&format!("w/{t}/{i}"), "v")).await.unwrap();
                    if i % 10 == 0 {
                        // The memory store never waits; let the watches in.
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();
    // Open watches while the commits stream in, some with a catch-up.
    let mut watches = Vec::new();
    while !writers.iter().all(|w| w.is_finished()) && watches.len() < 200 {
        let (_, revision) = h.store.range("w/").unwrap();
        let after = revision.saturating_sub(watches.len() as Revision % 7);
        watches.push((after, h.store.watch("w/", after).unwrap()));
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(
        watches.len() > 1,
        "the commits were over before a watch opened"
    );
    for (after, mut rx) in watches {
        // One event per revision: each must arrive once, in order, no gaps.
        let revisions: Vec<Revision> = drain(&mut rx).into_iter().map(|e| e.1).collect();
        assert_eq!(
            revisions,
            (after + 1..=1000).collect::<Vec<_>>(),
            "watch after {after}"
        );
    }
}

async fn concurrent_commits_all_land(open: Open) {
    let h = open(HISTORY);
    let revisions = commit_concurrently(&h.store, 50, 40).await;
    check_concurrent(&*h.store, &revisions);
}

/// `tasks` tasks each commit `per_task` txns, one at a time; returns every
/// acknowledged revision.
async fn commit_concurrently(
    store: &Arc<dyn Store>,
    tasks: usize,
    per_task: usize,
) -> Vec<Revision> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = Arc::clone(store);
        handles.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..per_task {
                let key = format!("c/{t:03}/{i:03}");
                let txn = Txn::new()
                    .when(Compare::Absent(key.clone()))
                    .put(key.clone(), key.as_bytes());
                revisions.push(store.commit(txn).await.unwrap());
            }
            revisions
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        let revisions = handle.await.unwrap();
        // One task's commits are sequential, so their revisions increase.
        assert!(revisions.windows(2).all(|w| w[0] < w[1]));
        all.extend(revisions);
    }
    all
}

fn check_concurrent(store: &dyn Store, revisions: &[Revision]) {
    let n = revisions.len() as Revision;
    let mut sorted = revisions.to_vec();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=n).collect::<Vec<_>>(),
        "every commit got its own revision, gapless"
    );
    let (kvs, revision) = store.range("c/").unwrap();
    assert_eq!(revision, n);
    assert_eq!(kvs.len() as Revision, n);
    assert!(kvs
        .iter()
        .all(|kv| kv.value == kv.key.as_bytes() && kv.create_revision == kv.mod_revision));
}

// --- SQLite only -------------------------------------------------------------

fn open_sqlite(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("store.db")).unwrap()
}

/// With `history: 0` nothing goes to the change log (each value is written
/// once), a watch from the past is compacted, and live watches still work.
#[tokio::test]
async fn history_zero_keeps_no_change_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let options = SqliteOptions {
        history: 0,
        ..SqliteOptions::default()
    };
    let s = SqliteStore::open_with(&path, options).unwrap();
    for n in 1..=5 {
        s.commit(put(&format!("k/{n}"), "v")).await.unwrap();
    }
    s.commit(Txn::new().delete("k/1")).await.unwrap();
    assert!(matches!(s.watch("", 3), Err(StoreError::Compacted(3))));
    let mut rx = s.watch("k/", 6).unwrap();
    s.commit(put("k/9", "live")).await.unwrap();
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(event, Event::Put(kv) if kv.key == "k/9" && kv.mod_revision == 7 && kv.create_revision == 7)
    );
    // With a watcher, an update's event carries the key's create revision.
    s.commit(put("k/2", "again")).await.unwrap();
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&event, Event::Put(kv) if kv.key == "k/2" && kv.mod_revision == 8 && kv.create_revision == 2),
        "{event:?}"
    );
    assert_eq!(
        keys(&s.range("k/").unwrap().0),
        ["k/2", "k/3", "k/4", "k/5", "k/9"]
    );
    assert_eq!(
        s.get("k/2")
            .unwrap()
            .map(|kv| (kv.create_revision, kv.mod_revision)),
        Some((2, 8))
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let logged: i64 = conn
        .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(logged, 0);
}

#[tokio::test]
async fn later_txn_in_a_batch_sees_earlier_txns_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sqlite(&dir);
    s.commit(put("other", "0")).await.unwrap(); // 1
    let (f1, f2, f3, f4);
    {
        // With the writer held, all four are queued before it drains: one batch.
        let _held = s.hold_writer();
        f1 = s.commit(Txn::new().when(Compare::Absent("k".into())).put("k", "1"));
        f2 = s.commit(Txn::new().when(Compare::Absent("k".into())).put("k", "2"));
        f3 = s.commit(
            Txn::new()
                .when(Compare::ModRevision("k".into(), 2))
                .put("k", "3"),
        );
        f4 = s.commit(
            Txn::new()
                .when(Compare::ModRevision("other".into(), 1))
                .delete("other"),
        );
    }
    assert_eq!(f1.await.unwrap(), 2);
    assert_conflict(f2.await, "k"); // txn 1 created k in the same batch
    assert_eq!(f3.await.unwrap(), 3); // and txn 3 saw it at revision 2
    assert_eq!(f4.await.unwrap(), 4);
    let kv = s.get("k").unwrap().unwrap();
    assert_eq!(
        (kv.value, kv.create_revision, kv.mod_revision),
        (b"3".to_vec(), 2, 3)
    );
    assert_eq!(s.get("other").unwrap(), None);
    assert_eq!(s.revision(), 4);
}

#[tokio::test]
async fn commit_order_is_call_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sqlite(&dir);
    // Not awaited until all are called: the order of the calls decides.
    let futures: Vec<_> = (0..200)
        .map(|i| {
            s.commit(
                Txn::new()
                    .when(Compare::Absent("first".into()))
                    .put("first", format!("{i}")),
            )
        })
        .collect();
    let mut results = Vec::new();
    for f in futures.into_iter().rev() {
        results.push(f.await);
    }
    results.reverse();
    assert_eq!(results[0].as_ref().unwrap(), &1);
    for r in results.into_iter().skip(1) {
        assert_conflict(r, "first");
    }
    assert_eq!(value(&s, "first").as_deref(), Some("0"));
}

#[tokio::test]
async fn reopen_keeps_data_revision_and_history() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open_sqlite(&dir);
        s.commit(put("a", "1")).await.unwrap();
        s.commit(put("b", "2")).await.unwrap();
        s.commit(Txn::new().delete("a")).await.unwrap();
        s.commit(put("b", "3")).await.unwrap();
    }
    let s = open_sqlite(&dir);
    assert_eq!(s.revision(), 4);
    let (kvs, revision) = s.range("").unwrap();
    assert_eq!(revision, 4);
    assert_eq!(
        kvs,
        [KeyValue {
            key: "b".into(),
            value: b"3".to_vec(),
            create_revision: 2,
            mod_revision: 4
        }]
    );
    // The change log is durable too: a watcher can catch up across a restart.
    let mut rx = s.watch("", 1).unwrap();
    assert_eq!(
        drain(&mut rx),
        [ev("b", 2, true), ev("a", 3, false), ev("b", 4, true)]
    );
    assert_eq!(s.commit(put("c", "5")).await.unwrap(), 5);
    assert_eq!(drain(&mut rx), [ev("c", 5, true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(open_sqlite(&dir));
    let revisions = commit_concurrently(&store, 50, 40).await;
    drop(store);
    let reopened = open_sqlite(&dir);
    check_concurrent(&reopened, &revisions);
}

#[tokio::test]
async fn failed_batch_acknowledges_nothing_and_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let s = SqliteStore::open(&path).unwrap();
    s.commit(put("before", "1")).await.unwrap(); // 1
    let mut rx = s.watch("", 1).unwrap();
    // Make every write of the key "poison" fail inside SQLite, as an I/O error would.
    let saboteur = rusqlite::Connection::open(&path).unwrap();
    saboteur
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON kv WHEN NEW.key = CAST('poison' AS BLOB)
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let (good, conflict, bad);
    {
        let _held = s.hold_writer();
        good = s.commit(put("good", "1"));
        conflict = s.commit(
            Txn::new()
                .when(Compare::Absent("good".into()))
                .put("good", "2"),
        );
        bad = s.commit(put("poison", "1"));
    }
    for result in [good.await, conflict.await, bad.await] {
        match result {
            Err(StoreError::Sqlite(e)) => {
                assert!(e.to_string().contains("injected failure"), "{e}")
            }
            other => panic!("expected the batch's SQLite error, got {other:?}"),
        }
    }
    assert_eq!(s.get("good").unwrap(), None);
    assert_eq!(s.revision(), 1);
    assert_eq!(s.range("").unwrap().1, 1);
    assert_eq!(drain(&mut rx), []);
    // The writer carries on from the durable state.
    assert_eq!(s.commit(put("after", "1")).await.unwrap(), 2);
    assert_eq!(drain(&mut rx), [ev("after", 2, true)]);
    saboteur.execute_batch("DROP TRIGGER poison").unwrap();
    assert_eq!(s.commit(put("poison", "ok")).await.unwrap(), 3);
}

#[tokio::test]
async fn close_finishes_queued_commits_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sqlite(&dir);
    let mut rx = s.watch("", 0).unwrap();
    let queued: Vec<_> = (0..100)
        .map(|i| s.commit(put(&format!("k/{i}"), "v")))
        .collect();
    s.close();
    for (i, f) in queued.into_iter().enumerate() {
        assert_eq!(f.await.unwrap(), i as Revision + 1);
    }
    assert!(matches!(
        s.commit(put("late", "v")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(s.range(""), Err(StoreError::Closed)));
    assert!(matches!(s.watch("", 0), Err(StoreError::Closed)));
    // The watch stream had every event, then ends.
    let mut n = 0;
    while let Some(e) = rx.recv().await {
        n += 1;
        assert_eq!(e.revision(), n);
    }
    assert_eq!(n, 100);
    s.close(); // idempotent
    drop(s);
    assert_eq!(open_sqlite(&dir).range("k/").unwrap().0.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_stays_bounded_under_steady_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Arc::new(open_sqlite(&dir));
    // 16 committers that never pause: 4,000 txns of 8 KiB, ~70 MiB of WAL
    // frames with the change log. The WAL restarts only if the checkpoints
    // catch up with a writer that never waits for them.
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..250 {
                    store
                        .commit(Txn::new().put(format!("big/{t}/{i}"), vec![7u8; 8192]))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("store.db-wal"))
        .unwrap()
        .len();
    assert!(wal < 40 << 20, "the WAL grew to {} MiB", wal >> 20);
    assert_eq!(store.range("big/").unwrap().0.len(), 4000);
    drop(store);
    assert_eq!(
        SqliteStore::open(&path)
            .unwrap()
            .range("big/")
            .unwrap()
            .0
            .len(),
        4000
    );
}
