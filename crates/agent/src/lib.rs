//! The Flotilla host agent: runs the tasks the control plane places on this
//! container instance as real Docker containers, and reports what Docker is
//! actually doing.
//!
//! Where to start reading:
//! - [`host::HostAgent`]: what `flotilla agent` runs: register the
//!   container instance, then [`control::run`] over the gateway;
//! - [`control::run`]: the agent's main loop; the control plane sits behind
//!   the [`ControlPlane`] trait, implemented over the server's WebSocket
//!   gateway by [`gateway::WsControlPlane`];
//! - [`engine`]: the supervisor that converges Docker to the desired set,
//!   routes Docker events, adopts containers after a restart;
//! - [`task`]: one task's lifecycle (pull, dependsOn order, essential
//!   containers, stopTimeout, health) and the state changes it reports;
//! - [`spec`]: ECS container definition → container create spec (pure);
//! - [`runtime`]: the narrow container-engine trait, with [`docker`] (the
//!   real one, bollard) and [`fake`] (in memory, for engine tests);
//! - [`logs`]: the awslogs log driver: containers' output shipped to
//!   CloudWatch Logs exactly once;
//! - [`metadata`]: the task metadata endpoint v4;
//! - [`stats`]: CPU and memory samples of running containers, sent to the
//!   control plane at a fixed interval;
//! - [`config`]: ecs.config keys, resources and attributes to register;
//! - [`state_dir`]: the agent's state folder, locked so that two agents
//!   never share one (and with it an identity);
//! - [`testing`]: the `flotilla-test` image and clean-up helpers for tests
//!   that run real containers.
//!
//! Containers are found again by their labels (see [`spec`]'s `LABEL_*`):
//! the instance label keeps agents that share one Docker Engine apart.

pub mod config;
pub mod control;
pub mod docker;
pub mod engine;
pub mod fake;
pub mod gateway;
pub mod host;
pub mod jsonfile;
pub mod logs;
pub mod metadata;
pub mod runtime;
pub mod spec;
pub mod state_dir;
pub mod stats;
pub mod task;
pub mod telemetry;
pub mod testing;

pub use config::AgentConfig;
pub use control::{
    run, AgentError, ChannelControlPlane, ControlEvent, ControlPlane, ControlPlaneError,
};
pub use docker::DockerRuntime;
pub use engine::{Engine, EngineConfig, StateChanges, TaskStateChange};
pub use gateway::{GatewayConfig, WsControlPlane};
pub use host::HostAgent;
pub use metadata::MetadataIndex;
pub use runtime::ContainerRuntime;
