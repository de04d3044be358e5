//! `palermo enqueue JOB --queue Q --args JSON [--in 10m | --at 2030-01-01T08:00:00Z]
//! [--priority 5]`: publish a job by name, confirmed; `--in` / `--at` put it in the delay
//! queues until due. The queue is declared as the deployment's flags say (a priority queue
//! with `palermo --max-priority Q=N enqueue ...`).
//! `--timeout` bounds the wait: while RabbitMQ blocks publishers (a resource alarm) the
//! command fails after it with the broker's reason instead of hanging.

use anyhow::{bail, Context};
use std::time::{Duration, SystemTime};

use palermo::{admin::RawJob, Client, ClientConfig, Format, Options};
use palermo_store::time;

use crate::admin::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job's wire name (e.g. send_email).
    job: String,
    /// The queue to publish to.
    #[arg(long, default_value = "default")]
    queue: String,
    /// The arguments as a JSON object, e.g. '{"to":"ada@example.com"}'.
    #[arg(long, default_value = "{}")]
    args: String,
    /// The serializer of the body: json or msgpack.
    #[arg(long, default_value = "json")]
    serializer: String,
    /// Attempts before the job goes to the failed queue (default: the worker's).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Run it after this delay instead of now: 500ms, 90s, 10m, 1h30m, 2d, 1w (whole seconds,
    /// rounded up).
    #[arg(long = "in", value_name = "DURATION", conflicts_with = "at", value_parser = time::parse_duration)]
    delay: Option<Duration>,
    /// Run it at this time instead of now: RFC 3339 (2030-01-01T08:00:00Z) or @unix-seconds.
    #[arg(long, value_name = "TIME", value_parser = time::parse_time)]
    at: Option<SystemTime>,
    /// How long to wait for the broker to take and confirm the job, including a wait for a
    /// resource alarm to clear (then it fails naming the broker's reason, exit status 1):
    /// 500ms, 10s, 1m. Defaults to 10s.
    #[arg(long, value_name = "DURATION", value_parser = time::parse_duration)]
    timeout: Option<Duration>,
    /// The job's priority (0 to 255); it orders jobs only on a priority queue (the
    /// deployment's --max-priority QUEUE=N). Defaults to none (0).
    #[arg(long)]
    priority: Option<u8>,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    palermo::admin::topology::validate_queue_name(&args.queue)?;
    let value: serde_json::Value = serde_json::from_str(&args.args)
        .with_context(|| format!("--args is not valid JSON: {}", args.args))?;
    if !value.is_object() {
        bail!(
            "--args must be a JSON object of the job's named arguments, e.g. '{{\"user_id\": 42}}'"
        );
    }
    let format = Format::from_name(&args.serializer).with_context(|| {
        format!(
            "unknown --serializer {:?}; use json or msgpack",
            args.serializer
        )
    })?;
    if args.max_attempts == Some(0) {
        bail!("--max-attempts must be at least 1");
    }
    let body = format.encode(&value)?;
    let config = ClientConfig {
        publish_timeout: args.timeout.unwrap_or(palermo::DEFAULT_PUBLISH_TIMEOUT),
        ..ClientConfig::new(settings.deployment())
    };
    let client = Client::connect_with(&config).await?;
    let job = RawJob {
        name: args.job,
        queue: args.queue,
        format,
        body,
        max_attempts: args.max_attempts,
    };
    let mut options = Options::new();
    if let Some(priority) = args.priority {
        options = options.priority(priority);
    }
    let run_at = match args.delay {
        Some(delay) => Some(SystemTime::now() + delay),
        None => args.at,
    };
    if let Some(at) = run_at {
        options = options.at(at);
    }
    let id = client.enqueue_raw(job, options).await?.id();
    if let Some(at) = run_at {
        eprintln!("scheduled for {}", time::format_time(at));
    }
    println!("{id}");
    client.close().await?;
    Ok(())
}
