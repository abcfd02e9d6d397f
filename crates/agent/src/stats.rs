//! Container stats: every `interval` the agent samples each running
//! container of its tasks (Docker's stats, one shot), turns consecutive
//! samples into CPU units and MiB ([`ContainerStats`]), and hands them to
//! the control loop, which sends them as
//! [`flotilla_model::agent::AgentMessage::Stats`].
//!
//! The arithmetic is `docker stats`'s, as pure functions over the stats
//! JSON ([`Sample::from_docker`], [`Sample::cpu_units_since`],
//! [`Sample::memory_mib`]), so it is unit-tested on fixed samples.
//!
//! Each sample is also published to the [`MetadataIndex`] with
//! `precpu_stats` and `preread` filled from the previous one (as Docker's
//! streaming stats have them), and the task metadata endpoint's `/stats` and
//! `/task/stats` serve it from there instead of asking Docker again.
//!
//! A container's first sample only sets the baseline: CPU use needs two.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flotilla_model::agent::{ContainerStats, TaskStats};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::metadata::MetadataIndex;
use crate::runtime::ContainerRuntime;

/// Containers sampled at once (each sample is one Docker API call).
const CONCURRENCY: usize = 8;

const MIB: f64 = 1024.0 * 1024.0;

/// The figures of one Docker stats sample the agent uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When Docker read it, epoch seconds.
    pub read: f64,
    /// CPU time the container used since it started, ns.
    pub cpu_total: u64,
    /// CPU time the whole host used (all cores), ns.
    pub system_cpu: u64,
    pub online_cpus: u32,
    /// Memory charged to the container, bytes.
    pub memory_usage: u64,
    /// Inactive file cache within it, bytes (cgroup v1
    /// `total_inactive_file`, v2 `inactive_file`).
    pub memory_inactive_file: Option<u64>,
}

impl Sample {
    /// Reads a Docker stats JSON document; `None` if it lacks the CPU
    /// figures (a container that is not running).
    pub fn from_docker(v: &Value) -> Option<Sample> {
        let read = parse_time(v.get("read")?.as_str()?)?;
        let cpu = v.get("cpu_stats")?;
        let cpu_total = cpu.pointer("/cpu_usage/total_usage")?.as_u64()?;
        let system_cpu = cpu.get("system_cpu_usage")?.as_u64()?;
        let online_cpus = cpu
            .get("online_cpus")
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
            .or_else(|| {
                cpu.pointer("/cpu_usage/percpu_usage")
                    .and_then(Value::as_array)
                    .map(|a| a.len() as u64)
            })
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)?;
        let memory = v.get("memory_stats");
        let memory_usage = memory
            .and_then(|m| m.get("usage"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let stat = |name: &str| {
            memory
                .and_then(|m| m.get("stats"))
                .and_then(|s| s.get(name))
                .and_then(Value::as_u64)
        };
        let memory_inactive_file = stat("total_inactive_file").or_else(|| stat("inactive_file"));
        Some(Sample {
            read,
            cpu_total,
            system_cpu,
            online_cpus,
            memory_usage,
            memory_inactive_file,
        })
    }

    /// CPU used since `prev`, in ECS CPU units (1024 per core): the share of
    /// the host's CPU time the container took, times the host's cores.
    pub fn cpu_units_since(&self, prev: &Sample) -> f64 {
        let used = self.cpu_total.saturating_sub(prev.cpu_total) as f64;
        let host = self.system_cpu.saturating_sub(prev.system_cpu) as f64;
        if host <= 0.0 {
            return 0.0;
        }
        used / host * f64::from(self.online_cpus) * 1024.0
    }

    /// Memory in use, MiB, as `docker stats` computes it: usage less the
    /// inactive file cache (which the kernel reclaims first).
    pub fn memory_mib(&self) -> f64 {
        let cache = self
            .memory_inactive_file
            .filter(|c| *c < self.memory_usage)
            .unwrap_or(0);
        (self.memory_usage - cache) as f64 / MIB
    }
}

/// RFC 3339 → epoch seconds; Docker's zero time (year 1) is no time.
fn parse_time(s: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    if t.year() < 1970 {
        return None;
    }
    Some(t.unix_timestamp_nanos() as f64 / 1e9)
}

/// `now` with `precpu_stats`/`preread` taken from `prev`, as Docker's
/// streaming stats (and ECS's metadata endpoint) present a sample.
fn with_previous(mut now: Value, prev: &Value) -> Value {
    if let Some(obj) = now.as_object_mut() {
        if let Some(cpu) = prev.get("cpu_stats") {
            obj.insert("precpu_stats".into(), cpu.clone());
        }
        if let Some(read) = prev.get("read") {
            obj.insert("preread".into(), read.clone());
        }
    }
    now
}

/// A container to sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub task_arn: String,
    pub container_name: String,
    pub docker_id: String,
}

/// What the sampler remembers of a container between ticks.
struct Previous {
    sample: Sample,
    raw: Value,
}

/// The sampling loop's state: the previous sample of every container.
pub struct Sampler<R> {
    runtime: Arc<R>,
    index: MetadataIndex,
    previous: HashMap<String, Previous>,
}

impl<R: ContainerRuntime> Sampler<R> {
    pub fn new(runtime: Arc<R>, index: MetadataIndex) -> Sampler<R> {
        Sampler {
            runtime,
            index,
            previous: HashMap::new(),
        }
    }

