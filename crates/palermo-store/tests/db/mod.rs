//! A fresh database per test: a SQLite file in the temp dir, or a PostgreSQL database created
//! on the server at `PALERMO_TEST_POSTGRES_URL` (default: the `postgres` maintenance database
//! on 127.0.0.1:5432, which every cluster has) and dropped afterwards.

use sqlx::{any::AnyPoolOptions, Executor};

pub const BACKENDS: [&str; 2] = ["sqlite", "postgres"];

pub struct TestDb {
    pub url: String,
    postgres: Option<(String, String)>,
    file: Option<std::path::PathBuf>,
}

fn admin_url() -> String {
    std::env::var("PALERMO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    pub async fn new(backend: &str) -> TestDb {
        let name = format!("palermo_test_{}", uuid::Uuid::new_v4().simple());
        match backend {
            "sqlite" => {
                let file = std::env::temp_dir().join(format!("{name}.db"));
                TestDb {
                    url: format!("sqlite:{}", file.display()),
                    postgres: None,
                    file: Some(file),
                }
            }
            _ => {
                sqlx::any::install_default_drivers();
                let admin = admin_url();
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin)
                    .await
                    .expect("PostgreSQL must run for these tests (PALERMO_TEST_POSTGRES_URL)");
                pool.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create database");
                pool.close().await;
                let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
                TestDb {
                    url: format!("{base}/{name}"),
                    postgres: Some((admin, name)),
                    file: None,
                }
            }
        }
    }

    /// Deletes the database (close every store on it first).
    pub async fn drop(self) {
        if let Some((admin, name)) = self.postgres {
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&admin)
                .await
                .expect("connect");
            pool.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await
                .expect("drop database");
            pool.close().await;
        }
        if let Some(file) = self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}
