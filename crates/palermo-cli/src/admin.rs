//! What the admin commands share: where the store and the admin queues are, and opening them.
//!
//! Every command that reads failures, workers or statistics first drains the failed and
//! events queues into the store (see `palermo_store::recorder`), so what it shows is current
//! even when no dashboard is running.

use anyhow::Context as _;
use palermo_store::{Recorder, RecorderConfig, Store};

/// Flags of the admin commands, also read from the environment: the deployment's (as the
/// workers take them) and the admin database.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// The deployment's flags, the same as every worker's.
    #[command(flatten)]
    pub deployment: palermo::cli::DeploymentArgs,
    /// The admin database: sqlite:PATH (created if missing) or postgres://user@host/db.
    #[arg(long, global = true, env = "PALERMO_DATABASE_URL", hide_env_values = true, default_value = palermo_store::DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Test hook: abort between recording a failure and acking it.
    #[arg(long, global = true, hide = true)]
    pub crash_after_commit: bool,
    /// Test hook: abort between publishing a batch callback and marking it fired.
    #[arg(long, global = true, hide = true)]
    pub crash_after_callback: bool,
}

impl Settings {
    /// The deployment the flags describe (checked by `main` before any command runs).
    pub fn deployment(&self) -> palermo::Deployment {
        self.deployment.deployment()
    }

    /// Opens (and migrates) the store.
    pub async fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.database_url).await?)
    }

    /// Opens the store, connects to the broker and records what is queued.
    pub async fn recorder(&self) -> anyhow::Result<Recorder> {
        let recorder = self.connect_recorder().await?;
        recorder
            .drain()
            .await
            .context("recording the failed and events queues")?;
        Ok(recorder)
    }

    /// Opens the store and connects a recorder to the broker, recording nothing yet;
    /// `adjust` changes its settings (the dashboard's retention flags).
    pub async fn connect_recorder_with(
        &self,
        adjust: impl FnOnce(&mut RecorderConfig),
    ) -> anyhow::Result<Recorder> {
        let store = self.store().await?;
        let mut config = RecorderConfig {
            deployment: self.deployment(),
            crash_after_commit: self.crash_after_commit,
            crash_after_callback: self.crash_after_callback,
            ..RecorderConfig::default()
        };
        adjust(&mut config);
        Ok(Recorder::connect(store, config).await?)
    }

    /// [`Settings::connect_recorder_with`] the default settings.
    pub async fn connect_recorder(&self) -> anyhow::Result<Recorder> {
        self.connect_recorder_with(|_| {}).await
    }
}

/// Logs to stderr at the level in `RUST_LOG` (default: warnings only; output is on stdout).
/// lapin's own logs are off by default: it logs every channel the broker closes as an error,
/// and looking up a queue that does not exist closes one (the queues table and the dashboard
/// do that on every refresh); Palermo reports the broker errors that matter itself.
pub fn init_logging() {
    palermo::cli::init_tracing_at("warn,lapin=off");
}

/// Lets `palermo ... | head` end quietly: Rust ignores SIGPIPE, which turns a closed stdout
/// into a panic in `println!`; the default action ends the process as other tools do.
#[allow(unsafe_code)] // the one libc call of the CLI; nothing else to check
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to the default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The error and its causes on one line, each cause once (library errors often repeat their
/// source in their own message).
pub fn error_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

/// Who the history says did a retry or removal: `palermo cli (user@host)`.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("palermo cli ({user}@{host})")
}

/// Cuts `text` to its first line and `max` characters, for table cells.
pub fn cell(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let cut: String = line.chars().take(max).collect();
    if cut.len() < line.len() || text.lines().nth(1).is_some() {
        format!("{}…", cut.trim_end())
    } else {
        cut
    }
}

/// A job name for people: `(unknown)` when the message had none.
pub fn job_name(name: &str) -> &str {
    if name.is_empty() {
        "(unknown)"
    } else {
        name
    }
}
