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
