//! One concurrency slot: a channel with a consumer on each queue, running one job at a time.
//! The broker's prefetch limit keeps the slot's unacked deliveries to one (the job it runs)
//! or, with [`crate::WorkerConfig::prefetch`], to that many (the rest wait their turn and go
//! back to the queue unrun at a stop).
//!
//! With one queue the limit is set per consumer, which says the same thing and is what a
//! hand-written consumer does: RabbitMQ settles a per-consumer limit in the queue itself,
//! while for a channel-wide (global) one the queue asks the channel's limiter process before
//! every delivery (docs/performance.md). With several classic queues it is channel-wide, so that
//! the slot holds no more, whichever queue a delivery came from; quorum queues refuse that,
//! so with them it is per consumer, one limit per queue of the slot.
//!
//! A slot runs on one channel until a stop or until that channel dies; `serve` then starts
//! it again on a new one. While a job runs the slot keeps listening to its
//! consumers, so that a channel closed under the job (the broker's `consumer_timeout`, a lost
//! connection) is logged when it happens, naming the job, and not only when the job ends.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures_lite::Stream;
use lapin::{
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::{FieldTable, ShortString},
    Channel, Consumer,
};
use tracing::{debug, error, warn};

use super::{execute, stats::SlotStats, Shared};
use crate::{
    broker::delay, error::Error, limits::gate::Opener, reconnect, shutdown::Shutdown, wire,
};

/// A started slot: its consumers are registered.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    channel: Channel,
    tags: Vec<ShortString>,
    /// The positions in the worker's queues of those it consumes (not paused).
    consumed: Vec<usize>,
    deliveries: Deliveries,
    /// A delivery that arrived while a job ran; with a prefetch above 1, the others wait
    /// in their consumer.
    held: Option<Delivery>,
    /// This slot's share of the worker's stats.
    stats: SlotStats,
    /// Its channel for limits, opened when a limited job first needs it.
    limits: Opener,
}

/// Why [`Slot::run`] returned.
#[derive(Debug)]
pub(crate) enum Ended {
    /// A stop was requested; the running job finished.
    Stopped,
    /// The channel failed (closed by the broker, or its connection died).
    Lost(lapin::Error),
    /// The broker cancelled a consumer (its queue was deleted, a cluster node went away).
    Cancelled,
}

