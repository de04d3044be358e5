//! The jobs and the database of the axum example, shared by its two binaries: `axum-app`
//! (the web app, which enqueues) and `axum-app-worker` (which runs the jobs).
//!
//! Both binaries link this crate, so the worker finds `welcome_user` by itself (`#[job]`
//! registers it) and the web app enqueues the struct `WelcomeUser` the macro generates.

use palermo::{JobContext, JobError, State};
use sqlx::PgPool;
use tracing::info;

/// The application's database, `DATABASE_URL`. Defaults to the local PostgreSQL.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The database URL from `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into())
}

/// The broker URL from `PALERMO_AMQP_URL`, or Palermo's default.
pub fn amqp_url() -> String {
    std::env::var("PALERMO_AMQP_URL").unwrap_or_else(|_| palermo::DEFAULT_AMQP_URL.into())
}

/// Creates the example's table if it is missing (a real app runs migrations instead).
pub async fn create_schema(db: &PgPool) -> sqlx::Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS axum_app_users (
             id          BIGSERIAL PRIMARY KEY,
             email       TEXT NOT NULL UNIQUE,
             welcomed_at TIMESTAMPTZ
         )",
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Welcomes a new user: "sends" the email, then records it. The job takes the pool the
/// worker was given (`State<PgPool>`) and runs at least once, so it is idempotent: a second
/// run finds `welcomed_at` set and does nothing (docs/guide.md, "At least once").
#[palermo::job(queue = "welcome", max_attempts = 5, timeout = "30s")]
pub async fn welcome_user(
    user_id: i64,
    db: State<PgPool>,
    ctx: JobContext,
) -> Result<(), JobError> {
    let user: Option<(String, bool)> =
        sqlx::query_as("SELECT email, welcomed_at IS NOT NULL FROM axum_app_users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&*db)
            .await?;
    let Some((email, welcomed)) = user else {
        // Retrying cannot create the user: fail now, visible in the dashboard.
        return Err(JobError::fail_now(anyhow::anyhow!(
            "no user with id {user_id}"
        )));
    };
    if welcomed {
        info!(user_id, job.id = %ctx.id, "already welcomed; nothing to do");
        return Ok(());
    }
    info!(user_id, %email, attempt = ctx.attempt, "sending the welcome email");
    // Mark it in one statement that only the first run can win.
    sqlx::query(
        "UPDATE axum_app_users SET welcomed_at = now() WHERE id = $1 AND welcomed_at IS NULL",
    )
    .bind(user_id)
    .execute(&*db)
    .await?;
    Ok(())
}
