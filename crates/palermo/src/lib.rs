//! # Palermo: background jobs for Rust on RabbitMQ
//!
//! Palermo is a job queue in the tradition of Resque, Sidekiq and Celery. You write a job as
//! an `async fn` with `#[palermo::job]`, enqueue it from anywhere with a [`Client`], and run
//! `worker --queues mail,video` on as many machines as you like. RabbitMQ is the only moving
//! part a worker needs.
//!
//! ```no_run
//! #[palermo::job(queue = "mail")]
//! async fn send_email(to: String, subject: String) -> anyhow::Result<()> {
//!     println!("sending {subject} to {to}");
//!     Ok(())
//! }
//!
//! # async fn web_handler() -> anyhow::Result<()> {
//! let client = palermo::Client::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
//! let id = client.enqueue(SendEmail { to: "ada@example.com".into(), subject: "hi".into() }).await?.id();
//! # Ok(()) }
//! ```
//!
//! What an application needs is at the top of this crate: [`Client`] (and [`ClientConfig`])
//! to enqueue, [`Job`] and [`JobError`] to write jobs (usually through [`macro@job`]),
//! [`Worker`] and [`WorkerConfig`] to run them, [`Deployment`] for the settings every process
//! of a deployment shares, [`shutdown`] to stop a worker, and, with the default `cli`
//! feature, [`cli`] for a worker binary's `main`. Admin tools (the store, the `palermo`
//! command, the dashboard) reach the broker topology and the wire format through [`admin`].
//!
//! Around the jobs: [`testing`] runs them in unit tests without a broker (a fake [`Client`],
//! `drain`, inline mode); [`middleware`] hooks every run and every enqueue (metrics, error
//! reporting, a tenant id in a header); [`trace`] carries the enqueuer's trace context to the
//! job's `tracing` span (W3C `traceparent`, OpenTelemetry with the `opentelemetry` feature).
//!
//! Inside, the pipeline is visible in the file tree: `client.rs` publishes → RabbitMQ →
//! `worker/` (one `slot.rs` per concurrency slot) → `worker/execute.rs` takes one delivery,
//! `worker/decide.rs` runs it and decides what follows (`retry.rs` says when a retry runs) →
//! ack, or, first, a retry into the delay queues (`worker/retrying.rs` publishes) or the
//! failed job to `palermo.failed` (`worker/failure.rs`). The wire format lives in `wire/` and is documented in
//! `docs/wire-format.md`; delivery is **at-least-once**: a job may run twice (after a crash
//! between its end and its ack), never zero times.

#![warn(missing_docs)]

mod broker;
mod client;
mod config;
pub mod control;
mod deployment;
mod error;
mod job;
#[cfg(test)]
mod layering;
mod limits;
pub mod middleware;
mod periodic;
mod reconnect;
mod registry;
mod retry;
mod serializer;
pub mod shutdown;
mod state;
pub mod testing;
pub mod trace;
mod unique;
mod wire;
mod worker;

pub mod admin;

#[cfg(feature = "cli")]
pub mod cli;

pub use broker::priority::Priorities;
pub use broker::topology::QueueType;
pub use client::{
    BatchBuilder, Chain, ChainId, Client, ClientConfig, Enqueued, Options, DEFAULT_PUBLISH_TIMEOUT,
};
pub use config::WorkerConfig;
pub use deployment::Deployment;
pub use error::{Error, NameError, Refusal};
pub use job::{Job, JobContext, JobError, JobResult};
pub use limits::{KeyFn, Limit, Names as LimitNames, Rate};
pub use palermo_macros::job;
pub use periodic::{job_id as periodic_job_id, CatchUp, Periodic, MAX_CATCH_UP};
pub use registry::{Registration, Registry};
pub use retry::Backoff;
pub use serializer::{Format, SerializeError};
pub use state::{MissingState, State, StateMap};
pub use wire::batch::Outcome as BatchOutcome;
pub use worker::{Worker, WorkerBuilder};

/// The default broker URL, used when neither `--amqp-url` nor `PALERMO_AMQP_URL` is given.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// What the `#[job]` macro expands to refers to these; they are not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::periodic::PeriodicRegistration;
    pub use crate::registry::Registration;
    pub use inventory;
    pub use serde;
}
