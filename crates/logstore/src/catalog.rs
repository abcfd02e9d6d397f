//! The metadata of every group, stream and segment, in memory.
//!
//! The store keeps two catalogs: the writer's *working* one, which each
//! request of a round changes as it is checked (so later requests of the
//! round see earlier ones), and the *published* one readers use, which only
//! ever holds durable state. Every change is a [`Change`] value: the writer
//! applies it to the working catalog at once, records it in the round,
//! writes the round's changes to the metadata database, and after that
//! commit applies the same changes to the published catalog. One `apply`
//! serves both, so the two cannot drift.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::types::{LogGroupClass, Scope, Tags};

pub type GroupId = u64;
pub type StreamId = u64;
pub type SegmentId = u64;

/// A group's own attributes (its streams and segments are kept apart, so
/// that a change to one stream does not copy the group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: GroupId,
    pub scope: Scope,
    pub name: String,
    pub creation_time: i64,
    pub retention_days: Option<i32>,
    pub kms_key_id: Option<String>,
    pub class: LogGroupClass,
    pub deletion_protection: bool,
    pub tags: Tags,
    /// Deleted streams whose frames are still in these segments; readers
    /// skip them, the writer deletes them when idle.
    pub purging: BTreeMap<StreamId, BTreeSet<SegmentId>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub id: StreamId,
    pub group: GroupId,
    pub name: String,
    pub creation_time: i64,
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    pub last_ingestion: Option<i64>,
    /// Batches accepted so far: the sequence token's counter.
    pub batches: u64,
    /// The hash of the last accepted batch, to recognize its resend.
    pub last_hash: Option<[u8; 32]>,
    /// The segments holding this stream's events.
    pub segments: BTreeSet<SegmentId>,
}

/// One segment file's summary: enough to skip it without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub id: SegmentId,
    pub group: GroupId,
    /// When it was opened for writing (ingestion time).
    pub created: i64,
    /// Smallest and largest event timestamp in it (meaningless while
    /// `frames == 0`).
    pub min_ts: i64,
    pub max_ts: i64,
    /// The widest batch in it (`max_ts - min_ts` of one frame): how far
    /// before a time a frame holding events at that time can start.
    pub max_span: i64,
    /// Stored (compressed) frame bytes.
    pub bytes: u64,
    pub frames: u64,
    pub events: u64,
    /// No longer written to; at most one segment per group is not sealed.
    pub sealed: bool,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub info: GroupInfo,
    pub streams: BTreeMap<String, StreamId>,
    pub stream_data: HashMap<StreamId, StreamInfo>,
    pub segments: BTreeMap<SegmentId, SegmentInfo>,
}

impl Group {
    pub fn stream(&self, name: &str) -> Option<&StreamInfo> {
        self.streams
            .get(name)
            .and_then(|id| self.stream_data.get(id))
    }

    /// The segment new events go to, if any.
    pub fn active_segment(&self) -> Option<&SegmentInfo> {
        self.segments.values().rev().find(|s| !s.sealed)
    }

    pub fn stored_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The next group, stream or segment id (ids are never reused).
    pub next_id: u64,
    /// The next event sequence number; every event below it is durable.
    pub next_seq: u64,
    pub names: HashMap<Scope, BTreeMap<String, GroupId>>,
    pub groups: HashMap<GroupId, Group>,
}

/// One change to the catalog, as applied, persisted and published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Group(GroupInfo),
    GroupDeleted(GroupId),
    Stream(StreamInfo),
    StreamDeleted {
        group: GroupId,
        stream: StreamId,
    },
    Segment(SegmentInfo),
    SegmentDeleted {
        group: GroupId,
        segment: SegmentId,
    },
    /// The stream has events in the segment (persisted in its own table;
    /// in memory the stream's `segments` carries it).
    Member {
        group: GroupId,
        stream: StreamId,
        segment: SegmentId,
    },
}

