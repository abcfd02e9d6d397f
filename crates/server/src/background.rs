//! The runtime the control plane's background work runs on: agent sessions
//! and controllers. Its threads run a few nice levels below the process's
//! own, so that when the machine is busy the operating system serves the
//! API's threads first.
//!
//! Why: during a million-task placement, ten thousand agents' sessions and
//! the controller kept both cores busy, and CreateService waited 8–15 s at
//! p99. On one runtime an API request's task queued behind thousands of
//! session tasks (tokio has no priorities); on a runtime of its own it
//! still shared the cores equally with them. The API's requests are short
//! and bursty: serving them first costs the background little, and an API
//! user waiting on a placement storm does not see it.

use thread_priority::{ThreadPriority, ThreadPriorityValue};

/// How many nice levels below the process the background threads run.
/// Five levels is a weight of about a third (CFS weights 1024 vs 335): the
/// API is served first when both want a core, and the background still
/// gets the rest.
pub const NICE_STEPS: i32 = 5;

/// The background runtime: two worker threads (the machines this is
/// measured on have two cores; more threads only add switching), each
/// lowered by [`NICE_STEPS`] when it starts.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("flotilla-background")
        .on_thread_start(|| lower_current_thread(NICE_STEPS))
        .enable_all()
        .build()
}

/// How many nice levels below the process log ingestion (PutLogEvents)
/// runs: below the background too, so that neither the API nor the
/// scheduler and agent sessions wait behind a chatty container's lines
/// (CFS weight 110 against 1024).
pub const INGEST_NICE_STEPS: i32 = 10;

/// The runtime PutLogEvents is served on (see `front::Front::ingest`): two
/// worker threads (and its blocking threads, where the log store hashes
/// and compresses large batches), each lowered by [`INGEST_NICE_STEPS`].
/// A batch is still answered only once durable: the log store's writer
/// commits it as before; only who waits for a core changes.
pub fn ingest_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("flotilla-ingest")
        .on_thread_start(|| lower_current_thread(INGEST_NICE_STEPS))
        .enable_all()
        .build()
}

/// Lowers the calling thread's priority by `steps` nice levels, best effort:
/// where the system refuses, the thread keeps its priority and a debug line
/// says so.
fn lower_current_thread(steps: i32) {
    let target = (niceness().unwrap_or(0) + steps).clamp(-20, 19);
    let result = ThreadPriorityValue::try_from(crossplatform_value(target))
        .map(ThreadPriority::Crossplatform);
    let result = result
        .map_err(|e| e.to_string())
        .and_then(|p| p.set_for_current().map_err(|e| e.to_string()));
    if let Err(e) = result {
        tracing::debug!(error = %e, "could not lower a background thread's priority");
    }
}

/// thread-priority's cross-platform value (0 lowest … 99 highest) for a
/// niceness (19 lowest … -20 highest), as the crate maps one onto the other
/// for normal (non-real-time) threads.
fn crossplatform_value(niceness: i32) -> u8 {
    let ratio = 1.0 - (niceness + 20) as f32 / 39.0;
    (ratio * 99.0).round().clamp(0.0, 99.0) as u8
}

/// The calling thread's niceness, from `/proc/thread-self/stat` (field 19).
fn niceness() -> Option<i32> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised name: state is field 3, nice field 19.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(16)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn niceness_maps_onto_the_crates_scale() {
        assert_eq!(crossplatform_value(19), 0);
        assert_eq!(crossplatform_value(-20), 99);
        // Monotonic: a higher niceness is a lower value.
        let values: Vec<u8> = (-20..=19).rev().map(crossplatform_value).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    }

    /// A background thread really runs lower than the thread that made it.
    #[test]
    fn background_threads_run_below_the_process() {
        let before = niceness().expect("a Linux /proc");
        let rt = runtime().unwrap();
        let inside = rt
            .block_on(async { tokio::spawn(async { niceness() }).await.unwrap() })
            .unwrap();
        rt.shutdown_background();
        if before + NICE_STEPS <= 19 {
            // Within one level: the crate's scale has 100 steps for 40 levels.
            assert!(
                (inside - (before + NICE_STEPS)).abs() <= 1,
                "before {before}, inside {inside}"
            );
        }
        assert!(inside > before, "before {before}, inside {inside}");
    }

    /// Log ingestion's threads, workers and blocking ones, run below the
    /// background's.
    #[test]
    fn ingest_threads_run_below_the_background() {
        let before = niceness().expect("a Linux /proc");
        let rt = ingest_runtime().unwrap();
        let (worker, blocking) = rt.block_on(async {
            let worker = tokio::spawn(async { niceness() }).await.unwrap();
            let blocking = tokio::task::spawn_blocking(niceness).await.unwrap();
            (worker, blocking)
        });
        rt.shutdown_background();
        let (worker, blocking) = (worker.unwrap(), blocking.unwrap());
        if before + INGEST_NICE_STEPS <= 19 {
            assert!(
                (worker - (before + INGEST_NICE_STEPS)).abs() <= 1,
                "before {before}, worker {worker}"
            );
            assert!(
                worker > before + NICE_STEPS,
                "before {before}, worker {worker}"
            );
        }
        assert!(
            worker > before && blocking == worker,
            "before {before}, worker {worker}, blocking {blocking}"
        );
    }
}
