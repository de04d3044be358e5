//! The smallest Palermo program: one job, one worker, the job enqueued from `main`.
//!
//! It enqueues one `greet` job, runs a worker in the same process until that job has run,
//! stops the worker gracefully and exits 0. A real application enqueues from its web
//! handlers and runs the worker as a binary of its own (see `examples/axum-app`).
//!
//! ```sh
//! cargo run -p minimal                    # queue "minimal"
//! cargo run -p minimal -- --queue scratch # any other queue
//! ```

use std::time::Duration;

use anyhow::{bail, Context as _};
use palermo::{shutdown, Client, JobContext, Options, State, Worker, WorkerConfig};
use tokio::sync::mpsc;

/// How long `main` waits for the job before it gives up (exit code 1).
const WAIT: Duration = Duration::from_secs(30);

/// Application state the job reaches through the worker: here, a line back to `main`. In a
/// real application, a database pool or an HTTP client.
struct Done {
    tx: mpsc::UnboundedSender<String>,
}

/// The job: `#[palermo::job]` generates the struct `Greet { name }` that `main` enqueues.
#[palermo::job(queue = "minimal", max_attempts = 3)]
async fn greet(name: String, ctx: JobContext, done: State<Done>) -> anyhow::Result<()> {
    let greeting = format!("Hello, {name}! (job {}, attempt {})", ctx.id, ctx.attempt);
    println!("{greeting}");
    done.tx.send(greeting).context("main stopped waiting")?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let queue = queue_from_args()?;
    let url =
        std::env::var("PALERMO_AMQP_URL").unwrap_or_else(|_| palermo::DEFAULT_AMQP_URL.into());

    // Enqueue: returns once RabbitMQ has confirmed the job (it is durable from here on).
    let client = Client::connect(&url).await?;
    let id = client
        .enqueue_with(Greet { name: "Ada".into() }, Options::new().queue(&queue))
        .await?
        .id();
    println!("enqueued greet {id} to queue {queue}");

    // Work: a worker for that queue, with the state its job needs.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut config = WorkerConfig::new([queue.as_str()]);
    config.deployment.amqp_url = url;
    let worker = Worker::builder(config).state(Done { tx }).build()?;
    let (stop, stopped) = shutdown::channel();
    let running = tokio::spawn(worker.run(stopped));

    let ran = tokio::time::timeout(WAIT, rx.recv()).await;
    // Stop gracefully whatever happened: the worker finishes (and acks) what it runs.
    stop.stop();
    running.await.context("the worker task panicked")??;
    client.close().await?;
    match ran {
        Ok(Some(_)) => {
            println!("done: the job ran and the worker stopped");
            Ok(())
        }
        Ok(None) => bail!("the worker stopped before the job ran"),
        Err(_) => bail!("the job did not run within {WAIT:?}: is a worker for {queue} failing it?"),
    }
}

/// `--queue NAME` (defaults to `minimal`, the job's own queue).
fn queue_from_args() -> anyhow::Result<String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok("minimal".into()),
        (Some("--queue"), Some(queue), None) => Ok(queue),
        _ => bail!("usage: minimal [--queue NAME]"),
    }
}

/// Testing the job without a broker (docs/guide.md, "Testing your jobs"): `cargo test -p minimal`.
#[cfg(test)]
mod tests {
    use palermo::testing::{Fake, Outcome};

    use super::*;

    #[tokio::test]
    async fn greet_is_enqueued_and_runs_with_its_state() -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fake = Fake::new().with_state(Done { tx });
        fake.client().enqueue(Greet { name: "Ada".into() }).await?;
        fake.assert_enqueued::<Greet>(|job| job.name == "Ada");

        let runs = fake.drain().await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].outcome, Outcome::Ok);
        assert!(rx.try_recv()?.starts_with("Hello, Ada! (job "));
        assert_eq!(fake.count(), 0);
        Ok(())
    }
}