/// What a change is about: a later change with the same key replaces an
/// earlier one in the same round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ChangeKey {
    Group(GroupId),
    Stream(StreamId),
    Segment(SegmentId),
    Member(StreamId, SegmentId),
}

impl Change {
    fn key(&self) -> ChangeKey {
        match self {
            Change::Group(g) => ChangeKey::Group(g.id),
            Change::GroupDeleted(id) => ChangeKey::Group(*id),
            Change::Stream(s) => ChangeKey::Stream(s.id),
            Change::StreamDeleted { stream, .. } => ChangeKey::Stream(*stream),
            Change::Segment(s) => ChangeKey::Segment(s.id),
            Change::SegmentDeleted { segment, .. } => ChangeKey::Segment(*segment),
            Change::Member {
                stream, segment, ..
            } => ChangeKey::Member(*stream, *segment),
        }
    }

    fn group(&self) -> GroupId {
        match self {
            Change::Group(g) => g.id,
            Change::GroupDeleted(id) => *id,
            Change::Stream(s) => s.group,
            Change::StreamDeleted { group, .. }
            | Change::SegmentDeleted { group, .. }
            | Change::Member { group, .. } => *group,
            Change::Segment(s) => s.group,
        }
    }
}

/// A round's changes, the last one per key, in first-seen order.
#[derive(Debug, Default)]
pub struct Changes {
    list: Vec<Option<Change>>,
    index: HashMap<ChangeKey, usize>,
}

