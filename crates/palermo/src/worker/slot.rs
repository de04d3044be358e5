//! One concurrency slot: a channel with prefetch 1 for the whole channel and a consumer on
//! each queue, so the slot never holds more than one unacked delivery, whichever queue it
//! came from.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_lite::Stream;
use lapin::{
    message::Delivery,
    options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::{FieldTable, ShortString},
    Channel, Consumer,
};
use tracing::{debug, warn};

use super::{execute, Shared};
use crate::{error::Error, shutdown::Shutdown, wire};

/// A started slot: its consumers are registered.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    channel: Channel,
    tags: Vec<ShortString>,
    deliveries: Deliveries,
}

impl Slot {
    /// Sets prefetch 1 on the channel and consumes every queue of the worker.
    pub async fn start(
        shared: Arc<Shared>,
        channel: Channel,
        number: usize,
    ) -> Result<Self, Error> {
        // Quorum queues refuse channel-wide prefetch (the broker closes the connection), so
        // with them the limit is per consumer: one unacked delivery per queue of the slot.
        let global = shared.config.queue_type == crate::topology::QueueType::Classic;
        channel
            .basic_qos(1, BasicQosOptions { global })
            .await
            .map_err(Error::broker("basic.qos"))?;
        let mut tags = Vec::new();
        let mut consumers = Vec::new();
        for queue in &shared.config.queues {
            let tag = consumer_tag(&shared.identity, number, queue);
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
            shared,
            channel,
            tags,
            deliveries: Deliveries { consumers, next: 0 },
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
                delivery = self.deliveries.next() => delivery,
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
        while let Ok(Some(delivery)) = tokio::time::timeout(wait, self.deliveries.next()).await {
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

/// The slot's consumers, read in the slot's own task: no forwarding task and channel per
/// delivery (that hop was a measurable share of a no-op job's cost, docs/performance.md).
/// Polled in turn, starting after the one that delivered last, so no queue is starved; a
/// consumer the broker cancels is dropped, and the stream ends when all have ended. The
/// broker sends the channel at most one unacked delivery, so at most one is ever waiting.
struct Deliveries {
    consumers: Vec<Consumer>,
    next: usize,
}

impl Deliveries {
    /// The next delivery of any consumer; `None` once every consumer was cancelled.
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
                // Cancelled: forget it, and look at the one now in its place.
                Poll::Ready(None) => {
                    self.consumers.remove(index);
                }
                Poll::Pending => tried += 1,
            }
        }
        if self.consumers.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
