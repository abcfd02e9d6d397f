//! Flotilla's control plane: the ECS API front, SigV4 auth, the cluster
//! state written through the store, the controllers and the agent gateway.
//!
//! Where to start reading:
//! - [`run`] wires a listener, a store and credentials into a running server;
//! - [`http`] is the API front (HTTP → typed operation → HTTP);
//! - [`ecs`] has one handler per ECS operation;
//! - [`state`] is the in-memory state and how writes become durable.

use std::future::Future;
use std::sync::Arc;

use flotilla_auth::Credentials;
use flotilla_store::Store;
use tokio::net::TcpListener;

pub mod controllers;
pub mod ecs;
pub mod error;
pub mod gateway;
pub mod http;
pub mod placement;
pub mod state;
pub mod stored;

pub use state::State;

/// Everything tunable about a server; `Default` is what `flotilla server` runs.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub controllers: controllers::ControllerConfig,
}

/// Opens (creating if needed) the server's SQLite store at `path`.
///
/// The server keeps no change log: it never watches the store from a past
/// revision (memory is rebuilt from a full range at start), so each value is
/// written once instead of twice. A watcher that needs catch-up opens the
/// store with a history of its own.
pub fn open_store(path: &std::path::Path) -> Result<flotilla_store::sqlite::SqliteStore, flotilla_store::StoreError> {
    let options = flotilla_store::sqlite::SqliteOptions { history: 0, ..Default::default() };
    flotilla_store::sqlite::SqliteStore::open_with(path, options)
}

/// Serves the API on `listener` until `shutdown` resolves. The state is
/// rebuilt from `store` first.
pub async fn run(
    listener: TcpListener,
    store: Arc<dyn Store>,
    credentials: Credentials,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(listener, store, credentials, Config::default(), shutdown).await
}

/// [`run`] with explicit settings.
pub async fn run_with(
    listener: TcpListener,
    store: Arc<dyn Store>,
    credentials: Credentials,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = State::open(store)?;
    serve(listener, state, credentials, config, shutdown).await
}

/// Serves the API and runs the controllers over an already opened state.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    credentials: Credentials,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // One signal stops the HTTP server, the agent sessions and the controllers.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let controllers = tokio::spawn(controllers::run(state.clone(), config.controllers, until_stopped(stopped.clone())));
    let app = http::App { state, credentials: Arc::new(credentials), sessions: Default::default(), shutdown: stopped };
    let result = axum::serve(listener, http::router(app))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await;
    let _ = controllers.await;
    result?;
    Ok(())
}
