//! The core slice against the real RabbitMQ: enqueue → run → ack, failures and bad input
//! into the failed queue, prefetch, confirms.

mod support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable},
    BasicProperties,
};
use palermo::{wire::header, Client, Format, JobContext, State, Worker, WorkerConfig};
use serde::{Deserialize, Serialize};
use support::{amqp_url, eventually, unique, Broker, RunningWorker};

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    street: String,
    zip: Option<u32>,
}

/// What the jobs of this file saw, shared through worker state.
#[derive(Default)]
struct Seen {
    calls: Mutex<Vec<(String, Vec<u64>, Address)>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    done: AtomicUsize,
}

#[palermo::job(queue = "core", max_attempts = 1)]
async fn record(
    label: String,
    numbers: Vec<u64>,
    address: Address,
    seen: State<Arc<Seen>>,
) -> anyhow::Result<()> {
    seen.calls
        .lock()
        .expect("lock")
        .push((label, numbers, address));
    Ok(())
}

#[palermo::job(queue = "core", max_attempts = 1, serializer = "msgpack")]
async fn record_packed(
    label: String,
    numbers: Vec<u64>,
    address: Address,
    seen: State<Arc<Seen>>,
) -> anyhow::Result<()> {
    seen.calls
        .lock()
        .expect("lock")
        .push((label, numbers, address));
    Ok(())
}

#[palermo::job(max_attempts = 1)]
async fn always_fails(reason: String) -> anyhow::Result<()> {
    Err(anyhow::anyhow!("card declined: {reason}"))
}

#[palermo::job(max_attempts = 1)]
async fn panics(n: u32) -> anyhow::Result<()> {
    if n > 0 {
        panic!("index {n} out of range");
    }
    Ok(())
}

#[palermo::job(max_attempts = 1)]
async fn slow(ms: u64, seen: State<Arc<Seen>>, ctx: JobContext) -> anyhow::Result<()> {
    let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_running.fetch_max(now, Ordering::SeqCst);
    assert_eq!(ctx.name.as_ref(), "slow");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    seen.running.fetch_sub(1, Ordering::SeqCst);
    seen.done.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn worker(queues: &[&str], failed: &str, concurrency: usize, seen: &Arc<Seen>) -> RunningWorker {
    let mut config = WorkerConfig::new(queues.iter().copied());
    config.amqp_url = amqp_url();
    config.failed_queue = failed.to_string();
    config.concurrency = concurrency;
    RunningWorker::start_with(Worker::builder(config).state(seen.clone()))
}

fn header_str(props: &BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().clone().unwrap_or_default();
    palermo::wire::get_str(&headers, name).ok().flatten()
}

#[tokio::test]
async fn enqueued_jobs_run_with_their_arguments_intact_in_both_formats() {
    let broker = Broker::connect().await;
    let (queue, failed) = (unique("roundtrip"), unique("failed"));
    broker.track(&[&queue, &failed]);
    let seen = Arc::new(Seen::default());
    let client = Client::connect(&amqp_url()).await.expect("client");
    let address = Address {
        street: "Via Roma 1 — «Palermo»".into(),
        zip: Some(90133),
    };
    let numbers = vec![0, u64::MAX, 42];
    client
        .enqueue_to(
            &queue,
            Record {
                label: "json".into(),
                numbers: numbers.clone(),
                address: address.clone(),
            },
        )
        .await
        .expect("enqueue json");
    client
        .enqueue_to(
            &queue,
            RecordPacked {
                label: "msgpack".into(),
                numbers: numbers.clone(),
                address: address.clone(),
            },
        )
        .await
        .expect("enqueue msgpack");
    let client_mp = client.clone().with_format(Format::MessagePack);
    client_mp
        .enqueue_to(
            &queue,
            Record {
                label: "client-msgpack".into(),
                numbers: numbers.clone(),
                address: address.clone(),
            },
        )
        .await
        .expect("enqueue");

    let running = worker(&[&queue], &failed, 1, &seen);
    eventually(WAIT, "three jobs ran", || async {
        seen.calls.lock().expect("lock").len() == 3
    })
    .await;
    running.stop().await;

    let mut calls = seen.calls.lock().expect("lock").clone();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    let labels: Vec<_> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(labels, ["client-msgpack", "json", "msgpack"]);
    for (_, n, a) in &calls {
        assert_eq!(n, &numbers);
        assert_eq!(a, &address);
    }
    assert_eq!(broker.ready(&queue).await, 0, "queue ends empty");
    assert_eq!(broker.ready(&failed).await, 0, "nothing failed");
    broker.cleanup().await;
}
