//! Flotilla's shared vocabulary: the objects of every AWS service Flotilla
//! serves as they travel on the wire, their ARNs, and the checks every layer
//! agrees on.
//!
//! Where to start reading:
//! - [`ecs`]: every ECS request, response and object, generated from the AWS
//!   service model (`aws/ecs-2014-11-13.json`) by `tools/gen_wire.py`;
//! - [`wire`]: the same for ELBv2, CloudWatch Logs, CloudWatch, Application
//!   Auto Scaling and STS, and each service's schema (names, protocols,
//!   operations, errors, shapes) that the protocol codecs walk;
//! - [`shape`]: the model's `required` and min/max rules, checked with a field path;
//! - [`arn`]: ARNs and resource ids.
//!
//! This crate does no I/O and pulls in no async runtime, so the scheduler, the
//! reconcilers, the agent and the tests can all share it.

pub mod agent;
pub mod arn;
pub mod lb;
pub mod lifecycle;
pub mod shape;
pub mod task_definition;

pub mod wire;

/// The ECS wire types, generated from the service model (the path every
/// caller uses; the module lives with the other services in [`wire`]).
pub use wire::ecs;

pub use shape::{Shape, ShapePath, ShapeViolation};
