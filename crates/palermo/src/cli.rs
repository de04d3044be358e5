//! The edge of a worker binary: flags and environment in, exit code out.
//!
//! A demo app's `main` is one line: `palermo::cli::main(|worker| worker.state(db))`.
//! The first SIGINT/SIGTERM stops the worker gracefully; a second exits at once, leaving
//! unacked jobs to the broker.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use tracing::{error, warn};

pub use crate::deployment::DeploymentArgs;
use crate::{
    config::WorkerConfig,
    shutdown,
    worker::{Worker, WorkerBuilder},
};

mod lazy_fields;
mod plain_fields;

/// `worker --queues mail,video --concurrency 4`
#[derive(Debug, Clone, Parser)]
#[command(about = "Runs the Palermo jobs linked into this binary")]
pub struct WorkerArgs {
    /// The deployment's flags, shared with the `palermo` admin command.
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// Queues to consume, comma-separated (e.g. mail,video).
    #[arg(long, value_delimiter = ',', required = true)]
    pub queues: Vec<String>,
    /// Jobs run at once (one channel each, one job at a time each).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Deliveries each slot holds unacked, the running one included (1 to 1000). More than 1
    /// saves a round trip per tiny job, but a killed worker hands back up to this many per
    /// slot and other workers cannot take them meanwhile.
    #[arg(long, default_value_t = 1)]
    pub prefetch: u16,
    /// Seconds running jobs get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
    /// Seconds one job may run when it sets no timeout of its own (keep it below RabbitMQ's
    /// consumer_timeout, 30 minutes by default).
    #[arg(long, default_value_t = 25 * 60)]
    pub job_timeout: u64,
    /// Seconds a running job an operator cancelled may go on before its run is dropped
    /// (fractions allowed).
    #[arg(long, default_value_t = 30.0)]
    pub cancel_grace: f64,
    /// Runs of a job at most, when the job does not say; 1 means no retry.
    #[arg(long, default_value_t = crate::retry::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// Seconds before the first retry; each further retry waits twice as long.
    #[arg(long, default_value_t = crate::retry::Backoff::DEFAULT.base.as_secs())]
    pub backoff_base: u64,
    /// Longest wait between two retries, in seconds.
    #[arg(long, default_value_t = crate::retry::Backoff::DEFAULT.max.as_secs())]
    pub backoff_max: u64,
    /// Random extra wait, as a fraction of the delay (0 to 1).
    #[arg(long, default_value_t = crate::retry::Backoff::DEFAULT.jitter)]
    pub backoff_jitter: f64,
    /// Log lines as text for people, or one JSON object per line for a log collector.
    #[arg(long, env = "PALERMO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Times a job may come back without a run finishing before it is failed as poison.
    #[arg(long, default_value_t = 5)]
    pub max_redeliveries: u32,
    /// Seconds between heartbeats (fractions allowed, e.g. 0.5).
    #[arg(long, default_value_t = 5.0)]
    pub heartbeat_interval: f64,
    /// Seconds before the first reconnect attempt after the broker connection drops; each
    /// further attempt waits twice as long (fractions allowed, e.g. 0.25).
    #[arg(long, default_value_t = crate::reconnect::DEFAULT_BACKOFF.base.as_secs_f64())]
    pub reconnect_delay: f64,
    /// Longest wait between two reconnect attempts, in seconds (at most 600).
    #[arg(long, default_value_t = crate::reconnect::DEFAULT_BACKOFF.max.as_secs_f64())]
    pub reconnect_max_delay: f64,
    /// Also run the scheduler of periodic jobs; any number of workers may, one is active.
    #[arg(long)]
    pub scheduler: bool,
    /// A fleet-wide limit of a job, replacing the job's own (repeat for several jobs):
    /// JOB:concurrency=N,rate=N/s,key=ARG,name=NAME, e.g. charge:rate=10/s,key=account_id
    /// (docs/limits.md). Every worker running the job must be given the same.
    #[arg(long = "limit", value_name = "JOB:SETTINGS", value_parser = parse_limit)]
    pub limits: Vec<(String, crate::Limit)>,
}

fn parse_limit(text: &str) -> Result<(String, crate::Limit), String> {
    crate::Limit::parse_flag(text).map_err(|e| e.to_string())
}

