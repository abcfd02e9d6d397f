//! ECS services behind target groups: a service's RUNNING tasks are its
//! targets.
