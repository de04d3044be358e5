//! Heartbeats: how the admin side learns which workers are alive and what they are doing,
//! while workers keep speaking only AMQP.
//!
//! Every `heartbeat_interval` (5 s by default) a worker publishes a [`Heartbeat`] as JSON to
//! the `palermo.events` topic exchange with routing key `worker.heartbeat`; on a clean stop it
//! publishes a last one with routing key `worker.offline` and waits for its confirm. The
//! recorder in `palermo-store` reads them from the durable queue of the same name, and marks a
//! worker gone once three heartbeats are missing. docs/wire-format.md describes the message.
//!
//! The heartbeat follows the worker's connection (`link::Link`) across reconnects, keeping
//! its run id and counters; while the worker is disconnected, beats are skipped (the admin
//! side sees the worker go quiet, then come back).
//!
//! A heartbeat to a deleted events exchange closes the channel (`404 NOT_FOUND`) a moment
//! after the publish. So shortly after each beat the sender looks again ([`RECHECK`]): if the
//! channel died, it opens a new one at once, which declares the exchange, queue and binding
//! again, and sends the beat again; heartbeats thus come back within about one interval.

use std::{sync::Arc, time::Duration};

use lapin::{options::BasicPublishOptions, BasicProperties, Channel, PublisherConfirm};
use tokio::{sync::oneshot, task::JoinHandle};
use tracing::{debug, warn};

use super::{link::Link, stats::Snapshot, Shared};
use crate::{
    broker,
    broker::topology,
    error::Error,
    wire::{
        self,
        event::{
            Heartbeat, EVENT_TYPE, EVENT_VERSION, HEARTBEAT_KEY, OFFLINE_KEY, TIMING_BOUNDS_MS,
        },
    },
};

/// How long a clean stop waits for the broker to confirm the offline event.
const OFFLINE_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after a beat the sender checks that its channel survived it.
const RECHECK: Duration = Duration::from_millis(300);

/// The running heartbeat task of a worker.
pub(crate) struct Heart {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Sender>,
}

/// Builds and publishes events for one run of a worker.
struct Sender {
    shared: Arc<Shared>,
    link: Link,
    /// The channel on the worker's connection; `None` after it died, until the next beat
    /// opens one on the current connection.
    channel: Option<Channel>,
    started_at: i64,
    seq: u64,
}

/// Declares the events exchange and queue and starts beating (the first heartbeat goes out
/// at once).
pub(crate) async fn start(shared: Arc<Shared>, link: Link) -> Result<Heart, Error> {
    let channel = open(&shared, &link).await?;
    let mut sender = Sender {
        shared,
        link,
        channel: Some(channel),
        started_at: wire::now_ms(),
        seq: 0,
    };
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(sender.shared.config.heartbeat_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recheck = None;
        let mut control = sender.shared.control.subscribe();
        let mut blocked = sender.shared.blocked.changes();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                // What the worker applied of a command shows within a second, not a beat.
                Ok(()) = control.changed() => {
                    sender.beat().await;
                    recheck = Some(tokio::time::Instant::now() + RECHECK);
                }
                _ = ticks.tick() => {
                    // Not waiting for the confirm: a lost heartbeat is replaced by the next.
                    sender.beat().await;
                    recheck = Some(tokio::time::Instant::now() + RECHECK);
                }
                // A block (or its end) is reported at once, not at the next tick: the beat
                // composed now says why, and waits in lapin until the broker reads again.
                Ok(()) = blocked.changed() => {
                    sender.beat().await;
                    recheck = Some(tokio::time::Instant::now() + RECHECK);
                }
                () = sleep_until(recheck), if recheck.is_some() => {
                    recheck = None;
                    if sender.channel.as_ref().is_some_and(|c| !c.status().connected()) {
                        warn!("the heartbeat channel closed (events exchange deleted?); declaring it again");
                        sender.beat().await;
                    }
                }
            }
        }
        sender
    });
    Ok(Heart { stop, task })
}

