//! The agent gateway protocol: what flows between the control plane and a
//! host agent over its one long-lived WebSocket connection
//! (`GET /v1/agent/connect?cluster=NAME&containerInstance=ARN`, SigV4-signed).
//!
//! Desired state flows down, observed state flows up (DESIGN.md rule 1):
//! - the server pushes the *complete* set of tasks it wants on the instance,
//!   with a version; a reconnect simply receives the latest set again;
//! - the agent reports what Docker is really doing, either through the ECS API
//!   (`SubmitTaskStateChange`, `SubmitContainerStateChange`) or batched on this
//!   connection as [`AgentMessage::StateChanges`] (what `flotilla sim` uses to
//!   report thousands of tasks a second);
//! - heartbeats in both directions drive `agentConnected`.
//!
//! Messages are JSON text frames, externally tagged by `type`.

use serde::{Deserialize, Serialize};

use crate::ecs;

/// One task the control plane wants on this instance, with everything needed
/// to run it: the task as DescribeTasks shows it (ARN, overrides, desired
/// status, container names) and the task definition revision it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredTask {
    pub task: ecs::Task,
    pub definition: ecs::TaskDefinition,
}

/// Server → agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMessage {
    /// The complete desired set for this instance. Tasks absent from the set
    /// and tasks whose `desiredStatus` is STOPPED must be stopped.
    Desired { version: u64, tasks: Vec<DesiredTask> },
    /// Answer to [`AgentMessage::Heartbeat`].
    HeartbeatAck,
}

/// Agent → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AgentMessage {
    Heartbeat,
    /// The agent has applied desired set `version`.
    Applied { version: u64 },
    /// Observed task and container changes, the same shape as the ECS API's
    /// SubmitTaskStateChange (containers ride in its `containers` list).
    StateChanges { changes: Vec<ecs::SubmitTaskStateChangeRequest> },
    /// Container health as Docker reports it (the ECS API's state-change
    /// calls have no field for it). Sent whenever a container's health changes.
    Health { health: Vec<ContainerHealth> },
}

/// The health of one container of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerHealth {
    pub task_arn: String,
    pub container_name: String,
    pub status: ecs::HealthStatus,
}
