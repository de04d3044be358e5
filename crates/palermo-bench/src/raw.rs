//! The yardstick: plain lapin doing the same AMQP work as Palermo, with none of its
//! framework.
//!
//! The publisher sends the very bytes Palermo sends (body, properties and `x-palermo-*`
//! headers, built once), persistent, mandatory, through the `palermo` exchange, with a
//! publisher confirm each. The consumer (`palermo-bench raw-worker`, its own process like the
//! Palermo worker) opens one channel per slot with `basic.qos(1)` per consumer (what a
//! hand-written consumer does; `--global-qos` makes it channel-wide), one consumer each, runs
//! the job's work if it has any (the 5 ms nap), and acks every delivery. Whatever Palermo does
//! beyond that is overhead.

use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use anyhow::{bail, Context};
use clap::Parser;
use futures_lite::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions,
    },
    types::FieldTable,
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use palermo::{
    admin::{
        topology::EXCHANGE,
        wire::{self, JobMeta},
    },
    Format,
};
use uuid::Uuid;

use crate::jobs;

/// The subcommand that makes this executable a raw lapin consumer.
pub const WORKER_COMMAND: &str = "raw-worker";

/// One prepared message: the bytes Palermo would send for a job.
#[derive(Clone)]
pub struct Message {
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

impl Message {
    /// The message Palermo's client publishes for `job` on `queue`.
    pub fn of<J: palermo::Job>(queue: &str, job: &J) -> anyhow::Result<Self> {
        let body = Format::Json
            .encode(job)
            .map_err(|reason| anyhow::anyhow!("cannot encode {}: {reason}", J::NAME))?;
        let meta = JobMeta {
            id: Uuid::new_v4(),
            name: J::NAME.to_string(),
            queue: queue.to_string(),
            format: Format::Json,
            preview: job.preview(),
            attempt: 1,
            max_attempts: J::MAX_ATTEMPTS,
            enqueued_at_ms: wire::now_ms(),
            priority: J::PRIORITY,
        };
        // A trace context, as `Client::enqueue` writes one into every message: the worker
        // reads it and puts the trace id on the job's span.
        let mut properties = meta.properties();
        let mut headers = properties.headers().clone().unwrap_or_default();
        let trace = palermo::trace::TraceContext::new_root().to_string();
        wire::put_str(&mut headers, palermo::trace::TRACEPARENT, &trace);
        properties = properties.with_headers(headers);
        Ok(Self { body, properties })
    }
}

/// Publishes with lapin alone on its own confirm-mode channel.
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Opens a confirm-mode channel on `connection`.
    pub async fn open(connection: &Connection) -> anyhow::Result<Self> {
        let channel = connection
            .create_channel()
            .await
            .context("opening the raw publisher's channel")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("confirm.select on the raw publisher's channel")?;
        Ok(Self { channel })
    }

    async fn send(
        &self,
        queue: &str,
        message: &Message,
    ) -> anyhow::Result<lapin::PublisherConfirm> {
        self.channel
            .basic_publish(
                EXCHANGE.into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &message.body,
                // Every job has its own id, as Palermo's client gives it (a worker refuses a
                // job id it already ran as a duplicate).
                message
                    .properties
                    .clone()
                    .with_message_id(Uuid::new_v4().to_string().into()),
            )
            .await
            .with_context(|| format!("basic.publish to {queue}"))
    }

    /// Publishes `message` and waits for its confirm.
    pub async fn publish_confirmed(&self, queue: &str, message: &Message) -> anyhow::Result<()> {
        let confirm = self.send(queue, message).await?;
        check(confirm.await.context("publisher confirm")?, queue)
    }

    /// Publishes `n` copies of `message`, each waiting for its confirm before the next.
    pub async fn publish_serial(
        &self,
        queue: &str,
        message: &Message,
        n: u64,
    ) -> anyhow::Result<()> {
        for _ in 0..n {
            self.publish_confirmed(queue, message).await?;
        }
        Ok(())
    }

    /// Publishes `n` copies of `message`, then waits for all the confirms.
    pub async fn publish_pipelined(
        &self,
        queue: &str,
        message: &Message,
        n: u64,
    ) -> anyhow::Result<()> {
        let mut confirms = Vec::with_capacity(n as usize);
        for _ in 0..n {
            confirms.push(self.send(queue, message).await?);
        }
        for confirm in confirms {
            check(confirm.await.context("publisher confirm")?, queue)?;
        }
        Ok(())
    }
}

