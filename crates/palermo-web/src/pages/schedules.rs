//! The Schedules page: the periodic jobs as the active scheduler last published them (name,
//! spec, job, queue, last and next run, arguments), whether each is paused (its marker on the
//! broker, read now), the active scheduler and the age of its table, Run now, Pause and
//! Resume per schedule, and the newest schedule actions with their actors.

use askama::Template;
use axum::{
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use palermo_store::{schedules, time};

use super::{render, Base, Done};
use crate::{error::WebError, links::Root, state::App, text};

/// One schedule as the table shows it.
struct ScheduleLine {
    name: String,
    /// `schedules/NAME`, encoded, for the forms.
    link: String,
    spec: String,
    job: String,
    queue: String,
    /// `queues/NAME`, encoded.
    queue_link: String,
    args: String,
    last_run: String,
    next_run: String,
    paused: bool,
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    base: Base,
    /// The active scheduler and how old its table is; `None`: no scheduler yet.
    leader: Option<(String, String, String)>,
    schedules: Vec<ScheduleLine>,
    broker_error: Option<String>,
    /// The newest schedule actions: when, what, which schedule, who.
    history: Vec<(String, String, String, String)>,
    can_act: bool,
}

/// `GET /schedules`.
pub(crate) async fn page(
    State(app): State<App>,
    root: Root,
    Query(done): Query<Done>,
) -> Result<Response, WebError> {
    let now = time::now_ms();
    let broker = app.broker();
    let loaded = match broker.connection().await {
        Ok(connection) => schedules::load(&connection, broker.deployment())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (loaded, broker_error) = match loaded {
        Ok(loaded) => (loaded, None),
        Err(e) => (None, Some(text::cell(&e, 300))),
    };
    let history = app
        .store()
        .schedule_actions()
        .await?
        .into_iter()
        .map(|a| {
            let action = a.action.strip_prefix("schedule-").unwrap_or(&a.action);
            (
                time::short(a.at),
                text::cell(action, 20),
                text::cell(&a.target, 120),
                text::cell(&a.actor, 200),
            )
        })
        .collect();
    let leader = loaded.as_ref().map(|l| {
        (
            text::cell(&l.leader, 200),
            time::short(l.written_at),
            time::ago(l.written_at, now),
        )
    });
    let lines = loaded
        .into_iter()
        .flat_map(|l| l.schedules)
        .map(|s| {
            let row = s.row;
            ScheduleLine {
                link: format!("schedules/{}", crate::links::segment(&row.name)),
                name: text::cell(&row.name, 120),
                spec: text::cell(&row.spec, 80),
                job: text::cell(&row.job, 120),
                queue_link: format!("queues/{}", crate::links::segment(&row.queue)),
                queue: text::cell(&row.queue, 120),
                args: row.args.as_deref().map_or_else(
                    || "–".to_string(),
                    |a| match row.format.as_deref() {
                        Some("json") => text::cell(a, 80),
                        _ => format!("{} bytes ({})", a.len() / 2, row.format.unwrap_or_default()),
                    },
                ),
                last_run: schedules::at(row.last_run),
                next_run: schedules::at(row.next_run),
                paused: s.paused,
            }
        })
        .collect();
    let page = SchedulesPage {
        base: Base::new(&app, &root, "Schedules", "schedules")
            .live()
            .notice(&done),
        leader,
        schedules: lines,
        broker_error,
        history,
        can_act: !app.config().read_only,
    };
    Ok(render(&page)?.into_response())
}
