//! The domain core: the cluster state and the operations every caller
//! shares. API handlers (`crate::services`), the agent gateway
//! (`crate::gateway`) and the controllers (`crate::controllers`) depend on
//! it; it depends on none of them.
//!
//! - [`state`]: every object in memory, written through the store before a
//!   write is acknowledged; [`load`] rebuilds it at start; [`stored`] is how
//!   values are encoded.
//! - [`tasks`]: create tasks, apply agents' reports, request stops.
//! - [`placement`] and [`resources`]: the bridge to the pure scheduler.
//! - [`task_definitions`]: which revision a reference names.
//! - [`services`]: deployments and service events; [`deployments`]: the
//!   service deployment history and alarm rollback.
//! - [`task_sets`]: services with the EXTERNAL deployment controller: task
//!   sets' rules, counts and what their controller starts and stops.
//! - [`events`]: lifecycle events published after each durable commit.
//! - [`usage`]: `AWS/ECS` CPU and memory utilization from agents' stats;
//!   [`alarm_actions`]: publishing alarm state changes to their consumers.
//! - [`autoscaling`]: Application Auto Scaling's targets, policies,
//!   scheduled actions and activities, and what a policy decides.
//! - [`lb`]: ELBv2's load balancers, target groups and nodes, and ECS
//!   services' tasks as targets.
//!
//! Lifecycles themselves (statuses and their moves) are in
//! `flotilla_model::lifecycle`, shared with the agent.

pub mod alarm_actions;
pub mod autoscaling;
pub mod deployments;
pub mod events;
pub mod instances;
pub mod lb;
pub mod load;
pub mod placement;
pub mod resources;
pub mod services;
pub mod state;
pub mod stored;
pub mod strategies;
pub mod task_definitions;
pub mod task_sets;
pub mod tasks;
pub mod usage;

pub use load::LoadError;
pub use state::{now, State};
