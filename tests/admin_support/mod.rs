//! Helpers of the admin tests: a rig and a fresh database per test (SQLite file or PostgreSQL
//! database, from the palermo-testdb crate), and the real `palermo` binary to run commands
//! with.
//!
//! The binary belongs to another package (palermo-cli), so Cargo does not build it for these
//! tests or tell where it is. It lives next to this test's executable (`target/<profile>/`);
//! the first command of a test process runs `cargo build -p palermo-cli --bin palermo` there
//! (a no-op when it is fresh), so a test never runs a stale binary. Set `PALERMO_BIN` to use
//! another binary instead.
#![allow(dead_code, unused_imports)]

use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::OnceLock,
};

pub use palermo_testdb::{TestDb, BACKENDS};

use crate::support::{amqp_url, Rig};

/// One test's admin side: a rig (its queue named after `prefix`, its failed queue and
/// events exchange, which the `palermo` commands read) and a fresh database. Dropping it
/// deletes both.
pub struct Admin {
    pub rig: Rig,
    pub db: TestDb,
    /// The rig's failed queue.
    pub failed: String,
    /// The rig's events exchange.
    pub events: String,
}

impl Admin {
    pub async fn new(backend: &str, prefix: &str) -> Admin {
        let rig = Rig::new(prefix).await;
        Admin {
            db: TestDb::new(backend).await,
            failed: rig.failed.clone(),
            events: rig.events.clone(),
            rig,
        }
    }

    /// A worker configuration for `queues` sending failures and heartbeats here, beating
    /// every 250 ms (gone after three missed beats: 750 ms of slack for a loaded machine).
    pub fn worker_config(&self, queues: &[&str]) -> palermo::WorkerConfig {
        let mut config = self.rig.config_for(queues);
        config.heartbeat_interval = std::time::Duration::from_millis(250);
        config
    }

    /// Runs `palermo ARGS` against this admin side; returns its output.
    pub fn palermo(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run palermo")
    }

    /// `palermo ARGS` against this admin side, not started yet.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(palermo_bin());
        command
            .args(args)
            .env("PALERMO_AMQP_URL", amqp_url())
            .env("PALERMO_DATABASE_URL", &self.db.url)
            .env("PALERMO_FAILED_QUEUE", &self.failed)
            .env("PALERMO_EVENTS_EXCHANGE", &self.events)
            .env("PALERMO_QUEUE_TYPE", crate::support::queue_type().name())
            .env("RUST_BACKTRACE", "0");
        command
    }

    /// Runs `palermo ARGS --json`, expects success, parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.palermo(&all);
        assert!(
            out.status.success(),
            "palermo {args:?} failed: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("palermo {args:?} printed no JSON ({e}): {}", stdout(&out)))
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `palermo` binary, built once per test process.
pub fn palermo_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("PALERMO_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("test executable");
        // target/<profile>/deps/admin-<hash> → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test runs from target/<profile>/deps")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "palermo-cli", "--bin", "palermo"]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p palermo-cli failed");
        let bin = profile_dir.join("palermo");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
    .clone()
}
