//! One concurrency slot: a channel with prefetch 1 for the whole channel and a consumer on
//! each queue, so the slot never holds more than one unacked delivery, whichever queue it
//! came from.

use std::sync::Arc;

use futures_lite::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::{FieldTable, ShortString},
    Channel,
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{execute, Shared};
use crate::{error::Error, shutdown::Shutdown, wire};

/// A started slot: its consumers are registered.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    channel: Channel,
    tags: Vec<ShortString>,
    deliveries: mpsc::Receiver<Result<Delivery, lapin::Error>>,
}

impl Slot {
    /// Sets prefetch 1 on the channel and consumes every queue of the worker.
    pub async fn start(
        shared: Arc<Shared>,
        channel: Channel,
        number: usize,
    ) -> Result<Self, Error> {
        channel
            .basic_qos(1, BasicQosOptions { global: true })
            .await
            .map_err(Error::broker("basic.qos"))?;
        // Deliveries of all the slot's consumers meet here. The broker sends the channel at
        // most one unacked delivery, so this buffer never holds more than one.
        let (tx, deliveries) = mpsc::channel(2);
        let mut tags = Vec::new();
        for queue in &shared.config.queues {
            let tag = consumer_tag(&shared.identity, number, queue);
            let mut consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.clone(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(Error::broker("basic.consume"))?;
            tags.push(tag);
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(delivery) = consumer.next().await {
                    if tx.send(delivery).await.is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Self {
            shared,
            channel,
            tags,
            deliveries,
        })
    }

    /// Runs jobs until a stop is requested (then finishes the running one) or the channel
    /// fails.
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<(), Error> {
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
        let result = loop {
            let delivery = tokio::select! {
                biased;
                () = shutdown.requested() => break Ok(()),
                delivery = self.deliveries.recv() => delivery,
            };
            match delivery {
                Some(Ok(delivery)) => execute::execute(&self.shared, &self.channel, delivery).await,
                Some(Err(e)) => {
                    break Err(Error::Broker {
                        operation: "basic.consume",
                        source: e,
                    })
                }
                None => {
                    break Err(Error::Config(
                        "the broker cancelled the slot's consumers".into(),
                    ))
                }
            }
        };
        if result.is_ok() {
            self.hand_back_unstarted().await;
        }
        canceller.abort();
        result
    }

    /// After a stop, returns deliveries that arrived but were not started to the queue.
    async fn hand_back_unstarted(&mut self) {
        let wait = std::time::Duration::from_secs(2);
        while let Ok(Some(delivery)) = tokio::time::timeout(wait, self.deliveries.recv()).await {
            let Ok(delivery) = delivery else { break };
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

/// `palermo:host:pid:queues:slot:queue`, cut to AMQP's 255 bytes; it contains the pid.
fn consumer_tag(identity: &str, slot: usize, queue: &str) -> ShortString {
    let tag = format!("palermo:{identity}:{slot}:{queue}");
    ShortString::try_new(wire::truncate_bytes(&tag, 255)).unwrap_or_default()
}
