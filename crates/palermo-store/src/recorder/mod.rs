//! The recorder: moves what workers send over AMQP into the store.
//!
//! - Failed jobs, from the failed queue (`palermo.failed`) into the failures table. A message
//!   is acked only after the transaction holding its row has committed; if the recorder dies
//!   in between, the broker redelivers it and the insert, keyed by the failure id, does
//!   nothing. So a failure is never lost and never recorded twice.
//! - Heartbeats and offline events, from the events queue (`palermo.events`) into the workers
//!   table and the statistics. Events are acked after their transaction too; one that cannot
//!   be read is logged and dropped (the next heartbeat replaces it).
//! - Batch events, from the batches queue ([`palermo::Deployment::batches_queue`]), and the
//!   failures of batch members, into the batches tables; a batch that finished has its
//!   callbacks published by exactly one recorder (`crate::batches`). Finished batches are
//!   pruned after [`RecorderConfig::batch_retention`].
//! - Upkeep: workers silent for [`RecorderConfig::missed_heartbeats`] intervals are marked
//!   gone; old workers, resolved failures and minute statistics are pruned; and, when asked
//!   for, old failures by the retention policy ([`RecorderConfig::failure_max_age`],
//!   [`RecorderConfig::failure_max_count`]), each such prune recorded (`crate::prunes`).
//!
//! [`Recorder::drain`] records what is queued now and returns: every CLI command does that
//! before it reads, so the CLI works without a dashboard. [`Recorder::run`] keeps consuming
//! until told to stop: the dashboard runs it. Both may run at once, any number of them.
//! [`Recorder::run`] survives broker restarts: when its connection drops it reconnects with
//! [`RecorderConfig::reconnect`] backoff, declares its queues again and goes on; what it had
//! not acked is redelivered and recorded once (inserts are idempotent).

mod batches;
pub mod message;
mod run;

use std::{collections::HashMap, time::Duration};

use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicGetOptions},
    Channel, Connection,
};
use tracing::{debug, info, warn};

use palermo::admin::{reconnect, topology};

use crate::{
    error::{Result, StoreError},
    time, Store,
};

/// How the recorder runs. Environment variables and flags are read by the binaries only.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// The deployment whose failed queue and events exchange (on its broker, of its queue
    /// type) are recorded; retries go back with its priority queues. Defaults to
    /// [`palermo::Deployment::default`].
    pub deployment: palermo::Deployment,
    /// Heartbeat intervals of silence after which a worker is marked gone. Defaults to 3.
    pub missed_heartbeats: u32,
    /// How long a stopped or gone worker stays listed. Defaults to 1 hour.
    pub prune_workers_after: Duration,
    /// How long a retried or removed failure is kept for the history. Defaults to 7 days.
    pub resolved_retention: Duration,
    /// How long minute statistics are kept (totals are kept for ever). Defaults to 7 days.
    pub stats_retention: Duration,
    /// Failures, open or resolved, that failed longer ago than this are deleted for good (and
    /// the prune recorded). Defaults to `None`: a failure stays until retried or removed.
    pub failure_max_age: Option<Duration>,
    /// At most this many failures, open or resolved, are kept: older ones beyond the newest
    /// N are deleted for good (and the prune recorded). Defaults to `None`: no cap.
    pub failure_max_count: Option<u64>,
    /// Finished batches whose callbacks fired are deleted, with their members, this long
    /// after they finished. Defaults to 7 days.
    pub batch_retention: Duration,
    /// A callback a recorder took to publish but did not mark fired within this time (it
    /// died in between) is taken and published again by the next upkeep; the broker lock
    /// each callback publish takes ([`crate::batches::CALLBACK_LOCK`]) drops that second
    /// copy. Defaults to 30 s; at most 1 hour.
    pub batch_firing_lease: Duration,
    /// How often [`Recorder::run`] marks gone workers and prunes. Defaults to 1 s.
    pub maintenance_interval: Duration,
    /// Messages recorded per transaction when draining, and the prefetch of
    /// [`Recorder::run`]. Defaults to 200.
    pub batch: u16,
    /// The delays between attempts of [`Recorder::run`] to reconnect after the broker
    /// connection drops. Defaults to [`palermo::admin::reconnect::DEFAULT_BACKOFF`]: 250 ms doubling
    /// up to 5 s, plus 0–25 %.
    pub reconnect: palermo::Backoff,
    /// Test hook: end the process (exit code 70) right after the first commit, before its
    /// ack, as a crash would.
    #[doc(hidden)]
    pub crash_after_commit: bool,
    /// Test hook: end the process (exit code 70) right after publishing a batch callback,
    /// before marking it fired.
    #[doc(hidden)]
    pub crash_after_callback: bool,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            deployment: palermo::Deployment::default(),
            missed_heartbeats: 3,
            prune_workers_after: Duration::from_secs(3600),
            resolved_retention: Duration::from_secs(7 * 86_400),
            stats_retention: Duration::from_secs(7 * 86_400),
            failure_max_age: None,
            failure_max_count: None,
            batch_retention: Duration::from_secs(7 * 86_400),
            batch_firing_lease: Duration::from_secs(30),
            maintenance_interval: Duration::from_secs(1),
            batch: 200,
            reconnect: reconnect::DEFAULT_BACKOFF,
            crash_after_commit: false,
            crash_after_callback: false,
        }
    }
}

