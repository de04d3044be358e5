//! A worker's side of the limits: before a limited job runs, take a permit on the broker;
//! after it ran, give it back (docs/limits.md).
//!
//! - Concurrency slot `i` of a limit is held by declaring its queue *exclusive* on the
//!   worker's connection: the broker lets one connection own it, refuses the others
//!   (`RESOURCE_LOCKED`), and deletes it when that connection dies, so a killed worker's
//!   slots come back without anyone's help. Deleting it gives it back.
//! - A rate's start is a confirmed publish to the limit's rate queue (TTL = the window,
//!   `x-max-length` = the rate, `reject-publish`): an ack allows the start, a nack means the
//!   window is full.
//!
//! A refused declare closes its channel, so this work happens on a channel of its own per
//! slot ([`Opener`]), opened when first needed: a worker whose jobs have no limits never
//! opens one.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lapin::{
    options::{QueueDeclareOptions, QueueDeleteOptions},
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties, Channel, Connection, ErrorKind,
};
use tracing::debug;

use super::limit_tally::{Kind, Tally};
use crate::{
    broker,
    error::Error,
    limits::{Limit, Names, KEY_EXPIRY_EXTRA, RATE_SLACK},
    registry::Registry,
    wire::JobMeta,
};

/// The limits of one worker's jobs, and the slots its slots hold.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    by_job: HashMap<String, Limit>,
    /// Slot queues held by this process: its connection may declare its own exclusive queue
    /// again, so the broker alone would not keep two of its slots apart.
    held: Mutex<HashSet<String>>,
    /// Limits (their names' base) found full lately, and until when to believe it: while a
    /// limit stays full, the jobs waiting for it go back to wait without asking the broker
    /// again, so that cycling through the queue stays cheap for the jobs behind them.
    full: Mutex<HashMap<Names, Instant>>,
    /// What heartbeats report: slots held, jobs sent back to wait.
    pub tally: Tally,
}

impl Limits {
    /// The registry's jobs' own limits, replaced by `configured` (job name → limit).
    pub fn new(
        registry: &Registry,
        configured: &std::collections::BTreeMap<String, Limit>,
    ) -> Self {
        let mut by_job = HashMap::new();
        for name in registry.names() {
            if let Some(reg) = registry.get(name) {
                if !reg.limit.is_none() {
                    by_job.insert(name.to_string(), reg.limit.clone());
                }
            }
        }
        for (job, limit) in configured {
            by_job.insert(job.clone(), limit.clone());
        }
        Self {
            by_job,
            held: Mutex::default(),
            full: Mutex::default(),
            tally: Tally::default(),
        }
    }

    /// The limit of job `name`, if it has one. Without any limit, no lookup at all.
    pub fn of(&self, name: &str) -> Option<&Limit> {
        if self.by_job.is_empty() {
            return None;
        }
        self.by_job.get(name)
    }

    /// Every limited job and its limit, sorted by job name.
    pub fn all(&self) -> Vec<(&str, &Limit)> {
        let mut all: Vec<_> = self.by_job.iter().map(|(j, l)| (j.as_str(), l)).collect();
        all.sort_by_key(|(job, _)| *job);
        all
    }

    fn reserve(&self, slot: &str) -> bool {
        self.held
            .lock()
            .map(|mut held| held.insert(slot.to_string()))
            .unwrap_or(false)
    }

    /// Whether `names` was found full less than [`FULL_FOR`] ago.
    fn known_full(&self, names: &Names) -> bool {
        let full = self.full.lock().map(|full| full.get(names).copied());
        matches!(full, Ok(Some(until)) if Instant::now() < until)
    }

    /// Remembers that `names` is full now (`true`), or forgets it (a slot of it was freed).
    fn mark_full(&self, names: &Names, full: bool) {
        if let Ok(mut map) = self.full.lock() {
            if full {
                map.retain(|_, until| Instant::now() < *until);
                map.insert(names.clone(), Instant::now() + FULL_FOR);
            } else {
                map.remove(names);
            }
        }
    }

    fn unreserve(&self, slot: &str) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(slot);
        }
    }
}

/// How long a worker believes a concurrency limit it found full, unless it frees a slot of
/// it itself: a slot freed by another worker meanwhile goes unused by this one that long.
const FULL_FOR: Duration = Duration::from_millis(100);

/// A slot's channel for limits, opened on the slot's connection when first needed and again
/// after a refused declare closed it.
pub(crate) struct Opener {
    connection: Arc<Connection>,
    channel: Option<Channel>,
}

impl Opener {
    pub fn new(connection: Arc<Connection>) -> Self {
        Self {
            connection,
            channel: None,
        }
    }

    async fn channel(&mut self) -> Result<Channel, Error> {
        match &self.channel {
            Some(channel) if channel.status().connected() => Ok(channel.clone()),
            _ => {
                let channel = broker::confirm_channel(&self.connection).await?;
                self.channel = Some(channel.clone());
                Ok(channel)
            }
        }
    }
}

/// What a limited job got.
pub(crate) enum Acquired {
    /// It may run; give the permit back after the run.
    Run(Permit),
    /// Its limit is reached: it waits (the limit named in the waiting copy's header).
    Wait(String, Kind),
}

/// A concurrency slot held while a job runs (a rate's start needs no giving back).
#[must_use]
pub(crate) struct Permit {
    slot: Option<String>,
    names: Names,
    /// The job's name, for the tally of slots held.
    job: String,
}

