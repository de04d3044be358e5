//! # palermo-web: the dashboard
//!
//! What an operator keeps open all day: queues, workers and what they run, failures with
//! retry, remove and prune, throughput charts, per-job run times and waits (Metrics); the same as a JSON API under `/api`, Prometheus
//! metrics under `/metrics`, and `/health` for load balancers.
//!
//! ```no_run
//! # async fn mount(store: palermo_store::Store) {
//! let config = palermo_web::WebConfig::new(store, palermo::Deployment::default())
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
//! The binary that serves the router should use
//! `into_make_service_with_connect_info::<SocketAddr>()` so that actions record the peer
//! address when there is no login, and must apply the loopback rule
//! ([`WebConfig::check_bind`] / [`WebConfig::validate_bind`]) before it binds. The module
//! tree: `pages` (HTML) and `api` (JSON) over `data` and `actions`, which call the store;
//! `security` (login, cross-origin check, read-only, headers); `links`, `text`, `chart`,
//! `assets`, `metrics`.

mod actions;
mod api;
mod assets;
mod chart;
mod config;
mod data;
mod error;
mod histograms;
mod links;
mod metrics;
mod pages;
mod query;
mod security;
mod state;
mod text;

use axum::{
    http::StatusCode,
    middleware::{from_fn, from_fn_with_state},
    response::IntoResponse,
    routing::{get, post},
    Router,
};

pub use config::{ConfigError, Credentials, CredentialsError, WebConfig};
pub use error::WebError;

use crate::{security::auth::require_login, state::App};

/// The dashboard as a router, to serve alone or to mount with `Router::nest`. A
/// configuration [`WebConfig::validate`] refuses makes every request answer 500 with the
/// reason (call `validate` first to fail at start-up instead).
pub fn router(config: WebConfig) -> Router {
    let csrf = match config
        .validate()
        .and_then(|()| Ok(security::csrf::layer(&config.trusted_origins)?))
    {
        Ok(csrf) => csrf,
        Err(e) => {
            tracing::error!(error = %e, "the dashboard's configuration is invalid");
            let message = format!("the dashboard is misconfigured: {e}\n");
            return Router::new().fallback(move || async move {
                (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
            });
        }
    };
    let metrics_public = config.metrics_public;
    let app = App::new(config);
    let mut protected = pages_and_actions().nest("/api", api());
    let mut open = Router::new()
        .route("/health", get(metrics::health))
        .route("/static/{name}", get(assets::serve));
    if metrics_public {
        open = open.route("/metrics", get(metrics::metrics));
    } else {
        protected = protected.route("/metrics", get(metrics::metrics));
    }
    let protected = protected
        .fallback(|| async { WebError::NotFound("no such page".into()) })
        .layer(csrf)
        .layer(from_fn_with_state(
            app.clone(),
            security::read_only::refuse_actions,
        ))
        .layer(from_fn_with_state(app.clone(), require_login));
    open.merge(protected)
        .layer(from_fn_with_state(app.clone(), pages::render_errors))
        .layer(from_fn(security::headers::secure))
        .with_state(app)
}

/// The HTML pages and their forms.
fn pages_and_actions() -> Router<App> {
    use pages::{actions, failed, failure, limits, metrics, overview, queues, schedules, workers};
    Router::new()
        .route("/", get(overview::page))
        .route("/queues", get(queues::list))
        .route("/queues/{name}", get(queues::show))
        .route("/queues/{name}/purge", post(actions::purge))
        .route("/queues/{name}/pause", post(actions::pause))
        .route("/queues/{name}/resume", post(actions::resume))
        .route("/schedules", get(schedules::page))
        .route("/schedules/{name}/{action}", post(actions::schedule))
        .route("/workers", get(workers::page))
        .route("/limits", get(limits::page))
        .route("/workers/{id}/quiet", post(actions::quiet))
        .route("/workers/{id}/stop", post(actions::stop))
        .route("/jobs/{id}/cancel", post(actions::cancel))
        .route("/failed", get(failed::page))
        .route("/job-metrics", get(metrics::page))
        // GET: one failure; POST: retry, remove, retry-all, remove-all, prune.
        .route("/failed/{id}", get(failure::page).post(actions::failures))
}

/// The JSON API (docs/dashboard.md).
fn api() -> Router<App> {
    Router::new()
        .route("/overview", get(api::overview))
        .route("/stats", get(api::stats))
        .route("/series", get(api::series))
        .route("/queues", get(api::queues))
        .route("/queues/{name}", get(api::queue))
        .route("/queues/{name}/purge", post(api::purge))
        .route("/queues/{name}/pause", post(api::pause))
        .route("/queues/{name}/resume", post(api::resume))
        .route("/schedules", get(api::schedules))
        .route("/schedules/{name}/run", post(api::run_schedule))
        .route("/schedules/{name}/pause", post(api::pause_schedule))
        .route("/schedules/{name}/resume", post(api::resume_schedule))
        .route("/workers", get(api::workers))
        .route("/limits", get(api::limits))
        .route("/workers/{id}/quiet", post(api::quiet))
        .route("/workers/{id}/stop", post(api::stop))
        .route("/jobs/{id}/cancel", post(api::cancel))
        .route("/failed", get(api::failed))
        .route("/failed/facets", get(api::facets))
        .route("/failed/retry", post(api::retry))
        .route("/failed/remove", post(api::remove))
        .route("/failed/retry-all", post(api::retry_all))
        .route("/failed/remove-all", post(api::remove_all))
        .route("/failed/prune", post(api::prune))
        .route("/failed/prunes", get(api::prunes))
        .route("/metrics", get(api::metrics))
        .route("/failed/{id}", get(api::failure))
        .fallback(|| async { error::ApiError(WebError::NotFound("no such API route".into())) })
}
