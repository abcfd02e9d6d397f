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
//! - heartbeats in both directions drive `agentConnected`;
//! - the agent samples its running containers' CPU and memory at a fixed
//!   interval and sends them as [`AgentMessage::Stats`] (what CloudWatch's
//!   `AWS/ECS` metrics are computed from).
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
    /// Resource use of the instance's running tasks, one sample per running
    /// container, taken at the agent's stats interval. Best effort: samples
    /// taken while disconnected are dropped, not resent.
    Stats {
        samples: Vec<TaskStats>,
    },
}

/// One task's containers as sampled at one tick of the agent's stats loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStats {
    pub task_arn: String,
    pub containers: Vec<ContainerStats>,
}

/// One container's resource use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// The container's name in the task definition.
    pub container_name: String,
    /// CPU used on average over `interval`, in ECS CPU units (1024 per
    /// core): Docker's `cpu_delta / system_cpu_delta × online_cpus × 1024`
    /// between this sample and the one before. Above the container's `cpu`
    /// when it uses more than it reserved.
    pub cpu_units: f64,
    /// Memory in use, MiB: usage less the inactive file cache, as `docker
    /// stats` shows it.
    pub memory_mib: f64,
    /// When Docker took the sample, epoch seconds.
    pub timestamp: f64,
    /// Seconds between the previous sample and this one: the span
    /// `cpu_units` averages over.
    pub interval: f64,
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
