//! What 10,000 live unique keys cost the broker: enqueue rate (plain, unique and duplicate
//! enqueues) and broker memory (`rabbitmq-diagnostics memory_breakdown`) before and after.
//! Run once against a local broker (docs/unique-and-priority.md has the numbers):
//!
//! ```text
//! cargo run -p palermo-bench --example unique_cost -- 10000
//! ```
//!
//! It publishes to its own queue `bench.unique.<uuid>` and deletes it and every lock queue it
//! made before exiting.

use std::{process::Command, sync::Arc, time::Duration};

use anyhow::Context;
use lapin::options::QueueDeleteOptions;
use palermo::{admin::unique::lock_name, Client, Enqueued, Options};
use tokio::time::Instant;

#[palermo::job]
async fn noop(n: u64) -> anyhow::Result<()> {
    let _ = n;
    Ok(())
}

/// Concurrent enqueues, as a busy web app makes them.
const TASKS: u64 = 32;
const TTL: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("the argument is a number of keys")?
        .unwrap_or(10_000);
    let url = std::env::var("PALERMO_AMQP_URL").unwrap_or(palermo::DEFAULT_AMQP_URL.into());
    let queue = format!("bench.unique.{}", uuid::Uuid::new_v4().simple());
    let client = Arc::new(Client::connect(&url).await?);
    let prefix = queue.clone();
    let key = move |i: u64| format!("{prefix}:{i}");
    let before = memory()?;

    let plain = run(&client, &queue, n, |c, q, i| async move {
        c.enqueue_with(Noop { n: i }, Options::new().queue(&q))
            .await
    })
    .await?;
    let k = key.clone();
    let unique = run(&client, &queue, n, move |c, q, i| {
        let key = k(i);
        async move {
            c.enqueue_with(Noop { n: i }, Options::new().queue(&q).unique(key, TTL))
                .await
        }
    })
    .await?;
    let after = memory()?;
    let k = key.clone();
    let duplicate = run(&client, &queue, n, move |c, q, i| {
        let key = k(i);
        async move {
            c.enqueue_with(Noop { n: i }, Options::new().queue(&q).unique(key, TTL))
                .await
        }
    })
    .await?;

    println!("keys: {n}, {TASKS} concurrent enqueuers, one client connection");
    println!("plain enqueue:     {:>8.0} jobs/s", plain.0);
    println!(
        "unique (new key):  {:>8.0} jobs/s ({} new)",
        unique.0, unique.1
    );
    println!(
        "unique (held key): {:>8.0} jobs/s ({} new)",
        duplicate.0, duplicate.1
    );
    println!("broker memory before:\n{before}\nafter {n} live locks (and 2x{n} jobs):\n{after}");

    let connection = palermo::admin::broker::connect(&url, "unique_cost cleanup").await?;
    let channel = connection.create_channel().await?;
    for i in 0..n {
        let lock = lock_name(key(i).as_bytes(), TTL);
        channel
            .queue_delete(lock.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    connection.close(200, "done".into()).await?;
    client.close().await?;
    Ok(())
}

/// Runs `enqueue` for 0..n over [`TASKS`] tasks; the rate and how many were new.
async fn run<F, Fut>(
    client: &Arc<Client>,
    queue: &str,
    n: u64,
    enqueue: F,
) -> anyhow::Result<(f64, u64)>
where
    F: Fn(Arc<Client>, String, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Enqueued, palermo::Error>> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (client, queue, enqueue) = (client.clone(), queue.to_string(), enqueue.clone());
        tasks.push(tokio::spawn(async move {
            let mut new = 0;
            for i in (t..n).step_by(TASKS as usize) {
                if enqueue(client.clone(), queue.clone(), i).await?.is_new() {
                    new += 1;
                }
            }
            Ok::<u64, palermo::Error>(new)
        }));
    }
    let mut new = 0;
    for task in tasks {
        new += task.await??;
    }
    Ok((n as f64 / started.elapsed().as_secs_f64(), new))
}

/// The broker's total memory and the lines that grow with queues.
fn memory() -> anyhow::Result<String> {
    let out = Command::new("rabbitmq-diagnostics")
        .args(["-q", "memory_breakdown", "--unit", "mb"])
        .output()
        .context("rabbitmq-diagnostics")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["queue_procs", "mnesia", "other_ets", "msg_index", "binary"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect();
    let total: f64 = text
        .lines()
        .filter(|l| !l.starts_with("reserved_unallocated") && !l.starts_with("allocated_unused"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum();
    Ok(format!(
        "  total (allocated, used): {total:.1} MB\n  {}",
        lines.join("\n  ")
    ))
}
