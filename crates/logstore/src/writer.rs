//! The writer thread: every change goes through it, in rounds (group
//! commit).
//!
//! A round takes every request queued (up to the round limits), runs each
//! against the working catalog (`commands`), then makes the round durable
//! in two steps: first the frames, one transaction per touched segment
//! file (each fsynced); then the metadata database, whose commit is the
//! round's commit point. Only then does it publish the round's changes to
//! the readers' catalog (a brief write lock, never held across I/O) and
//! answer the callers. Requests that queue meanwhile form the next round,
//! so the cost of the syncs is shared by everyone who waited.
//!
//! If anything fails, every caller of the round gets an error, and the
//! writer goes back to the durable state: the published catalog becomes
//! the working one again, files created by the round are removed and its
//! frames (sequence numbers at or past the durable `next_seq`) deleted.
//! Opening a store after a crash does the same.
//!
//! When idle, the writer deletes the frames of deleted streams, a few at a
//! time, so a deleted stream's data does not wait for retention.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rusqlite::Connection;
use tokio::sync::oneshot;
use tracing::{debug, error, trace, warn};

use crate::catalog::{Catalog, Change, GroupId, SegmentId, StreamId};
use crate::clock::Clock;
use crate::commands::{Command, Limits, Outcome, PendingFrame, Round};
use crate::error::{LogsError, StoreError};
use crate::meta;
use crate::scan::ReaderPool;
use crate::segment;

/// Frames of a deleted stream deleted per idle step.
const PURGE_BATCH: usize = 256;
/// Writer connections kept open beyond the ones a round uses.
const MAX_OPEN_SEGMENTS: usize = 128;
/// Segment files a round commits at once (one thread each).
const MAX_PARALLEL_COMMITS: usize = 16;

/// What the store's handle and the writer share.
pub struct Shared {
    pub root: PathBuf,
    /// The readers' catalog: durable state only.
    pub published: RwLock<Catalog>,
    pub readers: ReaderPool,
    pub clock: Arc<dyn Clock>,
    /// Makes the next metadata commit fail (after the segment commits),
    /// to test recovery.
    #[cfg(test)]
    pub fail_next_commit: std::sync::atomic::AtomicBool,
}

pub struct Request {
    pub command: Command,
    /// Payload bytes, for the round size limit.
    pub bytes: usize,
    pub reply: oneshot::Sender<Result<Outcome, LogsError>>,
}

