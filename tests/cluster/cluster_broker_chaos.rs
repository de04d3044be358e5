//! The chaos of tests/cluster_chaos.rs without Palermo: is a lost job Palermo's or the
//! broker's?
//!
//! Plain lapin only, nothing of Palermo's code path. A publisher with confirms sends 5,000
//! persistent, mandatory messages (each a fresh `message_id`) through the cluster's nodes in
//! turn, as fast as confirms come back: nine in ten to a quorum queue, one in ten to its
//! delay queue, a quorum queue whose messages expire after 2 s and are dead-lettered into the
//! first at-least-once (Palermo's quorum delay levels). It keeps the ids the broker acked; a
//! nacked, failed or unconfirmed (10 s) publish is sent again on a new connection, up to five
//! times, as the Palermo client does. Three consumers, one per node, each with 16 channels of
//! prefetch 1 (a Palermo worker's slots at concurrency 16), take each delivery, wait 10 ms as
//! a job would, remember its id, then ack it; a consumer whose node dies connects to it again.
//! Meanwhile the node leading the queue is SIGKILLed and started again, then the node that
//! leads it next, as in the Palermo test. At the end every acked id must have been delivered
//! at least once.
//!
//! It prints `broker: lost=N late=L duplicates=K confirmed=M node_kills=2` and fails if a
//! message is missing after 90 s: `late` ones came within 200 s more (stalled), `lost` ones
//! never did. docs/scaling.md gives what it showed on RabbitMQ 3.10. By hand:
//! `cargo test --test cluster_broker_chaos -- --ignored --nocapture`, with these knobs to
//! tell what makes a loss likelier:
//! - `PALERMO_BCHAOS_EXTRA_QUEUES=N`: N more quorum queues, fed and never consumed (more
//!   Raft groups electing at once, as in a Palermo cluster);
//! - `PALERMO_BCHAOS_PUBLISHER=palermo`: Palermo's client publishes instead (its messages,
//!   reconnects and delay levels; the consumers stay raw);
//! - `PALERMO_BCHAOS_DELAY_NODE=N`: the delay queue is led by node N instead of node 1 (the
//!   job queue's first leader), so that it keeps dead-lettering into the job queue while that
//!   queue's leader is killed.

use crate::support;

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use futures_lite::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties,
};
use palermo::{admin::topology::QueueType, Options};
use support::{
    chaos::{lost_and_duplicates, random, record_id},
    cluster::{kill_leader_twice, Cluster, NODES},
    unique,
};
use uuid::Uuid;

const MESSAGES: usize = 5_000;
/// Channels of prefetch 1 per consumer process (a Palermo worker's slots).
const SLOTS: usize = 16;
/// How long a message waits in the delay queue (one in ten goes there).
const DELAY_MS: i64 = 2_000;
/// How long the consumers may take to finish what is queued.
const DRAIN: Duration = Duration::from_secs(90);
/// How much longer a failed run waits, to tell stalled messages from lost ones.
const LATE: Duration = Duration::from_secs(200);

/// Ids delivered and acked, with how many times each.
type Seen = Arc<Mutex<HashMap<Uuid, usize>>>;

/// A channel on node `n`, or the error that stopped it.
async fn open(cluster: &Cluster, n: usize) -> Result<(Connection, Channel), lapin::Error> {
    let connection = Connection::connect(&cluster.url(n), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// Declares the quorum queue `queue` on `channel`, and on `delay_channel` its delay queue: a
/// quorum queue whose messages expire after [`DELAY_MS`] and are dead-lettered into `queue`
/// at-least-once, as Palermo's quorum delay levels are. Each queue's leader is the node of the
/// channel that declared it (RabbitMQ 3.10's `client-local` default).
async fn declare(
    channel: &Channel,
    delay_channel: &Channel,
    queue: &str,
) -> Result<(), lapin::Error> {
    declare_quorum(channel, queue, FieldTable::default()).await?;
    let channel = delay_channel;
    let text = |value: &str| AMQPValue::LongString(value.into());
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(DELAY_MS));
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(queue));
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args.insert("x-overflow".into(), text("reject-publish"));
    declare_quorum(channel, &delay_queue(queue), args).await
}

