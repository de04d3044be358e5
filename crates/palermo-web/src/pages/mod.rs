//! The HTML pages: each module loads its data (see [`crate::data`]), turns it into rows of
//! display text, and renders an askama template from `web/templates` inside the layout.
//!
//! Display text from messages goes through [`crate::text`] (control characters made
//! visible) and then askama's HTML escaping; nothing from a message is ever marked safe.

pub(crate) mod actions;
pub(crate) mod failed;
pub(crate) mod failure;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod overview;
pub(crate) mod queues;
pub(crate) mod rows;
pub(crate) mod schedules;
pub(crate) mod workers;

use askama::Template;
use axum::{
    extract::{Request, State},
    http::{header, HeaderValue},
    middleware::Next,
    response::{Html, IntoResponse, Response},
    Json,
};
use palermo_store::time;
use serde::Deserialize;

use crate::{assets, error::ErrorPage, links::Root, state::App, text};

/// What the layout needs on every page.
pub(crate) struct Base {
    /// The way back to the dashboard's root (`./`, `../`).
    pub(crate) root: String,
    pub(crate) env_name: Option<String>,
    pub(crate) read_only: bool,
    pub(crate) title: String,
    /// The navigation entry to mark current: `overview`, `queues`, `workers`, `schedules`,
    /// `limits`, `failed`, `metrics`.
    pub(crate) nav: &'static str,
    /// Whether the page offers live refresh.
    pub(crate) live: bool,
    pub(crate) refresh_secs: u32,
    pub(crate) css: &'static str,
    pub(crate) js: &'static str,
    /// A message after an action (`Retried 3 failures.`).
    pub(crate) notice: Option<String>,
    pub(crate) generated_at: String,
}

impl Base {
    pub(crate) fn new(app: &App, root: &Root, title: impl Into<String>, nav: &'static str) -> Base {
        let config = app.config();
        Base {
            root: root.0.clone(),
            env_name: config.env_name.as_deref().map(|e| text::cell(e, 40)),
            read_only: config.read_only,
            title: title.into(),
            nav,
            live: false,
            refresh_secs: config.refresh_secs,
            css: assets::css().name,
            js: assets::js().name,
            notice: None,
            generated_at: time::short(time::now_ms()),
        }
    }

    /// Offers live refresh on this page.
    pub(crate) fn live(mut self) -> Base {
        self.live = true;
        self
    }

    /// Shows the notice a finished action asked for (see [`Done`]).
    pub(crate) fn notice(mut self, done: &Done) -> Base {
        self.notice = done.message();
        self
    }

    /// Whether `entry` is the current navigation entry (for the layout).
    pub(crate) fn is(&self, entry: &str) -> bool {
        self.nav == entry
    }
}

/// The query parameters an action's redirect adds: `done=retried&n=3`. Only these known
/// words become text, so a link cannot make the page say anything else.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
    n: Option<u64>,
}

impl Done {
    fn message(&self) -> Option<String> {
        let n = self.n.unwrap_or(0);
        let plural = if n == 1 { "" } else { "s" };
        let what = match self.done.as_deref()? {
            "retried" => format!("Retried {n} failure{plural}: the jobs are back in their queues."),
            "removed" => format!("Removed {n} failure{plural}."),
            "purged" => format!("Purged {n} message{plural} from the queue."),
            "paused" => {
                "Paused: within 3 s no worker takes its jobs; they wait in the queue.".into()
            }
            "resumed" => "Resumed: its workers take its jobs again within 3 s.".into(),
            "quieted" => {
                format!("Quiet sent to {n} worker{plural}: no new jobs, running ones finish.")
            }
            "stopped" => {
                format!("Stop sent to {n} worker{plural}: running jobs finish, then it exits.")
            }
            "pruned" => format!("Pruned {n} old failure{plural}."),
            "cancelled" => "Cancelled: the job is told to stop and will not run again.".into(),
            "schedule-run" => {
                "Enqueued one run of the schedule's job now; its next tick is unchanged.".into()
            }
            "schedule-locked" => {
                "Not enqueued: the job is unique and a run of it holds its lock.".into()
            }
            "schedule-paused" => {
                "Paused: the schedule's ticks are skipped until it is resumed.".into()
            }
            "schedule-resumed" => "Resumed: the schedule's next tick is enqueued.".into(),
            _ => return None,
        };
        Some(what)
    }
}

/// Renders a template as an HTML answer.
pub(crate) fn render(template: &impl Template) -> Result<Html<String>, crate::error::WebError> {
    Ok(Html(template.render()?))
}

/// The error page, inside the layout.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate {
    base: Base,
    page: ErrorPage,
}

/// Renders the [`ErrorPage`] a handler (or a layer: the cross-origin check, read-only)
/// answered with, as HTML inside the layout, or as JSON under `/api`.
pub(crate) async fn render_errors(
    State(app): State<App>,
    request: Request,
    next: Next,
) -> Response {
    let root = Root::of(request.uri().path());
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let Some(page) = response.extensions().get::<ErrorPage>().cloned() else {
        return response;
    };
    let status = response.status();
    if api {
        let rejected: Vec<_> = page
            .rejections
            .iter()
            .map(|r| serde_json::json!({"id": r.id, "reason": r.reason}))
            .collect();
        let body = serde_json::json!({"error": page.message, "rejected": rejected});
        return (status, Json(body)).into_response();
    }
    let title = status.canonical_reason().unwrap_or("Error").to_string();
    let template = ErrorTemplate {
        base: Base::new(&app, &root, title, ""),
        page,
    };
    match template.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering the error page failed");
            response
        }
    }
}
