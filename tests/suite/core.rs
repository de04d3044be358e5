//! The core slice against the real RabbitMQ: enqueue → run → ack, failures and bad input
//! into the failed queue, prefetch, confirms.

use crate::support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use lapin::{
    types::{AMQPValue, FieldTable},
    BasicProperties,
};
use palermo::{Client, Format, JobContext, Options, State, Worker};
use serde::{Deserialize, Serialize};
use support::{
    eventually,
    wire::{header, header_int, header_str, job_headers, with_headers},
    Rig, WAIT,
};

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

/// The same job, always in MessagePack whatever the client's default.
#[palermo::job(queue = "core", max_attempts = 1, serializer = "msgpack")]
async fn record_packed(
    label: String,
    numbers: Vec<u64>,
    address: Address,
    seen: State<Arc<Seen>>,
) -> anyhow::Result<()> {
    record(label, numbers, address, seen).await
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

/// Starts a worker on the rig's queue with `concurrency` slots and `seen` as its state.
fn start(rig: &Rig, concurrency: usize, seen: &Arc<Seen>) {
    let mut config = rig.config();
    config.concurrency = concurrency;
    rig.start(Worker::builder(config).state(seen.clone()));
}

#[tokio::test]
async fn enqueued_jobs_run_with_their_arguments_intact_in_both_formats() {
    let rig = Rig::new("roundtrip").await;
    let queue = &rig.queue;
    let seen = Arc::new(Seen::default());
    let address = Address {
        street: "Via Roma 1 — «Palermo»".into(),
        zip: Some(90133),
    };
    let numbers = vec![0, u64::MAX, 42];
    rig.enqueue(Record {
        label: "json".into(),
        numbers: numbers.clone(),
        address: address.clone(),
    })
    .await;
    rig.enqueue(RecordPacked {
        label: "msgpack".into(),
        numbers: numbers.clone(),
        address: address.clone(),
    })
    .await;
    let client_mp = support::client_with(palermo::ClientConfig {
        format: Format::MessagePack,
        ..palermo::ClientConfig::new(support::deployment())
    })
    .await;
    client_mp
        .enqueue_with(
            Record {
                label: "client-msgpack".into(),
                numbers: numbers.clone(),
                address: address.clone(),
            },
            Options::new().queue(queue),
        )
        .await
        .expect("enqueue");
    client_mp.close().await.expect("close");

    start(&rig, 1, &seen);
    eventually(WAIT, "three jobs ran", || async {
        seen.calls.lock().expect("lock").len() == 3
    })
    .await;
    rig.stop().await;

    let mut calls = seen.calls.lock().expect("lock").clone();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    let labels: Vec<_> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(labels, ["client-msgpack", "json", "msgpack"]);
    for (_, n, a) in &calls {
        assert_eq!(n, &numbers);
        assert_eq!(a, &address);
    }
    assert_eq!(rig.ready(queue).await, 0, "queue ends empty");
    assert_eq!(rig.ready(&rig.failed).await, 0, "nothing failed");
}

#[tokio::test]
async fn a_failing_job_lands_once_in_the_failed_queue_with_every_header_and_its_body() {
    let rig = Rig::new("fail").await;
    let queue = &rig.queue;
    let seen = Arc::new(Seen::default());
    let id = rig
        .enqueue(AlwaysFails {
            reason: "insufficient funds".into(),
        })
        .await;
    start(&rig, 1, &seen);
    rig.wait_failed(1).await;
    rig.stop().await;

    let messages = rig.drain(&rig.failed).await;
    assert_eq!(messages.len(), 1, "exactly one failure");
    let (props, body) = &messages[0];
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(body).expect("json body"),
        serde_json::json!({"reason": "insufficient funds"})
    );
    assert_eq!(
        props.message_id().as_ref().map(|m| m.to_string()),
        Some(id.to_string())
    );
    assert_eq!(
        header_str(props, header::JOB).as_deref(),
        Some("always_fails")
    );
    assert_eq!(
        header_str(props, header::QUEUE).as_deref(),
        Some(queue.as_str())
    );
    assert_eq!(
        header_str(props, header::ERROR_KIND).as_deref(),
        Some("error")
    );
    let error = header_str(props, header::ERROR).expect("error header");
    assert!(
        error.contains("card declined: insufficient funds"),
        "{error}"
    );
    let worker_id = header_str(props, header::WORKER).expect("worker header");
    assert!(
        worker_id.contains(&format!(":{}:", std::process::id())),
        "{worker_id}"
    );
    assert!(header_str(props, header::FAILURE_ID).is_some());
    for name in [
        header::ATTEMPT,
        header::FAILED_AT,
        header::FIRST_FAILED_AT,
        header::ENQUEUED_AT,
    ] {
        assert!(header_int(props, name).is_some(), "{name} missing");
    }
    assert_eq!(rig.ready(queue).await, 0);
}

#[tokio::test]
async fn a_panicking_job_is_reported_with_its_message_and_the_worker_keeps_running() {
    let rig = Rig::new("panic").await;
    let seen = Arc::new(Seen::default());
    rig.enqueue(Panics { n: 7 }).await;
    start(&rig, 1, &seen);
    rig.wait_failed(1).await;
    rig.enqueue(Slow { ms: 1 }).await;
    eventually(WAIT, "the worker still runs jobs", || async {
        seen.done.load(Ordering::SeqCst) == 1
    })
    .await;
    rig.stop().await;

    let messages = rig.drain(&rig.failed).await;
    let (props, _) = &messages[0];
    assert_eq!(
        header_str(props, header::ERROR_KIND).as_deref(),
        Some("panic")
    );
    let error = header_str(props, header::ERROR).expect("error");
    assert!(error.contains("index 7 out of range"), "{error}");
    let backtrace = header_str(props, header::BACKTRACE).expect("backtrace");
    assert!(backtrace.contains("index 7 out of range"), "{backtrace}");
}