impl RecorderConfig {
    /// Checks the settings before anything connects; the error says what to change. A zero
    /// interval or batch would otherwise panic or stall deep inside the recorder.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(StoreError::InvalidConfig(reason));
        self.deployment.validate()?;
        if self.missed_heartbeats == 0 {
            return invalid("missed_heartbeats is 0; give at least 1 (the default is 3)".into());
        }
        if self.maintenance_interval.is_zero() {
            return invalid(
                "maintenance_interval is zero; give a positive interval such as 1 s (the default)"
                    .into(),
            );
        }
        if self.batch_firing_lease.is_zero() || self.batch_firing_lease > Duration::from_secs(3600)
        {
            return invalid(
                "batch_firing_lease must be between 1 ms and 1 hour (far below the callbacks' 1-day lock, which drops a second publish); the default is 30 s"
                    .into(),
            );
        }
        if self.batch == 0 {
            return invalid("batch is 0; give at least 1 (the default is 200)".into());
        }
        if self.failure_max_age.is_some_and(|age| age.is_zero()) {
            return invalid(
                "failure_max_age is zero, which would delete every failure; give an age such as 90 days, or none to keep failures"
                    .into(),
            );
        }
        if self.failure_max_count == Some(0) {
            return invalid(
                "failure_max_count is 0, which would delete every failure; give at least 1, or none for no cap"
                    .into(),
            );
        }
        reconnect::validate(&self.reconnect).map_err(StoreError::Broker)
    }
}

/// What one [`Recorder::drain`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Messages taken from the failed queue.
    pub failures: u64,
    /// Of those, failures new to the store.
    pub new_failures: u64,
    /// Events taken from the events queue (unreadable ones included).
    pub events: u64,
    /// Batch events taken from the batches queue (unreadable ones included).
    pub batch_events: u64,
}

/// Records into a [`Store`] from one broker connection.
pub struct Recorder {
    store: Store,
    config: RecorderConfig,
    connection: Connection,
    channel: Channel,
    /// Publishes batch callbacks.
    client: palermo::Client,
}

impl Recorder {
    /// Connects to the broker and declares the failed queue and the events exchange and
    /// queue (so nothing sent before the first worker started is dropped).
    pub async fn connect(store: Store, config: RecorderConfig) -> Result<Recorder> {
        config.validate()?;
        let (connection, channel) = open(&config).await?;
        let client_config = palermo::ClientConfig::new(config.deployment.clone());
        let client = palermo::Client::connect_with(&client_config).await?;
        Ok(Recorder {
            store,
            config,
            connection,
            channel,
            client,
        })
    }

