//! The recorder as a long-running task (the dashboard's): a consumer on the failed queue and
//! one on the events queue, each message recorded and then acked, and the upkeep on a timer,
//! all in one `select!` loop that a [`Shutdown`] ends. Around it, a reconnect loop: a broker
//! error (a restart, a cut connection, a cancelled consumer) makes it connect again with
//! backoff and resume, so a dashboard never stops recording without a word.

use futures_lite::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
    Consumer,
};
use palermo::{
    admin::reconnect::{self, Schedule},
    shutdown::Shutdown,
};
use tracing::{info, warn};

use super::{message, Recorder};
use crate::error::{Result, StoreError};

/// How long the recorder waits after a database error before taking the next message.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

impl Recorder {
    /// Records until `shutdown` is requested, reconnecting whenever the broker connection
    /// drops. Unacked messages go back to their queue (and are recorded once: inserts are
    /// idempotent).
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<()> {
        let mut schedule: Option<Schedule> = None;
        loop {
            let started = std::time::Instant::now();
            let lost = match self.record(&mut shutdown).await {
                Ok(()) => break,
                Err(e) => e,
            };
            if shutdown.is_requested() {
                break;
            }
            warn!(error = %lost, "the recorder lost the broker; reconnecting");
            let attempts = Schedule::resume(&mut schedule, self.config.reconnect, started);
            let config = &self.config;
            let reopened =
                reconnect::retry_until(attempts, None, "recorder", || super::open(config));
            let (connection, channel) = tokio::select! {
                () = shutdown.requested() => break,
                opened = reopened => match opened {
                    Ok(opened) => opened,
                    // Without a deadline it only ends with a connection.
                    Err(_) => break,
                },
            };
            let old = std::mem::replace(&mut self.connection, connection);
            self.channel = channel;
            if old.status().connected() {
                let _ = old.close(200, "reconnected".into()).await;
            }
            info!(after = ?attempts.elapsed(), attempts = attempts.attempts(), "the recorder reconnected to the broker");
        }
        if self.connection.status().connected() {
            let _ = self.connection.close(200, "recorder stopped".into()).await;
        }
        info!("recorder stopped");
        Ok(())
    }

    /// Records on the current connection until a stop (`Ok`) or a broker error (`Err`).
    async fn record(&self, shutdown: &mut Shutdown) -> Result<()> {
        let channel = palermo::admin::broker::confirm_channel(&self.connection).await?;
        channel
            .basic_qos(self.config.batch.max(1), BasicQosOptions::default())
            .await
            .map_err(broker("basic.qos"))?;
        let mut failed = consume(&channel, &self.config.deployment.failed_queue, "failed").await?;
        let mut events =
            consume(&channel, &self.config.deployment.events_exchange, "events").await?;
        let batches_queue = self.config.deployment.batches_queue();
        let mut batches = consume(&channel, &batches_queue, "batches").await?;
        let mut upkeep = tokio::time::interval(self.config.maintenance_interval);
        info!(failed_queue = %self.config.deployment.failed_queue, events = %self.config.deployment.events_exchange, "recorder running");
        let result = loop {
            tokio::select! {
                () = shutdown.requested() => break Ok(()),
                delivery = failed.next() => match delivery {
                    Some(Ok(delivery)) => {
                        if let Err(e) = self.record_failure(&delivery).await {
                            break Err(e);
                        }
                    }
                    Some(Err(e)) => break Err(broker("basic.consume")(e)),
                    None => break Err(cancelled(&self.config.deployment.failed_queue)),
                },
                delivery = events.next() => match delivery {
                    Some(Ok(delivery)) => {
                        if let Err(e) = self.record_event(&delivery).await {
                            break Err(e);
                        }
                    }
                    Some(Err(e)) => break Err(broker("basic.consume")(e)),
                    None => break Err(cancelled(&self.config.deployment.events_exchange)),
                },
                delivery = batches.next() => match delivery {
                    Some(Ok(delivery)) => {
                        if let Err(e) = self.record_batch(&delivery).await {
                            break Err(e);
                        }
                    }
                    Some(Err(e)) => break Err(broker("basic.consume")(e)),
                    None => break Err(cancelled(&batches_queue)),
                },
                _ = upkeep.tick() => {
                    if let Err(e) = self.maintain().await {
                        warn!(error = %e, "recorder upkeep failed; trying again at the next tick");
                    }
                }
            }
        };
        if channel.status().connected() {
            let _ = channel.close(200, "recorder stopped".into()).await;
        }
        result
    }

    async fn record_failure(&self, delivery: &Delivery) -> Result<()> {
        let failure = message::failure(&delivery.properties, &delivery.data);
        match self
            .store
            .insert_failures(std::slice::from_ref(&failure))
            .await
        {
            Ok(_) => match self.record_batch_failure(delivery).await {
                Ok(()) => {
                    self.committed();
                    ack(delivery).await
                }
                Err(e) => give_back(delivery, e).await,
            },
            Err(e) => give_back(delivery, e).await,
        }
    }

    async fn record_batch(&self, delivery: &Delivery) -> Result<()> {
        match self.record_batch_event(delivery).await {
            Ok(()) => ack(delivery).await,
            Err(e) => give_back(delivery, e).await,
        }
    }

    async fn record_event(&self, delivery: &Delivery) -> Result<()> {
        match message::event(&delivery.data) {
            Ok(beat) if !self.is_current(&beat) => {}
            Ok(beat) => {
                if let Err(e) = self.store.record_heartbeat(&beat).await {
                    return give_back(delivery, e).await;
                }
            }
            Err(reason) => warn!(%reason, "dropping an unreadable event"),
        }
        ack(delivery).await
    }
}

/// A database error is not the message's fault: it goes back to its queue, and the recorder
/// pauses a moment (a restarting database) rather than spin on it.
async fn give_back(delivery: &Delivery, error: StoreError) -> Result<()> {
    warn!(error = %error, "could not record a message; returning it to its queue");
    delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .map_err(broker("basic.nack"))?;
    tokio::time::sleep(RETRY_PAUSE).await;
    Ok(())
}

async fn consume(channel: &lapin::Channel, queue: &str, what: &str) -> Result<Consumer> {
    channel
        .basic_consume(
            queue.into(),
            format!("palermo-recorder:{what}:{}", std::process::id())
                .as_str()
                .into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker("basic.consume"))
}

async fn ack(delivery: &Delivery) -> Result<()> {
    delivery
        .ack(BasicAckOptions::default())
        .await
        .map_err(broker("basic.ack"))?;
    Ok(())
}

fn broker(operation: &'static str) -> impl FnOnce(lapin::Error) -> StoreError {
    move |source| StoreError::Broker(palermo::Error::broker(operation)(source))
}

/// The broker cancelled the recorder's consumer on `queue` (deleted, or a node went away).
fn cancelled(queue: &str) -> StoreError {
    StoreError::Broker(palermo::Error::ConsumerCancelled {
        queue: queue.to_string(),
    })
}