#[tokio::test]
async fn bad_messages_go_to_the_failed_queue_with_a_reason_and_the_worker_keeps_consuming() {
    let rig = Rig::new("bad").await;
    let queue = &rig.queue;
    let seen = Arc::new(Seen::default());
    start(&rig, 1, &seen);
    rig.wait_consuming().await;

    let cases: Vec<(&str, Vec<u8>, BasicProperties)> = vec![
        (
            "unknown job",
            br#"{}"#.to_vec(),
            with_headers(job_headers("no_such_job", queue)),
        ),
        (
            "cannot decode",
            b"\xff\xfe not json".to_vec(),
            with_headers(job_headers("slow", queue)),
        ),
        (
            "missing",
            br#"{"ms":1}"#.to_vec(),
            BasicProperties::default(),
        ),
    ];
    for (_, body, props) in &cases {
        rig.publish_raw(queue, body, props.clone()).await;
    }
    rig.enqueue(Slow { ms: 1 }).await;
    eventually(WAIT, "three failures and one good job", || async {
        rig.ready(&rig.failed).await == 3 && seen.done.load(Ordering::SeqCst) == 1
    })
    .await;
    rig.stop().await;

    let messages = rig.drain(&rig.failed).await;
    for ((expected, body, _), (props, failed_body)) in cases.iter().zip(&messages) {
        let error = header_str(props, header::ERROR).expect("reason");
        assert!(
            error.contains(expected),
            "expected {expected:?} in {error:?}"
        );
        assert_eq!(body, failed_body, "the raw body is kept");
        assert_eq!(
            header_str(props, header::SOURCE_QUEUE).as_deref(),
            Some(queue.as_str())
        );
    }
}

#[tokio::test]
async fn a_slot_never_holds_more_than_one_unacked_delivery() {
    let rig = Rig::new("prefetch").await;
    let queue = &rig.queue;
    let seen = Arc::new(Seen::default());
    let client = rig.client();
    let ids = client
        .enqueue_many(
            (0..10).map(|_| Slow { ms: 300 }),
            Options::new().queue(queue),
        )
        .await
        .expect("enqueue_many");
    assert_eq!(ids.len(), 10);

    start(&rig, 2, &seen);
    // Delivered = 10 - ready, and delivered <= acked + 2 <= done + 2. Reading `ready` before
    // `done` keeps the check conservative while jobs finish in between.
    let mut min_slack = i64::MAX;
    while seen.done.load(Ordering::SeqCst) < 10 {
        let ready = i64::from(rig.ready(queue).await);
        let done = seen.done.load(Ordering::SeqCst) as i64;
        min_slack = min_slack.min(ready - (10 - done - 2));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    rig.stop().await;
    assert!(
        min_slack >= 0,
        "the broker handed out more than 2 unacked deliveries (slack {min_slack})"
    );
    assert_eq!(
        seen.max_running.load(Ordering::SeqCst),
        2,
        "both slots were busy"
    );
}

#[tokio::test]
async fn enqueue_without_a_broker_is_an_error() {
    let err = Client::connect("amqp://guest:guest@127.0.0.1:1/%2f")
        .await
        .err()
        .expect("no broker on port 1");
    assert!(matches!(err, palermo::Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn a_message_built_by_hand_from_the_wire_format_doc_runs() {
    // What a Python (pika) or Node producer following docs/wire-format.md sends: 8- and
    // 32-bit integers, no preview, no enqueued-at.
    let rig = Rig::new("foreign").await;
    let queue = &rig.queue;
    let seen = Arc::new(Seen::default());
    start(&rig, 1, &seen);
    rig.wait_consuming().await;
    let mut headers = FieldTable::default();
    headers.insert(header::VERSION.into(), AMQPValue::ShortShortUInt(1));
    headers.insert(header::JOB.into(), AMQPValue::LongString("record".into()));
    headers.insert(
        header::SERIALIZER.into(),
        AMQPValue::LongString("json".into()),
    );
    headers.insert(
        header::QUEUE.into(),
        AMQPValue::LongString(queue.as_str().into()),
    );
    headers.insert(header::ATTEMPT.into(), AMQPValue::LongInt(1));
    let props = BasicProperties::default()
        .with_message_id(uuid::Uuid::new_v4().to_string().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_app_id("python".into())
        .with_headers(headers);
    let body =
        br#"{"label":"from python","numbers":[1,2],"address":{"street":"Corso","zip":null}}"#;
    rig.publish_raw(queue, body, props).await;
    eventually(WAIT, "the job ran", || async {
        seen.calls.lock().expect("lock").len() == 1
    })
    .await;
    rig.stop().await;
    let calls = seen.calls.lock().expect("lock").clone();
    assert_eq!(calls[0].0, "from python");
    assert_eq!(
        calls[0].2,
        Address {
            street: "Corso".into(),
            zip: None
        }
    );
    assert_eq!(rig.ready(&rig.failed).await, 0);
}
