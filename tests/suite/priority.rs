//! Priority queues against the real RabbitMQ: under prefetch 1, a high-priority job enqueued
//! behind 1,000 low ones is the next one the free slot runs, on classic queues and, with
//! RabbitMQ 4.0, on quorum queues; a periodic job on a priority queue runs (the scheduler
//! declares the queue as its worker does); priorities on quorum queues are refused on 3.x,
//! and a mismatch with an existing queue names the setting.

use crate::support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use lapin::{
    options::QueueDeclareOptions,
    types::{AMQPValue, FieldTable},
};
use palermo::{Client, ClientConfig, Deployment, Options, Periodic, Priorities, QueueType, Worker};
use support::{amqp_url, broker_version, eventually, unique, BrokerVersion, Rig, WAIT};

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

/// A deployment of the test broker with `queue_type` queues where `queue` is a priority
/// queue up to `max`.
fn priority_deployment_of(queue: &str, max: u8, queue_type: QueueType) -> Deployment {
    Deployment {
        queue_type,
        priorities: Priorities::default().with(queue, max),
        ..Deployment::new(amqp_url())
    }
}

/// A classic deployment of the test broker where `queue` is a priority queue up to `max`.
fn priority_deployment(queue: &str, max: u8) -> Deployment {
    priority_deployment_of(queue, max, QueueType::Classic)
}

async fn priority_client(queue: &str, max: u8) -> Client {
    support::client_with(ClientConfig::new(priority_deployment(queue, max))).await
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
        let deployment = priority_deployment_of("mail", 5, QueueType::Quorum);
        let refused = Client::connect_with(&ClientConfig::new(deployment)).await;
        let err = refused.err().expect("refused");
        assert!(err.to_string().contains("RabbitMQ 4.0"), "{err}");
    }
}

async fn overtakes_a_thousand(queue_type: QueueType) {
    let rig = Rig::new("priority-order").await;
    let deployment = priority_deployment_of(&rig.queue, 10, queue_type);
    let client = support::client_with(ClientConfig::new(deployment)).await;
    let low = (0..1000).map(|i| Ordered {
        label: format!("low-{i}"),
    });
    client
        .enqueue_many(low, Options::new().queue(&rig.queue))
        .await
        .expect("lows");
    let runs = Arc::new(Runs::default());
    let mut config = rig.config();
    config.deployment.queue_type = queue_type;
    config.deployment.priorities = Priorities::default().with(&rig.queue, 10);
    config.prefetch = 1;
    rig.start(Worker::builder(config).state(runs.clone()));
    eventually(WAIT, "the worker busy with low jobs", || async {
        runs.labels().len() >= 3
    })
    .await;
    let options = Options::new().priority(9).queue(&rig.queue);
    let high = Ordered {
        label: "high".into(),
    };
    client.enqueue_with(high, options).await.expect("high");
    // Counted once the broker has confirmed the high job (it is in the queue): lows that
    // started while the enqueue was on its way (many on a busy host) are not overtaken.
    let before = runs.labels().len();
    // #[job(priority = 7)] is above the lows' none (0) too.
    let job = Urgent {
        label: "urgent".into(),
    };
    client
        .enqueue_with(job, Options::new().queue(&rig.queue))
        .await
        .expect("urgent");
    eventually(WAIT, "the high-priority jobs run", || async {
        runs.labels().iter().any(|l| l == "urgent")
    })
    .await;
    rig.stop().await;
    let labels = runs.labels();
    let at = |name: &str| labels.iter().position(|l| l == name).expect("ran");
    // The slot held one low job (prefetch 1) and may have been handed the next one before
    // the high one was in the queue: the high ones run right after.
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
    config.deployment.queue_type = QueueType::Quorum;
    config.deployment.priorities = Priorities::default().with(&rig.queue, 5);
    config
        .validate()
        .expect("valid without a broker: the broker decides");
    let client_config = ClientConfig::new(config.deployment.clone());
    let accepted = Client::connect_with(&client_config).await;
    if broker_version() == BrokerVersion::V4_0 {
        let client = accepted.expect("RabbitMQ 4.0 orders quorum queues by priority");
        let _ = client.close().await;
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

#[palermo::job]
async fn beat(runs: palermo::State<Arc<Runs>>) -> anyhow::Result<()> {
    runs.push("beat".into());
    Ok(())
}

/// The scheduler's client declares the job queue with the worker's deployment, priorities
/// included: it once dropped them, so the broker refused its declare of a priority queue
/// (PRECONDITION_FAILED, every second) and the periodic job never ran.
#[tokio::test]
async fn a_periodic_job_runs_on_a_priority_queue() {
    let rig = Rig::new("priority-periodic").await;
    let election = rig.another_queue("scheduler");
    rig.track(&[&palermo::admin::schedules::status_queue(&election)]);
    let runs = Arc::new(Runs::default());
    let mut config = rig.config();
    config.deployment = Deployment {
        failed_queue: config.deployment.failed_queue.clone(),
        events_exchange: config.deployment.events_exchange.clone(),
        scheduler_queue: election,
        ..priority_deployment(&rig.queue, 5)
    };
    config.scheduler = true;
    let name = unique("priority-beat");
    let every = Periodic::every(&name, "1s").and_then(|p| p.queue(&rig.queue));
    let builder = Worker::builder(config).periodic(every.expect("schedule"), Beat {});
    rig.start(builder.state(runs.clone()));
    eventually(
        WAIT,
        "the periodic job runs on the priority queue",
        || async { runs.labels().iter().any(|l| l == "beat") },
    )
    .await;
    rig.stop().await;
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
    let ten = priority_client(&rig.queue, 10).await;
    let label = || Ordered { label: "x".into() };
    ten.enqueue_with(label(), Options::new().queue(&rig.queue))
        .await
        .expect("declared with 10");
    let five = priority_client(&rig.queue, 5).await;
    let err = five
        .enqueue_with(label(), Options::new().queue(&rig.queue))
        .await
        .expect_err("mismatch");
    let text = err.to_string();
    assert!(
        text.contains("max priority") && text.contains("--max-priority"),
        "{text}"
    );
    // The setting that differs is the priority, not the queue type.
    assert!(!text.contains("--queue-type"), "{text}");
    let none = support::client().await;
    assert!(none
        .enqueue_with(label(), Options::new().queue(&rig.queue))
        .await
        .is_err());
    for client in [ten, five, none] {
        let _ = client.close().await;
    }
}
