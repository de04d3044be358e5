//! Helpers of the admin tests: a fresh database per test (SQLite file or PostgreSQL database),
//! unique admin queue names, and the real `palermo` binary to run commands with.
//!
//! The binary belongs to another package (palermo-cli), so Cargo does not build it for these
//! tests or tell where it is. It lives next to this test's executable (`target/<profile>/`);
//! the first command of a test process runs `cargo build -p palermo-cli --bin palermo` there
//! (a no-op when it is fresh), so a test never runs a stale binary. Set `PALERMO_BIN` to use
//! another binary instead.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::OnceLock,
};

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use sqlx::{any::AnyPoolOptions, Executor};

use crate::support::{amqp_url, unique, Broker};

/// Both databases the store runs on.
pub const BACKENDS: [&str; 2] = ["sqlite", "postgres"];

/// A database created for one test, dropped by [`TestDb::drop`].
pub struct TestDb {
    pub url: String,
    postgres: Option<(String, String)>,
    file: Option<PathBuf>,
}

fn postgres_admin_url() -> String {
    std::env::var("PALERMO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    pub async fn new(backend: &str) -> TestDb {
        let name = format!("palermo_test_{}", uuid::Uuid::new_v4().simple());
        if backend == "sqlite" {
            let file = std::env::temp_dir().join(format!("{name}.db"));
            return TestDb {
                url: format!("sqlite:{}", file.display()),
                postgres: None,
                file: Some(file),
            };
        }
        sqlx::any::install_default_drivers();
        let admin = postgres_admin_url();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&admin)
            .await
            .expect("PostgreSQL must answer for the admin tests (scripts/postgres.sh starts it)");
        pool.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create the test database");
        pool.close().await;
        let (base, _) = admin.rsplit_once('/').expect("a database name in the URL");
        TestDb {
            url: format!("{base}/{name}"),
            postgres: Some((admin, name)),
            file: None,
        }
    }

    pub async fn drop(self) {
        if let Some((admin, name)) = self.postgres {
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&admin)
                .await
                .expect("connect to PostgreSQL");
            pool.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await
                .expect("drop the test database");
            pool.close().await;
        }
        if let Some(file) = self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// One test's admin side: its database, failed queue and events exchange.
pub struct Admin {
    pub db: TestDb,
    pub failed: String,
    pub events: String,
}

impl Admin {
    pub async fn new(backend: &str) -> Admin {
        Admin {
            db: TestDb::new(backend).await,
            failed: unique("failed"),
            events: unique("events"),
        }
    }

    /// A worker configuration sending failures and heartbeats here, beating every 250 ms
    /// (gone after three missed beats: 750 ms of slack for a loaded machine)..
    pub fn worker_config(&self, queues: &[&str]) -> palermo::WorkerConfig {
        let mut config = palermo::WorkerConfig::new(queues.iter().copied());
        config.queue_type = crate::support::queue_type();
        config.amqp_url = amqp_url();
        config.failed_queue = self.failed.clone();
        config.events_exchange = self.events.clone();
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

    /// Deletes the admin queues and exchange, and the database.
    pub async fn cleanup(self, broker: &Broker) {
        for queue in [&self.failed, &self.events] {
            let _ = broker
                .channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = broker
            .channel
            .exchange_delete(
                self.events.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        self.db.drop().await;
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