fn check(confirmation: lapin::Confirmation, queue: &str) -> anyhow::Result<()> {
    if confirmation.is_nack() {
        bail!("the broker nacked a message for {queue}");
    }
    if confirmation.take_message().is_some() {
        bail!("a message for {queue} was unroutable");
    }
    Ok(())
}

/// `palermo-bench raw-worker --queue q --channels 4 --expect 20000`
#[derive(Debug, Parser)]
struct RawArgs {
    /// The queue to consume.
    #[arg(long)]
    queue: String,
    /// Channels, one consumer each.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Unacked deliveries per consumer. Defaults to 1.
    #[arg(long, default_value_t = 1)]
    prefetch: u16,
    /// Sets the limit on the channel (`basic.qos` global) rather than on the consumer.
    #[arg(long)]
    global_qos: bool,
    /// Print `drained` after this many `noop` messages.
    #[arg(long, default_value_t = u64::MAX)]
    expect: u64,
    /// RabbitMQ URL.
    #[arg(long, default_value = palermo::DEFAULT_AMQP_URL)]
    amqp_url: String,
}

/// `palermo-bench raw-worker …`: consumes until SIGTERM or SIGINT.
pub fn worker_main() -> ExitCode {
    let args = RawArgs::parse_from(std::env::args_os().skip(1));
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(consume(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn consume(args: RawArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let connection = Connection::connect(
        &args.amqp_url,
        ConnectionProperties::default().with_connection_name("palermo-bench raw".into()),
    )
    .await
    .context("connecting to the broker")?;
    let done = Arc::new(AtomicU64::new(0));
    let mut consumers = tokio::task::JoinSet::new();
    for number in 0..args.channels {
        let channel = connection.create_channel().await.context("channel.open")?;
        channel
            .basic_qos(
                args.prefetch,
                BasicQosOptions {
                    global: args.global_qos,
                },
            )
            .await
            .context("basic.qos")?;
        let mut consumer = channel
            .basic_consume(
                args.queue.as_str().into(),
                format!("palermo-bench-raw:{}:{number}", std::process::id()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("basic.consume")?;
        let (done, expect) = (done.clone(), args.expect);
        consumers.spawn(async move {
            while let Some(delivery) = consumer.next().await {
                let delivery = delivery.context("receiving a delivery")?;
                let is_latency = work(&delivery).await?;
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .context("basic.ack")?;
                if !is_latency && done.fetch_add(1, Ordering::Relaxed) + 1 == expect {
                    done.store(0, Ordering::Relaxed);
                    println!("drained");
                }
            }
            anyhow::Ok(())
        });
    }
    let result = tokio::select! {
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
        Some(joined) = consumers.join_next() => match joined {
            Ok(Ok(())) => Err(anyhow::anyhow!("the broker cancelled a consumer")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("a consumer task failed: {e}")),
        },
    };
    consumers.abort_all();
    // At a stop a channel may already be closing under an aborted consumer; the broker
    // requeues whatever is unacked either way, so a failed close is only worth a warning.
    if let Err(e) = connection.close(200, "raw worker stopped".into()).await {
        eprintln!("warning: connection.close: {e}");
    }
    result
}

/// Does what the job in `delivery` asks: prints a latency probe's delay, sleeps a nap's
/// length. Says whether it was a latency probe (which does not count towards `--expect`).
async fn work(delivery: &lapin::message::Delivery) -> anyhow::Result<bool> {
    let kind = delivery
        .properties
        .kind()
        .as_ref()
        .map(|kind| kind.as_str());
    if kind == Some(<jobs::Latency as palermo::Job>::NAME) {
        let probe: jobs::Latency =
            serde_json::from_slice(&delivery.data).context("decoding a latency probe")?;
        println!(
            "latency {}",
            jobs::now_ns().saturating_sub(probe.sent_at_ns)
        );
        return Ok(true);
    }
    if kind == Some(<jobs::Nap as palermo::Job>::NAME) {
        let nap: jobs::Nap = serde_json::from_slice(&delivery.data).context("decoding a nap")?;
        tokio::time::sleep(std::time::Duration::from_millis(nap.ms)).await;
    }
    Ok(false)
}
