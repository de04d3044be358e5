//! Leader election through RabbitMQ alone: every scheduler consumes the durable queue
//! `palermo.scheduler` (`x-single-active-consumer = true`, prefetch 1). The broker delivers
//! to one consumer only, the active one; the queue holds one token message, which the active
//! scheduler keeps unacked for as long as it lives. Holding the token *is* leadership.
//!
//! When the leader's connection closes (a stop, a crash, SIGKILL: the kernel closes the
//! socket and the broker sees it at once; a silent death: after missed AMQP heartbeats, about
//! 30 s with the scheduler's 10 s heartbeat), the broker requeues the token and makes the
//! next consumer active, which receives it, reads the last ticks in its body and catches up.
//! docs/scheduling.md has the measured handover times.
//!
//! After each tick the leader publishes a new token with the new last ticks (confirmed),
//! acks the one it held and receives messages until its own new token comes back, merging
//! any extra tokens (two schedulers that started on an empty queue both published one) on
//! the way: at most one token survives.
//!
//! A paused schedule's ticks are skipped: recorded as handled in the token, not enqueued,
//! not kept for later. The leader learns which are paused from the broker when it takes
//! over and from operators' commands after that (`pauses.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_lite::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, Consumer,
};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::{job_id, pauses::Pauses, token::State, Entry};
use crate::{
    broker,
    client::{Client, ClientConfig, Enqueued},
    deployment::Deployment,
    error::Error,
    shutdown::Shutdown,
};

/// How long a leader waits for its own new token to come back before giving up the session.
const TOKEN_WAIT: Duration = Duration::from_secs(30);

/// The AMQP heartbeat of the scheduler's connection, in seconds: the broker closes it after
/// missed heartbeats (measured about 3 × this, docs/scheduling.md), which is how long a
/// silent death (a frozen process, a vanished host) holds the token. Shorter than the
/// workers' 30 s; a URL's own `heartbeat` wins.
const HEARTBEAT: u16 = 10;

/// What a scheduler needs from the worker's configuration: its deployment whole (the
/// scheduler queue, and what its client declares the job queues with), and who it is.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub deployment: Deployment,
    pub identity: String,
}

impl Settings {
    fn queue(&self) -> &str {
        &self.deployment.scheduler_queue
    }
}

/// Runs a scheduler until `shutdown`: waits to become active, then enqueues ticks. A lost
/// connection starts over (as a follower) after a second.
pub(crate) async fn run(settings: Settings, entries: Vec<Entry>, mut shutdown: Shutdown) {
    while !shutdown.is_requested() {
        if let Err(e) = session(&settings, &entries, &mut shutdown).await {
            warn!(error = %e, queue = %settings.queue(), "scheduler lost its connection; starting over");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.requested() => {}
            }
        }
    }
}

/// One connection's life; closing it on the way out hands the token to the next scheduler.
async fn session(
    settings: &Settings,
    entries: &[Entry],
    shutdown: &mut Shutdown,
) -> Result<(), Error> {
    let name = format!("palermo scheduler {}", settings.identity);
    let url = &settings.deployment.amqp_url;
    let connection = broker::connect_with_heartbeat(url, &name, HEARTBEAT).await?;
    let result = follow_then_lead(&connection, settings, entries, shutdown).await;
    if let Err(e) = connection.close(200, "scheduler stopped".into()).await {
        warn!(error = %e, "closing the scheduler connection failed");
    }
    result
}

async fn follow_then_lead(
    connection: &Connection,
    settings: &Settings,
    entries: &[Entry],
    shutdown: &mut Shutdown,
) -> Result<(), Error> {
    let channel = broker::confirm_channel(connection).await?;
    let mut consumer = subscribe(&channel, settings).await?;
    info!(scheduler = %settings.identity, queue = %settings.queue(), "scheduler waiting to become active");
    let first = tokio::select! {
        delivery = next(&mut consumer, settings.queue()) => delivery?,
        () = shutdown.requested() => return Ok(()),
    };
    info!(scheduler = %settings.identity, schedules = entries.len(), "scheduler active");
    let client = Client::connect_with(&ClientConfig::new(settings.deployment.clone())).await?;
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.periodic.name().to_string())
        .collect();
    let pauses = Pauses::subscribe(connection, &settings.deployment, &names).await?;
    let mut leader = Leader {
        state: State::read(&first.data),
        held: first,
        pauses,
        channel,
        consumer,
        settings,
        entries,
    };
    leader.checkpoint().await?;
    leader.catch_up(&client).await?;
    let result = leader.tick_loop(&client, shutdown).await;
    if let Err(e) = client.close().await {
        warn!(error = %e, "closing the scheduler's client failed");
    }
    result
}

