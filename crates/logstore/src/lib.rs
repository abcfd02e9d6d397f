//! The CloudWatch Logs storage engine: log groups, log streams and their
//! events, durable and searchable, kept apart from the cluster state store
//! so that a chatty container never slows the ECS API.
//!
//! The handler layer of the Logs API translates wire types into this
//! crate's plain request types ([`types`], each field naming its model
//! member), calls a [`LogStore`] method, and maps a [`LogsError`] to the
//! AWS error shape ([`LogsError::code`]). Everything is scoped by
//! [`Scope`] (account and region).
//!
//! # Where to start reading
//!
//! [`LogStore`] (`store.rs`) is the API. A write goes: shape checks
//! (`validate`) → the writer thread (`writer`), which runs it against the
//! catalog (`commands` on `catalog`) and makes it durable in a group
//! commit → the answer. A read goes: the published catalog (`describe`,
//! or `read` for events) → a merge over segment files (`scan`). The
//! filter-pattern language is `pattern`; byte and token formats `codec`.
//!
//! # The engine, and why
//!
//! Per log group, events live in **segment files**: SQLite databases,
//! each covering a period of ingestion (a day by default, or 256 MiB).
//! A segment holds *frames*: one per PutLogEvents call, the accepted events
//! of one stream, LZ4-compressed, with their time range and first sequence
//! number; indexes by first and last timestamp, for the group and per
//! stream, let a reader seek straight to a time. A small **metadata
//! database** (`meta.db`) holds groups, streams (with their sequence
//! tokens), segments with their time ranges, and the counters.
//!
//! - *Why SQLite per segment, not one database:* retention must delete
//!   whole files, never rows; a group's expired segment is one `unlink`.
//!   SQLite (already in the workspace, bundled) gives crash-safe appends,
//!   B-tree indexes and WAL snapshots for readers for free; rows are whole
//!   batches, not lines, so it sees tens of inserts a second, not
//!   hundreds of thousands.
//! - *Durability and atomicity across files:* a round (group commit) first
//!   commits its frames to each touched segment (fsynced), then commits the
//!   metadata database: that commit is the round's commit point. Every event
//!   has a store-wide sequence number; the metadata holds the next one.
//!   Frames at or past it belong to a round that never committed: readers
//!   ignore them, and opening the store deletes them, so kill -9 at any
//!   moment loses nothing acknowledged and stores nothing twice.
//! - *Readers never wait for the writer:* they read a catalog published
//!   only after each commit (a short lock, never held across I/O) and the
//!   segment files through their own connections (WAL snapshots).
//! - *Throughput:* callers hash and compress their batch before queuing
//!   (on the blocking pool, a few at a time); the writer takes every queued
//!   request into one round, so syncs are shared by all waiting writers: the
//!   touched segments' side by side, then the metadata's.
//! - *One process per store:* the writer holds an exclusive lock on
//!   `meta.db`.
//!
//! # CloudWatch Logs semantics kept
//!
//! Names, limits and messages follow the model and AWS's documentation:
//! batch rules of PutLogEvents (count, 1 MiB with 26 bytes per event,
//! chronological, 24 hours, too old / too new / expired reported in
//! `rejectedLogEventsInfo`), sequence tokens (see
//! [`LogStore::put_log_events`]), GetLogEvents' `f/` and `b/` tokens (the
//! same token back at the end), FilterLogEvents interleaved in timestamp
//! order with stable `eventId`s (what `aws logs tail --follow` relies on),
//! and the filter-pattern language ([`pattern`]). Departures are listed in
//! `docs/logstore.md`.

mod catalog;
pub mod clock;
mod codec;
mod commands;
mod describe;
mod error;
mod meta;
pub mod pattern;
mod read;
mod scan;
mod segment;
mod store;
pub mod types;
pub mod validate;
mod writer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::LogsError;
pub use pattern::{FilterPattern, PatternError};
pub use store::{LogStore, StoreOptions};
pub use types::*;
