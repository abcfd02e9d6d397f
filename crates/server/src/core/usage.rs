//! The `AWS/ECS` metrics `CPUUtilization` and `MemoryUtilization`, computed
//! from the container stats agents send.
//!
//! ECS defines them per cluster and per service as the resources the tasks
//! use over the resources they reserve, in percent:
//! `100 × Σ used / Σ reserved` over the tasks, where a task reserves its
//! task-level `cpu`/`memory` when set, else the sum of its containers'
//! (`Demand`, as placement counts it). They exceed 100 when tasks use more
//! than they reserve (no hard limit). Tasks that reserve no CPU (or no
//! memory) cannot be measured against a reservation and are left out of
//! that metric.
//!
//! Why two halves: the agent gateway's hot path only adds samples to an
//! in-memory table ([`Usage::record`], a short lock, no state read); the
//! usage controller takes the table once per interval ([`Usage::take`]),
//! resolves each task's cluster, service and reservation in one read of the
//! state, and writes the datapoints ([`utilization`] is the pure part).

use std::collections::{BTreeMap, HashMap};

use flotilla_model::agent::TaskStats;
use flotilla_model::arn::Scope;
use parking_lot::Mutex;

use super::resources::{definition_of, demand};
use super::state::Account;

/// One task's samples gathered since the last flush: sums, to average.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TaskUse {
    /// Σ over samples of the task's CPU units in use (all containers).
    pub cpu_units: f64,
    /// Σ over samples of the task's MiB in use.
    pub memory_mib: f64,
    pub samples: u32,
}

impl TaskUse {
    fn mean(&self) -> (f64, f64) {
        let n = f64::from(self.samples.max(1));
        (self.cpu_units / n, self.memory_mib / n)
    }
}

/// Samples by account/region, cluster and task ARN.
pub type Samples = HashMap<(Scope, String), HashMap<String, TaskUse>>;

/// The samples received since the last flush. Shared by the agent gateway
/// (writer) and the usage controller (reader).
#[derive(Default)]
pub struct Usage {
    pending: Mutex<Samples>,
    /// Task samples received since the process started (`GET /metrics`).
    pub received: std::sync::atomic::AtomicU64,
}

/// Tasks one cluster may hold samples for between two flushes: a bound on
/// memory against an agent that reports made-up task ARNs.
const MAX_TASKS_PER_CLUSTER: usize = 100_000;

impl Usage {
    /// Adds one stats message of an agent of `cluster` in `scope`. Samples
    /// with non-finite or negative values are dropped (network input).
    pub fn record(&self, scope: &Scope, cluster: &str, samples: &[TaskStats]) {
        if samples.is_empty() {
            return;
        }
        self.received
            .fetch_add(samples.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut pending = self.pending.lock();
        let tasks = pending
            .entry((scope.clone(), cluster.to_string()))
            .or_default();
        for task in samples {
            let (mut cpu, mut memory) = (0.0, 0.0);
            let mut valid = !task.containers.is_empty();
            for c in &task.containers {
                valid &= c.cpu_units.is_finite()
                    && c.cpu_units >= 0.0
                    && c.memory_mib.is_finite()
                    && c.memory_mib >= 0.0;
                cpu += c.cpu_units;
                memory += c.memory_mib;
            }
            if !valid {
                continue;
            }
            if tasks.len() >= MAX_TASKS_PER_CLUSTER && !tasks.contains_key(&task.task_arn) {
                continue;
            }
            let entry = tasks.entry(task.task_arn.clone()).or_default();
            entry.cpu_units += cpu;
            entry.memory_mib += memory;
            entry.samples += 1;
        }
    }

    /// Takes everything recorded since the previous call.
    pub fn take(&self) -> Samples {
        std::mem::take(&mut *self.pending.lock())
    }
}

/// One task as the metrics see it: where it belongs and what it reserves.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskShape {
    /// The service the task belongs to (`group` `service:NAME`), if any.
    pub service: Option<String>,
    pub reserved_cpu: f64,
    pub reserved_memory: f64,
}

/// Looks up the tasks of `cluster` that have samples.
pub fn shapes(
    acct: &Account,
    cluster: &str,
    tasks: &HashMap<String, TaskUse>,
) -> HashMap<String, TaskShape> {
    let Some(c) = acct.clusters.get(cluster) else {
        return HashMap::new();
    };
    tasks
        .keys()
        .filter_map(|arn| {
            let id = arn.rsplit('/').next()?;
            let task = c.tasks.get(id)?;
            if task.task_arn.as_deref() != Some(arn.as_str()) {
                return None;
            }
            let def = definition_of(&acct.families, task)?;
            let d = demand(def, task.overrides.as_ref());
            let service = task
                .group
                .as_deref()
                .and_then(|g| g.strip_prefix("service:"))
                .map(str::to_string);
            Some((
                arn.clone(),
                TaskShape {
                    service,
                    reserved_cpu: f64::from(d.cpu),
                    reserved_memory: f64::from(d.memory),
                },
            ))
        })
        .collect()
}

