//! Cancelled job ids, kept by the broker in a stream so that a worker started later still
//! knows them: Celery's revokes live only in the memory of the workers that heard them and
//! are forgotten on restart; these are not.
//!
//! A cancellation is one message `{"id": ..., "by": ..., "at": ms}` on a durable RabbitMQ
//! stream ([`stream_name`], `x-queue-type=stream`), published with a confirm. Streams keep
//! their messages after they are read, so every worker reads the whole retained stream
//! (`x-stream-offset=first`) when it connects and after every reconnect, and then keeps
//! reading it live: the ids live in a bounded set in its memory, and checking a delivery
//! against them costs no broker round trip.
//!
//! What bounds it: the stream drops entries older than [`RETENTION`] (7 days) and keeps at
//! most [`MAX_BYTES`]; a worker remembers at most [`MAX_REMEMBERED`] ids, each for
//! [`RETENTION`]. A job delayed longer than the retention, cancelled at the start of its wait,
//! runs when it comes due (docs/admin.md, "Control").

use std::time::Duration;

use lapin::{
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{broker, broker::topology, error::Error, wire, Deployment};

/// How long a cancellation is kept (the stream's `x-max-age`) and honoured by a worker.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The stream's `x-max-age`, [`RETENTION`] as RabbitMQ writes it.
const MAX_AGE: &str = "7D";
/// The most the stream keeps (`x-max-length-bytes`), about 200,000 cancellations; the oldest
/// segment goes first.
pub const MAX_BYTES: i64 = 32 * 1024 * 1024;
/// The size of one segment of the stream: retention drops whole segments.
const SEGMENT_BYTES: i64 = 4 * 1024 * 1024;
/// The most ids a worker remembers (the oldest go first): about 96 bytes each, 20 MB at most.
pub const MAX_REMEMBERED: usize = 200_000;
/// The AMQP `type` of a cancellation message.
pub const CANCELLATION_TYPE: &str = "palermo.cancellation";

/// The stream of a deployment's cancellations: `<control exchange>.cancellations`.
pub fn stream_name(deployment: &Deployment) -> String {
    format!("{}.cancellations", deployment.control_exchange)
}

/// One cancellation, as the stream carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// The job's id.
    pub id: Uuid,
    /// Who cancelled it (the operator's actor).
    pub by: String,
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
}

/// Declares the cancellations stream (durable; its arguments are the same in every process).
pub async fn declare(channel: &Channel, deployment: &Deployment) -> Result<String, Error> {
    let name = stream_name(deployment);
    topology::validate_queue_name(&name)?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    arguments.insert("x-max-age".into(), AMQPValue::LongString(MAX_AGE.into()));
    arguments.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(MAX_BYTES),
    );
    arguments.insert(
        "x-stream-max-segment-size-bytes".into(),
        AMQPValue::LongLongInt(SEGMENT_BYTES),
    );
    channel
        .queue_declare(
            topology::short_name("queue name", &name)?,
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await
        .map_err(Error::broker("queue.declare (cancellations stream)"))?;
    Ok(name)
}

/// Cancels the jobs `ids` on behalf of `by`: one confirmed message each on the stream. `Ok`
/// means the broker stored every one of them.
pub async fn cancel(
    connection: &Connection,
    deployment: &Deployment,
    ids: &[Uuid],
    by: &str,
) -> Result<(), Error> {
    let channel = broker::confirm_channel(connection).await?;
    let stream = declare(&channel, deployment).await?;
    let at = wire::now_ms();
    let mut pending = Vec::with_capacity(ids.len());
    for &id in ids {
        let cancellation = Cancellation {
            id,
            by: by.to_string(),
            at,
        };
        let body = serde_json::to_vec(&cancellation).map_err(Error::EventSerialize)?;
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_type(CANCELLATION_TYPE.into())
            .with_timestamp(u64::try_from(at / 1000).unwrap_or(0))
            .with_app_id(wire::APP_ID.into());
        // Through the default exchange, which routes to the queue of the same name.
        let sent = broker::publish_via(&channel, "", &stream, &stream, &body, properties);
        pending.push(sent.await?);
    }
    for sent in pending {
        sent.confirmed().await?;
    }
    let _ = channel.close(200, "cancelled".into()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancellation_is_small_json() {
        let c = Cancellation {
            id: Uuid::nil(),
            by: "ada".into(),
            at: 1,
        };
        let json = serde_json::to_string(&c).expect("json");
        assert_eq!(
            json,
            r#"{"id":"00000000-0000-0000-0000-000000000000","by":"ada","at":1}"#
        );
        assert_eq!(
            stream_name(&Deployment::default()),
            "palermo.control.cancellations"
        );
    }
}