    /// The broker connection, for other admin work (retries, queue depths).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The store it records into.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records everything queued now, then does the upkeep, and returns.
    pub async fn drain(&self) -> Result<Drained> {
        let mut drained = Drained::default();
        loop {
            let batch = self.get_batch(&self.config.deployment.failed_queue).await?;
            let Some(last) = batch.last() else { break };
            let failures: Vec<_> = batch
                .iter()
                .map(|d| message::failure(&d.properties, &d.data))
                .collect();
            drained.new_failures += self.store.insert_failures(&failures).await?;
            for delivery in &batch {
                self.record_batch_failure(delivery).await?;
            }
            self.committed();
            ack_up_to(last).await?;
            drained.failures += batch.len() as u64;
        }
        loop {
            let batch = self
                .get_batch(&self.config.deployment.events_exchange)
                .await?;
            let Some(last) = batch.last() else { break };
            self.record_events(&batch).await?;
            ack_up_to(last).await?;
            drained.events += batch.len() as u64;
        }
        let batches_queue = self.config.deployment.batches_queue();
        loop {
            let batch = self.get_batch(&batches_queue).await?;
            let Some(last) = batch.last() else { break };
            for delivery in &batch {
                self.record_batch_event(delivery).await?;
            }
            ack_up_to(last).await?;
            drained.batch_events += batch.len() as u64;
        }
        self.maintain().await?;
        if drained.failures > 0 || drained.events > 0 || drained.batch_events > 0 {
            debug!(?drained, "drained the failed and events queues");
        }
        Ok(drained)
    }

    /// Marks silent workers gone and prunes what is past its retention.
    pub async fn maintain(&self) -> Result<()> {
        let now = time::now_ms();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let gone = self
            .store
            .mark_gone(now, self.config.missed_heartbeats)
            .await?;
        if gone > 0 {
            info!(
                workers = gone,
                "workers marked gone after missed heartbeats"
            );
        }
        self.store
            .prune_workers(now.saturating_sub(ms(self.config.prune_workers_after)))
            .await?;
        self.store
            .prune_resolved(now.saturating_sub(ms(self.config.resolved_retention)))
            .await?;
        self.store
            .prune_stats(now.saturating_sub(ms(self.config.stats_retention)))
            .await?;
        for batch in self.store.batches_waiting().await? {
            self.fire_due(&batch).await?;
        }
        let pruned = self
            .store
            .prune_batches(now.saturating_sub(ms(self.config.batch_retention)))
            .await?;
        if pruned > 0 {
            debug!(batches = pruned, "finished batches pruned");
        }
        self.apply_retention(now).await
    }

    /// The failure retention policy, when one is set: each prune that deleted something is
    /// recorded and logged.
    async fn apply_retention(&self, now: i64) -> Result<()> {
        use crate::prunes::{Rule, RETENTION_ACTOR};
        let mut rules = Vec::new();
        if let Some(age) = self.config.failure_max_age {
            let before = now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
            rules.push((
                Rule::FailedBefore(before),
                format!("older than {}", time::format_duration(age)),
            ));
        }
        if let Some(keep) = self.config.failure_max_count {
            rules.push((
                Rule::BeyondNewest(keep),
                format!("beyond the newest {keep}"),
            ));
        }
        for (rule, text) in rules {
            let prune = self
                .store
                .prune_failures(rule, &text, RETENTION_ACTOR, now, false)
                .await?;
            if prune.pruned > 0 {
                warn!(failures = prune.pruned, rule = %text, "failures pruned by the retention policy");
            }
        }
        Ok(())
    }

    /// Up to `batch` messages from `queue`, unacked.
    async fn get_batch(&self, queue: &str) -> Result<Vec<Delivery>> {
        let mut batch = Vec::new();
        while batch.len() < usize::from(self.config.batch.max(1)) {
            let got = self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(palermo::Error::broker("basic.get"))?;
            match got {
                Some(message) => batch.push(message.delivery),
                None => break,
            }
        }
        Ok(batch)
    }

