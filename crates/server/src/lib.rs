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

pub mod ecs;
pub mod error;
pub mod gateway;
pub mod http;
pub mod placement;
pub mod state;

pub use state::State;

/// Serves the API on `listener` until `shutdown` resolves. The state is
/// rebuilt from `store` first.
pub async fn run(
    listener: TcpListener,
    store: Arc<dyn Store>,
    credentials: Credentials,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = State::open(store)?;
    serve(listener, state, credentials, shutdown).await
}

/// Serves the API over an already opened state.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    credentials: Credentials,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = http::App { state, credentials: Arc::new(credentials), sessions: Default::default() };
    axum::serve(listener, http::router(app)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