/// Declares the scheduler queue, puts a token in it when it is empty, and consumes it.
async fn subscribe(channel: &Channel, settings: &Settings) -> Result<Consumer, Error> {
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .map_err(Error::broker("basic.qos"))?;
    let mut args = settings.deployment.queue_type.arguments();
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    let queue = channel
        .queue_declare(
            settings.queue().into(),
            QueueDeclareOptions::durable(),
            args,
        )
        .await
        .map_err(Error::broker("queue.declare"))?;
    if queue.message_count() == 0 {
        // Empty, or the leader holds the token (unacked messages are not counted): an extra
        // token is merged away by the leader's next checkpoint.
        publish(channel, settings.queue(), &State::default(), "").await?;
    }
    channel
        .basic_consume(
            settings.queue().into(),
            settings.identity.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("basic.consume"))
}

async fn publish(channel: &Channel, queue: &str, state: &State, id: &str) -> Result<(), Error> {
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(id.into());
    broker::publish_via(channel, "", queue, queue, &state.body(), properties)
        .await?
        .confirmed()
        .await
}

async fn next(consumer: &mut Consumer, queue: &str) -> Result<Delivery, Error> {
    match consumer.next().await {
        Some(delivery) => delivery.map_err(Error::broker("basic.deliver")),
        None => Err(Error::ConsumerCancelled {
            queue: queue.to_string(),
        }),
    }
}

/// The active scheduler, holding the token.
struct Leader<'a> {
    state: State,
    held: Delivery,
    /// Which schedules are paused.
    pauses: Pauses,
    channel: Channel,
    consumer: Consumer,
    settings: &'a Settings,
    entries: &'a [Entry],
}

