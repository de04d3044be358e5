//! # palermo-store: the admin side's database
//!
//! RabbitMQ cannot browse a queue or take one message out of its middle, so the admin side
//! does not try: failures travel through the failed queue and are *recorded* here, in SQL,
//! where they can be listed, searched, shown, retried and removed. Workers never touch this
//! crate; they speak only AMQP, and their heartbeats are recorded here too.
//!
//! - [`Store`] ([`store`]): SQLite by default (`sqlite:palermo.db`), PostgreSQL by URL;
//!   migrations applied on open.
//! - [`failures`], [`filter`], [`actions`]: the failures table, its filters, retry and
//!   removal marks with their history; `claim.rs`: one admin's retry or removal of a
//!   failure at a time, when several share the store.
//! - [`workers`], [`stats`], [`timings`]: workers from heartbeats; per-minute throughput
//!   and run-time and wait histograms; [`metrics`]: their percentiles per job and queue;
//!   [`limits`]: the alive workers' fleet-wide limits, in use and waiting.
//! - [`prunes`]: deleting old failures, by hand or by the recorder's retention policy,
//!   and the record of every prune.
//! - [`recorder`]: consumes the failed and events queues into the store (acks after commit).
//! - [`requeue`]: retrying a failure = publish (confirmed), then mark retried.
//! - For the dashboard: [`keyset`] (paging without OFFSET), [`series`] (throughput charts),
//!   [`facets`] (filter choices), [`queues`] (depths from the broker, purge).
//! - For people, shared by the CLI and the dashboard: [`time`] (the one time grammar and
//!   formatting), [`text`] (which characters of untrusted text are shown escaped).
//!
//! docs/admin.md is the user guide: schema, recorder, retry ordering, CLI.

pub mod actions;
pub mod cancel;
mod claim;
pub mod control;
pub mod error;
pub mod facets;
pub mod failures;
pub mod filter;
pub mod keyset;
pub mod limits;
pub mod metrics;
mod percentiles;
pub mod prunes;
pub mod queues;
pub mod recorder;
pub mod requeue;
#[doc(hidden)]
pub mod sample;
pub mod schedules;
pub mod series;
pub mod stats;
pub mod store;
pub mod text;
pub mod time;
pub mod timings;
pub mod workers;

pub use error::{Rejection, StoreError};
pub use failures::{Failure, FailureDetail};
pub use filter::{Filter, Page};
pub use recorder::{Recorder, RecorderConfig};
pub use requeue::Requeuer;
pub use store::{Backend, Store, DEFAULT_DATABASE_URL};
