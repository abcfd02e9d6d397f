//! The awslogs log driver, done by the agent: containers whose
//! `logConfiguration.logDriver` is `awslogs` log to Docker's `json-file`
//! driver (which Docker can read back), and the agent ships their stdout
//! and stderr to CloudWatch Logs itself, exactly once across restarts of
//! the agent and of the control plane.
//!
//! Where to start reading:
//! - [`options`]: the driver's options, checked, and the stream name
//!   (`PREFIX/CONTAINER-NAME/TASK-ID`);
//! - [`shipper`]: [`LogShipper`], one follower per container, from the
//!   container's output to the sink;
//! - [`assemble`] (records → events, positions in the output) and
//!   [`batch`] (PutLogEvents' rules): pure;
//! - [`checkpoint`]: the durable place of each stream, and the protocol
//!   that makes resends idempotent with sequence tokens;
//! - [`sink`]: the [`LogSink`] trait and the CloudWatch Logs API client;
//!   [`memory`]: an in-memory sink with the same token rules, for tests.

pub mod assemble;
pub mod batch;
pub mod checkpoint;
pub mod memory;
pub mod options;
pub mod shipper;
pub mod sink;

pub use memory::MemoryLogSink;
pub use options::{AwsLogsOptions, Mode};
pub use shipper::{LogShipper, LogShipping};
pub use sink::{HttpLogSink, InputLogEvent, LogSink, SinkError, StreamTarget};

/// The log driver the agent gives awslogs containers instead: one Docker
/// reads back through its API, with timestamps.
pub const LOCAL_DRIVER: &str = "json-file";

/// The local driver's rotation, given explicitly so the daemon's defaults
/// (`log-opts` in daemon.json, often `max-size` 10m and `max-file` 3) do
/// not apply: the json-file log is the queue of lines not yet shipped, and
/// Docker deletes a rotated-out file whether or not the agent has read it.
/// With 10m × 3 an agent 30 MB behind (a burst faster than it ships, a
/// control plane down for a while) lost lines; this bounds the queue at
/// 1 GiB a container instead.
pub const LOCAL_DRIVER_OPTIONS: [(&str, &str); 2] = [("max-size", "256m"), ("max-file", "4")];
