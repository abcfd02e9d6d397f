//! The agent's state folder: where it remembers its container instance
//! ([`crate::host::SavedInstance`]) and how far each awslogs stream has been
//! shipped ([`crate::logs`]).
//!
//! One folder belongs to one agent. Two agents on one folder would share an
//! identity: the second would register as the first's container instance,
//! overwrite its attributes and adopt its containers. So [`StateDir::open`]
//! takes an exclusive lock on `agent.lock` inside the folder and keeps it for
//! as long as the value lives (the whole life of the agent). The lock is an
//! advisory `flock(2)` lock, which the kernel releases when the process ends
//! in any way, kill -9 included, so a crashed agent never leaves a stale lock
//! behind. The file also records the holder's pid, for the message a second
//! agent prints.
//!
//! Files in the folder are replaced atomically with [`write_atomic`]: a
//! crash leaves either the old or the new content, never a torn one.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The lock file inside the state folder.
pub const LOCK_FILE: &str = "agent.lock";

/// Where agents keep their state when told nothing else.
pub const DEFAULT_STATE_ROOT: &str = "/var/lib/flotilla-agent";

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("agent state folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the agent state folder {path} is in use by another flotilla agent{holder}; \
         each agent on a machine needs its own folder: give this one a different --host-ip \
         (its state then goes to a folder of its own) or --data-dir",
        holder = holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { path: PathBuf, holder: Option<u32> },
}

/// The state folder an agent uses when `--data-dir` is not given: `root`
/// itself for the only agent of a machine, `root/HOST-IP` for an agent given
/// `--host-ip`, so agents sharing a machine as separate hosts never share
/// an identity.
pub fn default_state_dir(root: &Path, host_ip: Option<&str>) -> PathBuf {
    match host_ip {
        Some(ip) => root.join(ip),
        None => root.to_path_buf(),
    }
}

/// An agent's state folder, locked for this process.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Holds the lock; closing it (drop, exit, kill) releases it.
    _lock: File,
}

impl StateDir {
    /// Creates the folder if needed and locks it. Fails with
    /// [`StateDirError::InUse`] if another agent (in this process or any
    /// other) holds it.
    pub fn open(path: &Path) -> Result<StateDir, StateDirError> {
        let io = |source| StateDirError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let lock_path = path.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StateDirError::InUse {
                    path: path.to_path_buf(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Ours now: say who holds it (informational, so not synced).
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StateDir {
            path: path.to_path_buf(),
            _lock: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Replaces `dir/name` with `bytes` durably: written to a temporary file,
/// synced, renamed over the old one, and the folder synced so the rename
/// itself survives a power cut.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_a_locked_folder_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("127.0.0.2");
        let first = StateDir::open(&path).unwrap();
        assert_eq!(first.path(), path);
        let err = StateDir::open(&path).unwrap_err();
        match &err {
            StateDirError::InUse { holder, .. } => assert_eq!(*holder, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("in use by another flotilla agent"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        // Released when the holder goes away.
        drop(first);
        StateDir::open(&path).unwrap();
    }

    #[test]
    fn default_folders_are_per_host_address() {
        let root = Path::new("/var/lib/flotilla-agent");
        assert_eq!(default_state_dir(root, None), root);
        assert_eq!(
            default_state_dir(root, Some("127.0.0.2")),
            root.join("127.0.0.2")
        );
        assert_ne!(
            default_state_dir(root, Some("127.0.0.2")),
            default_state_dir(root, Some("127.0.0.3"))
        );
    }

    #[test]
    fn atomic_writes_replace_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f.json", b"first, longer content").unwrap();
        write_atomic(dir.path(), "f.json", b"second").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f.json")).unwrap(),
            "second"
        );
        assert!(!dir.path().join("f.json.tmp").exists());
    }
}