impl Leader<'_> {
    /// Publishes the state as a new token, acks the held one, and receives until the new one
    /// comes back, merging (and acking) any other token on the way.
    async fn checkpoint(&mut self) -> Result<(), Error> {
        let id = Uuid::new_v4().to_string();
        self.state.leader = self.settings.identity.clone();
        self.state.written_ms = Utc::now().timestamp_millis();
        publish(&self.channel, self.settings.queue(), &self.state, &id).await?;
        let ran = |n: &str| {
            let ms = self.state.ran.get(n)?;
            Some(DateTime::from_timestamp_millis(*ms))
        };
        let table =
            super::status::table(&self.settings.identity, self.entries, |n| self.last(n), ran);
        let (queue, queue_type) = (self.settings.queue(), self.settings.deployment.queue_type);
        super::status::publish(&self.channel, queue, queue_type, &table).await?;
        self.held
            .ack(BasicAckOptions::default())
            .await
            .map_err(Error::broker("basic.ack"))?;
        loop {
            let delivery =
                tokio::time::timeout(TOKEN_WAIT, next(&mut self.consumer, self.settings.queue()))
                    .await
                    .map_err(|_| Error::ConsumerCancelled {
                        queue: self.settings.queue().to_string(),
                    })??;
            self.state.merge(State::read(&delivery.data));
            let own = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str())
                == Some(&id);
            if own {
                self.held = delivery;
                return Ok(());
            }
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(Error::broker("basic.ack"))?;
        }
    }

    /// At a takeover: each schedule's missed ticks under its catch-up policy; a schedule
    /// never run before starts now.
    async fn catch_up(&mut self, client: &Client) -> Result<(), Error> {
        let now = Utc::now();
        for entry in self.entries {
            let name = entry.periodic.name();
            if let Some(last) = self.last(name) {
                let missed = entry.periodic.missed(last, now);
                if !missed.is_empty() && self.pauses.is_paused(name) {
                    info!(
                        schedule = name,
                        missed = missed.len(),
                        "missed ticks skipped: the schedule is paused"
                    );
                } else {
                    for tick in missed {
                        info!(schedule = name, %tick, "enqueueing a missed tick");
                        self.enqueue(entry, tick, client).await?;
                    }
                }
            }
            let last = self.last(name).map_or(now, |last| last.max(now));
            self.state
                .last
                .insert(name.to_string(), last.timestamp_millis());
        }
        self.checkpoint().await
    }

    /// Sleeps to the next tick of any schedule, enqueues what is due, checkpoints.
    async fn tick_loop(&mut self, client: &Client, shutdown: &mut Shutdown) -> Result<(), Error> {
        loop {
            let due = self
                .entries
                .iter()
                .filter_map(|e| e.periodic.next_after(self.last(e.periodic.name())?))
                .min();
            let wait = due.map_or(Duration::from_secs(3600), |due| {
                (due - Utc::now()).to_std().unwrap_or_default()
            });
            tokio::select! {
                biased;
                lost = self.consumer.next() => {
                    // Nothing arrives while the token is held: this is the channel closing.
                    warn!(event = ?lost.map(|d| d.map(|_| ())), "the scheduler's consumer ended");
                    return Err(Error::ConsumerCancelled { queue: self.settings.queue().to_string() });
                }
                changed = self.pauses.next() => {
                    changed?;
                    continue;
                }
                () = tokio::time::sleep(wait) => {}
                () = shutdown.requested() => return Ok(()),
            }
            self.still_active().await?;
            let now = Utc::now();
            for entry in self.entries {
                let name = entry.periodic.name();
                let due = |leader: &Self| {
                    leader
                        .last(name)
                        .and_then(|last| entry.periodic.next_after(last))
                        .filter(|tick| *tick <= now)
                };
                if due(self).is_some() && self.pauses.is_paused(name) {
                    while let Some(tick) = due(self) {
                        debug!(schedule = name, %tick, "tick skipped: the schedule is paused");
                        self.state
                            .last
                            .insert(name.to_string(), tick.timestamp_millis());
                    }
                    continue;
                }
                while let Some(tick) = due(self) {
                    self.enqueue(entry, tick, client).await?;
                }
            }
            self.checkpoint().await?;
        }
    }

    /// A round trip on the token's channel before enqueueing: a process that was frozen (a
    /// silent death the broker already acted on) finds its connection closed here instead of
    /// enqueueing ticks that the new leader owns.
    async fn still_active(&self) -> Result<(), Error> {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = self.settings.queue().into();
        self.channel
            .queue_declare(queue, passive, FieldTable::default())
            .await
            .map_err(Error::broker("queue.declare (passive)"))?;
        Ok(())
    }

    fn last(&self, name: &str) -> Option<DateTime<Utc>> {
        let ms = self.state.last.get(name)?;
        DateTime::from_timestamp_millis(*ms)
    }

    /// Enqueues the tick's job under its deterministic id and records the tick.
    async fn enqueue(
        &mut self,
        entry: &Entry,
        tick: DateTime<Utc>,
        client: &Client,
    ) -> Result<(), Error> {
        let name = entry.periodic.name();
        let id = job_id(name, tick);
        let enqueued = client
            .enqueue_raw_as(entry.job.clone(), &entry.options, id)
            .await?;
        match enqueued {
            Enqueued::New(id) => {
                info!(schedule = name, %tick, job = %entry.job.name, %id, "periodic job enqueued")
            }
            Enqueued::Duplicate(holder) => {
                info!(schedule = name, %tick, job = %entry.job.name, %holder, "periodic job skipped: a job holds its unique lock")
            }
        }
        self.state
            .last
            .insert(name.to_string(), tick.timestamp_millis());
        self.state
            .ran
            .insert(name.to_string(), tick.timestamp_millis());
        Ok(())
    }
}
