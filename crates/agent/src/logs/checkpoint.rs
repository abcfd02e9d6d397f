//! Each followed container's place in its log stream, kept durably in the
//! agent's state folder (`logs/CONTAINER-ID.json`, replaced atomically).
//!
//! The protocol that makes shipping exactly-once across restarts of the
//! agent and of the control plane:
//!
//! 1. Before a batch is sent, the checkpoint records it as `inFlight` (its
//!    events and the sequence token it is sent with) and moves `shipped`
//!    past it. Only then does the request go out.
//! 2. After a restart, an in-flight batch is sent again with its token
//!    before anything else. If the first attempt had been accepted, the
//!    control plane recognises the same token and batch
//!    (DataAlreadyAcceptedException) and nothing is stored twice; if not,
//!    it is accepted now. Either way the answer carries the next token.
//! 3. Reading resumes after `shipped`: nothing before it is sent again,
//!    nothing after it was ever acknowledged.
//!
//! So one fsync'd write per batch; an accepted batch need not be recorded
//! as such (a resend is harmless), which the shipper does only when it has
//! nothing else to send.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::assemble::Positions;
use super::sink::{InputLogEvent, StreamTarget};
use crate::state_dir::write_atomic;

/// A batch sent but not known to be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    pub sequence_token: Option<String>,
    pub events: Vec<InputLogEvent>,
}

/// One container's shipping state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub target: StreamTarget,
    /// The container's `logConfiguration.options`: enough to resume
    /// shipping from this file alone (a container whose task the control
    /// plane has forgotten is still drained before it is removed).
    pub options: BTreeMap<String, String>,
    /// The group (if asked) and the stream exist.
    #[serde(default)]
    pub stream_ready: bool,
    /// The token for the next batch, once `in_flight` is settled.
    #[serde(default)]
    pub sequence_token: Option<String>,
    /// The output the accepted and in-flight batches cover.
    #[serde(default)]
    pub shipped: Positions,
    #[serde(default)]
    pub in_flight: Option<InFlight>,
    /// The container's output has been shipped to its end.
    #[serde(default)]
    pub finished: bool,
    /// Events dropped in non-blocking mode, for the record.
    #[serde(default)]
    pub dropped: u64,
}

impl Checkpoint {
    pub fn new(target: StreamTarget, options: BTreeMap<String, String>) -> Checkpoint {
        Checkpoint {
            target,
            options,
            stream_ready: false,
            sequence_token: None,
            shipped: Positions::default(),
            in_flight: None,
            finished: false,
            dropped: 0,
        }
    }
}

/// Docker ids are hex; anything else is not a file name to trust.
fn file_name(container_id: &str) -> Option<String> {
    let ok = !container_id.is_empty()
        && container_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then(|| format!("{container_id}.json"))
}

fn not_an_id(container_id: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{container_id:?} is not a container id"),
    )
}

pub fn path(dir: &Path, container_id: &str) -> Option<PathBuf> {
    file_name(container_id).map(|f| dir.join(f))
}

/// The container's checkpoint, if it has a readable one.
pub fn load(dir: &Path, container_id: &str) -> Option<Checkpoint> {
    let text = std::fs::read(path(dir, container_id)?).ok()?;
    match serde_json::from_slice(&text) {
        Ok(cp) => Some(cp),
        Err(e) => {
            // Written atomically, so only a foreign hand makes this.
            tracing::warn!(container = container_id, error = %e, "ignoring an unreadable log checkpoint");
            None
        }
    }
}

/// Replaces the container's checkpoint durably.
pub fn save(dir: &Path, container_id: &str, cp: &Checkpoint) -> std::io::Result<()> {
    save_encoded(dir, container_id, &encode(cp)?)
}

/// The checkpoint as [`save_encoded`] writes it.
pub fn encode(cp: &Checkpoint) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(cp).map_err(std::io::Error::other)
}

/// Replaces the container's checkpoint durably with [`encode`]'s bytes.
pub fn save_encoded(dir: &Path, container_id: &str, bytes: &[u8]) -> std::io::Result<()> {
    let name = file_name(container_id).ok_or_else(|| not_an_id(container_id))?;
    write_atomic(dir, &name, bytes)
}

pub fn remove(dir: &Path, container_id: &str) {
    if let Some(p) = path(dir, container_id) {
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %p.display(), error = %e, "could not remove a log checkpoint");
            }
        }
    }
}

/// The containers that have checkpoints.
pub fn list(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_suffix(".json")?;
            file_name(id).map(|_| id.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_odd_ids() {
        let dir = tempfile::tempdir().unwrap();
        let target = StreamTarget {
            endpoint: None,
            region: "us-east-1".into(),
            group: "g".into(),
            stream: "p/app/0123".into(),
        };
        let mut cp = Checkpoint::new(
            target,
            BTreeMap::from([("awslogs-group".into(), "g".into())]),
        );
        cp.in_flight = Some(InFlight {
            sequence_token: Some("7".into()),
            events: vec![InputLogEvent {
                timestamp: 1,
                message: "m".into(),
            }],
        });
        save(dir.path(), "abc123", &cp).unwrap();
        assert_eq!(load(dir.path(), "abc123"), Some(cp));
        assert_eq!(list(dir.path()), ["abc123"]);
        assert!(save(
            dir.path(),
            "../escape",
            &Checkpoint::new(
                StreamTarget {
                    endpoint: None,
                    region: String::new(),
                    group: String::new(),
                    stream: String::new()
                },
                BTreeMap::new()
            )
        )
        .is_err());
        remove(dir.path(), "abc123");
        assert_eq!(load(dir.path(), "abc123"), None);
    }
}
