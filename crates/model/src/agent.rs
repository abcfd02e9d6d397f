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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ecs;

/// The read buffer each end of the connection keeps (both ends set it).
/// Messages are mostly a few hundred bytes to a few KiB, and a larger one
/// grows the buffer as it arrives. WebSocket libraries default to 128 KiB,
/// allocated up front and zero-filled again on every read: at 10,000 hosts
/// that was 1.3 GB of buffers on each side and about 5% of the server's CPU.
pub const SOCKET_READ_BUFFER: usize = 8 * 1024;

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
    Desired {
        version: u64,
        tasks: Vec<DesiredTask>,
    },
    /// What changed in the desired set since the previous message on this
    /// connection: tasks added or changed (whole), and ARNs of tasks no
    /// longer in the set. Sent only to agents that connect with `delta=1`,
    /// and never as a connection's first message. At thousands of tasks per
    /// host this is what keeps the gateway's traffic proportional to change.
    DesiredDelta {
        version: u64,
        upsert: Vec<DesiredTask>,
        remove: Vec<String>,
    },
    /// Answer to [`AgentMessage::Heartbeat`].
    HeartbeatAck,
}

/// Agent → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AgentMessage {
    Heartbeat,
    /// The agent has applied desired set `version`.
    Applied {
        version: u64,
    },
    /// Observed task changes, each the latest state of one task.
    StateChanges {
        changes: Vec<TaskStateChange>,
    },
}

/// One observed change of a task, for the control plane.
///
/// `submit` is exactly what SubmitTaskStateChange takes. The ECS API carries
/// health and the stop code elsewhere (ECS's own agent reports health over
/// its telemetry channel), so they ride alongside here.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateChange {
    pub submit: ecs::SubmitTaskStateChangeRequest,
    /// Set when the agent itself decided to stop the task
    /// (`EssentialContainerExited`, `TaskFailedToStart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<ecs::TaskStopCode>,
    /// Task health from its essential containers' health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<ecs::HealthStatus>,
    /// Per container name; `UNKNOWN` for a container without a health check.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_health: BTreeMap<String, ecs::HealthStatus>,
}

impl TaskStateChange {
    pub fn task_arn(&self) -> &str {
        self.submit.task.as_deref().unwrap_or("")
    }

    pub fn status(&self) -> &str {
        self.submit.status.as_deref().unwrap_or("")
    }

    pub fn container(&self, name: &str) -> Option<&ecs::ContainerStateChange> {
        self.submit
            .containers
            .iter()
            .flatten()
            .find(|c| c.container_name.as_deref() == Some(name))
    }
}
