//! The pages' forms: retry and remove selected failures, retry and remove all matching a
//! filter, prune old failures, purge, pause and resume a queue, quiet and stop a worker,
//! run, pause and resume a schedule. Each is a POST (the cross-origin check ran before it), asks for a
//! confirmation first, then redirects back (303) with a notice.
//!
//! The confirmation: the page's script opens a dialog and submits with `confirmed=1`.
//! Without the script (or from an old page) the server answers a confirmation page instead,
//! carrying the same fields, so nothing is done unconfirmed either way.

use askama::Template;
use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use palermo::{control::Command, Enqueued};
use palermo_store::time;

use super::{render, Base};
use crate::{
    actions,
    error::WebError,
    links::{is_local_page, Root},
    query::FailedQuery,
    security::auth::Actor,
    state::App,
    text,
};

/// The fields of a submitted form, in order (ids repeat).
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(body: &Bytes) -> Fields {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn confirmed(&self) -> bool {
        self.one("confirmed") == Some("1")
    }

    /// Where to go back to: the form's `return_to` if it is a page of this dashboard.
    fn return_to(&self, default: &str) -> String {
        match self.one("return_to") {
            Some(page) if is_local_page(page) => page.to_string(),
            _ => default.to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    base: Base,
    message: String,
    action: String,
    fields: Vec<(String, String)>,
    back: String,
}

/// The confirmation page for an unconfirmed form.
fn confirm(
    app: &App,
    root: &Root,
    action: &str,
    message: String,
    fields: &Fields,
) -> Result<Response, WebError> {
    let page = ConfirmPage {
        base: Base::new(app, root, "Confirm", ""),
        message,
        action: root.to(action),
        fields: fields
            .0
            .iter()
            .filter(|(n, _)| n != "confirmed")
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
        back: root.to(&fields.return_to("failed")),
    };
    Ok(render(&page)?.into_response())
}

/// 303 to `page` with the notice `done=WHAT&n=N`.
fn done(root: &Root, page: &str, what: &str, n: u64) -> Response {
    let separator = if page.contains('?') { '&' } else { '?' };
    let location = root.to(&format!("{page}{separator}done={what}&n={n}"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Retry or remove: what the two pairs of forms differ in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Retry,
    Remove,
}

impl Act {
    fn verb(self) -> &'static str {
        match self {
            Act::Retry => "Retry",
            Act::Remove => "Remove",
        }
    }

    fn consequence(self) -> &'static str {
        match self {
            Act::Retry => "Their jobs go back to their queues.",
            Act::Remove => "They will not run again.",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Act::Retry => "retried",
            Act::Remove => "removed",
        }
    }

    fn path(self, all: bool) -> &'static str {
        match (self, all) {
            (Act::Retry, false) => "failed/retry",
            (Act::Remove, false) => "failed/remove",
            (Act::Retry, true) => "failed/retry-all",
            (Act::Remove, true) => "failed/remove-all",
        }
    }
}

/// `POST /failed/{action}`: `retry` and `remove` (fields `id`...), `retry-all` and
/// `remove-all` (the filter fields). Another action is a 404.
pub(crate) async fn failures(
    state: State<App>,
    root: Root,
    actor: Actor,
    Path(action): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    match action.as_str() {
        "retry" => selected(state, root, actor, body, Act::Retry).await,
        "remove" => selected(state, root, actor, body, Act::Remove).await,
        "retry-all" => all(state, root, actor, body, Act::Retry).await,
        "remove-all" => all(state, root, actor, body, Act::Remove).await,
        "prune" => prune(state, root, actor, body).await,
        _ => Err(WebError::NotFound(format!(
            "no action {:?}: use retry, remove, retry-all, remove-all or prune",
            text::cell(&action, 40)
        ))),
    }
}

async fn selected(
    State(app): State<App>,
    root: Root,
    actor: Actor,
    body: Bytes,
    act: Act,
) -> Result<Response, WebError> {
    let fields = Fields::parse(&body);
    let ids = fields.all("id");
    if !fields.confirmed() {
        let message = format!(
            "{} {}? {}",
            act.verb(),
            plural(ids.len(), "failure"),
            act.consequence()
        );
        return confirm(&app, &root, act.path(false), message, &fields);
    }
    let n = match act {
        Act::Retry => actions::retry(&app, &ids, &actor).await?.len() as u64,
        Act::Remove => actions::remove(&app, &ids, &actor).await?,
    };
    Ok(done(&root, &fields.return_to("failed"), act.done(), n))
}

async fn all(
    State(app): State<App>,
    root: Root,
    actor: Actor,
    body: Bytes,
    act: Act,
) -> Result<Response, WebError> {
    let fields = Fields::parse(&body);
    let query = FailedQuery::from_fields(&fields.0);
    let filter = query.filter(time::now_ms())?;
    if !fields.confirmed() {
        let count = app.store().count_failures(&filter).await?;
        let scope = if query.is_filtered() {
            " matching this filter"
        } else {
            ""
        };
        let message = format!(
            "{} all {}{scope}? {}",
            act.verb(),
            plural(usize::try_from(count).unwrap_or(0), "failure"),
            act.consequence()
        );
        return confirm(&app, &root, act.path(true), message, &fields);
    }
    let n = match act {
        Act::Retry => actions::retry_all(&app, &filter, &actor).await?,
        Act::Remove => actions::remove_all(&app, &filter, &actor).await?,
    };
    Ok(done(&root, &query.link(), act.done(), n))
}

/// `POST /failed/prune` (field `older_than`): delete old failures, recorded.
async fn prune(
    State(app): State<App>,
    root: Root,
    actor: Actor,
    body: Bytes,
) -> Result<Response, WebError> {
    let fields = Fields::parse(&body);
    let older_than = fields.one("older_than").unwrap_or("").trim().to_string();
    if !fields.confirmed() {
        let message = format!(
            "Delete every failure, open or resolved, older than {}? This cannot be undone; the prune is recorded.",
            text::cell(&older_than, 40)
        );
        return confirm(&app, &root, "failed/prune", message, &fields);
    }
    let prune = actions::prune(&app, &older_than, &actor).await?;
    Ok(done(
        &root,
        "failed",
        "pruned",
        u64::try_from(prune.pruned).unwrap_or(0),
    ))
}

/// `POST /queues/{name}/purge`.
pub(crate) async fn purge(
    State(app): State<App>,
    root: Root,
    actor: Actor,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    let fields = Fields::parse(&body);
    if !fields.confirmed() {
        let message = format!(
            "Purge queue {}: delete its ready messages? This cannot be undone.",
            text::cell(&name, 200)
        );
        let action = format!("queues/{}/purge", crate::links::segment(&name));
        return confirm(&app, &root, &action, message, &fields);
    }
    let purged = actions::purge(&app, &name, &actor).await?;
    let back = format!("queues/{}", crate::links::segment(&name));
    Ok(done(&root, &back, "purged", u64::from(purged)))
}

/// `POST /queues/{name}/pause`.
pub(crate) async fn pause(
    state: State<App>,
    root: Root,
    actor: Actor,
    path: Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    pause_or_resume(state, root, actor, path, body, true).await
}

/// `POST /queues/{name}/resume`.
pub(crate) async fn resume(
    state: State<App>,
    root: Root,
    actor: Actor,
    path: Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    pause_or_resume(state, root, actor, path, body, false).await
}

async fn pause_or_resume(
    State(app): State<App>,
    root: Root,
    actor: Actor,
    Path(name): Path<String>,
    body: Bytes,
    pause: bool,
) -> Result<Response, WebError> {
    let fields = Fields::parse(&body);
    let queue = crate::links::segment(&name);
    let verb = if pause { "pause" } else { "resume" };
    if !fields.confirmed() {
        let consequence = if pause {
            "Within 3 s no worker takes its jobs (running ones finish); new jobs wait in it, also across restarts, until it is resumed."
        } else {
            "Its workers take its jobs again within 3 s."
        };
        let message = format!(
            "{} queue {}? {consequence}",
            capitalized(verb),
            text::cell(&name, 200)
        );
        return confirm(
            &app,
            &root,
            &format!("queues/{queue}/{verb}"),
            message,
            &fields,
        );
    }
    actions::pause(&app, &name, pause, &actor).await?;
    let back = fields.return_to(&format!("queues/{queue}"));
    Ok(done(
        &root,
        &back,
        if pause { "paused" } else { "resumed" },
        1,
    ))
}

/// `POST /workers/{id}/quiet`.
pub(crate) async fn quiet(
    state: State<App>,
    root: Root,
    actor: Actor,
    path: Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    command_worker(state, root, actor, path, body, Command::Quiet).await
}

/// `POST /workers/{id}/stop`.
pub(crate) async fn stop(
    state: State<App>,
    root: Root,
    actor: Actor,
    path: Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    command_worker(state, root, actor, path, body, Command::Stop).await
}

async fn command_worker(
    State(app): State<App>,
    root: Root,
    actor: Actor,
    Path(id): Path<String>,
    body: Bytes,
    command: Command,
) -> Result<Response, WebError> {
    let fields = Fields::parse(&body);
    let (verb, consequence, done_word) = match command {
        Command::Stop => (
            "stop",
            "It finishes its running jobs (within its shutdown timeout) and exits.",
            "stopped",
        ),
        _ => (
            "quiet",
            "It takes no new jobs, finishes the running ones and stays connected.",
            "quieted",
        ),
    };
    if !fields.confirmed() {
        let message = format!(
            "{} worker {}? {consequence}",
            capitalized(verb),
            text::cell(&id, 200)
        );
        let action = format!("workers/{}/{verb}", crate::links::segment(&id));
        return confirm(&app, &root, &action, message, &fields);
    }
    let told = actions::command_worker(&app, &id, &command, &actor).await?;
    Ok(done(
        &root,
        &fields.return_to("workers"),
        done_word,
        told.len() as u64,
    ))
}

/// `POST /jobs/{id}/cancel`: cancels a running job (the Busy table's Cancel button).
pub(crate) async fn cancel(
    State(app): State<App>,
    root: Root,
    actor: Actor,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    let fields = Fields::parse(&body);
    if !fields.confirmed() {
        let message = format!(
            "Cancel job {}? A running job is told to stop and dropped after its worker's grace \
             period; it is not retried.",
            text::cell(&id, 200)
        );
        let action = format!("jobs/{}/cancel", crate::links::segment(&id));
        return confirm(&app, &root, &action, message, &fields);
    }
    actions::cancel_job(&app, &id, false, &actor).await?;
    Ok(done(&root, &fields.return_to("workers"), "cancelled", 1))
}

/// `POST /schedules/{name}/{action}`: `run`, `pause` or `resume`; another action is a 404,
/// and so is a name the active scheduler does not know.
pub(crate) async fn schedule(
    State(app): State<App>,
    root: Root,
    actor: Actor,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, WebError> {
    let consequence = match action.as_str() {
        "run" => "One run of its job is enqueued now; its next tick is unchanged.",
        "pause" => "Its ticks are skipped (not queued up for later) until it is resumed, also across scheduler failovers and restarts.",
        "resume" => "Its next tick is enqueued again.",
        _ => {
            return Err(WebError::NotFound(format!(
                "no action {:?}: use run, pause or resume",
                text::cell(&action, 40)
            )))
        }
    };
    let fields = Fields::parse(&body);
    if !fields.confirmed() {
        let verb = if action == "run" { "run now" } else { &action };
        let message = format!(
            "{} schedule {}? {consequence}",
            capitalized(verb),
            text::cell(&name, 200)
        );
        let path = format!("schedules/{}/{action}", crate::links::segment(&name));
        return confirm(&app, &root, &path, message, &fields);
    }
    let what = match action.as_str() {
        "run" => match actions::run_schedule(&app, &name, &actor).await? {
            Enqueued::New(_) => "schedule-run",
            Enqueued::Duplicate(_) => "schedule-locked",
        },
        "pause" => {
            actions::pause_schedule(&app, &name, true, &actor).await?;
            "schedule-paused"
        }
        _ => {
            actions::pause_schedule(&app, &name, false, &actor).await?;
            "schedule-resumed"
        }
    };
    Ok(done(&root, &fields.return_to("schedules"), what, 1))
}

fn capitalized(verb: &str) -> String {
    let mut chars = verb.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
