//! The schedule table for people: after each checkpoint the leader publishes its schedules
//! (last and next run) and its identity to `<scheduler queue>.status`, a queue that keeps only
//! the newest message (`x-max-length = 1`, oldest dropped). `palermo schedules` reads it
//! without taking it (`basic.get`, then a requeueing `nack`), so no SQL store is involved and
//! the token itself, held unacked by the leader, is never touched.

use chrono::{DateTime, Utc};
use lapin::{
    options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions},
    types::AMQPValue,
    BasicProperties, Channel, Connection,
};
use serde::{Deserialize, Serialize};

use super::Entry;
use crate::{
    broker,
    broker::topology::{self, QueueType},
    error::Error,
    serializer::Format,
};

/// What the active scheduler last published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The active scheduler (`hostname:pid:queues`).
    pub leader: String,
    /// When it wrote this, Unix milliseconds.
    pub written_at: i64,
    /// Its schedules, in declaration order.
    pub schedules: Vec<ScheduleRow>,
}

/// One schedule in [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRow {
    /// The schedule's name.
    pub name: String,
    /// Its cron expression or `every <interval>`.
    pub spec: String,
    /// The job it enqueues.
    pub job: String,
    /// The queue it enqueues on.
    pub queue: String,
    /// The last tick enqueued, Unix milliseconds (none yet: `None`).
    pub last_run: Option<i64>,
    /// The next tick, Unix milliseconds.
    pub next_run: Option<i64>,
    /// The serializer of [`ScheduleRow::args`] (`json`, `msgpack`); absent from the status of
    /// schedulers older than Run now, like the three fields after it.
    #[serde(default)]
    pub format: Option<String>,
    /// The job's serialized arguments, as every tick enqueues them: the JSON text for `json`,
    /// lowercase hex for `msgpack`.
    #[serde(default)]
    pub args: Option<String>,
    /// The job's `#[job(priority)]`.
    #[serde(default)]
    pub priority: Option<u8>,
    /// The job's `#[job(unique)]` lock time in milliseconds.
    #[serde(default)]
    pub unique_ms: Option<u64>,
    /// The job's max attempts, when the job sets them.
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// The status queue of scheduler queue `scheduler_queue`.
pub fn status_queue(scheduler_queue: &str) -> String {
    format!("{scheduler_queue}.status")
}

/// The table of `entries` with the handled-up-to times `last` and the last ticks enqueued
/// `ran` (`None` when the token does not say: one written before paused schedules existed).
pub(crate) fn table(
    leader: &str,
    entries: &[Entry],
    last: impl Fn(&str) -> Option<DateTime<Utc>>,
    ran: impl Fn(&str) -> Option<Option<DateTime<Utc>>>,
) -> Status {
    let schedules = entries
        .iter()
        .map(|e| {
            let p = &e.periodic;
            let last = last(p.name());
            // `last` is a tick when it was one; a schedule never run holds its start time
            // (only for tokens without `ran`: a skipped tick moves `last`, not `ran`).
            let ran = ran(p.name()).unwrap_or_else(|| {
                last.filter(|l| p.next_after(*l - chrono::Duration::milliseconds(1)) == Some(*l))
            });
            let args = match e.job.format {
                Format::Json => String::from_utf8_lossy(&e.job.body).into_owned(),
                _ => super::now::hex(&e.job.body),
            };
            ScheduleRow {
                name: p.name().to_string(),
                spec: p.spec().to_string(),
                job: e.job.name.clone(),
                queue: e.job.queue.clone(),
                last_run: ran.map(|t| t.timestamp_millis()),
                next_run: last
                    .and_then(|l| p.next_after(l))
                    .map(|t| t.timestamp_millis()),
                format: Some(e.job.format.name().to_string()),
                args: Some(args),
                priority: e.priority,
                unique_ms: e
                    .unique
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                max_attempts: e.job.max_attempts,
            }
        })
        .collect();
    Status {
        leader: leader.to_string(),
        written_at: Utc::now().timestamp_millis(),
        schedules,
    }
}

/// Declares the status queue, of the deployment's `queue_type` like the scheduler queue (in a
/// cluster a classic one would be lost with its node, and the leader's publishes with it).
async fn declare(channel: &Channel, queue: &str, queue_type: QueueType) -> Result<(), Error> {
    let mut args = queue_type.arguments();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), args)
        .await
        .map_err(Error::broker("queue.declare"))
        .map_err(|e| topology::inequivalent(queue, queue_type, e))?;
    Ok(())
}

/// Replaces the status of `scheduler_queue` with `status` (confirmed).
pub(crate) async fn publish(
    channel: &Channel,
    scheduler_queue: &str,
    queue_type: QueueType,
    status: &Status,
) -> Result<(), Error> {
    let queue = status_queue(scheduler_queue);
    declare(channel, &queue, queue_type).await?;
    let body = serde_json::to_vec(status).map_err(Error::EventSerialize)?;
    let properties = BasicProperties::default().with_content_type("application/json".into());
    broker::publish_via(channel, "", &queue, &queue, &body, properties)
        .await?
        .confirmed()
        .await
}

/// The latest status of `scheduler_queue`, read without taking it; `None` when no scheduler
/// has been active yet (the status queue does not exist or is empty). It creates nothing, so
/// it needs no queue type.
pub async fn read(connection: &Connection, scheduler_queue: &str) -> Result<Option<Status>, Error> {
    let queue = status_queue(scheduler_queue);
    if topology::inspect(connection, &queue).await?.is_none() {
        return Ok(None);
    }
    let channel = connection
        .create_channel()
        .await
        .map_err(Error::broker("channel.open"))?;
    let status = peek(&channel, &queue).await;
    if channel.status().connected() {
        let _ = channel.close(200, "read".into()).await;
    }
    status
}

/// Takes the message of the status `queue` on `channel` and puts it back.
async fn peek(channel: &Channel, queue: &str) -> Result<Option<Status>, Error> {
    let got = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(Error::broker("basic.get"))?;
    let Some(message) = got else { return Ok(None) };
    let status = serde_json::from_slice(&message.delivery.data);
    message
        .delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .map_err(Error::broker("basic.nack"))?;
    status.map(Some).map_err(|e| {
        Error::Config(format!(
            "the scheduler status in {queue:?} is unreadable: {e}"
        ))
    })
}
