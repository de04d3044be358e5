//! Priority queues against the real RabbitMQ: under prefetch 1, a high-priority job enqueued
//! behind 1,000 low ones is the next one the free slot runs, on classic queues and, with
//! RabbitMQ 4.0, on quorum queues; priorities on quorum queues are refused on 3.x, and a
//! mismatch with an existing queue names the setting.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use lapin::{
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable},
};
use palermo::{Client, Options, Priorities, QueueType, Worker};
use support::{amqp_url, broker_version, eventually, BrokerVersion, Rig, WAIT};

/// The labels of the runs, in order.
#[derive(Default)]
struct Runs(Mutex<Vec<String>>);

impl Runs {
    fn push(&self, label: String) {
        self.0.lock().expect("lock").push(label);
    }

    fn labels(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

#[palermo::job]
async fn ordered(label: String, runs: palermo::State<Arc<Runs>>) -> anyhow::Result<()> {
    runs.push(label);
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}

#[palermo::job(priority = 7)]
async fn urgent(label: String, runs: palermo::State<Arc<Runs>>) -> anyhow::Result<()> {
    runs.push(label);
    Ok(())
}

async fn priority_client(queue: &str) -> Client {
    priority_client_of(queue, QueueType::Classic).await
}

async fn priority_client_of(queue: &str, queue_type: QueueType) -> Client {
    Client::connect_with(&amqp_url(), queue_type)
        .await
        .expect("client")
        .with_max_priority(queue, 10)
        .expect("the queue type takes priorities")
}

#[tokio::test]
async fn a_high_priority_job_overtakes_a_thousand_low_ones_under_prefetch_one() {
    overtakes_a_thousand(QueueType::Classic).await;
}

/// RabbitMQ 4.0 orders quorum queues by priority in two levels (5 and above first): the
/// high (9) and urgent (7) jobs are both of the first. 3.x cannot (the refusal below).
#[tokio::test]
async fn on_rabbitmq_4_a_high_priority_job_overtakes_a_thousand_low_ones_on_a_quorum_queue() {
    if broker_version() == BrokerVersion::V4_0 {
        overtakes_a_thousand(QueueType::Quorum).await;
    } else {
        let client = Client::connect_with(&amqp_url(), QueueType::Quorum)
            .await
            .expect("client");
        let err = client.with_max_priority("mail", 5).err().expect("refused");
        assert!(err.to_string().contains("RabbitMQ 4.0"), "{err}");
    }
}

async fn overtakes_a_thousand(queue_type: QueueType) {
    let rig = Rig::new("priority-order").await;
    let client = priority_client_of(&rig.queue, queue_type).await;
    let low = (0..1000).map(|i| Ordered {
        label: format!("low-{i}"),
    });
    client.enqueue_many_to(&rig.queue, low).await.expect("lows");
    let runs = Arc::new(Runs::default());
    let mut config = rig.config();
    config.queue_type = queue_type;
    config.priorities = Priorities::default().with(&rig.queue, 10);
    config.prefetch = 1;
    rig.start(Worker::builder(config).state(runs.clone()));
    eventually(WAIT, "the worker busy with low jobs", || async {
        runs.labels().len() >= 3
    })
    .await;
    let before = runs.labels().len();
    let options = Options {
        priority: Some(9),
        queue: Some(rig.queue.clone()),
        ..Options::default()
    };
    let high = Ordered {
        label: "high".into(),
    };
    client.enqueue_with(high, options).await.expect("high");
    // #[job(priority = 7)] is above the lows' none (0) too.
    let job = Urgent {
        label: "urgent".into(),
    };
    client.enqueue_to(&rig.queue, job).await.expect("urgent");
    eventually(WAIT, "the high-priority jobs run", || async {
        runs.labels().iter().any(|l| l == "urgent")
    })
    .await;
    rig.stop().await;
    let labels = runs.labels();
    let at = |name: &str| labels.iter().position(|l| l == name).expect("ran");
    // The slot held one low job (prefetch 1) and may have been handed the next one while
    // the enqueue was on its way: the high ones run right after.
    assert!(
        at("high") <= before + 1,
        "high ran at {} after {before} runs: {labels:?}",
        at("high")
    );
    assert_eq!(at("urgent"), at("high") + 1, "{labels:?}");
    assert!(
        labels.len() < 100,
        "the lows did not all run first: {}",
        labels.len()
    );
    client.close().await.expect("close");
}

/// 3.x: a worker and a client of a quorum deployment with priority queues refuse to start,
/// having asked the broker's version, before they declare anything. 4.0: both accept.
#[tokio::test]
async fn priorities_on_quorum_queues_are_refused_before_rabbitmq_4() {
    let rig = Rig::new("priority-quorum-refused").await;
    let mut config = rig.config();
    config.queue_type = QueueType::Quorum;
    config.priorities = Priorities::default().with(&rig.queue, 5);
    config
        .validate()
        .expect("valid without a broker: the broker decides");
    let client = Client::connect_with(&amqp_url(), QueueType::Quorum)
        .await
        .expect("client");
    let accepted = client.with_max_priority("mail", 5);
    if broker_version() == BrokerVersion::V4_0 {
        accepted.expect("RabbitMQ 4.0 orders quorum queues by priority");
        return;
    }
    let err = accepted.err().expect("refused");
    assert!(err.to_string().contains("quorum"), "{err}");
    let worker = Worker::builder(config).build().expect("worker");
    let (_trigger, shutdown) = support::shutdown::channel();
    let ran = tokio::time::timeout(WAIT, worker.run(shutdown)).await;
    let err = ran.expect("refused at once").expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("classic") && text.contains("3.10"), "{text}");
    assert_eq!(rig.consumers(&rig.queue).await, 0);
}

/// What RabbitMQ itself does with `x-max-priority` on a quorum queue: 3.10 refuses the
/// declare (`PRECONDITION_FAILED - invalid arg 'x-max-priority'`), it does not ignore it.
/// Recorded here so that a broker upgrade that changes it shows up.
#[tokio::test]
async fn the_broker_refuses_max_priority_on_quorum_queues() {
    let rig = Rig::new("priority-quorum").await;
    let queue = rig.another_queue("quorum-priority");
    let connection = palermo::admin::broker::connect(&amqp_url(), "test")
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(10));
    let declared = channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
        .await;
    let err = declared.expect_err("refused by the broker");
    assert!(
        err.to_string().contains("invalid arg 'x-max-priority'"),
        "{err}"
    );
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_max_priority_mismatch_names_the_setting() {
    let rig = Rig::new("priority-mismatch").await;
    let ten = priority_client(&rig.queue).await;
    let label = || Ordered { label: "x".into() };
    ten.enqueue_to(&rig.queue, label())
        .await
        .expect("declared with 10");
    let five = Client::connect_with(&amqp_url(), QueueType::Classic)
        .await
        .expect("client")
        .with_max_priority(&rig.queue, 5)
        .expect("5");
    let err = five
        .enqueue_to(&rig.queue, label())
        .await
        .expect_err("mismatch");
    let text = err.to_string();
    assert!(
        text.contains("max priority") && text.contains("--max-priority"),
        "{text}"
    );
    let none = support::client().await;
    assert!(none.enqueue_to(&rig.queue, label()).await.is_err());
    for client in [ten, five, none] {
        let _ = client.close().await;
    }
}
