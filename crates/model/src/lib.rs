//! Flotilla's shared vocabulary: the ECS objects as they travel on the wire,
//! their ARNs, and the checks every layer agrees on.
//!
//! Where to start reading:
//! - [`ecs`]: every ECS request, response and object, generated from the AWS
//!   service model (`aws/ecs-2014-11-13.json`) by `tools/gen_wire.py`;
//! - [`shape`]: the model's `required` and min/max rules, checked with a field path;
//! - [`arn`]: ARNs and resource ids.
//!
//! This crate does no I/O and pulls in no async runtime, so the scheduler, the
//! reconcilers, the agent and the tests can all share it.

pub mod agent;
pub mod arn;
pub mod lifecycle;
pub mod shape;
pub mod task_definition;

/// The ECS wire types, generated from the service model.
#[path = "ecs_wire.rs"]
pub mod ecs;

pub use shape::{Shape, ShapePath, ShapeViolation};