    /// Samples every running container the index knows once. Returns one
    /// entry per task with at least one container sampled twice so far.
    pub async fn tick(&mut self) -> Vec<TaskStats> {
        let targets = self.index.running_containers();
        let runtime = self.runtime.clone();
        let results: Vec<(Target, Option<Value>)> = futures_util::stream::iter(targets)
            .map(|t| {
                let runtime = runtime.clone();
                async move {
                    match runtime.stats(&t.docker_id).await {
                        Ok(v) => (t, Some(v)),
                        Err(e) => {
                            tracing::debug!(container = %t.docker_id, error = %e, "no stats sample");
                            (t, None)
                        }
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut seen = HashMap::new();
        let mut by_task: BTreeMap<String, Vec<ContainerStats>> = BTreeMap::new();
        for (target, raw) in results {
            let Some(raw) = raw else { continue };
            let Some(sample) = Sample::from_docker(&raw) else {
                continue;
            };
            let published = match self.previous.get(&target.docker_id) {
                Some(prev) if sample.read > prev.sample.read => {
                    by_task
                        .entry(target.task_arn.clone())
                        .or_default()
                        .push(ContainerStats {
                            container_name: target.container_name.clone(),
                            cpu_units: sample.cpu_units_since(&prev.sample),
                            memory_mib: sample.memory_mib(),
                            timestamp: sample.read,
                            interval: sample.read - prev.sample.read,
                        });
                    with_previous(raw.clone(), &prev.raw)
                }
                _ => raw.clone(),
            };
            self.index
                .put_stats(&target.task_arn, &target.docker_id, published);
            seen.insert(target.docker_id, Previous { sample, raw });
        }
        // Containers no longer running are forgotten.
        self.previous = seen;
        by_task
            .into_iter()
            .map(|(task_arn, containers)| TaskStats {
                task_arn,
                containers,
            })
            .collect()
    }
}

/// Samples every `interval` until `out` is closed, sending each tick's
/// samples (when there are any).
pub async fn run<R: ContainerRuntime>(
    runtime: Arc<R>,
    index: MetadataIndex,
    interval: Duration,
    out: mpsc::Sender<Vec<TaskStats>>,
) {
    let mut sampler = Sampler::new(runtime, index);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = out.closed() => return,
        }
        let samples = sampler.tick().await;
        if samples.is_empty() {
            continue;
        }
        // A control loop that is busy does not hold the sampler up: a tick
        // it has no room for is dropped (stats are best effort).
        match out.try_send(samples) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docker(read: &str, cpu: u64, system: u64, usage: u64, inactive: u64) -> Value {
        json!({
            "read": read,
            "preread": "0001-01-01T00:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": cpu, "percpu_usage": [1, 2]},
                          "system_cpu_usage": system, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 0}},
            "memory_stats": {"usage": usage, "limit": 1u64 << 33,
                             "stats": {"total_inactive_file": inactive, "cache": inactive * 2}}
        })
    }

    #[test]
    fn cpu_units_are_the_share_of_host_cpu_times_cores_times_1024() {
        let a = Sample::from_docker(&docker(
            "2025-01-01T00:00:00.000000000Z",
            1_000_000_000,
            100_000_000_000,
            0,
            0,
        ))
        .unwrap();
        // One second later: the container used 1 s of CPU while the host's
        // two cores spent 2 s: one whole core.
        let b = Sample::from_docker(&docker(
            "2025-01-01T00:00:01.000000000Z",
            2_000_000_000,
            102_000_000_000,
            0,
            0,
        ))
        .unwrap();
        assert_eq!(b.read - a.read, 1.0);
        assert_eq!(b.cpu_units_since(&a), 1024.0);
        // A quarter core.
        let c = Sample::from_docker(&docker(
            "2025-01-01T00:00:02.000000000Z",
            2_250_000_000,
            104_000_000_000,
            0,
            0,
        ))
        .unwrap();
        assert_eq!(c.cpu_units_since(&b), 256.0);
        // No host time passed (same reading): no division by zero.
        assert_eq!(c.cpu_units_since(&c), 0.0);
    }

    #[test]
    fn memory_is_usage_less_inactive_file_cache() {
        let s = Sample::from_docker(&docker("2025-01-01T00:00:00Z", 1, 1, 100 << 20, 36 << 20))
            .unwrap();
        assert_eq!(s.memory_mib(), 64.0);
        // cgroup v2 names it inactive_file.
        let mut v = docker("2025-01-01T00:00:00Z", 1, 1, 100 << 20, 0);
        v["memory_stats"]["stats"] = json!({"inactive_file": 50u64 << 20});
        assert_eq!(Sample::from_docker(&v).unwrap().memory_mib(), 50.0);
        // A cache figure above usage is ignored, as docker stats does.
        let s =
            Sample::from_docker(&docker("2025-01-01T00:00:00Z", 1, 1, 10 << 20, 20 << 20)).unwrap();
        assert_eq!(s.memory_mib(), 10.0);
    }

    #[test]
    fn samples_of_stopped_containers_are_not_read() {
        // What Docker answers for a container that is not running.
        let v = json!({"read": "0001-01-01T00:00:00Z", "cpu_stats": {"cpu_usage": {"total_usage": 0}}, "memory_stats": {}});
        assert_eq!(Sample::from_docker(&v), None);
        // online_cpus missing: the per-CPU list counts them.
        let mut v = docker("2025-01-01T00:00:00Z", 1, 1, 0, 0);
        v["cpu_stats"]
            .as_object_mut()
            .unwrap()
            .remove("online_cpus");
        assert_eq!(Sample::from_docker(&v).unwrap().online_cpus, 2);
    }

    #[test]
    fn published_samples_carry_the_previous_one_as_precpu() {
        let a = docker("2025-01-01T00:00:00Z", 1, 10, 0, 0);
        let b = docker("2025-01-01T00:00:01Z", 5, 20, 0, 0);
        let merged = with_previous(b, &a);
        assert_eq!(merged["precpu_stats"], a["cpu_stats"]);
        assert_eq!(merged["preread"], a["read"]);
    }
}
