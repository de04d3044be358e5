//! Worker events: the heartbeats and the offline event a worker publishes to the
//! `palermo.events` exchange, and that the admin side's recorder reads. The worker writes
//! them (`worker/heartbeat.rs`), the store reads them: both use these types, so the two ends
//! cannot drift apart. docs/wire-format.md describes the JSON.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The routing key of a periodic heartbeat.
pub const HEARTBEAT_KEY: &str = "worker.heartbeat";
/// The routing key of the event a worker sends when it stops cleanly.
pub const OFFLINE_KEY: &str = "worker.offline";
/// The version of the event format this library writes.
pub const EVENT_VERSION: u32 = 1;
/// The AMQP `type` of event messages.
pub const EVENT_TYPE: &str = "palermo.worker";

/// One heartbeat or offline event: the body of a message on the events exchange.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// [`EVENT_VERSION`].
    pub version: u32,
    /// `heartbeat` or `offline`.
    pub event: String,
    /// This run of the worker, new at every start.
    pub id: Uuid,
    /// `hostname:pid:queues`, as in failures' `x-palermo-worker` header.
    pub identity: String,
    /// The worker's host name.
    pub host: String,
    /// The worker's process id.
    pub pid: u32,
    /// The queues it consumes.
    pub queues: Vec<String>,
    /// How many jobs it runs at once.
    pub concurrency: usize,
    /// When the worker started, ms since the epoch.
    pub started_at: i64,
    /// When this event was sent, ms since the epoch (worker's clock).
    pub sent_at: i64,
    /// 1 for the first event of this run, then one more each time.
    pub seq: u64,
    /// The worker's heartbeat interval, so the reader knows when one is missing.
    pub interval_ms: u64,
    /// Runs finished since the start, whatever their outcome.
    pub processed: u64,
    /// Runs failed since the start (included in `processed`).
    pub failed: u64,
    /// The same counts per queue and job.
    #[serde(default)]
    pub counters: Vec<Counter>,
    /// The jobs running now.
    #[serde(default)]
    pub jobs: Vec<RunningJob>,
    /// Why the broker blocks the worker's connection (a resource alarm such as `low on
    /// disk`), when it does. Added after version 1 shipped: absent means not blocked, and
    /// readers that do not know the field ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// What the worker applied of the operators' commands: `running`, `quiet` (takes no new
    /// jobs) or `stopping`. Added after version 1 shipped: absent means running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Its queues that are paused (docs/admin.md, "Control"). Absent means none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paused: Vec<String>,
    /// The upper bounds of the buckets of `timings`' histograms, ms, ascending; one more
    /// bucket follows the last bound (longer than it). Added after version 1 shipped, with
    /// `timings`: absent (and `timings` empty) from older workers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timing_bounds_ms: Vec<u64>,
    /// Cumulative run-time and wait histograms per queue and job, since the worker started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timings: Vec<Timing>,
    /// The limits of the worker's jobs and its use of them (docs/limits.md, "Seeing
    /// limits"): one entry per limited job and kind. Added after version 1 shipped: absent
    /// from older workers and from workers without limited jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitUse>,
}

/// One limit of one of a worker's jobs (a limit with both a concurrency and a rate is two
/// entries), and what the worker does with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitUse {
    /// The job's wire name.
    pub job: String,
    /// The limit's name (the job's own unless it names one; jobs naming one limit share it).
    pub limit: String,
    /// `concurrency` or `rate`.
    pub kind: String,
    /// The configured value: runs at once (`concurrency`) or starts per window (`rate`).
    pub value: u32,
    /// The rate's window, ms; absent for a concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    /// The argument the limit holds per value of; absent for a limit of the whole job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Concurrency: the slots this worker holds now (over every key). Always 0 for a rate
    /// (its window is counted on the broker).
    #[serde(default)]
    pub held: u64,
    /// How many different jobs this worker sent back to wait for this limit since its
    /// previous event.
    #[serde(default)]
    pub waited: u64,
}

