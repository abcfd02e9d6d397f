//! Lifecycle events the domain core publishes once the change behind them is
//! durable: a task running, its health changing, a stop requested, a task
//! stopped; an instance registered, draining, deregistered or lost.
//!
//! Later features subscribe instead of reaching into another part's code:
//! load-balancer target registration, metrics, service discovery. Events are
//! hints, not the source of truth: a subscriber that falls behind (the
//! channel is bounded) is told it lagged and re-reads the state, exactly as
//! a level-triggered controller does after a restart.
//!
//! Building an event costs a few small strings, so a transaction builds them
//! only while somebody listens (see [`super::state::Tx::emit`]).

use flotilla_model::arn::Scope;
use flotilla_model::ecs;

/// A task, by cluster and id, within the batch's scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskRef {
    pub cluster: String,
    pub id: String,
}

/// A container instance, by cluster and id, within the batch's scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceRef {
    pub cluster: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The task's agent reported it RUNNING.
    TaskRunning { task: TaskRef },
    /// The task's health (from its containers' health checks) changed.
    TaskHealth {
        task: TaskRef,
        health: ecs::HealthStatus,
    },
    /// Its `desiredStatus` became STOPPED.
    TaskStopRequested { task: TaskRef },
    /// It is STOPPED: its containers are gone and its resources free.
    TaskStopped { task: TaskRef },
    /// Registered (or registered again) with its cluster.
    InstanceRegistered { instance: InstanceRef },
    /// Set to DRAINING: its service tasks are being replaced elsewhere.
    InstanceDraining { instance: InstanceRef },
    /// Deregistered (INACTIVE).
    InstanceDeregistered { instance: InstanceRef },
    /// Its agent stayed away past the grace period: its tasks are STOPPED.
    InstanceLost { instance: InstanceRef },
}

/// The events of one durable commit, with the account and region they
/// happened in.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub scope: Scope,
    /// The store revision that made them durable.
    pub revision: u64,
    pub events: Vec<Event>,
}

/// How many commits' events a subscriber may fall behind before it is told
/// it lagged.
pub const CAPACITY: usize = 4096;