impl WorkerArgs {
    /// The configuration these flags describe.
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            deployment: self.deployment.deployment(),
            queues: self.queues.iter().map(|q| q.trim().to_string()).collect(),
            concurrency: self.concurrency,
            prefetch: self.prefetch,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            job_timeout: Duration::from_secs(self.job_timeout),
            cancel_grace: Duration::try_from_secs_f64(self.cancel_grace).unwrap_or(Duration::ZERO),
            max_attempts: self.max_attempts,
            max_redeliveries: self.max_redeliveries,
            backoff: crate::retry::Backoff {
                base: Duration::from_secs(self.backoff_base),
                max: Duration::from_secs(self.backoff_max),
                jitter: self.backoff_jitter,
            },
            heartbeat_interval: Duration::try_from_secs_f64(self.heartbeat_interval)
                .unwrap_or(Duration::ZERO),
            reconnect: crate::retry::Backoff {
                base: Duration::try_from_secs_f64(self.reconnect_delay).unwrap_or(Duration::ZERO),
                max: Duration::try_from_secs_f64(self.reconnect_max_delay)
                    .unwrap_or(Duration::ZERO),
                jitter: crate::reconnect::DEFAULT_BACKOFF.jitter,
            },
            scheduler: self.scheduler,
            limits: self.limits.iter().cloned().collect(),
        }
    }
}

/// How log lines look (`--log-format`). Defaults to text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people, colours on a terminal.
    #[default]
    Text,
    /// One JSON object per line, with the fields of the event and its spans (the job span's
    /// `job.id`, `job.name`, `queue`, `attempt`, `trace_id`), for a log collector.
    Json,
}

/// Logs to stderr at the level in `RUST_LOG` (default `info`).
pub fn init_tracing() {
    init_tracing_at("info");
}

/// Logs to stderr at the level in `RUST_LOG`, or `default` when it is not set; colours only
/// on a terminal. Binaries call it once at start-up.
pub fn init_tracing_at(default: &str) {
    init_logging(LogFormat::Text, default);
}

/// Logs to stderr in `format` at the level in `RUST_LOG`, or `default` when it is not set.
pub fn init_logging(format: LogFormat, default: &str) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{fmt::format::JsonFields, layer::SubscriberExt as _};

    use self::{lazy_fields::LazyJobFields, plain_fields::PlainFields};

    // lapin logs every channel the broker closes as an ERROR of its own; Palermo reports
    // those it did not expect where it handles them, and some it expects (the 404 of a
    // passive check for a pause marker, docs/admin.md "Control"), so the default is without
    // lapin's line. RUST_LOG still decides when it is set.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},lapin::channel=off"))
    });
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // The same layering as `tracing_subscriber::fmt().with_env_filter(filter)`.
    let registry = tracing_subscriber::registry();
    let _ = match format {
        // Colours only for people: escape codes in log files are noise (and per-job work).
        LogFormat::Text if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
            registry.with(layer.with_ansi(true)).with(filter).try_init()
        }
        // The same text for less work per field (every job's span has five), and the job
        // span's fields formatted only if a line is logged in it.
        LogFormat::Text => registry
            .with(LazyJobFields::new(
                layer.with_ansi(false).fmt_fields(PlainFields),
                PlainFields,
            ))
            .with(filter)
            .try_init(),
        LogFormat::Json => registry
            .with(LazyJobFields::new(
                layer.json().with_current_span(true),
                JsonFields::new(),
            ))
            .with(filter)
            .try_init(),
    };
}

/// Parses the flags, runs the worker until it is stopped, and returns the exit code: 0 after
/// a clean stop, 1 with a one-line message on a bad configuration or a broker failure.
pub fn main(configure: impl FnOnce(WorkerBuilder) -> WorkerBuilder) -> ExitCode {
    let args = WorkerArgs::parse();
    init_logging(args.log_format, "info");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, configure)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a worker with these flags until SIGINT/SIGTERM.
pub async fn run(
    args: WorkerArgs,
    configure: impl FnOnce(WorkerBuilder) -> WorkerBuilder,
) -> anyhow::Result<()> {
    let worker = configure(Worker::builder(args.config())).build()?;
    let (trigger, shutdown) = shutdown::channel();
    tokio::spawn(async move {
        if let Err(e) = wait_for_signal().await {
            error!(error = %e, "cannot listen for signals");
            return;
        }
        warn!("stop requested: finishing running jobs (send the signal again to exit now)");
        trigger.stop();
        if wait_for_signal().await.is_ok() {
            warn!("second stop signal: exiting now; unacked jobs return to their queues");
            std::process::exit(130);
        }
    });
    worker.run(shutdown).await?;
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
