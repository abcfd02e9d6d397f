//! Flotilla's scheduler: where tasks go, as pure functions over a snapshot.
//!
//! This crate owns ECS task placement for EC2-style container instances:
//! resources and host ports, `requiresAttributes`, the binding placement
//! constraints (`distinctInstance`, `memberOf` in the Cluster Query
//! Language), the best-effort strategies (`binpack`, `spread`, `random`),
//! the reasons a task could not be placed, and which tasks a service stops
//! when it scales in. It does no I/O and needs no async runtime: the server
//! adapts its state into a [`ClusterView`], calls [`place()`], and commits the
//! plan itself (re-checking against the latest state version).
//!
//! # Where to start reading
//!
//! 1. [`place()`](place::place) — the pipeline: static checks once per batch,
//!    then per task: dynamic checks, rank by strategies, reserve, repeat.
//! 2. [`feasibility`] — the checks in order, the per-instance [`Rejection`]
//!    record, and [`summarize`] into the one reason ECS reports.
//! 3. [`request`] — [`TaskRequest`] built and validated from the ECS wire
//!    types ([`Constraint::parse`], [`Strategy::parse`], [`Demand`]).
//! 4. [`view`] — the [`ClusterView`] and its incrementally maintained
//!    indexes (attribute columns, group membership).
//! 5. [`cql`] — the Cluster Query Language: lexer, parser, canonical
//!    printer, evaluator. Also serves ListContainerInstances `filter`.
//! 6. [`scale_in`] — which tasks to stop.
//!
//! # Using it from the server
//!
//! ```
//! use flotilla_scheduler::{place, ClusterView, Instance, Launch, PlacementSpec, Resources, TaskGroups, TaskRequest};
//! use flotilla_model::ecs;
//! use rand::{rngs::StdRng, SeedableRng};
//!
//! // Once per cluster, then keep it current (upsert / release / set_status…).
//! let mut view = ClusterView::new();
//! for (k, zone) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
//!     let host = Instance::new(format!("arn:aws:ecs:us-east-1:1:container-instance/c/{k}"), Resources::new(2048, 4096))
//!         .with_attribute("ecs.availability-zone", *zone);
//!     view.upsert(host, TaskGroups::new());
//! }
//!
//! // Per request: validate at the edge (errors become InvalidParameterException).
//! let td = ecs::TaskDefinition { cpu: Some("256".into()), memory: Some("512".into()), ..Default::default() };
//! let spec = PlacementSpec::for_task_definition(&td, "service:web", Launch::Service).unwrap();
//! let req = TaskRequest::from_spec(&spec).unwrap();
//!
//! let plan = place(&mut view, &req, 4, &mut StdRng::seed_from_u64(1));
//! assert_eq!(plan.placed.len(), 4);
//! assert!(plan.unplaced.is_none());
//! ```
//!
//! Nothing here panics on any input: expressions and requests come from
//! the network, and every malformed one is an `Err` with a message.

pub mod cql;
pub mod feasibility;
pub mod instance;
pub mod place;
pub mod request;
pub mod scale_in;
pub mod view;

pub use cql::{Expression, ParseError};
pub use feasibility::{
    check_instance, explain, summarize, Check, Rejection, Unplaceable, Verdict, PIPELINE,
};
pub use instance::{attributes, Instance, InstanceStatus, Resources, TaskGroups};
pub use place::{place, Placement, Unplaced};
pub use request::{
    Constraint, ConstraintError, Demand, Launch, PlacementSpec, RequestError, RequiredAttribute,
    Resource, SpreadField, Strategy, StrategyError, TaskRequest,
};
pub use scale_in::{choose_tasks_to_stop, TaskSite};
pub use view::{ClusterView, ViewError};
