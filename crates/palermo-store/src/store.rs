//! Opening the database and keeping its schema current.
//!
//! One code path serves SQLite and PostgreSQL through sqlx's `Any` driver: the SQL this crate
//! writes is the common subset of both (`$1` placeholders, `ON CONFLICT`, BIGINT times), and
//! only the migrations differ (migrations/sqlite, migrations/postgres). The migrations are
//! compiled into the binary, so `palermo` works from any directory.

use std::{borrow::Cow, str::FromStr, sync::Once, time::Duration};

use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::{Migration, MigrationType, Migrator},
    AnyConnection, AnyPool, Connection, Row,
};
use tracing::debug;

use crate::error::{Result, StoreError};

/// The database used when neither `--database-url` nor `PALERMO_DATABASE_URL` is given: a
/// SQLite file `palermo.db` in the working directory, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:palermo.db";

/// How long opening the database may take before it is reported unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The two databases the store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file, one host.
    Sqlite,
    /// For teams and multi-host installs.
    Postgres,
}

/// Migrations as (version, description, SQLite SQL, PostgreSQL SQL), in order.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "admin store",
        include_str!("../migrations/sqlite/0001_admin_store.sql"),
        include_str!("../migrations/postgres/0001_admin_store.sql"),
    ),
    (
        2,
        "failures by kind",
        include_str!("../migrations/sqlite/0002_failures_by_kind.sql"),
        include_str!("../migrations/postgres/0002_failures_by_kind.sql"),
    ),
    (
        3,
        "control",
        include_str!("../migrations/sqlite/0003_control.sql"),
        include_str!("../migrations/postgres/0003_control.sql"),
    ),
    (
        4,
        "metrics and prunes",
        include_str!("../migrations/sqlite/0004_metrics_and_prunes.sql"),
        include_str!("../migrations/postgres/0004_metrics_and_prunes.sql"),
    ),
    (
        5,
        "limits",
        include_str!("../migrations/sqlite/0005_limits.sql"),
        include_str!("../migrations/postgres/0005_limits.sql"),
    ),
];

/// The admin database: failures, workers and statistics.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    url: String,
}

/// What [`Store::migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call.
    pub applied: Vec<i64>,
    /// Every version the database has now.
    pub current: Vec<i64>,
}

impl Store {
    /// Opens the database at `url` and applies any pending migration.
    pub async fn open(url: &str) -> Result<Store> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the database at `url` without migrating it.
    pub async fn connect(url: &str) -> Result<Store> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (backend, full) = normalize(url)?;
        let shown = palermo::admin::broker::redact(url);
        let options = AnyConnectOptions::from_str(&full).map_err(|source| StoreError::Open {
            url: shown.clone(),
            source,
        })?;
        let memory = full.contains(":memory:") || full.contains("mode=memory");
        // One direct attempt first: a pool reports an unreachable server only as a timeout,
        // while this names the cause (refused, unknown host, bad password, no such file).
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::Open {
                url: shown.clone(),
                source: sqlx::Error::PoolTimedOut,
            })?
            .map_err(|source| StoreError::Open {
                url: shown.clone(),
                source,
            })?;
        if !memory {
            let _ = probe.close().await;
        }
        let pool = AnyPoolOptions::new()
            // Every connection to an in-memory SQLite database is a new, empty database.
            .max_connections(if memory { 1 } else { 5 })
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                url: shown.clone(),
                source,
            })?;
        if backend == Backend::Sqlite && !memory {
            // Readers do not block the writer (the CLI next to a running dashboard). The
            // setting is kept in the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|source| StoreError::Open {
                    url: shown.clone(),
                    source,
                })?;
        }
        debug!(url = %shown, ?backend, "database opened");
        Ok(Store {
            pool,
            backend,
            url: shown,
        })
    }

    /// Applies the migrations the database does not have yet.
    pub async fn migrate(&self) -> Result<MigrationReport> {
        let before = self.versions().await.unwrap_or_default();
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sqlite, postgres)| {
                let sql = match self.backend {
                    Backend::Sqlite => sqlite,
                    Backend::Postgres => postgres,
                };
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect::<Vec<_>>();
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: self.url.clone(),
                source,
            })?;
        let current = self.versions().await?;
        let applied = current
            .iter()
            .copied()
            .filter(|v| !before.contains(v))
            .collect();
        Ok(MigrationReport { applied, current })
    }

    async fn versions(&self) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading the applied migrations"))?;
        rows.iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()
            .map_err(StoreError::query("reading the applied migrations"))
    }

    /// SQLite or PostgreSQL.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Which database `url` names, and the URL sqlx should open. A SQLite file is created when
/// missing; a bare path (`./admin.db`) means a SQLite file.
pub fn normalize(url: &str) -> Result<(Backend, String)> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_string()));
    }
    let sqlite = if url.starts_with("sqlite:") {
        url.to_string()
    } else if !url.is_empty() && !url.contains("://") {
        format!("sqlite:{url}")
    } else {
        return Err(StoreError::UnsupportedUrl {
            url: palermo::admin::broker::redact(url),
        });
    };
    if sqlite.contains(":memory:") || sqlite.contains("mode=") {
        return Ok((Backend::Sqlite, sqlite));
    }
    let separator = if sqlite.contains('?') { '&' } else { '?' };
    Ok((Backend::Sqlite, format!("{sqlite}{separator}mode=rwc")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let n = |u| normalize(u).map_err(|e| e.to_string());
        assert_eq!(
            n("sqlite:palermo.db"),
            Ok((Backend::Sqlite, "sqlite:palermo.db?mode=rwc".into()))
        );
        assert_eq!(
            n("/tmp/a.db"),
            Ok((Backend::Sqlite, "sqlite:/tmp/a.db?mode=rwc".into()))
        );
        assert_eq!(
            n("sqlite::memory:"),
            Ok((Backend::Sqlite, "sqlite::memory:".into()))
        );
        assert_eq!(
            n("postgres://u@h/db"),
            Ok((Backend::Postgres, "postgres://u@h/db".into()))
        );
        assert!(n("mysql://u@h/db").is_err_and(|e| e.contains("sqlite:")));
    }
}