/// The bucket bounds workers of this version use, ms (docs/wire-format.md): about ×2 to
/// ×2.5 apart, from 1 ms to an hour. A percentile read from them is known to within its
/// bucket.
pub const TIMING_BOUNDS_MS: [u64; 20] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000,
    300_000, 600_000, 1_800_000, 3_600_000,
];

/// The histograms of one queue and job, cumulative since the worker started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// The queue.
    pub queue: String,
    /// The job's wire name.
    pub job: String,
    /// How long each run took (every outcome), from the start of the job's function to
    /// its end.
    pub duration: Histogram,
    /// How long each job waited: from when it was ready (enqueued, or due for a delayed,
    /// retried or snoozed job) to the start of its run.
    pub latency: Histogram,
}

/// A histogram over [`Heartbeat::timing_bounds_ms`]: bucket `i` counts the observations
/// above bound `i - 1` and at most bound `i`; the last bucket those above every bound.
/// Trailing empty buckets are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Observations per bucket.
    pub counts: Vec<u64>,
    /// The sum of the observations of each bucket, µs.
    pub sums_us: Vec<u64>,
}

/// Cumulative counts for one queue and job name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The queue.
    pub queue: String,
    /// The job's wire name; empty for a message whose name could not be read.
    pub job: String,
    /// Runs finished, whatever their outcome.
    pub processed: u64,
    /// Runs failed (included in `processed`).
    pub failed: u64,
}

/// A job in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningJob {
    /// The job id; empty for a message without one.
    pub id: String,
    /// The job's wire name.
    pub name: String,
    /// The queue it came from.
    pub queue: String,
    /// When this run started, ms since the epoch.
    pub started_at: i64,
    /// The arguments preview.
    pub preview: String,
}

impl Heartbeat {
    /// Whether this is the event of a clean stop.
    pub fn is_offline(&self) -> bool {
        self.event == "offline"
    }

    /// Reads an event body; the error says why it is not one this version reads.
    pub fn parse(body: &[u8]) -> Result<Heartbeat, EventError> {
        let beat: Heartbeat = serde_json::from_slice(body)?;
        if beat.version != EVENT_VERSION {
            return Err(EventError::Version(beat.version));
        }
        Ok(beat)
    }
}

/// Why an event body is not one this version reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The body is not the JSON of a worker event.
    #[error("not a worker event: {0}")]
    Json(#[from] serde_json::Error),
    /// A worker event of another version.
    #[error("unsupported event version {0} (this version reads {EVENT_VERSION})")]
    Version(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_optional_both_ways() {
        // A heartbeat of a worker from before timings: read with none.
        let old = br#"{"version":1,"event":"heartbeat","id":"6f1c0c1e-8a4e-4c5b-9d2a-1f0e2d3c4b5a",
            "identity":"h:1:mail","host":"h","pid":1,"queues":["mail"],"concurrency":1,
            "started_at":0,"sent_at":1,"seq":1,"interval_ms":5000,"processed":0,"failed":0}"#;
        let beat = Heartbeat::parse(old).expect("an old heartbeat");
        assert!(beat.timings.is_empty() && beat.timing_bounds_ms.is_empty());
        // Without timings the fields are left out, so what old readers see is unchanged.
        let json = serde_json::to_string(&beat).expect("json");
        assert!(!json.contains("timing"), "{json}");
        let mut with = beat;
        with.timing_bounds_ms = TIMING_BOUNDS_MS.to_vec();
        with.timings = vec![Timing {
            queue: "mail".into(),
            job: "send".into(),
            duration: Histogram {
                counts: vec![0, 2],
                sums_us: vec![0, 3000],
            },
            latency: Histogram::default(),
        }];
        let json = serde_json::to_vec(&with).expect("json");
        assert_eq!(Heartbeat::parse(&json).expect("read back"), with);
    }
}
