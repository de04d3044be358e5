//! The admin facade: what the store, the `palermo` command and the dashboard need from the
//! core, and an application does not. Admin tools read and write the same messages as
//! workers without linking any job's code, so what they share with the core is the broker
//! topology and the wire format, not the worker runtime. Nothing here is needed to enqueue or
//! run jobs.

pub use crate::client::RawJob;

/// Wire format v1: job metadata and headers, worker events ([`wire::event`]), the failure
/// record ([`wire::failure`]), the error history ([`wire::history`]) and republishing
/// ([`wire::republish`]). docs/wire-format.md is the reference.
pub mod wire {
    pub use crate::wire::*;
}

/// The broker objects: the job exchange, job queues, the failed queue, the events exchange.
pub mod topology {
    pub use crate::broker::topology::{
        declare_events, declare_exchange, declare_job_queue, declare_queue, inspect,
        validate_queue_name, QueueDepth, QueueType, EVENTS_EXCHANGE, EVENTS_QUEUE_MAX_LENGTH,
        EXCHANGE, FAILED_QUEUE,
    };
}

/// The delay queues of retries and scheduled jobs, and how many jobs wait in them;
/// `declare` and `LEVELS` let a test watch the first level for the retries of one queue.
pub mod delay {
    pub use crate::broker::delay::{
        declare, is_reserved, waiting, Kind, Layout, Waiting, LEVELS, MAX_DELAY,
    };
}

/// Connecting (to one of several addresses), and publishing with a confirm.
pub mod broker {
    pub use crate::broker::{
        confirm_channel, connect, publish, publish_confirmed, redact, Addresses, Pending,
        HEARTBEAT, NODE_TIMEOUT,
    };
}

/// The schedule table the active scheduler publishes (`palermo schedules`), and Run now
/// (one extra run of a schedule's job, built from that table). Pausing a schedule is in
/// [`crate::control`].
pub mod schedules {
    pub use crate::periodic::now::{job, run_now};
    pub use crate::periodic::status::{read, status_queue, ScheduleRow, Status};
}

/// Reconnecting with backoff, as workers and the client do.
pub mod reconnect {
    pub use crate::reconnect::{
        retry_until, validate, Exhausted, Schedule, ATTEMPT_TIMEOUT, DEFAULT_BACKOFF, FIRST_ATTEMPT,
    };
}

/// Unique jobs' lock queues: their names (from a key and a TTL) and the header that carries
/// a job's lock, for tools and tests that look at or clean up locks.
pub mod unique {
    pub use crate::unique::{default_key, lock_name, HEADER, LOCK_PREFIX, MIN_TTL};
}

/// The histogram workers record run times and waits into (docs/wire-format.md), for tools
/// that measure its cost (`palermo-bench --example histogram_cost`).
pub mod timing {
    pub use crate::worker::timing::Histogram;
}
