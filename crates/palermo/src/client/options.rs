//! The options of one enqueue ([`Options`]: queue, when, priority, unique key, headers).
//! Which queues are priority queues is the deployment's setting
//! ([`crate::Deployment::priorities`]; [`crate::broker::priority`] says why), not an option of one
//! enqueue.
//!
//! Why a value rather than a method per combination: the combinations (a delayed job on
//! another queue with a priority and a lock...) are many, and a method each grew to sixteen
//! that did not all follow the same rules. One value, read in one place
//! ([`super::enqueue`]), makes every enqueue follow the same ones.

use std::time::{Duration, SystemTime};

use crate::error::Error;

/// How one enqueue differs from the job's own settings: another queue, later, another
/// priority, a unique lock, extra headers. Every setting defaults to the job's own (its
/// `#[job(..)]` attributes), and [`Options::new`] changes nothing.
///
/// ```
/// use std::time::Duration;
/// use palermo::Options;
///
/// let options = Options::new()
///     .queue("mail-bulk")                          // instead of the job's queue
///     .delay(Duration::from_secs(3600))            // in an hour
///     .priority(9)                                 // ahead of lower ones, on a priority queue
///     .unique("digest:42", Duration::from_secs(600)) // at most one such job at a time
///     .header("x-tenant", "acme");                 // read back by worker middleware
/// assert_ne!(options, Options::new());
/// ```
///
/// When a job runs is one setting: [`Options::delay`] and [`Options::at`] replace each
/// other, so the last one called wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub(super) queue: Option<String>,
    pub(super) when: When,
    pub(super) priority: Option<u8>,
    pub(super) unique: Option<Unique>,
    pub(super) headers: Vec<(String, String)>,
}

/// When an enqueued job runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum When {
    /// As soon as a worker takes it.
    #[default]
    Now,
    /// After this delay from the enqueue.
    In(Duration),
    /// At this time.
    At(SystemTime),
}

/// The unique lock an enqueue asks for: at most one job with `key` queued, delayed or running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Unique {
    pub(super) key: Vec<u8>,
    pub(super) ttl: Duration,
}

/// Header names that are Palermo's own (docs/wire-format.md): an option may not set them.
const RESERVED_PREFIX: &str = "x-palermo-";

impl Options {
    /// Options that change nothing: the job's queue, now, its priority and its own
    /// `#[job(unique)]` lock if it has one. The same as `Options::default()`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes to `queue` instead of the job's (a raw job's) queue. Defaults to the job's
    /// `#[job(queue = ..)]`, or `default`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Runs the job after `delay`, rounded up to whole seconds (so never early; about a
    /// second late at most), up to [`crate::admin::delay::MAX_DELAY`] (about 388 days): it
    /// waits in the broker's delay queues and survives a restart. Replaces an earlier
    /// [`Options::at`]. Defaults to now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.when = When::In(delay);
        self
    }

    /// Runs the job at `at` (a `SystemTime`, or anything that converts into one, such as a
    /// chrono `DateTime`); a time in the past runs it now. Replaces an earlier
    /// [`Options::delay`]. Defaults to now.
    pub fn at(mut self, at: impl Into<SystemTime>) -> Self {
        self.when = When::At(at.into());
        self
    }

    /// The job's priority, 0 to 255, capped by the queue's `x-max-priority`; it orders jobs
    /// only on a priority queue ([`crate::Deployment::priorities`]). Defaults to the job's
    /// `#[job(priority = ..)]`, or none (which RabbitMQ treats as 0).
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Enqueues the job only if no job with the same `key` is queued, delayed or running
    /// (whatever its queue); the lock lasts until that job succeeds or fails for good, or for
    /// `ttl` at most (1 s to about 49 days; it counts from the enqueue, so a delayed job's
    /// should cover its delay). When the key is taken nothing is enqueued and the enqueue
    /// returns [`crate::Enqueued::Duplicate`] with the holder's id. Replaces the key and TTL
    /// of a `#[job(unique = ..)]` job (its name and serialized arguments, its TTL). Defaults
    /// to no lock, or the job's own.
    pub fn unique(mut self, key: impl AsRef<[u8]>, ttl: Duration) -> Self {
        self.unique = Some(Unique {
            key: key.as_ref().to_vec(),
            ttl,
        });
        self
    }

    /// Adds a string header to the message, which the worker's middleware reads back with
    /// [`crate::middleware::JobInfo::header`]. Names starting with `x-palermo-` are Palermo's
    /// own: the enqueue refuses them with [`Error::Config`]. An
    /// [`crate::middleware::EnqueueMiddleware`] runs after, and may replace it. Defaults to
    /// no extra headers.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Checks what the builder cannot: header names, and a lock's TTL.
    pub(super) fn validate(&self) -> Result<(), Error> {
        if let Some((name, _)) = self
            .headers
            .iter()
            .find(|(name, _)| name.to_ascii_lowercase().starts_with(RESERVED_PREFIX))
        {
            return Err(Error::Config(format!(
                "header {name:?}: names starting with {RESERVED_PREFIX} are Palermo's own \
                 (docs/wire-format.md); use another prefix"
            )));
        }
        if let Some(unique) = &self.unique {
            crate::unique::validate_ttl(unique.ttl)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_and_at_are_one_setting() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(60);
        let options = Options::new().delay(Duration::from_secs(5)).at(at);
        assert_eq!(options.when, When::At(at));
        let options = options.delay(Duration::from_secs(5));
        assert_eq!(options.when, When::In(Duration::from_secs(5)));
    }

    #[test]
    fn palermo_headers_and_short_locks_are_refused() {
        assert!(Options::new().header("x-tenant", "acme").validate().is_ok());
        assert!(Options::new()
            .header("X-Palermo-Attempt", "9")
            .validate()
            .is_err());
        let short = Options::new().unique("k", Duration::from_millis(10));
        assert!(short.validate().is_err());
    }
}
