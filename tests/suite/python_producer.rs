//! The Python producer of docs/wire-format.md (examples/python/producer.py, pika) against
//! the real broker: a Rust worker runs the job it enqueues, with its arguments and job id.
//! Needs python3 with pika (`scripts/python.sh`, which scripts/test.sh runs); without them
//! the test fails and says so, it never skips (`support::python`).

use crate::support;

use std::sync::{Arc, Mutex};

use palermo::{JobContext, State, Worker};
use support::{eventually, Rig, WAIT};

/// What the worker saw: (job id, to, subject).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// The job of docs/wire-format.md's example, as a Rust application defines it.
#[palermo::job(queue = "mail", max_attempts = 1)]
async fn send_email(
    to: String,
    subject: String,
    ctx: JobContext,
    seen: State<Seen>,
) -> anyhow::Result<()> {
    seen.lock()
        .expect("lock")
        .push((ctx.id.to_string(), to, subject));
    Ok(())
}

#[tokio::test]
async fn a_job_enqueued_by_the_python_producer_runs_in_a_rust_worker() {
    let rig = Rig::new("python").await;
    let seen = Seen::default();
    rig.start(Worker::builder(rig.config()).state(seen.clone()));
    rig.wait_consuming().await;

    let url = support::amqp_url();
    // The subject carries non-ASCII text and quotes: JSON from Python, serde in Rust.
    let subject = "Grüße, \"Ada\" ✓";
    let stdout = tokio::task::spawn_blocking({
        let queue = rig.queue.clone();
        move || {
            support::python::run(
                "producer.py",
                &[
                    "--url",
                    &url,
                    "--queue",
                    &queue,
                    "--to",
                    "ada@example.com",
                    "--subject",
                    subject,
                ],
            )
        }
    })
    .await
    .expect("producer thread");
    let job_id = stdout.trim().to_string();
    assert!(
        uuid::Uuid::parse_str(&job_id).is_ok(),
        "the producer printed {stdout:?}, not a job id"
    );

    eventually(WAIT, "the Rust worker runs the Python job", || {
        let seen = seen.clone();
        async move { !seen.lock().expect("lock").is_empty() }
    })
    .await;
    rig.stop().await;
    let runs = seen.lock().expect("lock").clone();
    assert_eq!(
        runs,
        vec![(job_id, "ada@example.com".to_string(), subject.to_string())],
        "one run, with the producer's job id and arguments"
    );
    assert_eq!(rig.ready(&rig.failed).await, 0, "nothing failed");
}
