//! The queues page and one queue's page (with the purge button).

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
};

use palermo_store::time;

use super::{render, rows::QueueLine, Base, Done};
use crate::{
    data::{Delayed, Queues},
    error::WebError,
    links::Root,
    state::App,
    text,
};

#[derive(Template)]
#[template(path = "queues.html")]
struct QueuesPage {
    base: Base,
    queues: Vec<QueueLine>,
    broker_error: Option<String>,
    delayed: Option<Delayed>,
}

/// `GET /queues`.
pub(crate) async fn list(
    State(app): State<App>,
    root: Root,
    Query(done): Query<Done>,
) -> Result<Response, WebError> {
    let data = Queues::load(&app).await?;
    let failed_queue = &app.config().deployment.failed_queue;
    let page = QueuesPage {
        base: Base::new(&app, &root, "Queues", "queues")
            .live()
            .notice(&done),
        queues: data
            .report
            .iter()
            .flat_map(|r| &r.queues)
            .map(|q| QueueLine::new(q, failed_queue))
            .collect(),
        broker_error: data.broker_error.as_deref().map(|e| text::cell(e, 300)),
        delayed: data.delayed(),
    };
    Ok(render(&page)?.into_response())
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    base: Base,
    queue: QueueLine,
    /// The queue name as given, for the purge form's action (encoded).
    purge_action: String,
    can_purge: bool,
    ready: u32,
    /// `NAME/pause` or `NAME/resume` (encoded), for the pause form.
    control_action: String,
    can_pause: bool,
    /// The newest pauses and resumes: when, what, who.
    history: Vec<(String, String, String)>,
}

/// `GET /queues/{name}`.
pub(crate) async fn show(
    State(app): State<App>,
    root: Root,
    Path(name): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, WebError> {
    let row = app
        .broker()
        .queue(app.store(), &name)
        .await?
        .ok_or_else(|| {
            WebError::NotFound(format!(
                "no queue {:?} on the broker or in the failures",
                text::cell(&name, 200)
            ))
        })?;
    let failed_queue = &app.config().deployment.failed_queue;
    let queue = QueueLine::new(&row, failed_queue);
    let history = app
        .store()
        .control_actions(&row.queue)
        .await?
        .into_iter()
        .map(|a| {
            (
                time::short(a.at),
                text::cell(&a.action, 20),
                text::cell(&a.actor, 200),
            )
        })
        .collect();
    let verb = if row.paused { "resume" } else { "pause" };
    let page = QueuePage {
        control_action: format!("{}/{verb}", crate::links::segment(&name)),
        can_pause: !queue.is_failed_queue && !app.config().read_only,
        history,
        base: Base::new(&app, &root, format!("Queue {}", queue.name), "queues")
            .live()
            .notice(&done),
        purge_action: format!("{}/purge", crate::links::segment(&name)),
        can_purge: row.exists && !queue.is_failed_queue && !app.config().read_only,
        ready: row.ready.unwrap_or(0),
        queue,
    };
    Ok(render(&page)?.into_response())
}
