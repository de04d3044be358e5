//! The example's worker: `axum-app-worker --queues welcome`. It runs every job linked into
//! it (this crate's `welcome_user`) and gives them the database pool as `State<PgPool>`.

use std::process::ExitCode;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn main() -> ExitCode {
    // Read and check the URL first: a typo is a one-line error and exit code 1.
    let options: PgConnectOptions = match axum_app::database_url().parse() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: DATABASE_URL: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `palermo::cli::main` parses the worker flags (`--queues`, `--concurrency`, ...), runs
    // the worker until SIGINT/SIGTERM and returns the exit code. The closure runs inside the
    // worker's async runtime, so a lazy pool can be made there; it connects on first use.
    palermo::cli::main(|worker| {
        worker.state(
            PgPoolOptions::new()
                .max_connections(8)
                .connect_lazy_with(options),
        )
    })
}