pub struct Writer {
    pub shared: Arc<Shared>,
    pub meta: Connection,
    pub working: Catalog,
    pub limits: Limits,
    pub max_round_requests: usize,
    pub max_round_bytes: usize,
    pub queue: mpsc::Receiver<Request>,
    /// Open writer connections by segment (and the segment's group).
    writers: HashMap<SegmentId, (GroupId, Connection)>,
    /// Set after an idle purge step failed: retry later, not in a loop.
    purge_backoff: bool,
    /// Groups with deleted streams whose frames remain, so finding purge
    /// work does not walk every group on every round.
    purging: HashSet<GroupId>,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        meta: Connection,
        working: Catalog,
        limits: Limits,
        max_round_requests: usize,
        max_round_bytes: usize,
        queue: mpsc::Receiver<Request>,
    ) -> Writer {
        Writer {
            shared,
            meta,
            limits,
            max_round_requests,
            max_round_bytes,
            queue,
            purging: working
                .groups
                .values()
                .filter(|g| !g.info.purging.is_empty())
                .map(|g| g.info.id)
                .collect(),
            working,
            writers: HashMap::new(),
            purge_backoff: false,
        }
    }

    pub fn run(mut self) {
        loop {
            let first = match self.purge_work() {
                Some(work) if !self.purge_backoff => match self.queue.try_recv() {
                    Ok(request) => request,
                    Err(mpsc::TryRecvError::Empty) => {
                        self.purge_step(work);
                        continue;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => break,
                },
                Some(_) => match self.queue.recv_timeout(Duration::from_secs(1)) {
                    Ok(request) => request,
                    Err(RecvTimeoutError::Timeout) => {
                        self.purge_backoff = false;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.queue.recv() {
                    Ok(request) => request,
                    Err(_) => break,
                },
            };
            let batch = self.drain(first);
            self.round(batch);
        }
        for (_, (_, conn)) in self.writers.drain() {
            let _ = segment::checkpoint(&conn);
        }
        debug!("log store writer stopped: queue closed and empty");
    }

    fn drain(&self, first: Request) -> Vec<Request> {
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < self.max_round_requests && bytes < self.max_round_bytes {
            match self.queue.try_recv() {
                Ok(request) => {
                    bytes += request.bytes;
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        batch
    }

    fn round(&mut self, batch: Vec<Request>) {
        let now = self.shared.clock.now_millis();
        let mut round = Round::default();
        let mut answers = Vec::with_capacity(batch.len());
        for request in batch {
            let result = self
                .working
                .execute(&mut round, request.command, now, &self.limits);
            answers.push((request.reply, result));
        }
        if !round.is_empty() {
            if let Err(err) = self.commit(&round) {
                error!(error = %err, requests = answers.len(), "log store round failed; failing its requests");
                // Undo first, so that a caller's retry meets the durable state.
                self.recover(&round);
                for (reply, _) in answers {
                    let _ = reply.send(Err(LogsError::unavailable(&err)));
                }
                return;
            }
            trace!(
                frames = round.frames.len(),
                requests = answers.len(),
                "round durable"
            );
        }
        for (reply, result) in answers {
            // The caller may have given up waiting; the write stands.
            let _ = reply.send(result);
        }
    }

    /// Makes the round durable, publishes it, then removes what it deleted.
    fn commit(&mut self, round: &Round) -> Result<(), StoreError> {
        for &(group, seg) in &round.created_segments {
            let conn = segment::create(&self.shared.root, group, seg)?;
            self.writers.insert(seg, (group, conn));
        }
        let mut by_segment: HashMap<SegmentId, Vec<&PendingFrame>> = HashMap::new();
        let mut order = Vec::new();
        for frame in &round.frames {
            by_segment
                .entry(frame.segment)
                .or_insert_with(|| {
                    order.push((frame.group, frame.segment));
                    Vec::new()
                })
                .push(frame);
        }
        for &(group, seg) in &order {
            self.writer_for(group, seg)?;
        }
        if order.len() == 1 {
            let conn = &mut self.writers.get_mut(&order[0].1).expect("opened above").1;
            segment::insert_frames(conn, &by_segment[&order[0].1])?;
        } else {
            // Each segment is its own file and fsync: commit them side by
            // side, so a round waits for about one sync, not one per group.
            let mut segments: Vec<(&mut Connection, &Vec<&PendingFrame>)> = self
                .writers
                .iter_mut()
                .filter_map(|(seg, (_, conn))| by_segment.get(seg).map(|frames| (conn, frames)))
                .collect();
            while !segments.is_empty() {
                let wave: Vec<_> = segments
                    .drain(..segments.len().min(MAX_PARALLEL_COMMITS))
                    .collect();
                std::thread::scope(|scope| {
                    let handles: Vec<_> = wave
                        .into_iter()
                        .map(|(conn, frames)| {
                            scope.spawn(move || segment::insert_frames(conn, frames))
                        })
                        .collect();
                    handles.into_iter().try_for_each(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(StoreError::Corrupt("segment commit thread panicked".into()))
                        })
                    })
                })?;
            }
        }
        #[cfg(test)]
        if self
            .shared
            .fail_next_commit
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::Corrupt(
                "injected metadata commit failure".into(),
            ));
        }
        meta::persist(
            &mut self.meta,
            round.changes.iter(),
            self.working.next_id,
            self.working.next_seq,
        )?;
        self.publish(round);
        self.after_commit(round);
        Ok(())
    }

    fn publish(&mut self, round: &Round) {
        for change in round.changes.iter() {
            match change {
                Change::Group(info) if !info.purging.is_empty() => {
                    self.purging.insert(info.id);
                }
                Change::Group(info) => {
                    self.purging.remove(&info.id);
                }
                Change::GroupDeleted(id) => {
                    self.purging.remove(id);
                }
                _ => {}
            }
        }
        let mut published = self.shared.published.write();
        for change in round.changes.iter() {
            published.apply(change);
        }
        published.next_id = self.working.next_id;
        published.next_seq = self.working.next_seq;
    }

    fn after_commit(&mut self, round: &Round) {
        for &(_, seg) in &round.sealed_segments {
            if let Some((_, conn)) = self.writers.remove(&seg) {
                if let Err(e) = segment::checkpoint(&conn) {
                    warn!(segment = seg, error = %e, "checkpoint of a sealed segment failed; its WAL keeps the data");
                }
            }
        }
        for (group, segments) in &round.removed_groups {
            let group = *group;
            // Segments created in this round are not in the list; their
            // writer connections are found by group.
            self.writers.retain(|_, (g, _)| *g != group);
            for seg in segments {
                self.shared.readers.forget(*seg);
            }
            let dir = segment::group_dir(&self.shared.root, group);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(dir = %dir.display(), error = %e, "could not remove a deleted group's files; they are removed at the next open");
                }
            }
        }
        for &(group, seg) in &round.removed_segments {
            self.writers.remove(&seg);
            self.shared.readers.forget(seg);
            if let Err(e) = segment::remove(&self.shared.root, group, seg) {
                warn!(segment = seg, error = %e, "could not remove an expired segment; it is removed at the next open");
            }
        }
        if self.writers.len() > MAX_OPEN_SEGMENTS {
            let active: HashSet<SegmentId> = round.frames.iter().map(|f| f.segment).collect();
            self.writers.retain(|seg, _| active.contains(seg));
        }
    }

    fn writer_for(
        &mut self,
        group: GroupId,
        seg: SegmentId,
    ) -> Result<&mut Connection, StoreError> {
        if !self.writers.contains_key(&seg) {
            let conn = segment::open_writer(&self.shared.root, group, seg)?;
            self.writers.insert(seg, (group, conn));
        }
        Ok(&mut self.writers.get_mut(&seg).expect("inserted above").1)
    }

    /// Back to the durable state after a failed round.
    fn recover(&mut self, round: &Round) {
        self.writers.clear();
        self.working = self.shared.published.read().clone();
        for &(group, seg) in &round.created_segments {
            if let Err(e) = segment::remove(&self.shared.root, group, seg) {
                warn!(segment = seg, error = %e, "could not remove a segment of a failed round");
            }
        }
        if let Err(e) = purge_uncommitted(&self.shared.root, &self.working) {
            error!(error = %e, "could not delete the frames of a failed round; readers do not see them, the next open retries");
        }
    }

    fn purge_work(&self) -> Option<(GroupId, StreamId, SegmentId)> {
        self.purging.iter().find_map(|id| {
            let g = self.working.groups.get(id)?;
            g.info
                .purging
                .iter()
                .find_map(|(stream, segs)| segs.first().map(|seg| (*id, *stream, *seg)))
        })
    }

    /// Deletes a batch of a deleted stream's frames from one segment; once
    /// none are left there, records that durably.
    fn purge_step(&mut self, (group, stream, seg): (GroupId, StreamId, SegmentId)) {
        let result = (|| -> Result<(), StoreError> {
            let exists = segment::path(&self.shared.root, group, seg).exists();
            // A file already gone has nothing left to purge.
            let deleted = if exists {
                let conn = self.writer_for(group, seg)?;
                segment::purge_stream(conn, stream, PURGE_BATCH)?
            } else {
                0
            };
            if deleted == PURGE_BATCH {
                return Ok(());
            }
            let mut round = Round::default();
            self.working.purged(&mut round, group, stream, seg);
            meta::persist(
                &mut self.meta,
                round.changes.iter(),
                self.working.next_id,
                self.working.next_seq,
            )?;
            self.publish(&round);
            debug!(
                group,
                stream,
                segment = seg,
                "deleted stream's frames purged from a segment"
            );
            Ok(())
        })();
        if let Err(e) = result {
            warn!(group, stream, segment = seg, error = %e, "purging a deleted stream's frames failed; retrying later");
            self.purge_backoff = true;
            self.writers.remove(&seg);
            // The working catalog may hold the unrecorded change.
            self.working = self.shared.published.read().clone();
        }
    }
}

/// Deletes frames no committed round wrote: they can only be in the
/// segments that take writes.
pub fn purge_uncommitted(root: &std::path::Path, catalog: &Catalog) -> Result<usize, StoreError> {
    let mut purged = 0;
    for group in catalog.groups.values() {
        if let Some(active) = group.active_segment() {
            let conn = segment::open_writer(root, group.info.id, active.id)?;
            purged += segment::purge_uncommitted(&conn, catalog.next_seq)?;
        }
    }
    Ok(purged)
}
