//! The AWS services Flotilla serves, one folder of handlers each. A service
//! declares itself as an [`api::ServiceDef`](crate::api::ServiceDef); the
//! front routes by the table below. Adding a service is its own folder and
//! one line here.

use crate::api::ServiceDef;

pub mod autoscaling;
pub mod cloudwatch;
pub mod ecs;
pub mod elbv2;
pub mod logs;
pub mod sts;

/// Every service the front serves.
pub static ALL: &[&ServiceDef] = &[
    &ecs::SERVICE,
    &sts::SERVICE,
    &cloudwatch::SERVICE,
    &autoscaling::SERVICE,
    &logs::SERVICE,
    &elbv2::SERVICE,
];
