//! Periodic jobs: when a schedule is due (cron with seconds and a time zone, or a fixed
//! interval), what happens to ticks missed while no scheduler ran, and the deterministic id
//! of each tick's job.
//!
//! A tick is a point in time that every scheduler computes the same way (cron ticks from the
//! expression; `every` ticks are whole multiples of the interval since the Unix epoch), so a
//! tick enqueued twice across a handover carries the same job id ([`job_id`]). Who enqueues
//! is decided in `leader.rs` (docs/scheduling.md).

mod leader;
pub(crate) mod now;
mod pauses;
pub(crate) mod status;
mod token;

pub(crate) use leader::{run, Settings};

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::{
    client::{Options, RawJob},
    error::Error,
    job::Job,
    unique,
};

/// The namespace of tick job ids (UUID v5 of `schedule name @ tick ms`).
const NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3c2e_8a4d_4f0b_9c7e_2d5a_1e3f_7a90);

/// At most this many missed ticks are enqueued by [`CatchUp::All`] at a takeover.
pub const MAX_CATCH_UP: usize = 1000;

/// What a scheduler that takes over does with the ticks nobody enqueued (no scheduler was
/// running, or the last one died between ticks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CatchUp {
    /// Enqueue every missed tick (at most [`MAX_CATCH_UP`], the latest ones).
    All,
    /// Enqueue the latest missed tick once. The default.
    #[default]
    Latest,
    /// Enqueue none; the schedule resumes at its next tick.
    None,
}

impl FromStr for CatchUp {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "all" => Ok(CatchUp::All),
            "latest" => Ok(CatchUp::Latest),
            "none" => Ok(CatchUp::None),
            other => Err(Error::Config(format!(
                "catch_up {other:?} is not \"all\", \"latest\" or \"none\""
            ))),
        }
    }
}

/// When a schedule fires.
#[derive(Clone, Debug)]
enum When {
    Cron(Box<cron::Schedule>, chrono_tz::Tz),
    Every(Duration),
}

/// A named schedule and the job it enqueues at each tick; give it to
/// [`crate::WorkerBuilder::periodic`] (or use [`crate::WorkerBuilder::schedule`], or
/// `#[job(cron = "..")]`).
#[derive(Clone, Debug)]
pub struct Periodic {
    name: String,
    spec: String,
    when: When,
    catch_up: CatchUp,
    queue: Option<String>,
}

impl Periodic {
    /// A cron schedule with seconds: `sec min hour day-of-month month day-of-week [year]`,
    /// e.g. `"0 */5 * * * *"`, in UTC unless [`Periodic::tz`] says otherwise.
    pub fn cron(name: &str, expression: &str) -> Result<Self, Error> {
        let schedule = cron::Schedule::from_str(expression).map_err(|e| {
            Error::Config(format!(
                "schedule {name:?}: cron expression {expression:?} is invalid ({e}); it has six or seven fields, seconds first, e.g. \"0 */5 * * * *\""
            ))
        })?;
        Self::named(
            name,
            expression,
            When::Cron(Box::new(schedule), chrono_tz::UTC),
        )
    }

    /// A fixed interval in the project's duration grammar (`"30s"`, `"10m"`, `"1h30m"`):
    /// ticks at whole multiples of it since the Unix epoch, so every scheduler agrees.
    pub fn every(name: &str, interval: &str) -> Result<Self, Error> {
        let every = humantime::parse_duration(interval).map_err(|e| {
            Error::Config(format!(
                "schedule {name:?}: interval {interval:?} is invalid ({e}); write e.g. \"30s\", \"10m\", \"1h30m\""
            ))
        })?;
        if every < Duration::from_secs(1) {
            return Err(Error::Config(format!(
                "schedule {name:?}: interval {interval:?} is under one second"
            )));
        }
        Self::named(name, &format!("every {interval}"), When::Every(every))
    }

    fn named(name: &str, spec: &str, when: When) -> Result<Self, Error> {
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(Error::Config(format!(
                "schedule name {name:?} must be 1 to 200 printable characters"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            spec: spec.to_string(),
            when,
            catch_up: CatchUp::default(),
            queue: None,
        })
    }

    /// Reads a cron schedule in the IANA time zone `tz` (e.g. `"Europe/Rome"`): `0 0 3 * * *`
    /// is then 03:00 Rome time, daylight saving included. Defaults to UTC; an `every`
    /// schedule refuses it (its ticks are the same instants in every zone).
    pub fn tz(mut self, tz: &str) -> Result<Self, Error> {
        let zone: chrono_tz::Tz = tz.parse().map_err(|e| {
            Error::Config(format!(
                "schedule {:?}: time zone {tz:?} is unknown ({e})",
                self.name
            ))
        })?;
        match &mut self.when {
            When::Cron(_, z) => *z = zone,
            When::Every(_) => {
                return Err(Error::Config(format!(
                    "schedule {:?}: a time zone applies to cron schedules, not to `every`",
                    self.name
                )))
            }
        }
        Ok(self)
    }

    /// What a scheduler taking over does with missed ticks. Defaults to [`CatchUp::Latest`].
    pub fn catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// Enqueues the ticks' jobs on `queue` instead of the job's default queue.
    pub fn queue(mut self, queue: &str) -> Result<Self, Error> {
        crate::broker::topology::validate_queue_name(queue)?;
        self.queue = Some(queue.to_string());
        Ok(self)
    }

    /// The expression (`0 */5 * * * *`) or interval (`every 30s`), as written.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The schedule's name (unique within a deployment: its ticks' ids derive from it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.when {
            When::Cron(schedule, tz) => schedule
                .after(&tz.from_utc_datetime(&after.naive_utc()))
                .next()
                .map(|t| t.with_timezone(&Utc)),
            When::Every(every) => {
                let step = i64::try_from(every.as_millis()).ok()?;
                let next = (after.timestamp_millis().div_euclid(step) + 1).checked_mul(step)?;
                DateTime::from_timestamp_millis(next)
            }
        }
    }

    /// The ticks in `(after, until]` that a takeover enqueues under the catch-up policy.
    pub(crate) fn missed(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        let mut at = after;
        while let Some(next) = self.next_after(at).filter(|t| *t <= until) {
            ticks.push(next);
            if ticks.len() > MAX_CATCH_UP {
                ticks.remove(0);
            }
            at = next;
        }
        match self.catch_up {
            CatchUp::All => ticks,
            CatchUp::Latest => ticks.pop().into_iter().collect(),
            CatchUp::None => Vec::new(),
        }
    }
}

