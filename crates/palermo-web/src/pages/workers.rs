//! The workers page: every worker from its heartbeats, and the jobs running now.

use askama::Template;
use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use palermo_store::time;

use super::{
    render,
    rows::{BusyLine, WorkerLine},
    Base,
};
use crate::{data::Workers, error::WebError, links::Root, state::App};

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    base: Base,
    workers: Vec<WorkerLine>,
    busy: Vec<BusyLine>,
}

/// `GET /workers`.
pub(crate) async fn page(State(app): State<App>, root: Root) -> Result<Response, WebError> {
    let now = time::now_ms();
    let data = Workers::load(&app, now).await?;
    let page = WorkersPage {
        base: Base::new(&app, &root, "Workers", "workers").live(),
        workers: data
            .workers
            .iter()
            .map(|w| WorkerLine::new(w, now))
            .collect(),
        busy: data.busy.iter().map(BusyLine::new).collect(),
    };
    Ok(render(&page)?.into_response())
}