    /// Records events; of several from one worker run only the newest counts (each carries
    /// the whole state and cumulative counters), which keeps a long backlog cheap.
    async fn record_events(&self, batch: &[Delivery]) -> Result<()> {
        let mut newest = HashMap::new();
        for delivery in batch {
            match message::event(&delivery.data) {
                Ok(beat) => {
                    let entry = newest.entry(beat.id).or_insert_with(|| beat.clone());
                    if beat.seq > entry.seq {
                        *entry = beat;
                    }
                }
                Err(reason) => warn!(%reason, "dropping an unreadable event"),
            }
        }
        for beat in newest.values().filter(|beat| self.is_current(beat)) {
            self.store.record_heartbeat(beat).await?;
        }
        Ok(())
    }

    /// Whether an event is recent enough to record. One older than the time a finished
    /// worker stays listed could belong to a run already pruned, whose counters would then
    /// be counted a second time.
    fn is_current(&self, beat: &palermo::admin::wire::event::Heartbeat) -> bool {
        let horizon =
            i64::try_from(self.config.prune_workers_after.as_millis()).unwrap_or(i64::MAX);
        let current = beat.sent_at >= time::now_ms().saturating_sub(horizon);
        if !current {
            debug!(worker = %beat.identity, sent_at = beat.sent_at, "dropping an event older than the worker retention");
        }
        current
    }

    fn crash_after_publish(&self) {
        if self.config.crash_after_callback {
            warn!(
                "crash_after_callback is set: exiting between the callback's publish and its mark"
            );
            std::process::exit(70);
        }
    }

    fn committed(&self) {
        if self.config.crash_after_commit {
            warn!("crash_after_commit is set: exiting between the commit and the ack");
            std::process::exit(70);
        }
    }
}

/// Connects and declares the exchange, the failed queue and the events exchange and queue.
async fn open(config: &RecorderConfig) -> Result<(Connection, Channel)> {
    let deployment = &config.deployment;
    let connection =
        palermo::admin::broker::connect(&deployment.amqp_url, "palermo recorder").await?;
    let channel = palermo::admin::broker::confirm_channel(&connection).await?;
    topology::declare_exchange(&channel).await?;
    topology::declare_queue(&channel, &deployment.failed_queue, deployment.queue_type).await?;
    topology::declare_events(&channel, &deployment.events_exchange, deployment.queue_type).await?;
    let batches = deployment.batches_queue();
    topology::declare_queue(&channel, &batches, deployment.queue_type).await?;
    Ok((connection, channel))
}

async fn ack_up_to(last: &Delivery) -> Result<()> {
    last.ack(BasicAckOptions { multiple: true })
        .await
        .map_err(palermo::Error::broker("basic.ack"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        RecorderConfig::default().validate().expect("defaults");
    }

    #[test]
    fn validate_says_what_to_change() {
        let bad = |change: fn(&mut RecorderConfig), expected: &str| {
            let mut config = RecorderConfig::default();
            change(&mut config);
            let err = config.validate().expect_err(expected).to_string();
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        };
        // A zero interval used to reach tokio::time::interval, which panics.
        bad(
            |c| c.maintenance_interval = Duration::ZERO,
            "maintenance_interval is zero",
        );
        bad(|c| c.missed_heartbeats = 0, "missed_heartbeats is 0");
        bad(|c| c.batch = 0, "batch is 0");
        bad(
            |c| c.batch_firing_lease = Duration::ZERO,
            "batch_firing_lease must be between",
        );
        bad(
            |c| c.failure_max_age = Some(Duration::ZERO),
            "failure_max_age is zero",
        );
        bad(|c| c.failure_max_count = Some(0), "failure_max_count is 0");
        bad(
            |c| c.deployment.failed_queue = "amq.failed".into(),
            "--failed-queue",
        );
        bad(
            |c| c.deployment.events_exchange = String::new(),
            "--events-exchange",
        );
        bad(|c| c.reconnect.base = Duration::ZERO, "reconnect backoff");
        bad(
            |c| c.reconnect.max = Duration::from_secs(3600),
            "10 minutes or less",
        );
    }
}