impl Slot {
    /// Sets the prefetch limit and consumes every queue of the worker that is not paused
    /// (none while it is quiet: the slot then waits for its stop).
    pub async fn start(
        shared: Arc<Shared>,
        channel: Channel,
        connection: Arc<lapin::Connection>,
        number: usize,
    ) -> Result<Self, Error> {
        let consumed = shared.control.applied().consumed(&shared.config.queues);
        let config = &shared.config;
        let global = config.queues.len() > 1
            && config.deployment.queue_type == crate::broker::topology::QueueType::Classic;
        channel
            .basic_qos(config.prefetch, BasicQosOptions { global })
            .await
            .map_err(Error::broker("basic.qos"))?;
        let mut tags = Vec::new();
        let mut consumers = Vec::new();
        for &index in &consumed {
            let queue = &shared.config.queues[index];
            let tag = consumer_tag(&shared.tag_prefix, number, index);
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.clone(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(Error::broker("basic.consume"))?;
            tags.push(tag);
            consumers.push(consumer);
        }
        Ok(Self {
            stats: shared.stats.slot(),
            shared,
            channel,
            tags,
            consumed,
            deliveries: Deliveries { consumers, next: 0 },
            held: None,
            limits: Opener::new(connection),
        })
    }

    /// The positions in the worker's queues of those the slot consumes.
    pub fn consumed(&self) -> &[usize] {
        &self.consumed
    }

    /// Runs jobs until a stop is requested (then finishes the running one) or the channel
    /// fails.
    pub async fn run(mut self, shutdown: Shutdown) -> Ended {
        let canceller = {
            let (channel, tags, mut shutdown) =
                (self.channel.clone(), self.tags.clone(), shutdown.clone());
            tokio::spawn(async move {
                shutdown.requested().await;
                for tag in tags {
                    if let Err(e) = channel
                        .basic_cancel(tag, BasicCancelOptions::default())
                        .await
                    {
                        debug!(error = %e, "cancelling a consumer failed");
                    }
                }
            })
        };
        // One wait for the stop for the slot's life, not a new one per delivery.
        let mut stop = shutdown.clone();
        let stop = stop.requested();
        tokio::pin!(stop);
        let ended = loop {
            let delivery = tokio::select! {
                biased;
                () = &mut stop => break Ended::Stopped,
                delivery = self.next_delivery() => delivery,
            };
            match delivery {
                Some(Ok(delivery)) => {
                    if let Some(lost) = self.execute_watching(delivery, &shutdown).await {
                        break lost;
                    }
                }
                Some(Err(e)) => break Ended::Lost(e),
                None => break Ended::Cancelled,
            }
        };
        match ended {
            Ended::Stopped => {
                self.hand_back_unstarted().await;
                // No job runs on the channel now; closing it returns at once whatever a
                // consumer still held (with several queues, the stream ends at the first
                // cancelled one).
                if let Err(e) = self.channel.close(200, "worker stopping".into()).await {
                    debug!(error = %e, "closing the slot's channel failed");
                }
            }
            // The channel lives on without its consumers: close it, so that what it holds
            // unacked goes back to the queue now.
            Ended::Cancelled => {
                if let Err(e) = self.channel.close(200, "consumer cancelled".into()).await {
                    debug!(error = %e, "closing the slot's channel failed");
                }
            }
            Ended::Lost(_) => {}
        }
        canceller.abort();
        ended
    }

    /// The held delivery, else the next from the consumers. Cancel-safe.
    async fn next_delivery(&mut self) -> Option<Result<Delivery, lapin::Error>> {
        match self.held.take() {
            Some(held) => Some(Ok(held)),
            None => self.deliveries.next().await,
        }
    }

    /// Runs one delivery to its end while listening to the consumers: a delivery that
    /// arrives meanwhile is held for next, and the channel's death is logged at once (the job
    /// still runs to its end; its message is already back in the queue).
    async fn execute_watching(&mut self, delivery: Delivery, shutdown: &Shutdown) -> Option<Ended> {
        let started = Instant::now();
        let run = execute::execute(
            &self.shared,
            &self.channel,
            &delivery,
            &mut self.stats,
            &mut self.limits,
        );
        tokio::pin!(run);
        let (mut lost, mut watching) = (None, true);
        loop {
            tokio::select! {
                // The run first: when it is done, the consumers are not polled for nothing
                // (a delivery that came meanwhile waits in its consumer for next).
                biased;
                () = &mut run => return lost,
                event = self.deliveries.next(), if watching && self.held.is_none() => {
                    let ended = match event {
                        Some(Ok(delivery)) => {
                            self.held = Some(delivery);
                            continue;
                        }
                        Some(Err(e)) => Ended::Lost(e),
                        // Cancelled by the stop, not by the broker.
                        None if shutdown.is_requested() => {
                            watching = false;
                            continue;
                        }
                        None => Ended::Cancelled,
                    };
                    watching = false;
                    // Read from the message only now: the labels cost allocations that a
                    // job whose channel lives (nearly all of them) never needs.
                    log_lost_under_job(&JobLabel::of(&delivery, started), &ended);
                    lost = Some(ended);
                }
            }
        }
    }

    /// After a stop, returns deliveries that arrived but were not started to the queue.
    async fn hand_back_unstarted(&mut self) {
        if self.deliveries.consumers.is_empty() {
            return;
        }
        let wait = std::time::Duration::from_secs(2);
        loop {
            let delivery = match self.held.take() {
                Some(held) => held,
                None => match tokio::time::timeout(wait, self.deliveries.next()).await {
                    Ok(Some(Ok(delivery))) => delivery,
                    _ => break,
                },
            };
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            if let Err(e) = delivery.nack(requeue).await {
                warn!(error = %e, "returning an unstarted job to its queue failed; the broker will redeliver it");
            }
        }
    }
}

/// What the logs say about the job a slot was running.
pub(crate) struct JobLabel {
    id: String,
    name: String,
    queue: String,
    started: Instant,
}

impl JobLabel {
    /// Reads what it can, even of a malformed message, that started at `started`.
    pub fn of(delivery: &Delivery, started: Instant) -> Self {
        let properties = &delivery.properties;
        let text = |value: &Option<lapin::types::ShortString>| {
            value.as_ref().map(|v| v.to_string()).unwrap_or_default()
        };
        let routing_key = delivery.routing_key.as_str();
        Self {
            id: text(properties.message_id()),
            name: text(properties.kind()),
            queue: delay::destination(routing_key)
                .unwrap_or(routing_key)
                .to_string(),
            started,
        }
    }
}

/// Logs, once and as it happens, that the channel of a running job died.
pub(crate) fn log_lost_under_job(job: &JobLabel, ended: &Ended) {
    let running_for = job.started.elapsed();
    match ended {
        Ended::Lost(e) if reconnect::is_consumer_timeout(e) => error!(
            job.id = %job.id, job.name = %job.name, queue = %job.queue, ?running_for, error = %e,
            "RabbitMQ's consumer_timeout closed the channel of a running job: it stayed unacked \
             longer than the broker allows (30 minutes by default). The broker puts it back in \
             the queue and it will run again; this run goes on but cannot be acked. Keep jobs \
             shorter (job_timeout, #[job(timeout)]) or raise consumer_timeout in rabbitmq.conf, \
             e.g. `consumer_timeout = 7200000` for 2 hours (docs/reliability.md)"
        ),
        Ended::Lost(e) => warn!(
            job.id = %job.id, job.name = %job.name, queue = %job.queue, ?running_for, error = %e,
            "the channel closed under a running job; it runs to its end but cannot be acked, so the broker runs it again"
        ),
        Ended::Cancelled => warn!(
            job.id = %job.id, job.name = %job.name, queue = %job.queue, ?running_for,
            "the broker cancelled the consumer of a running job (was its queue deleted?); the job runs to its end"
        ),
        Ended::Stopped => {}
    }
}

/// `palermo:host:pid:slot:n` for the slot's `n`th queue (from 0), cut to AMQP's 255 bytes.
///
/// The queue is not repeated in it: every listing of consumers shows each one's queue, and
/// the connection is named after the worker's identity (with its queues). The broker sends
/// the tag with every delivery and lapin hashes it three times per delivery, so with the
/// queue names in it (the bench's are 45 bytes, twice) it cost about 1k instructions per job
/// (docs/performance.md).
fn consumer_tag(prefix: &str, slot: usize, queue: usize) -> ShortString {
    let tag = format!("{prefix}:{slot}:{queue}");
    ShortString::try_new(wire::truncate_bytes(&tag, 255)).unwrap_or_default()
}

/// The slot's consumers, read in the slot's own task: no forwarding task and channel per
/// delivery (that hop was a measurable share of a no-op job's cost, docs/performance.md).
/// Polled in turn, starting after the one that delivered last, so no queue is starved. The
/// stream ends as soon as one consumer ends (the broker cancelled it, or we did at a stop),
/// so that the slot starts over rather than go on without one of its queues. The broker
/// sends the slot at most `prefetch` unacked deliveries, so at most that many ever wait.
struct Deliveries {
    consumers: Vec<Consumer>,
    next: usize,
}

impl Deliveries {
    /// The next delivery of any consumer; `None` once a consumer was cancelled; never, with
    /// no consumer.
    /// Cancel-safe: a delivery is taken only when it is returned.
    async fn next(&mut self) -> Option<Result<Delivery, lapin::Error>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery, lapin::Error>>> {
        let mut tried = 0;
        while tried < self.consumers.len() {
            let index = (self.next + tried) % self.consumers.len();
            match Pin::new(&mut self.consumers[index]).poll_next(cx) {
                Poll::Ready(Some(delivery)) => {
                    self.next = index + 1;
                    return Poll::Ready(Some(delivery));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => tried += 1,
            }
        }
        // With no consumer (every queue paused, or quiet) there is nothing to wait for but
        // the slot's stop.
        Poll::Pending
    }
}
