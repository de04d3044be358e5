//! Rows of display text for the tables several pages share (queues, workers, running jobs),
//! built from the store's structs: untrusted text made visible and cut, times formatted,
//! links encoded.

use palermo_store::{queues::QueueRow, time, workers::WorkerRow};

use crate::{
    data::Busy,
    links::{encode, segment},
    text,
};

/// A queue, as the queues tables show it.
pub(crate) struct QueueLine {
    pub(crate) name: String,
    /// `queues/NAME`, encoded.
    pub(crate) link: String,
    /// `failed?queue=NAME`, encoded.
    pub(crate) failed_link: String,
    pub(crate) exists: bool,
    pub(crate) ready: String,
    pub(crate) unacked: u32,
    pub(crate) consumers: String,
    pub(crate) failed: i64,
    /// Whether it is the failed queue (not purged from here).
    pub(crate) is_failed_queue: bool,
    /// Whether an operator paused it.
    pub(crate) paused: bool,
}

impl QueueLine {
    pub(crate) fn new(row: &QueueRow, failed_queue: &str) -> QueueLine {
        let show = |n: Option<u32>| n.map_or_else(|| "–".to_string(), |n| n.to_string());
        QueueLine {
            name: text::cell(&row.queue, 120),
            link: format!("queues/{}", segment(&row.queue)),
            failed_link: format!("failed?queue={}", encode(&row.queue)),
            exists: row.exists,
            ready: show(row.ready),
            unacked: row.unacked,
            consumers: show(row.consumers),
            failed: row.failed,
            is_failed_queue: row.queue == failed_queue,
            paused: row.paused,
        }
    }
}

/// A worker, as the workers tables show it.
pub(crate) struct WorkerLine {
    pub(crate) id: String,
    /// The first 8 characters of the run id, for the table (the whole id is in the title).
    pub(crate) short_id: String,
    pub(crate) identity: String,
    pub(crate) host: String,
    pub(crate) pid: i64,
    pub(crate) queues: String,
    pub(crate) concurrency: i64,
    pub(crate) started: String,
    pub(crate) last_seen: String,
    pub(crate) processed: i64,
    pub(crate) failed: i64,
    pub(crate) running: usize,
    /// `alive`, `stopped` or `gone`.
    pub(crate) status: String,
    /// `running`, `quiet` or `stopping` (what it applied of the operators' commands).
    pub(crate) state: String,
    /// Its paused queues, comma-separated; empty when none.
    pub(crate) paused: String,
    /// `workers/ID`, encoded, for the quiet and stop forms.
    pub(crate) link: String,
    /// Why the broker blocks its connection (a resource alarm), when it does.
    pub(crate) blocked: Option<String>,
}

impl WorkerLine {
    pub(crate) fn new(row: &WorkerRow, now: i64) -> WorkerLine {
        WorkerLine {
            id: text::cell(&row.id, 80),
            short_id: text::cell(&row.id.chars().take(8).collect::<String>(), 8),
            identity: text::cell(&row.identity, 120),
            host: text::cell(&row.host, 80),
            pid: row.pid,
            queues: text::cell(&row.queues.join(", "), 200),
            concurrency: row.concurrency,
            started: time::short(row.started_at),
            last_seen: format!("{} ago", time::ago(row.last_seen_at, now)),
            processed: row.processed,
            failed: row.failed,
            running: row.running.len(),
            status: text::cell(&row.status, 20),
            state: text::cell(&row.state, 20),
            paused: text::cell(&row.paused.join(", "), 200),
            link: format!("workers/{}", crate::links::segment(&row.id)),
            blocked: row.blocked.as_deref().map(|reason| text::cell(reason, 80)),
        }
    }
}

/// A running job, as the "Busy" tables show it.
pub(crate) struct BusyLine {
    pub(crate) worker: String,
    pub(crate) job: String,
    pub(crate) job_id: String,
    /// `jobs/ID/cancel`, the Cancel button's action.
    pub(crate) cancel: String,
    pub(crate) queue: String,
    pub(crate) args: String,
    pub(crate) started: String,
    pub(crate) running: String,
}

impl BusyLine {
    pub(crate) fn new(busy: &Busy) -> BusyLine {
        BusyLine {
            worker: text::cell(&busy.worker, 120),
            job: text::cell(&busy.job.name, 80),
            job_id: text::cell(&busy.job.id, 60),
            cancel: format!("jobs/{}/cancel", crate::links::segment(&busy.job.id)),
            queue: text::cell(&busy.job.queue, 80),
            args: text::cell(&busy.job.args_preview, 120),
            started: time::short(busy.job.started_at),
            running: time::duration(busy.running_ms),
        }
    }
}
