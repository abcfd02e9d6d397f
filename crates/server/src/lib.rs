//! Flotilla's control plane: the API front for every AWS service it serves,
//! SigV4 auth, the domain core (cluster state written through the store),
//! the controllers and the gateways.
//!
//! Where to start reading (dependencies point down this list, never up):
//! - [`run`] wires a listener, a store and credentials into a running server;
//! - [`front`]: HTTP, the wire protocols, routing, errors, tower layers;
//! - [`services`]: one folder of handlers per AWS service ([`api`] is the
//!   contract between the front and them);
//! - [`gateway`]: the long-lived sessions of agents and load-balancer nodes;
//! - [`controllers`]: the level-triggered loops and their runtime;
//! - [`core`]: the state, lifecycles in use, task operations, placement,
//!   events — shared by all of the above, depending on none of them.

use std::future::Future;
use std::sync::Arc;

use flotilla_auth::Credentials;
use flotilla_store::Store;
use tokio::net::TcpListener;

pub mod api;
pub mod background;
pub mod controllers;
pub mod core;
pub mod error;
pub mod front;
pub mod gateway;
pub mod prometheus;
pub mod services;
pub mod telemetry;

pub use crate::core::State;

/// Everything tunable about a server; `Default` is what `flotilla server` runs.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub controllers: controllers::ControllerConfig,
    pub limits: front::layers::Limits,
}

/// Everything the control plane keeps on disk, each apart so that none slows
/// another: the cluster state (the `Store`, SQLite by default), CloudWatch
/// Logs (`flotilla-logstore`: a chatty container never touches the cluster
/// store) and CloudWatch metrics and alarms (`flotilla-metrics`).
pub struct Stores {
    pub state: Arc<dyn Store>,
    pub logs: flotilla_logstore::LogStore,
    pub metrics: flotilla_metrics::MetricStore,
}

impl Stores {
    /// Opens (creating if needed) every store under `data_dir`:
    /// `flotilla.db`, `logs/` and `metrics.db`.
    pub fn open(data_dir: &std::path::Path) -> anyhow::Result<Stores> {
        let state = open_store(&data_dir.join("flotilla.db"))?;
        Stores::with_state(data_dir, Arc::new(state))
    }

    /// The stores under `data_dir`, with `state` as the cluster store.
    pub fn with_state(data_dir: &std::path::Path, state: Arc<dyn Store>) -> anyhow::Result<Stores> {
        let logs = flotilla_logstore::LogStore::open(&data_dir.join("logs"))?;
        let metrics =
            flotilla_metrics::MetricStore::open(&data_dir.join("metrics.db"), Default::default())?;
        Ok(Stores {
            state,
            logs,
            metrics,
        })
    }
}

/// Opens (creating if needed) the server's SQLite store at `path`.
///
/// The server keeps no change log: it never watches the store from a past
/// revision (memory is rebuilt from a full range at start), so each value is
/// written once instead of twice. A watcher that needs catch-up opens the
/// store with a history of its own.
pub fn open_store(
    path: &std::path::Path,
) -> Result<flotilla_store::sqlite::SqliteStore, flotilla_store::StoreError> {
    let options = flotilla_store::sqlite::SqliteOptions {
        history: 0,
        ..Default::default()
    };
    flotilla_store::sqlite::SqliteStore::open_with(path, options)
}

/// Serves the API on `listener` until `shutdown` resolves. The state is
/// rebuilt from the stores first.
pub async fn run(
    listener: TcpListener,
    stores: Stores,
    credentials: Credentials,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(listener, stores, credentials, Config::default(), shutdown).await
}

/// [`run`] with explicit settings.
pub async fn run_with(
    listener: TcpListener,
    stores: Stores,
    credentials: Credentials,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let env = open_env(stores)?;
    let result = serve(listener, env.clone(), credentials, config, shutdown).await;
    // Every caller is gone: the stores finish what is queued and let go of
    // their files (a restarted server may open them at once).
    env.logs.close();
    env.metrics.close();
    result
}

/// What every request and controller shares, over `stores`: the cluster
/// state rebuilt from its store, and the other stores as they are.
pub fn open_env(stores: Stores) -> anyhow::Result<Arc<api::Env>> {
    let state = State::open(stores.state)?;
    let (alarm_actions, _) = tokio::sync::broadcast::channel(api::ALARM_ACTIONS_CAPACITY);
    Ok(Arc::new(api::Env {
        state,
        logs: stores.logs,
        metrics: stores.metrics,
        alarm_actions,
    }))
}

/// Serves the API and runs the controllers over an already opened state.
pub async fn serve(
    listener: TcpListener,
    env: Arc<api::Env>,
    credentials: Credentials,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = env.state.clone();
    // One signal stops the HTTP server, the agent sessions and the controllers.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Sessions and controllers run below the API (see `background`).
    let background = background::runtime()?;
    // Log ingestion runs below both (see `background::ingest_runtime`).
    let ingest = background::ingest_runtime()?;
    let controllers = background.spawn(controllers::run(
        state.clone(),
        env.logs.clone(),
        config.controllers,
        until_stopped(stopped.clone()),
    ));
    // CloudWatch: alarms on time, and AWS/ECS utilization from agents' stats.
    let usage = Arc::new(core::usage::Usage::default());
    let alarms = background.spawn(controllers::alarms::run(
        env.clone(),
        until_stopped(stopped.clone()),
    ));
    let usage_flush = background.spawn(controllers::usage::run(
        env.clone(),
        usage.clone(),
        until_stopped(stopped.clone()),
    ));
    let sessions = Arc::<gateway::agents::Sessions>::default();
    let lb_sessions = Arc::<gateway::lb::LbSessions>::default();
    let scrape = prometheus::router(prometheus::Sources {
        env: env.clone(),
        usage: usage.clone(),
        sessions: sessions.clone(),
        lb_sessions: lb_sessions.clone(),
    });
    let autoscaling = background.spawn(controllers::autoscaling::run(
        env.clone(),
        until_stopped(stopped.clone()),
    ));
    let deployment_alarms = background.spawn(controllers::deployment_alarms::run(
        env.clone(),
        until_stopped(stopped.clone()),
    ));
    let credentials = Arc::new(credentials);
    let metrics = env.metrics.clone();
    let front = front::Front {
        env,
        credentials: credentials.clone(),
        services: services::ALL,
        ingest: Some(ingest.handle().clone()),
    };
    let gateway = gateway::Gateway {
        state,
        credentials,
        sessions,
        lb_sessions,
        metrics,
        shutdown: stopped,
        sessions_runtime: background.handle().clone(),
        usage,
    };
    let app = front::router(front, config.limits)
        .merge(gateway::router(gateway))
        .merge(scrape);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await;
    let _ = controllers.await;
    let _ = tokio::join!(alarms, usage_flush, autoscaling, deployment_alarms);
    // The sessions saw the shutdown signal; whatever is left is dropped
    // without blocking this (async) caller.
    background.shutdown_background();
    ingest.shutdown_background();
    result?;
    Ok(())
}