/// The utilizations of one cluster and of each of its services: `None`
/// service is the cluster as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Utilization {
    pub service: Option<String>,
    /// Percent; `None` when no measured task reserves CPU.
    pub cpu: Option<f64>,
    /// Percent; `None` when no measured task reserves memory.
    pub memory: Option<f64>,
}

/// ECS's definition over the tasks that reported: per cluster and per
/// service, `100 × Σ mean used / Σ reserved`. Tasks the state does not know
/// (stopped and forgotten, or another cluster's) are left out.
pub fn utilization(
    tasks: &HashMap<String, TaskUse>,
    shapes: &HashMap<String, TaskShape>,
) -> Vec<Utilization> {
    #[derive(Default)]
    struct Sums {
        cpu_used: f64,
        cpu_reserved: f64,
        memory_used: f64,
        memory_reserved: f64,
    }
    impl Sums {
        fn add(&mut self, cpu: f64, memory: f64, shape: &TaskShape) {
            if shape.reserved_cpu > 0.0 {
                self.cpu_used += cpu;
                self.cpu_reserved += shape.reserved_cpu;
            }
            if shape.reserved_memory > 0.0 {
                self.memory_used += memory;
                self.memory_reserved += shape.reserved_memory;
            }
        }
    }
    let mut by: BTreeMap<Option<String>, Sums> = BTreeMap::new();
    for (arn, used) in tasks {
        let Some(shape) = shapes.get(arn) else {
            continue;
        };
        let (cpu, memory) = used.mean();
        by.entry(None).or_default().add(cpu, memory, shape);
        if let Some(service) = &shape.service {
            by.entry(Some(service.clone()))
                .or_default()
                .add(cpu, memory, shape);
        }
    }
    let percent = |used: f64, reserved: f64| (reserved > 0.0).then(|| 100.0 * used / reserved);
    by.into_iter()
        .map(|(service, s)| Utilization {
            service,
            cpu: percent(s.cpu_used, s.cpu_reserved),
            memory: percent(s.memory_used, s.memory_reserved),
        })
        .filter(|u| u.cpu.is_some() || u.memory.is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::agent::ContainerStats;

    fn stats(arn: &str, cpu: &[f64], mem: &[f64]) -> TaskStats {
        TaskStats {
            task_arn: arn.into(),
            containers: cpu
                .iter()
                .zip(mem)
                .enumerate()
                .map(|(i, (c, m))| ContainerStats {
                    container_name: format!("c{i}"),
                    cpu_units: *c,
                    memory_mib: *m,
                    timestamp: 0.0,
                    interval: 5.0,
                })
                .collect(),
        }
    }

    fn shape(service: Option<&str>, cpu: f64, memory: f64) -> TaskShape {
        TaskShape {
            service: service.map(str::to_string),
            reserved_cpu: cpu,
            reserved_memory: memory,
        }
    }

    #[test]
    fn samples_average_per_task_and_drop_nonsense() {
        let usage = Usage::default();
        let scope = Scope::new("111111111111", "us-east-1");
        usage.record(&scope, "c", &[stats("t1", &[100.0, 50.0], &[10.0, 20.0])]);
        usage.record(&scope, "c", &[stats("t1", &[50.0, 0.0], &[30.0, 0.0])]);
        usage.record(&scope, "c", &[stats("t2", &[f64::NAN], &[1.0])]);
        usage.record(&scope, "c", &[stats("t3", &[-1.0], &[1.0])]);
        let taken = usage.take();
        let tasks = &taken[&(scope, "c".to_string())];
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks["t1"].mean(), (100.0, 30.0));
        assert!(usage.take().is_empty(), "take empties the table");
    }

    /// Σ used / Σ reserved, not the mean of the tasks' percentages; above
    /// 100 when tasks use more than they reserve.
    #[test]
    fn utilization_is_ecs_definition() {
        let mut tasks = HashMap::new();
        let one = |cpu, mem| TaskUse {
            cpu_units: cpu,
            memory_mib: mem,
            samples: 1,
        };
        tasks.insert("a".to_string(), one(512.0, 256.0));
        tasks.insert("b".to_string(), one(0.0, 0.0));
        tasks.insert("c".to_string(), one(300.0, 100.0));
        tasks.insert("unknown".to_string(), one(9999.0, 9999.0));
        let mut shapes = HashMap::new();
        shapes.insert("a".to_string(), shape(Some("web"), 256.0, 512.0));
        shapes.insert("b".to_string(), shape(Some("web"), 256.0, 512.0));
        shapes.insert("c".to_string(), shape(None, 0.0, 100.0));
        let u = utilization(&tasks, &shapes);
        assert_eq!(
            u,
            vec![
                Utilization {
                    service: None,
                    // c reserves no CPU: out of the CPU metric.
                    cpu: Some(100.0),
                    memory: Some(100.0 * 356.0 / 1124.0),
                },
                Utilization {
                    service: Some("web".into()),
                    cpu: Some(100.0),
                    memory: Some(25.0),
                },
            ]
        );
        tasks.insert("a".to_string(), one(1024.0, 256.0));
        let u = utilization(&tasks, &shapes);
        assert_eq!(u[1].cpu, Some(200.0), "can exceed 100");
    }
}
