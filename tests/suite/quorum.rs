//! Quorum everywhere (issue 13): a deployment with `--queue-type quorum` declares every queue
//! it relies on as a quorum queue (job queues, the failed queue, the events queue, the
//! scheduler and its status queue, the delay levels), the delay levels dead-letter
//! at-least-once, a delayed job arrives through them, and a quorum queue that refuses a
//! publish (`reject-publish`) makes the enqueue fail instead of losing the job. A queue of
//! the other type is an error that says so.
//!
//! These tests set the quorum type themselves, whatever `PALERMO_TEST_QUEUE_TYPE` says.

use crate::admin_support;
use crate::support;
use crate::web_support;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use lapin::{
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use palermo::{
    admin::{
        delay::{Kind, Layout, LEVELS},
        schedules::status_queue,
        topology::QueueType,
    },
    Client, Error, Options, Periodic, State, Worker,
};
use serde_json::Value;
use support::{amqp_url, eventually, policy::QueuePolicy, rabbitmqctl, unique, Rig, WAIT};

#[palermo::job(max_attempts = 1)]
async fn quorum_job(fail: bool, seen: State<Arc<AtomicUsize>>) -> anyhow::Result<()> {
    seen.fetch_add(1, Ordering::SeqCst);
    anyhow::ensure!(!fail, "asked to fail");
    Ok(())
}

/// Type and arguments of every queue on the broker, from `rabbitmqctl list_queues`.
fn queues_on_broker() -> HashMap<String, (String, HashMap<String, Value>)> {
    let out = rabbitmqctl(&[
        "list_queues",
        "name",
        "type",
        "arguments",
        "--formatter",
        "json",
    ])
    .expect("run rabbitmqctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON from rabbitmqctl");
    rows.iter()
        .map(|row| {
            let name = row["name"].as_str().expect("name").to_string();
            let kind = row["type"].as_str().expect("type").to_string();
            // Each argument is [name, type, value].
            let arguments = row["arguments"].as_array().expect("arguments").iter();
            let arguments = arguments
                .map(|a| (a[0].as_str().expect("key").to_string(), a[2].clone()))
                .collect();
            (name, (kind, arguments))
        })
        .collect()
}

#[tokio::test]
async fn a_quorum_deployment_declares_every_queue_as_quorum() {
    let rig = Rig::new("quorum").await;
    let queue = rig.another_queue("quorum");
    let ticks = rig.another_queue("ticks");
    let election = rig.another_queue("scheduler");
    let status = status_queue(&election);
    rig.track(&[&status]);
    let mut config = rig.config_for(&[&queue]);
    config.deployment.queue_type = QueueType::Quorum;
    config.scheduler = true;
    config.deployment.scheduler_queue = election.clone();
    let every = Periodic::every(&unique("tick"), "1s").and_then(|p| p.queue(&ticks));
    let every = every.expect("schedule");
    let seen = Arc::new(AtomicUsize::new(0));
    let builder = Worker::builder(config).state(seen.clone());
    rig.start(builder.periodic(every, QuorumJob { fail: false }));

    let client = quorum_client().await;
    let delayed = QuorumJob { fail: false };
    client
        .enqueue_with(
            delayed,
            Options::new().queue(&queue).delay(Duration::from_secs(1)),
        )
        .await
        .expect("delayed enqueue");
    client
        .enqueue_with(QuorumJob { fail: true }, Options::new().queue(&queue))
        .await
        .expect("enqueue");
    eventually(WAIT, "the delayed job and the failing one ran", || {
        let seen = seen.clone();
        async move { seen.load(Ordering::SeqCst) == 2 }
    })
    .await;
    rig.wait_failed(1).await;
    eventually(WAIT, "a tick and the scheduler's status table", || async {
        rig.ready(&ticks).await >= 1 && rig.ready(&status).await == 1
    })
    .await;
    rig.stop().await;

    let on_broker = queues_on_broker();
    let own = [&queue, &ticks, &rig.failed, &rig.events, &election, &status];
    for name in own {
        let (kind, _) = on_broker
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} declared"));
        assert_eq!(kind, "quorum", "{name}");
    }
    let layout = Layout::of(QueueType::Quorum);
    let (kind, _) = &on_broker[&layout.orphans()];
    assert_eq!(kind, "quorum", "the orphans queue");
    for level in 0..LEVELS {
        for kind in [Kind::Retry, Kind::Scheduled] {
            let name = layout.queue(kind, level);
            let (queue_type, arguments) = on_broker
                .get(&name)
                .unwrap_or_else(|| panic!("{name} declared"));
            assert_eq!(queue_type, "quorum", "{name}");
            assert_eq!(
                arguments.get("x-dead-letter-strategy"),
                Some(&Value::from("at-least-once")),
                "{name}: {arguments:?}"
            );
            assert_eq!(
                arguments.get("x-overflow"),
                Some(&Value::from("reject-publish")),
                "{name}: {arguments:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_quorum_queue_that_rejects_a_publish_fails_the_enqueue() {
    let rig = Rig::new("rejects").await;
    let queue = rig.another_queue("full");
    let _policy = QueuePolicy::set(&queue, r#"{"max-length":1,"overflow":"reject-publish"}"#);
    let client = quorum_client().await;
    // A quorum queue applies its limit once it is over it (the Raft log decides), so a job or
    // two may be stored past the limit before the first refusal; then it refuses each one.
    let mut confirmed = 0;
    let refused = loop {
        match client
            .enqueue_with(QuorumJob { fail: false }, Options::new().queue(&queue))
            .await
            .map(|e| e.id())
        {
            Ok(_) => confirmed += 1,
            Err(e) => break e,
        }
        assert!(
            confirmed < 10,
            "a full reject-publish queue kept taking jobs"
        );
    };
    assert!(matches!(refused, Error::Nacked { .. }), "{refused}");
    assert!(confirmed >= 1, "the first job fits");
    assert_eq!(
        rig.ready(&queue).await,
        confirmed,
        "every confirmed job is stored, the refused one is not"
    );
}

/// The delayed jobs in the quorum layout's orphans queue, as the admin tools count them.
async fn orphaned() -> u64 {
    let connection = palermo::admin::broker::connect(&amqp_url(), "test: orphans")
        .await
        .expect("connect");
    let waiting = palermo::admin::delay::waiting(&connection, Layout::of(QueueType::Quorum))
        .await
        .expect("count the delay queues");
    let _ = connection.close(200, "counted".into()).await;
    waiting.orphaned
}

#[tokio::test]
async fn a_delayed_job_whose_queue_was_deleted_becomes_an_orphan() {
    let admin = admin_support::Admin::new("sqlite", "orphan").await;
    let rig = &admin.rig;
    let queue = rig.another_queue("deleted");
    let orphans_before = orphaned().await;
    let client = quorum_client().await;
    let id = client
        .enqueue_with(
            QuorumJob { fail: false },
            Options::new().queue(&queue).delay(Duration::from_secs(1)),
        )
        .await
        .expect("delayed enqueue")
        .id()
        .to_string();
    rig.channel()
        .await
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete the job queue");
    // At-least-once dead-lettering would keep an unroutable job in its level queue for ever;
    // the delivery exchange's alternate exchange sends it to the orphans queue instead.
    let orphans = Layout::of(QueueType::Quorum).orphans();
    // `palermo queues`, the dashboard and /metrics count it (delay::waiting).
    eventually(WAIT, "the orphan counted", || async {
        orphaned().await > orphans_before
    })
    .await;
    let quorum = ["--queue-type", "quorum"];
    let rows = admin.json(&[&["queues"][..], &quorum].concat());
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["queue"] == orphans.as_str()))
        .unwrap_or_else(|| panic!("no orphans row in {rows}"));
    assert!(row["ready"].as_u64() >= Some(1), "{row}");
    let dashboard = web_support::Dashboard::start(&admin, &quorum);
    for path in ["/", "/queues"] {
        let (status, page) = dashboard.get(path);
        assert_eq!(status, 200, "{path}");
        assert!(
            page.contains(r#"id="orphaned""#) && page.contains("lost their queue"),
            "{path}: {page}"
        );
    }
    let (_, metrics) = dashboard.get("/metrics");
    assert!(
        !metrics.contains(r#"palermo_jobs_delayed{kind="orphaned"} 0"#),
        "{metrics}"
    );
    assert!(dashboard.stop(WAIT).success());
    let ids = HashSet::from([id.to_string()]);
    eventually(WAIT, "the delayed job in the orphans queue", || async {
        support::delay::take(&orphans, &ids).await == 1
    })
    .await;
}

#[tokio::test]
async fn a_queue_of_the_other_type_is_a_clear_error() {
    let rig = Rig::new("othertype").await;
    let queue = rig.another_queue("classic");
    rig.channel()
        .await
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("a classic queue");
    let client = quorum_client().await;
    let err = client
        .enqueue_with(QuorumJob { fail: false }, Options::new().queue(&queue))
        .await
        .expect_err("a quorum client cannot declare a classic queue");
    let message = err.to_string();
    assert!(matches!(err, Error::Config(_)), "{message}");
    assert!(
        message.contains(&format!("queue {queue} exists with other arguments"))
            && message.contains("Changing the queue type")
            && message.contains("x-queue-type"),
        "{message}"
    );
}

/// A client of a quorum deployment on the test broker.
async fn quorum_client() -> Client {
    support::client_with(palermo::ClientConfig::new(palermo::Deployment {
        queue_type: QueueType::Quorum,
        ..palermo::Deployment::new(amqp_url())
    }))
    .await
}

/// RabbitMQ 4.0 gives every quorum queue a delivery limit of 20: a message returned 20 times
/// is delivered once more (`x-delivery-count` 20), then dropped. 3.10 sets no limit. Hence
/// `max_redeliveries` at most 20 on quorum queues, so that the poison guard acts first
/// (topology::QUORUM_DELIVERY_LIMIT).
#[tokio::test]
async fn rabbitmq_4_drops_a_message_returned_more_than_20_times_from_a_quorum_queue() {
    use lapin::options::{BasicGetOptions, BasicNackOptions, BasicPublishOptions};
    let rig = Rig::new("delivery-limit").await;
    let queue = rig.another_queue("limit");
    let channel = rig.channel().await;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            QueueType::Quorum.arguments(),
        )
        .await
        .expect("a quorum queue");
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"returned",
            lapin::BasicProperties::default(),
        )
        .await
        .expect("publish");
    let (mut deliveries, mut last_count) = (0, None);
    while deliveries < 25 {
        // A returned message is back within milliseconds; a dropped one never is.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let message = loop {
            let got = channel
                .basic_get(queue.as_str().into(), BasicGetOptions::default())
                .await
                .expect("basic.get");
            if got.is_some() || tokio::time::Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let Some(message) = message else { break };
        deliveries += 1;
        last_count = support::wire::header_int(&message.properties, "x-delivery-count");
        message
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .expect("nack");
    }
    if support::broker_version() == support::BrokerVersion::V4_0 {
        assert_eq!((deliveries, last_count), (21, Some(20)));
    } else {
        assert_eq!(deliveries, 25, "3.10 sets no delivery limit");
    }
}
