//! A fresh database per test, removed when the test ends, however it ends.
//!
//! Why a crate: the store's own tests (`crates/palermo-store/tests`) and the end-to-end admin
//! tests (`tests/admin_support`) need the same thing, and test modules cannot be shared
//! between packages; a dev-only crate (`publish = false`, only ever a dev-dependency) is the
//! one place both can use.
//!
//! Why the work happens in `Drop`: a cleanup call written after the assertions never runs
//! when an assertion fails, and the next run finds a database per failed test. `Drop` runs
//! while a panic unwinds. It is synchronous and usually runs inside the test's tokio runtime,
//! where blocking on a future panics, so `DROP DATABASE` runs on a thread of its own with a
//! small runtime, bounded by [`DROP_TIMEOUT`]; a failure there (the server is gone) is printed,
//! never a second panic.
//!
//! PostgreSQL databases are made on the server at `PALERMO_TEST_POSTGRES_URL` (defaults to the
//! `postgres` maintenance database on 127.0.0.1:5432, which every cluster has); SQLite ones are
//! files in the temp dir.

use std::{future::Future, path::PathBuf, sync::mpsc, time::Duration};

use sqlx::{postgres::PgConnection, Connection, Executor};

/// Both backends the store runs on, for tests that run once per backend.
pub const BACKENDS: [&str; 2] = ["sqlite", "postgres"];

/// How long dropping a [`TestDb`] may wait for PostgreSQL before it gives up (and says so).
pub const DROP_TIMEOUT: Duration = Duration::from_secs(15);

/// The server that test databases are created on.
fn admin_url() -> String {
    std::env::var("PALERMO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database made for one test; [`TestDb::url`] opens it. Removed when dropped.
pub struct TestDb {
    /// The URL to open it with (`sqlite:/tmp/palermo_test_….db` or `postgres://…/palermo_test_…`).
    pub url: String,
    place: Place,
}

/// Where the database lives, for removing it.
enum Place {
    Sqlite(PathBuf),
    Postgres { admin: String, name: String },
    Removed,
}

impl TestDb {
    /// A fresh database on `backend` (`"sqlite"` or `"postgres"`, see [`BACKENDS`]).
    ///
    /// Panics when PostgreSQL does not answer or refuses: a test cannot run without it.
    pub async fn new(backend: &str) -> TestDb {
        let name = format!("palermo_test_{}", uuid::Uuid::new_v4().simple());
        match backend {
            "sqlite" => {
                let file = std::env::temp_dir().join(format!("{name}.db"));
                TestDb {
                    url: format!("sqlite:{}", file.display()),
                    place: Place::Sqlite(file),
                }
            }
            "postgres" => {
                let admin = admin_url();
                run(&admin, &format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL must answer for these tests (scripts/postgres.sh starts it; PALERMO_TEST_POSTGRES_URL): {e}")
                    });
                let (base, _) = admin
                    .rsplit_once('/')
                    .expect("PALERMO_TEST_POSTGRES_URL ends in a database name");
                TestDb {
                    url: format!("{base}/{name}"),
                    place: Place::Postgres { admin, name },
                }
            }
            other => panic!("unknown test database backend {other:?} (sqlite or postgres)"),
        }
    }

    /// Removes the database now (what dropping it does, without the extra thread). Open
    /// connections to it are closed by the server.
    pub async fn remove(mut self) {
        match std::mem::replace(&mut self.place, Place::Removed) {
            Place::Postgres { admin, name } => {
                if let Err(e) = run(&admin, &drop_statement(&name)).await {
                    eprintln!("[testdb] could not drop the test database {name}: {e}");
                }
            }
            Place::Sqlite(file) => remove_files(&file),
            Place::Removed => {}
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.place, Place::Removed) {
            Place::Postgres { admin, name } => drop_on_own_thread(admin, name),
            Place::Sqlite(file) => remove_files(&file),
            Place::Removed => {}
        }
    }
}

/// `DROP DATABASE` for `name`, closing what is still connected to it.
fn drop_statement(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
}

/// Runs one statement on the server at `admin` over a connection of its own.
async fn run(admin: &str, statement: &str) -> Result<(), sqlx::Error> {
    let mut connection = PgConnection::connect(admin).await?;
    let result = connection.execute(statement).await.map(|_| ());
    let _ = connection.close().await;
    result
}

/// Drops the database from a synchronous context, possibly inside a tokio runtime.
fn drop_on_own_thread(admin: String, name: String) {
    let statement = drop_statement(&name);
    let dropped = finish_on_own_thread("testdb-drop", DROP_TIMEOUT, async move {
        run(&admin, &statement).await.map_err(|e| e.to_string())
    });
    if let Err(e) = dropped {
        eprintln!("[testdb] could not drop the test database {name}: {e}");
    }
}

/// Runs `work` to its end from synchronous code that may itself run inside a tokio runtime
/// (a `Drop` of a test fixture, where blocking on a future would panic): on a thread named
/// `thread` with a small runtime of its own, waiting at most `timeout`. After that it returns
/// an error and leaves the thread to finish on its own; it never panics.
///
/// The end-to-end tests' broker cleanup (`tests/support/cleanup.rs`) uses it too.
pub fn finish_on_own_thread<F>(thread: &str, timeout: Duration, work: F) -> Result<(), String>
where
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let (done, finished) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("no runtime: {e}"))
                .and_then(|runtime| {
                    runtime.block_on(async {
                        tokio::time::timeout(timeout, work)
                            .await
                            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
                    })
                });
            let _ = done.send(result);
        });
    match spawned {
        Ok(_) => finished
            .recv_timeout(timeout + Duration::from_secs(1))
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}"))),
        Err(e) => Err(format!("no thread: {e}")),
    }
}

/// Removes a SQLite database file and its journal files.
fn remove_files(file: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exists(name: &str) -> bool {
        let mut connection = PgConnection::connect(&admin_url()).await.expect("connect");
        let found: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut connection)
            .await
            .expect("query");
        found.is_some()
    }

    #[tokio::test]
    async fn a_database_dropped_during_a_panic_is_gone() {
        let db = TestDb::new("postgres").await;
        let name = db.url.rsplit('/').next().expect("name").to_string();
        let mut connection = PgConnection::connect(&db.url).await.expect("open it");
        connection
            .execute("CREATE TABLE t (x int)")
            .await
            .expect("use it");
        assert!(exists(&name).await);
        // Dropped while unwinding, inside this runtime, with a connection still open on it.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _db = db;
            panic!("on purpose");
        }));
        assert!(panicked.is_err());
        assert!(!exists(&name).await, "{name} is still there");
        drop(connection);
    }

    #[tokio::test]
    async fn a_sqlite_file_is_removed() {
        let db = TestDb::new("sqlite").await;
        let path = db.url.trim_start_matches("sqlite:").to_string();
        std::fs::write(&path, b"x").expect("write");
        db.remove().await;
        assert!(!std::path::Path::new(&path).exists());
    }
}
