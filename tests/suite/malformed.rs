//! Bad input published straight onto a worker's queue (not through the client): every kind
//! ends in the failed queue with a reason naming the problem, the raw body kept, and the
//! worker keeps running good jobs in between.

use crate::support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use lapin::{
    types::{AMQPValue, FieldTable},
    BasicProperties,
};
use palermo::{Options, State, Worker};
use support::{
    eventually,
    wire::{header, header_str, job_headers, truncate, with_headers},
    Rig,
};

#[palermo::job(max_attempts = 1)]
async fn greet(name: String, times: u32, done: State<Arc<AtomicUsize>>) -> anyhow::Result<()> {
    let _ = (name, times);
    done.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// One bad message: what it is, its body and properties, and a word its reason must contain.
struct Case {
    what: &'static str,
    body: Vec<u8>,
    props: BasicProperties,
    reason: &'static str,
}

fn headers(queue: &str) -> FieldTable {
    job_headers("greet", queue)
}

fn props(h: FieldTable) -> BasicProperties {
    with_headers(h)
}

fn with(queue: &str, name: &str, value: AMQPValue) -> BasicProperties {
    let mut h = headers(queue);
    h.insert(name.into(), value);
    props(h)
}

/// The job id sent twice by the "duplicate job id" case; its first copy is a good job.
fn duplicated_job(queue: &str) -> BasicProperties {
    props(headers(queue)).with_message_id("9f6c1d1e-0000-4000-8000-00000000d0b1".into())
}

fn cases(queue: &str) -> Vec<Case> {
    let good = br#"{"name":"ada","times":2}"#.to_vec();
    let mut no_version = headers(queue);
    no_version = FieldTable::from(
        no_version
            .inner()
            .iter()
            .filter(|(k, _)| k.as_str() != header::VERSION)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    vec![
        Case {
            what: "non-UTF-8 body",
            body: vec![0xff, 0xfe, 0x00, 0x80],
            props: props(headers(queue)),
            reason: "cannot decode",
        },
        Case {
            what: "invalid JSON",
            body: br#"{"name": "ada", "#.to_vec(),
            props: props(headers(queue)),
            reason: "cannot decode",
        },
        Case {
            what: "JSON of the wrong shape",
            body: br#""ada""#.to_vec(),
            props: props(headers(queue)),
            reason: "expected struct Greet",
        },
        Case {
            what: "wrong argument types",
            body: br#"{"name":7,"times":"two"}"#.to_vec(),
            props: props(headers(queue)),
            reason: "invalid type",
        },
        Case {
            what: "missing argument",
            body: br#"{"name":"ada"}"#.to_vec(),
            props: props(headers(queue)),
            reason: "missing field `times`",
        },
        Case {
            what: "empty body",
            body: Vec::new(),
            props: props(headers(queue)),
            reason: "cannot decode",
        },
        Case {
            what: "no headers at all",
            body: good.clone(),
            props: BasicProperties::default(),
            reason: "x-palermo-version is missing",
        },
        Case {
            what: "no version header",
            body: good.clone(),
            props: props(no_version),
            reason: "x-palermo-version is missing",
        },
        Case {
            what: "a future wire version",
            body: good.clone(),
            props: with(queue, header::VERSION, AMQPValue::LongInt(2)),
            reason: "unsupported wire version 2",
        },
        Case {
            what: "attempt of the wrong AMQP type",
            body: good.clone(),
            props: with(queue, header::ATTEMPT, AMQPValue::LongString("1".into())),
            reason: "expected an integer",
        },
        Case {
            what: "job name of the wrong AMQP type",
            body: good.clone(),
            props: with(queue, header::JOB, AMQPValue::LongInt(5)),
            reason: "expected a string",
        },
        Case {
            what: "negative attempt count",
            body: good.clone(),
            props: with(queue, header::ATTEMPT, AMQPValue::LongInt(-3)),
            reason: "x-palermo-attempt is -3",
        },
        Case {
            what: "unknown job name",
            body: good.clone(),
            props: with(
                queue,
                header::JOB,
                AMQPValue::LongString("resize_image".into()),
            ),
            reason: "unknown job \"resize_image\"",
        },
        Case {
            what: "empty job name",
            body: good.clone(),
            props: with(queue, header::JOB, AMQPValue::LongString("".into())),
            reason: "x-palermo-job is empty",
        },
        Case {
            what: "unknown serializer",
            body: good.clone(),
            props: with(
                queue,
                header::SERIALIZER,
                AMQPValue::LongString("yaml".into()),
            ),
            reason: "unknown serializer \"yaml\"",
        },
        Case {
            what: "JSON body labelled msgpack",
            body: good.clone(),
            props: with(
                queue,
                header::SERIALIZER,
                AMQPValue::LongString("msgpack".into()),
            ),
            reason: "cannot decode",
        },
        Case {
            what: "missing message_id",
            body: good.clone(),
            props: BasicProperties::default().with_headers(headers(queue)),
            reason: "message_id",
        },
        Case {
            what: "message_id not a UUID",
            body: good.clone(),
            props: props(headers(queue)).with_message_id("job-42".into()),
            reason: "\"job-42\" is not a UUID",
        },
        Case {
            what: "header value that is not UTF-8",
            body: good.clone(),
            props: with(
                queue,
                header::JOB,
                AMQPValue::LongString(vec![0xc3, 0x28].into()),
            ),
            reason: "not valid UTF-8",
        },
        Case {
            what: "a 10 MB body",
            body: vec![b'x'; 10 * 1024 * 1024],
            props: props(headers(queue)),
            reason: "cannot decode",
        },
        Case {
            what: "a huge header value",
            body: good.clone(),
            props: with(
                queue,
                header::JOB,
                AMQPValue::LongString("j".repeat(60_000).as_str().into()),
            ),
            reason: "unknown job",
        },
        Case {
            what: "a duplicate job id",
            body: good.clone(),
            props: duplicated_job(queue),
            reason: "duplicate job id 9f6c1d1e-0000-4000-8000-00000000d0b1",
        },
        Case {
            what: "the max-attempts header zero",
            body: good,
            props: with(queue, header::MAX_ATTEMPTS, AMQPValue::LongInt(0)),
            reason: "x-palermo-max-attempts is 0",
        },
    ]
}

#[tokio::test]
async fn every_kind_of_bad_message_is_failed_with_its_reason_and_good_jobs_keep_running() {
    let rig = Rig::new("malformed").await;
    support::init_tracing();
    let queue = &rig.queue;
    let done = Arc::new(AtomicUsize::new(0));
    rig.start(Worker::builder(rig.config()).state(done.clone()));
    rig.wait_consuming().await;

    let client = rig.client();
    let cases = cases(queue);
    // The first copy of the duplicated job: a good job that runs.
    let first = br#"{"name":"first","times":1}"#;
    rig.publish_raw(queue, first, duplicated_job(queue)).await;
    for case in &cases {
        rig.publish_raw(queue, &case.body, case.props.clone()).await;
        // A good job between every bad one: the worker must keep consuming.
        client
            .enqueue_with(
                Greet {
                    name: case.what.into(),
                    times: 1,
                },
                Options::new().queue(queue),
            )
            .await
            .expect("good job");
    }
    let n = cases.len();
    eventually(
        Duration::from_secs(60),
        "every bad message failed and every good job ran",
        || async {
            rig.ready(&rig.failed).await as usize == n && done.load(Ordering::SeqCst) == n + 1
        },
    )
    .await;
    rig.stop().await;

    let failures = rig.drain(&rig.failed).await;
    assert_eq!(failures.len(), n, "nothing dropped, nothing duplicated");
    for (case, (props, body)) in cases.iter().zip(&failures) {
        let error = header_str(props, header::ERROR).unwrap_or_default();
        assert!(
            error.contains(case.reason),
            "{}: expected {:?} in the reason {:?}",
            case.what,
            case.reason,
            error
        );
        assert_eq!(
            body.len(),
            case.body.len(),
            "{}: the raw body is kept",
            case.what
        );
        println!("{:<34} → {}", case.what, truncate(&error, 110));
    }
    assert_eq!(rig.ready(queue).await, 0);
}