impl Changes {
    pub fn push(&mut self, change: Change) {
        if let Change::GroupDeleted(group) = change {
            // Nothing else of a deleted group needs writing.
            for slot in &mut self.list {
                if slot.as_ref().is_some_and(|c| c.group() == group) {
                    if let Some(old) = slot.take() {
                        self.index.remove(&old.key());
                    }
                }
            }
        }
        let key = change.key();
        match self.index.get(&key) {
            Some(&i) => self.list[i] = Some(change),
            None => {
                self.index.insert(key, self.list.len());
                self.list.push(Some(change));
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Change> {
        self.list.iter().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

impl Catalog {
    pub fn group_id(&self, scope: &Scope, name: &str) -> Option<GroupId> {
        self.names.get(scope)?.get(name).copied()
    }

    pub fn group(&self, scope: &Scope, name: &str) -> Option<&Group> {
        self.groups.get(&self.group_id(scope, name)?)
    }

    pub fn group_count(&self, scope: &Scope) -> usize {
        self.names.get(scope).map_or(0, BTreeMap::len)
    }

    pub fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Applies one change. Tolerant of changes about things already gone
    /// (a stream of a group deleted later in the same round).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Group(info) => match self.groups.get_mut(&info.id) {
                Some(group) => group.info = info.clone(),
                None => {
                    self.names
                        .entry(info.scope.clone())
                        .or_default()
                        .insert(info.name.clone(), info.id);
                    self.groups.insert(
                        info.id,
                        Group {
                            info: info.clone(),
                            streams: BTreeMap::new(),
                            stream_data: HashMap::new(),
                            segments: BTreeMap::new(),
                        },
                    );
                }
            },
            Change::GroupDeleted(id) => {
                if let Some(group) = self.groups.remove(id) {
                    if let Some(names) = self.names.get_mut(&group.info.scope) {
                        if names.get(&group.info.name) == Some(id) {
                            names.remove(&group.info.name);
                        }
                        if names.is_empty() {
                            self.names.remove(&group.info.scope);
                        }
                    }
                }
            }
            Change::Stream(stream) => {
                if let Some(group) = self.groups.get_mut(&stream.group) {
                    group.streams.insert(stream.name.clone(), stream.id);
                    group.stream_data.insert(stream.id, stream.clone());
                }
            }
            Change::StreamDeleted { group, stream } => {
                if let Some(group) = self.groups.get_mut(group) {
                    if let Some(old) = group.stream_data.remove(stream) {
                        if group.streams.get(&old.name) == Some(stream) {
                            group.streams.remove(&old.name);
                        }
                    }
                }
            }
            Change::Segment(segment) => {
                if let Some(group) = self.groups.get_mut(&segment.group) {
                    group.segments.insert(segment.id, segment.clone());
                }
            }
            Change::SegmentDeleted { group, segment } => {
                if let Some(group) = self.groups.get_mut(group) {
                    group.segments.remove(segment);
                    for stream in group.stream_data.values_mut() {
                        stream.segments.remove(segment);
                    }
                    for segments in group.info.purging.values_mut() {
                        segments.remove(segment);
                    }
                    group
                        .info
                        .purging
                        .retain(|_, segments| !segments.is_empty());
                }
            }
            Change::Member { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn group_info(id: GroupId, name: &str) -> GroupInfo {
        GroupInfo {
            id,
            scope: Scope::new("123456789012", "us-east-1"),
            name: name.into(),
            creation_time: 1,
            retention_days: None,
            kms_key_id: None,
            class: LogGroupClass::Standard,
            deletion_protection: false,
            tags: Tags::new(),
            purging: BTreeMap::new(),
        }
    }

    fn stream(id: StreamId, group: GroupId, name: &str) -> StreamInfo {
        StreamInfo {
            id,
            group,
            name: name.into(),
            creation_time: 2,
            first_ts: None,
            last_ts: None,
            last_ingestion: None,
            batches: 0,
            last_hash: None,
            segments: BTreeSet::new(),
        }
    }

    #[test]
    fn changes_keep_the_last_per_key_and_drop_a_deleted_groups_rest() {
        let mut changes = Changes::default();
        changes.push(Change::Group(group_info(1, "a")));
        changes.push(Change::Stream(stream(2, 1, "s")));
        let mut s2 = stream(2, 1, "s");
        s2.batches = 5;
        changes.push(Change::Stream(s2.clone()));
        changes.push(Change::Group(group_info(3, "b")));
        let got: Vec<_> = changes.iter().cloned().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], Change::Stream(s2));

        changes.push(Change::GroupDeleted(1));
        let got: Vec<_> = changes.iter().cloned().collect();
        assert_eq!(
            got,
            vec![Change::Group(group_info(3, "b")), Change::GroupDeleted(1)]
        );
    }

    #[test]
    fn apply_builds_and_tears_down() {
        let mut catalog = Catalog::default();
        let scope = Scope::new("123456789012", "us-east-1");
        catalog.apply(&Change::Group(group_info(1, "a")));
        let mut s = stream(2, 1, "s");
        s.segments.insert(9);
        catalog.apply(&Change::Stream(s));
        catalog.apply(&Change::Segment(SegmentInfo {
            id: 9,
            group: 1,
            created: 0,
            min_ts: 0,
            max_ts: 0,
            max_span: 0,
            bytes: 10,
            frames: 1,
            events: 1,
            sealed: false,
        }));
        let group = catalog.group(&scope, "a").unwrap();
        assert_eq!(group.stream("s").unwrap().id, 2);
        assert_eq!(group.active_segment().unwrap().id, 9);
        assert_eq!(group.stored_bytes(), 10);

        catalog.apply(&Change::SegmentDeleted {
            group: 1,
            segment: 9,
        });
        let group = catalog.group(&scope, "a").unwrap();
        assert!(group.stream("s").unwrap().segments.is_empty());
        assert!(group.active_segment().is_none());

        catalog.apply(&Change::StreamDeleted {
            group: 1,
            stream: 2,
        });
        assert!(catalog.group(&scope, "a").unwrap().stream("s").is_none());
        catalog.apply(&Change::GroupDeleted(1));
        assert!(catalog.group(&scope, "a").is_none());
        assert_eq!(catalog.group_count(&scope), 0);
        // Changes about what is gone are ignored.
        catalog.apply(&Change::Stream(stream(4, 1, "late")));
        assert!(catalog.groups.is_empty());
    }
}
