//! What a task takes from its container instance: the scheduler's
//! [`Demand`] (CPU units, MiB, static host ports), with RunTask overrides
//! applied. One computation serves placement, release on stop and the
//! `remainingResources` that DescribeContainerInstances shows.

use flotilla_model::ecs;
use flotilla_model::task_definition::{parse_task_cpu, parse_task_memory};
use flotilla_scheduler::Demand;

use super::state::Families;

/// What a task of `def` with `overrides` reserves: the task definition's
/// demand as ECS computes it, with task-level and container-level cpu/memory
/// overrides applied.
pub fn demand(def: &ecs::TaskDefinition, overrides: Option<&ecs::TaskOverride>) -> Demand {
    let mut def = std::borrow::Cow::Borrowed(def);
    if let Some(o) = overrides {
        let d = def.to_mut();
        if o.cpu.is_some() {
            d.cpu = o.cpu.clone();
        }
        if o.memory.is_some() {
            d.memory = o.memory.clone();
        }
        for co in o.container_overrides.iter().flatten() {
            let Some(c) = d
                .container_definitions
                .iter_mut()
                .flatten()
                .find(|c| c.name.is_some() && c.name == co.name)
            else {
                continue;
            };
            if co.cpu.is_some() {
                c.cpu = co.cpu;
            }
            if co.memory.is_some() {
                c.memory = co.memory;
            }
            if co.memory_reservation.is_some() {
                c.memory_reservation = co.memory_reservation;
            }
        }
    }
    // Definitions were validated at registration, so this only falls back on
    // a definition stored before a rule changed.
    Demand::of_task_definition(&def).unwrap_or_else(|_| {
        let cpu = def
            .cpu
            .as_deref()
            .and_then(|c| parse_task_cpu(c).ok())
            .unwrap_or(0);
        let memory = def
            .memory
            .as_deref()
            .and_then(|m| parse_task_memory(m).ok())
            .unwrap_or(0);
        Demand::new(cpu.max(0) as u32, memory.max(0) as u32)
    })
}

/// The task definition revision a task runs, if the account still has it.
pub fn definition_of<'a>(
    families: &'a Families,
    task: &ecs::Task,
) -> Option<&'a ecs::TaskDefinition> {
    let (family, revision) =
        flotilla_model::arn::task_definition_parts(task.task_definition_arn.as_deref()?)?;
    families
        .get(family)?
        .revisions
        .get(&revision)
        .map(|td| &td.definition)
}