impl Heart {
    /// Stops beating. After a clean stop (`clean`), publishes the offline event with the final
    /// counters and waits (a few seconds at most) for its confirm.
    pub async fn stop(self, clean: bool) {
        let _ = self.stop.send(());
        let mut sender = match self.task.await {
            Ok(sender) => sender,
            Err(e) => {
                warn!(error = %e, "the heartbeat task ended abnormally");
                return;
            }
        };
        if clean {
            sender.offline().await;
        }
        // Closed here rather than dropped, so that its close is not racing the
        // connection's.
        if let Some(channel) = sender.channel.take().filter(|c| c.status().connected()) {
            if let Err(e) = channel.close(200, "worker stopped".into()).await {
                debug!(error = %e, "closing the heartbeat channel failed");
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

impl Sender {
    async fn beat(&mut self) {
        match self.publish(HEARTBEAT_KEY).await {
            Ok(Some(_)) => {}
            Ok(None) => debug!("disconnected from the broker; heartbeat skipped"),
            Err(e) => warn!(error = %e, "could not publish a heartbeat"),
        }
    }

    /// Publishes the offline event and waits (a few seconds at most) for its confirm.
    async fn offline(&mut self) {
        let sender = self;
        let sent = async {
            let Some(confirm) = sender.publish(OFFLINE_KEY).await? else {
                debug!("disconnected from the broker; no offline event");
                return Ok(());
            };
            let confirmation = confirm.await.map_err(Error::broker("publisher confirm"))?;
            if confirmation.is_nack() {
                return Err(Error::Nacked {
                    queue: sender.shared.config.deployment.events_exchange.clone(),
                });
            }
            Ok(())
        };
        match tokio::time::timeout(OFFLINE_CONFIRM_TIMEOUT, sent).await {
            Ok(Ok(())) => debug!("offline event sent"),
            Ok(Err(e)) => warn!(error = %e, "could not publish the offline event"),
            Err(_) => warn!("the broker did not confirm the offline event in time"),
        }
    }
}

/// Opens a channel on the worker's current connection and declares the events exchange and
/// queue on it.
async fn open(shared: &Shared, link: &Link) -> Result<Channel, Error> {
    let channel = broker::confirm_channel(&link.current().connection).await?;
    let config = &shared.config;
    topology::declare_events(
        &channel,
        &config.deployment.events_exchange,
        config.deployment.queue_type,
    )
    .await?;
    Ok(channel)
}

impl Sender {
    /// The open channel, or a new one; `None` while the worker is disconnected.
    async fn channel(&mut self) -> Option<Channel> {
        if let Some(channel) = self.channel.as_ref().filter(|c| c.status().connected()) {
            return Some(channel.clone());
        }
        self.channel = None;
        if !self.link.current().connection.status().connected() {
            return None;
        }
        match open(&self.shared, &self.link).await {
            Ok(channel) => {
                self.channel = Some(channel.clone());
                Some(channel)
            }
            Err(e) => {
                debug!(error = %e, "cannot open the heartbeat channel yet");
                None
            }
        }
    }

    /// Publishes an event (not mandatory: with no queue bound, nobody is listening);
    /// `None` when disconnected.
    async fn publish(&mut self, key: &str) -> Result<Option<PublisherConfirm>, Error> {
        let Some(channel) = self.channel().await else {
            return Ok(None);
        };
        self.seq += 1;
        let body = serde_json::to_vec(&self.event(key)).map_err(Error::EventSerialize)?;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_type(EVENT_TYPE.into())
            .with_app_id(wire::APP_ID.into())
            .with_timestamp((wire::now_ms() / 1000).max(0) as u64)
            // Offline events are persistent; a heartbeat lost in a broker restart is not missed.
            .with_delivery_mode(if key == OFFLINE_KEY { 2 } else { 1 });
        channel
            .basic_publish(
                self.shared
                    .config
                    .deployment
                    .events_exchange
                    .as_str()
                    .into(),
                key.into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map(Some)
            .map_err(Error::broker("basic.publish"))
    }

    fn event(&self, key: &str) -> Heartbeat {
        let config = &self.shared.config;
        let Snapshot {
            processed,
            failed,
            counters,
            timings,
            jobs,
        } = self.shared.stats.snapshot();
        let applied = self.shared.control.applied();
        Heartbeat {
            version: EVENT_VERSION,
            event: if key == OFFLINE_KEY {
                "offline"
            } else {
                "heartbeat"
            }
            .into(),
            id: self.shared.run_id,
            identity: self.shared.identity.clone(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            queues: config.queues.clone(),
            concurrency: config.concurrency,
            started_at: self.started_at,
            sent_at: wire::now_ms(),
            seq: self.seq,
            interval_ms: u64::try_from(config.heartbeat_interval.as_millis()).unwrap_or(u64::MAX),
            processed,
            failed,
            counters,
            jobs,
            blocked: self.shared.blocked.reason(),
            state: Some(applied.mode.as_str().to_string()),
            paused: applied.paused.into_iter().collect(),
            timing_bounds_ms: if timings.is_empty() {
                Vec::new()
            } else {
                TIMING_BOUNDS_MS.to_vec()
            },
            timings,
            limits: self.shared.limits.tally.report(&self.shared.limits.all()),
        }
    }
}
