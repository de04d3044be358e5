//! The example's web app: `POST /signup` stores a user and enqueues `welcome_user` from the
//! handler; `GET /users/{id}` shows whether the job has run; the Palermo dashboard is mounted
//! under `/palermo`, with the recorder that keeps its store current running beside it.
//!
//! ```sh
//! cargo run -p axum-app --bin axum-app                           # http://127.0.0.1:3000
//! cargo run -p axum-app --bin axum-app-worker -- --queues welcome
//! curl -s -X POST localhost:3000/signup -H 'content-type: application/json' -d '{"email":"ada@example.com"}'
//! ```

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::{
    extract::{FromRef, Path, State},
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use palermo::{shutdown, Client, ClientConfig};
use palermo_store::{Recorder, RecorderConfig, Store};
use palermo_web::WebConfig;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::{error, info};

use axum_app::WelcomeUser;

/// Where the app listens: `BIND`. Defaults to 127.0.0.1:3000.
const DEFAULT_BIND: &str = "127.0.0.1:3000";

/// What the handlers share. `Client` is cheap to clone (one connection inside), so handlers
/// take it directly as `State<Client>` through [`FromRef`].
#[derive(Clone)]
struct AppState {
    client: Client,
    db: PgPool,
}

impl FromRef<AppState> for Client {
    fn from_ref(state: &AppState) -> Client {
        state.client.clone()
    }
}

impl FromRef<AppState> for PgPool {
    fn from_ref(state: &AppState) -> PgPool {
        state.db.clone()
    }
}

#[derive(Deserialize)]
struct Signup {
    email: String,
}

#[derive(Serialize)]
struct User {
    id: i64,
    email: String,
    welcomed: bool,
}

/// An error answered as 500 with its message, and logged.
struct Failed(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed(e.into())
    }
}

impl axum::response::IntoResponse for Failed {
    fn into_response(self) -> axum::response::Response {
        error!(error = format!("{:#}", self.0), "request failed");
        (StatusCode::INTERNAL_SERVER_ERROR, format!("{:#}\n", self.0)).into_response()
    }
}

/// `POST /signup {"email": ...}`: stores the user, enqueues the welcome job, answers 202.
/// The job is enqueued after the commit, so the worker always finds the row.
async fn signup(
    State(client): State<Client>,
    State(db): State<PgPool>,
    Json(signup): Json<Signup>,
) -> Result<(StatusCode, Json<serde_json::Value>), Failed> {
    if !signup.email.contains('@') {
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({"error": "email needs an @"})),
        ));
    }
    let (user_id,): (i64,) = sqlx::query_as(
        "INSERT INTO axum_app_users (email) VALUES ($1)
         ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING id",
    )
    .bind(&signup.email)
    .fetch_one(&db)
    .await?;
    let job_id = client.enqueue(WelcomeUser { user_id }).await?.id();
    info!(user_id, %job_id, "welcome job enqueued");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"user_id": user_id, "job_id": job_id})),
    ))
}

/// `GET /users/{id}`: the user and whether the welcome job has run.
async fn user(
    State(db): State<PgPool>,
    Path(id): Path<i64>,
) -> Result<Result<Json<User>, StatusCode>, Failed> {
    let row: Option<(String, bool)> =
        sqlx::query_as("SELECT email, welcomed_at IS NOT NULL FROM axum_app_users WHERE id = $1")
            .bind(id)
            .fetch_optional(&db)
            .await?;
    Ok(match row {
        Some((email, welcomed)) => Ok(Json(User {
            id,
            email,
            welcomed,
        })),
        None => Err(StatusCode::NOT_FOUND),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    palermo::cli::init_tracing();
    // One deployment value for the client, the recorder and the dashboard, so they declare
    // the queues alike (the worker binary reads the same from its flags and environment).
    let deployment = palermo::Deployment::new(axum_app::amqp_url());
    let bind: SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| DEFAULT_BIND.into())
        .parse()
        .context("BIND must be an address such as 127.0.0.1:3000")?;

    let db = PgPool::connect(&axum_app::database_url())
        .await
        .context("connecting to DATABASE_URL")?;
    axum_app::create_schema(&db).await?;
    let client = Client::connect_with(&ClientConfig::new(deployment.clone())).await?;

    // The dashboard reads Palermo's admin store; the recorder fills it from palermo.failed
    // and the workers' heartbeats (what `palermo web` does for itself).
    let store_url = std::env::var("PALERMO_DATABASE_URL")
        .unwrap_or_else(|_| palermo_store::DEFAULT_DATABASE_URL.into());
    let store = Store::open(&store_url).await?;
    let recorder = Recorder::connect(
        store.clone(),
        RecorderConfig {
            deployment: deployment.clone(),
            ..RecorderConfig::default()
        },
    )
    .await?;
    let dashboard = WebConfig::new(store, deployment);
    dashboard.validate()?;

    let app = Router::new()
        .route("/signup", post(signup))
        .route("/users/{id}", get(user))
        .with_state(AppState {
            client: client.clone(),
            db,
        })
        .nest("/palermo", palermo_web::router(dashboard));

    let (stop, stopped) = shutdown::channel();
    let recording = tokio::spawn(recorder.run(stopped));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    println!(
        "axum-app on http://{}/ (dashboard: /palermo)",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        stop_signal().await;
        stop.stop();
    })
    .await?;
    recording.await??;
    client.close().await?;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (systemd, Docker): requests in progress finish,
/// the recorder acks what it has committed.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            error!(error = %e, "cannot listen for SIGTERM; stopping");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("stopping");
}
