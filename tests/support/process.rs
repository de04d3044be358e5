//! The test worker binary (`test_worker.rs`) as a child process, for the tests that signal,
//! kill or read the log of a real worker: spawned against the test broker with its log in a
//! file, and killed if a test fails before it stops it, so no worker outlives its test.

use std::{
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use palermo::{admin::RawJob, Client, Format, Options};

/// The test worker binary.
pub const WORKER: &str = env!("CARGO_BIN_EXE_palermo-test-worker");

/// A running test worker.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        // After a successful wait this does nothing: std knows the child is gone.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Starts the test worker with `args` on the test broker and queue type, appending its
    /// log (level `info`, no colours) to the file `log`.
    pub fn spawn(args: &[&str], log: &Path) -> Running {
        Self::spawn_with_env(args, &[], log)
    }

    /// [`Running::spawn`] with extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)], log: &Path) -> Running {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("worker log file");
        let child = Command::new(WORKER)
            .args(args)
            .env("PALERMO_AMQP_URL", super::amqp_url())
            .env("PALERMO_QUEUE_TYPE", super::queue_type().name())
            .env("RUST_LOG", "info,palermo::worker=debug")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn the test worker");
        Running(child)
    }

    /// Sends `signal` to it.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, not yet reaped (`Running` owns it).
        unsafe { libc::kill(self.0.id() as libc::pid_t, signal) };
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.0.wait();
    }

    /// SIGTERM, then waits up to `within` for it to exit; its exit status.
    pub async fn stop(self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(within).await
    }

    /// Waits up to `within` for it to exit (panics after that; dropping it kills it); its
    /// exit status.
    pub async fn wait(mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not stop within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The text of a log file so far (empty if there is none yet).
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Enqueues the test worker's `sleep_ms` job (one attempt) by name.
pub async fn enqueue_sleep(client: &Client, queue: &str, ms: u64) -> uuid::Uuid {
    client
        .enqueue_raw(
            RawJob {
                name: "sleep_ms".into(),
                queue: queue.into(),
                format: Format::Json,
                body: serde_json::to_vec(&serde_json::json!({ "ms": ms })).expect("json"),
                max_attempts: Some(1),
            },
            Options::new(),
        )
        .await
        .expect("enqueue sleep_ms")
        .id()
}