/// The id of the job schedule `name` enqueues for its tick at `tick`: a UUID v5 of the name
/// and the tick's Unix milliseconds, the same on every scheduler.
pub fn job_id(name: &str, tick: DateTime<Utc>) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("{name}@{}", tick.timestamp_millis()).as_bytes(),
    )
}

/// A schedule with the job it enqueues, serialized once, and the job's own options (its
/// priority, its `#[job(unique)]` lock), which a raw job does not carry.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Entry {
    pub(crate) periodic: Periodic,
    pub(crate) job: RawJob,
    pub(crate) options: Options,
    /// The job's `#[job(priority)]`, published in the status for Run now.
    pub(crate) priority: Option<u8>,
    /// The job's `#[job(unique)]` lock time, published in the status for Run now.
    pub(crate) unique: Option<Duration>,
}

impl Entry {
    /// `job` serialized in its format, on its default queue.
    pub(crate) fn new<J: Job>(periodic: Periodic, job: &J) -> Result<Self, Error> {
        let format = J::FORMAT.unwrap_or_default();
        let body = format.encode(job).map_err(|source| Error::Serialize {
            job: J::NAME.to_string(),
            source,
        })?;
        let mut options = Options::new();
        if let Some(priority) = J::PRIORITY {
            options = options.priority(priority);
        }
        if let Some(ttl) = J::UNIQUE {
            options = options.unique(unique::default_key(J::NAME, &body), ttl);
        }
        let job = RawJob {
            name: J::NAME.to_string(),
            queue: periodic
                .queue
                .clone()
                .unwrap_or_else(|| J::QUEUE.to_string()),
            format,
            body,
            max_attempts: J::MAX_ATTEMPTS,
        };
        Ok(Self {
            periodic,
            job,
            options,
            priority: J::PRIORITY,
            unique: J::UNIQUE,
        })
    }
}

/// What `#[job(cron = "..")]` / `#[job(every = "..")]` registers: a schedule for a job whose
/// arguments are built by `Default`.
#[doc(hidden)]
#[derive(Debug)]
pub struct PeriodicRegistration {
    /// `cron` or `every`.
    pub kind: &'static str,
    /// The expression or interval.
    pub spec: &'static str,
    /// `tz`, when given.
    pub tz: Option<&'static str>,
    /// `catch_up`, when given.
    pub catch_up: Option<&'static str>,
    /// The schedule (named after the job) and the job built by `Default`:
    /// [`PeriodicRegistration::entry`] for the job type.
    pub entry: fn(&PeriodicRegistration) -> Result<Entry, Error>,
}

inventory::collect!(PeriodicRegistration);

impl PeriodicRegistration {
    /// The schedule of job `J` as the macro's options describe it.
    fn schedule<J: Job>(&self) -> Result<Periodic, Error> {
        let periodic = match self.kind {
            "every" => Periodic::every(J::NAME, self.spec)?,
            _ => Periodic::cron(J::NAME, self.spec)?,
        };
        let periodic = match self.tz {
            Some(tz) => periodic.tz(tz)?,
            None => periodic,
        };
        Ok(match self.catch_up {
            Some(c) => periodic.catch_up(c.parse()?),
            None => periodic,
        })
    }

    /// The schedule of `J` with the job built by `Default`.
    pub fn entry<J: Job + Default>(&self) -> Result<Entry, Error> {
        Entry::new(self.schedule::<J>()?, &J::default())
    }
}

/// Every schedule declared with `#[job(cron/every)]` in this binary.
pub(crate) fn linked() -> Result<Vec<Entry>, Error> {
    inventory::iter::<PeriodicRegistration>
        .into_iter()
        .map(|r| (r.entry)(r))
        .collect()
}

/// Refuses two schedules with one name: their ticks would share job ids and last ticks.
pub(crate) fn check_names(entries: &[Entry]) -> Result<(), Error> {
    for (i, entry) in entries.iter().enumerate() {
        let name = entry.periodic.name();
        if entries[..i].iter().any(|e| e.periodic.name() == name) {
            return Err(Error::Config(format!(
                "two schedules are named {name:?}; give each a name of its own"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
