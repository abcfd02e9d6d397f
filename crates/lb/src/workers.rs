//! The node's data-plane threads: one single-threaded tokio runtime per
//! worker, each with its own pool of target connections (nginx's model of
//! one event loop per core).
//!
//! Every listener's socket is bound once and each worker accepts on its own
//! duplicate of it; accepted connections go to the workers in turn (a
//! connection accepted by one worker for another is handed over once), so
//! each holds an equal share of the keep-alive connections. A client
//! connection and everything it forwards (the pooled target connections,
//! the response bodies) then stay on its worker's thread: no task moves
//! between threads, no work-stealing queue, no lock on the pool shared with
//! another thread. The routing table, the
//! targets' state and the counters are shared (atomics and `ArcSwap`).
//!
//! With no worker threads asked for, listeners are served on the runtime
//! that runs the node (what tests that want one thread use).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::pool::TargetPool;

/// How often a worker closes its pooled connections that idled out or that
/// the target closed.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Where a listener's connections are served: a runtime and the pool of
/// target connections that its connections share.
pub struct Worker {
    handle: Handle,
    pool: Arc<TargetPool>,
    /// Tells the worker's thread to stop; `None` for the node's own runtime.
    stop: Option<oneshot::Sender<()>>,
    /// Resolves once the worker's runtime, and with it every connection it
    /// served, is gone.
    stopped: Option<oneshot::Receiver<()>>,
}

impl Worker {
    /// Runs `future` on this worker.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// The pool of target connections this worker's connections use.
    pub fn pool(&self) -> &Arc<TargetPool> {
        &self.pool
    }
}

/// The node's workers.
pub struct Workers {
    workers: Vec<Worker>,
}

impl Workers {
    /// `count` worker threads, or, for 0, the calling runtime alone. Must be
    /// called within a tokio runtime.
    pub fn start(count: usize) -> std::io::Result<Workers> {
        if count == 0 {
            let pool = Arc::new(TargetPool::default());
            tokio::spawn(prune(Arc::downgrade(&pool)));
            return Ok(Workers {
                workers: vec![Worker {
                    handle: Handle::current(),
                    pool,
                    stop: None,
                    stopped: None,
                }],
            });
        }
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            workers.push(start_thread(i)?);
        }
        Ok(Workers { workers })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Worker> {
        self.workers.iter()
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Stops the worker threads and waits until their connections are
    /// closed.
    pub async fn shutdown(mut self) {
        let waits: Vec<_> = self
            .workers
            .iter_mut()
            .filter_map(|w| {
                let _ = w.stop.take()?.send(());
                w.stopped.take()
            })
            .collect();
        for w in waits {
            let _ = w.await;
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

fn start_thread(index: usize) -> std::io::Result<Worker> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let pool = Arc::new(TargetPool::default());
    let (stop, stop_rx) = oneshot::channel::<()>();
    let (stopped_tx, stopped) = oneshot::channel::<()>();
    let weak = Arc::downgrade(&pool);
    std::thread::Builder::new()
        .name(format!("lb-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                tokio::spawn(prune(weak));
                // A dropped sender (the node gone without a word) stops too.
                let _ = stop_rx.await;
            });
            // Dropping the runtime drops its tasks: listeners and their
            // connections close here.
            drop(runtime);
            let _ = stopped_tx.send(());
        })?;
    Ok(Worker {
        handle,
        pool,
        stop: Some(stop),
        stopped: Some(stopped),
    })
}

/// Prunes `pool` periodically while it exists.
async fn prune(pool: std::sync::Weak<TargetPool>) {
    let mut ticks = tokio::time::interval(PRUNE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match pool.upgrade() {
            Some(p) => p.prune(),
            None => return,
        }
    }
}