/// Takes what `limit` requires for a run of the job of `meta` with `body`: a free
/// concurrency slot, then a start in the rate's window. A job that waits (or meets an
/// error, and waits too) is counted in the tally under the check that stopped it.
pub(crate) async fn acquire(
    limits: &Limits,
    opener: &mut Opener,
    limit: &Limit,
    meta: &JobMeta,
    body: &[u8],
) -> Result<Acquired, Error> {
    let acquired = try_acquire(limits, opener, limit, meta, body).await;
    match &acquired {
        Ok(Acquired::Run(_)) => {}
        Ok(Acquired::Wait(_, kind)) => limits.tally.waited(&meta.name, *kind, meta.id),
        Err((_, kind)) => limits.tally.waited(&meta.name, *kind, meta.id),
    }
    acquired.map_err(|(e, _)| e)
}

async fn try_acquire(
    limits: &Limits,
    opener: &mut Opener,
    limit: &Limit,
    meta: &JobMeta,
    body: &[u8],
) -> Result<Acquired, (Error, Kind)> {
    let name = limit.name_for(&meta.name);
    let key = limit.key_of(meta.format, body);
    let names = Names::of(name, key.as_deref());
    let mut permit = Permit {
        slot: None,
        names: names.clone(),
        job: meta.name.clone(),
    };
    if let Some(n) = limit.concurrency {
        let wait = Acquired::Wait(name.to_string(), Kind::Concurrency);
        if limits.known_full(&names) {
            return Ok(wait);
        }
        let taken = take_slot(limits, opener, &names, n).await;
        match taken.map_err(|e| (e, Kind::Concurrency))? {
            Some(slot) => {
                limits.tally.took_slot(&meta.name);
                permit.slot = Some(slot);
            }
            None => {
                limits.mark_full(&names, true);
                return Ok(wait);
            }
        }
    }
    if let Some(rate) = limit.rate {
        match record_start(opener, &names, rate, key.is_some(), meta).await {
            Ok(true) => {}
            started => {
                release(limits, opener, permit).await;
                return match started {
                    Err(e) => Err((e, Kind::Rate)),
                    Ok(_) => Ok(Acquired::Wait(name.to_string(), Kind::Rate)),
                };
            }
        }
    }
    Ok(Acquired::Run(permit))
}

/// Gives a permit's slot back: deletes its queue (if the connection died meanwhile, the
/// broker deleted it already).
pub(crate) async fn release(limits: &Limits, opener: &mut Opener, permit: Permit) {
    let Some(slot) = permit.slot else { return };
    if opener.connection.status().connected() {
        let deleted = match opener.channel().await {
            Ok(channel) => channel
                .queue_delete(slot.as_str().into(), QueueDeleteOptions::default())
                .await
                .map(drop)
                .map_err(Error::broker("queue.delete")),
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            // The slot stays with this connection until it closes; this process may still
            // use it (it declares it again), others cannot.
            debug!(slot, error = %e, "giving a limit's slot back failed");
        }
    }
    limits.unreserve(&slot);
    limits.tally.gave_slot(&permit.job);
    limits.mark_full(&permit.names, false);
}

/// The first free slot of `n`, tried from a random one; `None` when all are held.
async fn take_slot(
    limits: &Limits,
    opener: &mut Opener,
    names: &Names,
    n: u32,
) -> Result<Option<String>, Error> {
    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u32;
    for i in 0..n {
        let slot = names.slot((start + i) % n);
        if !limits.reserve(&slot) {
            continue;
        }
        let options = QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        let declared = match opener.channel().await {
            Ok(channel) => {
                let declare =
                    channel.queue_declare(slot.as_str().into(), options, FieldTable::default());
                declare.await.map(drop)
            }
            Err(e) => {
                limits.unreserve(&slot);
                return Err(e);
            }
        };
        match declared {
            Ok(()) => return Ok(Some(slot)),
            Err(e) => {
                limits.unreserve(&slot);
                // The refusal closed the channel: the next try opens another.
                opener.channel = None;
                if !is_locked(&e) {
                    return Err(Error::broker("queue.declare (limit slot)")(e));
                }
            }
        }
    }
    Ok(None)
}

/// Records a start in the rate's window; `false` when the window is full.
async fn record_start(
    opener: &mut Opener,
    names: &Names,
    rate: crate::limits::Rate,
    per_key: bool,
    meta: &JobMeta,
) -> Result<bool, Error> {
    let queue = names.rate();
    let channel = opener.channel().await?;
    let window = i64::try_from((rate.per + RATE_SLACK).as_millis()).unwrap_or(i64::MAX);
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(window));
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(rate.count.into()),
    );
    let overflow = LongString::from("reject-publish");
    arguments.insert("x-overflow".into(), AMQPValue::LongString(overflow));
    // Always classic: a quorum queue applies `x-max-length` with `reject-publish` only
    // roughly (measured on 3.10: 27 records accepted in one second at 20/s).
    if per_key {
        let expires = window.saturating_add(KEY_EXPIRY_EXTRA.as_millis() as i64);
        arguments.insert("x-expires".into(), AMQPValue::LongLongInt(expires));
    }
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await
        .map_err(Error::broker("queue.declare (rate limit)"))?;
    let id = meta.id.to_string();
    let asked = Instant::now();
    let sent = broker::publish_via(
        &channel,
        "",
        &queue,
        &queue,
        id.as_bytes(),
        BasicProperties::default(),
    );
    match sent.await?.confirmed().await {
        // A confirm slower than the slack could let this start fall less than the window
        // after a start recorded R records earlier (docs/limits.md): the record stays and
        // counts, but the job waits as if refused, an under-run and never an over-run.
        Ok(()) if asked.elapsed() > RATE_SLACK => {
            tracing::debug!(queue = %queue, took = ?asked.elapsed(), "rate record confirmed later than the slack; waiting");
            Ok(false)
        }
        Ok(()) => Ok(true),
        Err(Error::Nacked { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_locked(error: &lapin::Error) -> bool {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => {
            matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)
            )
        }
        _ => false,
    }
}
