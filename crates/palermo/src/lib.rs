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
//! let id = client.enqueue(SendEmail { to: "ada@example.com".into(), subject: "hi".into() }).await?;
//! # Ok(()) }
//! ```
//!
//! The pipeline is visible in the module tree:
//! [`client`] publishes → RabbitMQ → [`worker`] (one [`worker::slot`] per concurrency slot)
//! → [`worker::execute`] runs one delivery → ack, or, first, a retry into the [`delay`] queues
//! ([`retry`] decides when; [`worker::retrying`] publishes) or the failed job to
//! `palermo.failed` ([`worker::failure`]). The wire format lives in [`wire`] and is
//! documented in `docs/wire-format.md`; delivery is **at-least-once**: a job may run twice
//! (after a crash between its end and its ack), never zero times.

pub mod broker;
pub mod client;
pub mod config;
pub mod delay;
pub mod error;
pub mod history;
pub mod job;
pub mod reconnect;
pub mod registry;
pub mod retry;
pub mod serializer;
mod session;
pub mod shutdown;
pub mod state;
pub mod topology;
pub mod when;
pub mod wire;
pub mod worker;

pub use client::Client;
pub use config::WorkerConfig;
pub use error::Error;
pub use job::{Job, JobContext, JobError, JobResult};
pub use palermo_macros::job;
pub use retry::Backoff;
pub use serializer::Format;
pub use state::State;
pub use worker::Worker;

/// The default broker URL, used when neither `--amqp-url` nor `PALERMO_AMQP_URL` is given.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// What the `#[job]` macro expands to refers to these; they are not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::Registration;
    pub use inventory;
    pub use serde;
}