/// Declares the durable quorum queue `name` with `args` besides its type.
async fn declare_quorum(
    channel: &Channel,
    name: &str,
    mut args: FieldTable,
) -> Result<(), lapin::Error> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(name.into(), durable, args)
        .await
        .map(drop)
}

/// The delay queue of `queue`.
fn delay_queue(queue: &str) -> String {
    format!("{queue}.delay")
}

/// The number in environment variable `name`, if it holds one.
fn knob(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|n| n.parse().ok())
}

/// How many idle quorum queues to add beside the job queue, fed a message a second each and
/// never consumed, like a Palermo cluster's failed, events and delay-level queues:
/// `PALERMO_BCHAOS_EXTRA_QUEUES` (0, the plain baseline, by default). With many, many more
/// Raft groups elect a leader when a node dies.
fn extra_queues(queue: &str) -> Vec<String> {
    let n = knob("PALERMO_BCHAOS_EXTRA_QUEUES").unwrap_or(0);
    (0..n).map(|i| format!("{queue}.extra.{i}")).collect()
}

/// Publishes to each of `queues` about once a second, through node 1, 2, 3 in turn as each
/// dies, until aborted (no confirms: these messages are not counted).
async fn feed(cluster: Arc<Cluster>, queues: Vec<String>) {
    let mut node = 0;
    loop {
        node = node % NODES.len() + 1;
        let Ok((_connection, channel)) = open(&cluster, node).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        'feeding: loop {
            for queue in &queues {
                let sent = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        b"heartbeat",
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await;
                if sent.is_err() {
                    break 'feeding;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Consumes `queue` on node `n` with [`SLOTS`] channels of prefetch 1, as a Palermo worker
/// at concurrency 16 does, until aborted; connects again whenever the connection dies.
async fn consume(cluster: Arc<Cluster>, n: usize, queue: String, seen: Seen) {
    loop {
        let Ok(connection) = Connection::connect(&cluster.url(n), Default::default()).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut slots = tokio::task::JoinSet::new();
        for slot in 0..SLOTS {
            let Ok(consumer) = subscribe(&connection, &queue, format!("raw-{n}-{slot}")).await
            else {
                break;
            };
            slots.spawn(take(consumer, Arc::clone(&seen)));
        }
        // Any slot ending means the connection or its channel died: start over.
        slots.join_next().await;
        slots.abort_all();
        let _ = connection.close(200, "over".into()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A channel of prefetch 1 consuming `queue` with consumer tag `tag`.
async fn subscribe(
    connection: &Connection,
    queue: &str,
    tag: String,
) -> Result<lapin::Consumer, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel.basic_qos(1, BasicQosOptions::default()).await?;
    let options = BasicConsumeOptions::default();
    let table = FieldTable::default();
    channel
        .basic_consume(queue.into(), tag.as_str().into(), options, table)
        .await
}

/// Runs each delivery of `consumer` like a 10-ms job: remembers its id, then acks it.
async fn take(mut consumer: lapin::Consumer, seen: Seen) {
    while let Some(Ok(delivery)) = consumer.next().await {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let id = delivery.properties.message_id().as_ref();
        if let Some(id) = id.and_then(|id| id.as_str().parse::<Uuid>().ok()) {
            *seen.lock().expect("seen").entry(id).or_insert(0) += 1;
        }
        // A failed ack is redelivered by the broker: counted twice, not lost.
        if delivery.ack(BasicAckOptions::default()).await.is_err() {
            return;
        }
    }
}

/// What the publisher got confirmed.
#[derive(Default)]
struct Published {
    /// Every id the broker acked.
    confirmed: Vec<Uuid>,
    /// Those of them sent through the delay queue.
    delayed: Vec<Uuid>,
    /// Publishes never acked, after all the tries.
    failed: usize,
    /// When each confirm came, to line a missing message up with the node kills.
    confirmed_at: HashMap<Uuid, chrono::DateTime<chrono::Utc>>,
}

impl Published {
    /// Notes how a publish ended: `Some((id, delayed))` when the broker acked it.
    fn note(&mut self, acked: Option<(Uuid, bool)>) {
        let Some((id, delayed)) = acked else {
            self.failed += 1;
            return;
        };
        self.confirmed_at.insert(id, chrono::Utc::now());
        self.confirmed.push(id);
        if delayed {
            self.delayed.push(id);
        }
    }
}

/// The publishers' pace: a pause of 50 ms every 50 messages.
async fn pace(i: usize) {
    if i.is_multiple_of(50) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `MESSAGES` ids, one in ten through the delay queue, the others to `queue`,
/// through the nodes in turn.
async fn publish_all(cluster: Arc<Cluster>, queue: String) -> Published {
    let mut published = Published::default();
    let delay = delay_queue(&queue);
    let mut node = 0;
    let mut channel: Option<(Connection, Channel)> = None;
    for i in 0..MESSAGES {
        let id = Uuid::new_v4();
        let to = if i % 10 == 7 { &delay } else { &queue };
        let mut acked = false;
        for pause in [0, 250, 500, 1_000, 2_000, 4_000] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if channel.is_none() {
                node = node % NODES.len() + 1;
                if let Ok((connection, ch)) = open(&cluster, node).await {
                    if ch
                        .confirm_select(ConfirmSelectOptions::default())
                        .await
                        .is_ok()
                    {
                        channel = Some((connection, ch));
                    }
                }
            }
            let Some((_, ch)) = &channel else { continue };
            let properties = BasicProperties::default()
                .with_message_id(id.to_string().into())
                .with_delivery_mode(2);
            let mandatory = BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            };
            let sent = ch
                .basic_publish("".into(), to.as_str().into(), mandatory, b"x", properties)
                .await;
            // Within 10 s, as Palermo's client: past that, sent again on a new connection.
            let confirmation = match sent {
                Ok(confirm) => tokio::time::timeout(Duration::from_secs(10), confirm).await,
                Err(e) => Ok(Err(e)),
            };
            let ok = confirmation
                .is_ok_and(|c| c.is_ok_and(|c| c.is_ack() && c.take_message().is_none()));
            if ok {
                acked = true;
                break;
            }
            channel = None;
        }
        published.note(acked.then_some((id, to == &delay)));
        pace(i).await;
    }
    published
}

/// [`publish_all`] through Palermo's client instead of raw lapin
/// (`PALERMO_BCHAOS_PUBLISHER=palermo`): the same ids and pacing, Palermo's message (its
/// headers and JSON body, through the `palermo` exchange), its reconnects and retries, and
/// for one in ten its quorum delay levels (1 to 6 s). The consumers stay raw: this tells
/// the publishing half of Palermo's chaos run from its workers.
async fn publish_with_palermo(urls: String, queue: String) -> Published {
    let client = palermo::Client::connect_with(&palermo::ClientConfig::new(palermo::Deployment {
        queue_type: QueueType::Quorum,
        ..palermo::Deployment::new(urls.as_str())
    }))
    .await
    .expect("client")
    .with_reconnect_wait(Duration::from_secs(60));
    let mut published = Published::default();
    for i in 0..MESSAGES {
        // The chaos test's job; the raw consumers only read its id.
        let job = record_id(&queue, Path::new("/tmp/palermo-bchaos.ids"), 10);
        let sent = if i % 10 == 7 {
            let at = SystemTime::now() + Duration::from_millis(random(1_000, 6_000));
            client
                .enqueue_raw(job, Options::new().at(at))
                .await
                .map(|e| (e.id(), true))
        } else {
            client
                .enqueue_raw(job, Options::new())
                .await
                .map(|e| (e.id(), false))
        };
        published.note(sent.ok());
        pace(i).await;
    }
    published
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "disruptive: runs a three-node cluster and SIGKILLs its nodes; run by hand"]
async fn the_broker_keeps_every_confirmed_message_when_nodes_are_killed() {
    let cluster = Arc::new(tokio::task::spawn_blocking(Cluster::up).await.expect("up"));
    let queue = unique("bchaos");
    let (_connection, channel) = open(&cluster, 1).await.expect("node 1");
    // Where the delay queue's leader is: node 1 (the job queue's first leader, so that both
    // die together) unless `PALERMO_BCHAOS_DELAY_NODE` names another, as Palermo's delay
    // levels, declared by whichever node a client is on, are spread over the cluster.
    let delay_node = knob("PALERMO_BCHAOS_DELAY_NODE")
        .filter(|n| NODES.contains(n))
        .unwrap_or(1);
    let (_delay_connection, delay_channel) = open(&cluster, delay_node).await.expect("node");
    declare(&channel, &delay_channel, &queue)
        .await
        .expect("declare");
    let extra = extra_queues(&queue);
    for name in &extra {
        declare_quorum(&channel, name, FieldTable::default())
            .await
            .expect("declare an extra queue");
    }
    let feeder = tokio::spawn(feed(Arc::clone(&cluster), extra.clone()));

    let seen: Seen = Arc::default();
    let consumers: Vec<_> = NODES
        .iter()
        .map(|&n| {
            let run = consume(Arc::clone(&cluster), n, queue.clone(), Arc::clone(&seen));
            tokio::spawn(run)
        })
        .collect();
    let publisher = if std::env::var("PALERMO_BCHAOS_PUBLISHER").as_deref() == Ok("palermo") {
        tokio::spawn(publish_with_palermo(cluster.urls(), queue.clone()))
    } else {
        tokio::spawn(publish_all(Arc::clone(&cluster), queue.clone()))
    };

    let kills = kill_leader_twice(&cluster, &queue, "broker chaos").await;
    let published = publisher.await.expect("publisher");

    let missing = |seen: &Seen| {
        let seen = seen.lock().expect("seen");
        lost_and_duplicates(&published.confirmed, &seen)
    };
    let deadline = Instant::now() + DRAIN;
    while missing(&seen).0 > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Missing now: show where the queues are, and give them longer, to tell a message the
    // broker still holds (stalled) from one it dropped (lost).
    let in_time = missing(&seen).0;
    if in_time > 0 {
        cluster.print_where_messages_are();
        let late = Instant::now();
        while missing(&seen).0 > 0 && late.elapsed() < LATE {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let (lost, duplicates) = missing(&seen);
    let lost_delayed = lost_and_duplicates(&published.delayed, &seen.lock().expect("seen")).0;
    for consumer in consumers {
        consumer.abort();
    }
    feeder.abort();
    for name in [delay_queue(&queue), queue].into_iter().chain(extra) {
        let _ = channel
            .queue_delete(name.as_str().into(), Default::default())
            .await;
    }
    println!(
        "broker: lost={lost} late={} duplicates={duplicates} confirmed={} node_kills={}",
        in_time - lost,
        published.confirmed.len(),
        kills.len()
    );
    eprintln!(
        "broker chaos: {} of them delayed ({lost_delayed} lost); {} publishes never confirmed",
        published.delayed.len(),
        published.failed
    );
    let seen = seen.lock().expect("seen");
    for id in published
        .confirmed
        .iter()
        .filter(|id| !seen.contains_key(id))
    {
        let kind = if published.delayed.contains(id) {
            "delayed"
        } else {
            "plain"
        };
        let at = published.confirmed_at.get(id).copied().unwrap_or_default();
        eprintln!("broker chaos: missing {kind} message {id}, confirmed at {at}");
    }
    assert_eq!(
        in_time, 0,
        "confirmed messages missing after {DRAIN:?} ({lost} still after {LATE:?} more)"
    );
}
