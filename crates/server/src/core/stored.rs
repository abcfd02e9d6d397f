//! How the control plane's objects are encoded as store values: JSON, and
//! above [`COMPRESS_FROM`] bytes that JSON compressed with LZ4 behind a
//! marker byte. A task's JSON is about 1.3 KB, mostly ARNs that repeat
//! within it, so it compresses well (the ratio has not been measured on
//! real tasks); at a million tasks the SQLite writer and its checkpoints
//! spent a third of the CPU on the bytes.
//!
//! Plain JSON always begins with `{`, so values written before compression
//! (or below the threshold) still read back as they are.

use std::borrow::Cow;

use flotilla_model::ecs;
use flotilla_model::lifecycle::{ContainerStatus, TaskStatus};
use serde::{Deserialize, Serialize};

/// The first byte of a compressed value; then the LZ4 block with its
/// uncompressed length in front (little-endian `u32`).
const LZ4: u8 = 0x01;

/// Smaller values are stored as plain JSON: compressing them saves little.
const COMPRESS_FROM: usize = 256;

/// A stored value never decompresses to more than this; a larger claimed
/// length means the value is damaged (and is not allocated).
const MAX_VALUE: usize = 64 << 20;

/// The stored form of an object's JSON.
pub fn encode(json: Vec<u8>) -> Vec<u8> {
    if json.len() < COMPRESS_FROM {
        return json;
    }
    // Straight into the value, behind the marker and the length: no second
    // buffer to copy from.
    let mut value = vec![0; 5 + lz4_flex::block::get_maximum_output_size(json.len())];
    value[0] = LZ4;
    value[1..5].copy_from_slice(&(json.len() as u32).to_le_bytes());
    match lz4_flex::block::compress_into(&json, &mut value[5..]) {
        Ok(n) => {
            value.truncate(5 + n);
            value
        }
        // Cannot happen (the buffer has the worst case's size); plain JSON
        // reads back as well.
        Err(_) => json,
    }
}

/// An object's JSON from its stored form.
pub fn decode(value: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match value.split_first() {
        Some((&LZ4, block)) => {
            let claimed = block
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
            match claimed {
                Some(n) if n <= MAX_VALUE => {}
                _ => return Err("compressed value has a damaged length".into()),
            }
            lz4_flex::decompress_size_prepended(block)
                .map(Cow::Owned)
                .map_err(|e| format!("compressed value is damaged: {e}"))
        }
        _ => Ok(Cow::Borrowed(value)),
    }
}

/// What a task's own agent changed since the task was last stored whole:
/// its status, timestamps, health and containers' runtime details. A report
/// that changes only these (a task turning RUNNING, a health check) stores
/// this record of a few hundred bytes beside the task instead of the whole
/// task again; at a million tasks the rewrite was a tenth of the control
/// plane's CPU.
///
/// It applies on load when its `version` is newer than the stored task's.
/// Every other write of the task stores it whole, with everything the
/// record holds, and a version at least as new, so an older record is then
/// ignored (and deleted with the task).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskProgress {
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<TaskStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity: Option<ecs::Connectivity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<ecs::HealthStatus>,
    /// In the task's container order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerProgress>,
}

/// One container's part of a [`TaskProgress`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<ContainerStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_bindings: Option<Vec<ecs::NetworkBinding>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<ecs::HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
}

impl TaskProgress {
    /// The agent-reported part of `task` as it is now.
    pub fn of(task: &ecs::Task) -> TaskProgress {
        TaskProgress {
            version: task.version.unwrap_or(0),
            last_status: task.last_status,
            started_at: task.started_at,
            connectivity: task.connectivity,
            connectivity_at: task.connectivity_at,
            pull_started_at: task.pull_started_at,
            pull_stopped_at: task.pull_stopped_at,
            health_status: task.health_status,
            containers: task
                .containers
                .iter()
                .flatten()
                .map(|c| ContainerProgress {
                    name: c.name.clone(),
                    last_status: c.last_status,
                    exit_code: c.exit_code,
                    reason: c.reason.clone(),
                    network_bindings: c.network_bindings.clone(),
                    runtime_id: c.runtime_id.clone(),
                    health_status: c.health_status,
                    image_digest: c.image_digest.clone(),
                })
                .collect(),
        }
    }

    /// Brings a task loaded from the store up to this record, if the record
    /// is newer than it.
    pub fn apply(self, task: &mut ecs::Task) {
        if self.version <= task.version.unwrap_or(0) {
            return;
        }
        task.version = Some(self.version);
        task.last_status = self.last_status;
        task.started_at = self.started_at;
        task.connectivity = self.connectivity;
        task.connectivity_at = self.connectivity_at;
        task.pull_started_at = self.pull_started_at;
        task.pull_stopped_at = self.pull_stopped_at;
        task.health_status = self.health_status;
        for p in self.containers {
            let Some(c) = task
                .containers
                .iter_mut()
                .flatten()
                .find(|c| c.name.is_some() && c.name == p.name)
            else {
                continue;
            };
            c.last_status = p.last_status;
            c.exit_code = p.exit_code;
            c.reason = p.reason;
            c.network_bindings = p.network_bindings;
            c.runtime_id = p.runtime_id;
            c.health_status = p.health_status;
            c.image_digest = p.image_digest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_values_are_compressed_and_read_back() {
        let arn =
            "arn:aws:ecs:us-east-1:111111111111:task/default/0192d3c4e5f6a7b8c9d0e1f2a3b4c5d6";
        let json = format!(
            r#"{{"taskArn":"{arn}","containers":[{{"taskArn":"{arn}"}}],"clusterArn":"{arn}"}}"#
        )
        .into_bytes();
        let value = encode(json.clone());
        assert_eq!(value[0], LZ4);
        assert!(
            value.len() < json.len() * 2 / 3,
            "{} bytes from {}",
            value.len(),
            json.len()
        );
        assert_eq!(decode(&value).unwrap().as_ref(), json.as_slice());
    }

    #[test]
    fn small_values_and_old_values_stay_json() {
        let json = br#"{"name":"web"}"#.to_vec();
        assert_eq!(encode(json.clone()), json);
        assert!(matches!(decode(&json).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        assert!(decode(&[LZ4]).is_err());
        assert!(decode(&[LZ4, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]).is_err());
        let mut value = encode(vec![b'x'; 1000]);
        value.truncate(value.len() / 2);
        assert!(decode(&value).is_err());
    }
}
