//! The Limits page: the fleet-wide limits of the alive workers' jobs, one row per limit and
//! kind, with how much of each is in use and how many jobs wait for it (docs/limits.md,
//! "Seeing limits"). `/api/limits` serializes the same [`crate::data::Limits`].

use askama::Template;
use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use palermo_store::limits::LimitRow;

use super::{render, Base};
use crate::{data::Limits, error::WebError, links::Root, state::App, text};

/// One row, as display text.
pub(crate) struct LimitLine {
    pub(crate) limit: String,
    pub(crate) kind: String,
    pub(crate) setting: String,
    /// The number, or `-` for a rate per key (not counted) or when the broker is away.
    pub(crate) in_use: String,
    pub(crate) waiting: u64,
    pub(crate) jobs: String,
    pub(crate) workers: u32,
}

impl LimitLine {
    fn new(row: &LimitRow) -> LimitLine {
        LimitLine {
            limit: text::cell(&row.limit, 150),
            kind: row.kind.clone(),
            setting: text::cell(&row.setting(), 200),
            in_use: row.in_use.map_or_else(|| "-".into(), |n| n.to_string()),
            waiting: row.waiting,
            jobs: text::cell(&row.jobs.join(", "), 200),
            workers: row.workers,
        }
    }
}

#[derive(Template)]
#[template(path = "limits.html")]
struct LimitsPage {
    base: Base,
    limits: Vec<LimitLine>,
    broker_error: Option<String>,
}

/// `GET /limits`.
pub(crate) async fn page(State(app): State<App>, root: Root) -> Result<Response, WebError> {
    let data = Limits::load(&app).await?;
    let page = LimitsPage {
        base: Base::new(&app, &root, "Limits", "limits").live(),
        limits: data.limits.iter().map(LimitLine::new).collect(),
        broker_error: data.broker_error,
    };
    Ok(render(&page)?.into_response())
}
