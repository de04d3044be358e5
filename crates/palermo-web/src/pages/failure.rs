//! One failure in full: the arguments pretty-printed, the error, the backtrace, the
//! attempt history, the worker, the times, the job's earlier failures, and the audit of
//! retries and removals with who did them.

use askama::Template;
use axum::{
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use palermo_store::{failures::FailedAttempt, time, FailureDetail};

use super::{failed::FailureLine, render, Base};
use crate::{error::WebError, links::Root, state::App, text};

/// An earlier attempt or an audit entry, as display text.
pub(crate) struct Entry {
    pub(crate) at: String,
    pub(crate) what: String,
    pub(crate) detail: String,
}

#[derive(Template)]
#[template(path = "failure.html")]
struct FailurePage {
    base: Base,
    id: String,
    status: String,
    open: bool,
    fields: Vec<(&'static str, String)>,
    args: String,
    error: String,
    backtrace: Option<String>,
    /// A chain step's remaining steps (what a retry resumes).
    chain: Option<String>,
    properties: String,
    attempts: Vec<Entry>,
    earlier: Vec<FailureLine>,
    audit: Vec<Entry>,
}

/// `GET /failed/{id}`.
pub(crate) async fn page(
    State(app): State<App>,
    root: Root,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let detail = app.store().failure(&id).await?.ok_or_else(|| {
        WebError::NotFound(format!("no failure has the id {:?}", text::cell(&id, 200)))
    })?;
    let now = time::now_ms();
    let page = FailurePage {
        base: Base::new(
            &app,
            &root,
            format!("Failure {}", text::cell(&detail.failure.job_name, 60)),
            "failed",
        ),
        id: detail.failure.id.clone(),
        status: text::cell(&detail.failure.status, 20),
        open: detail.failure.status == "failed",
        fields: fields(&detail),
        args: text::visible(&arguments(&detail)),
        error: text::visible(&detail.failure.error),
        backtrace: detail.backtrace.as_deref().map(text::visible),
        chain: chain_steps(&detail),
        properties: text::visible(
            &serde_json::to_string_pretty(&detail.properties).unwrap_or_default(),
        ),
        attempts: detail.attempts.iter().map(attempt).collect(),
        earlier: detail
            .earlier_failures
            .iter()
            .map(|f| FailureLine::new(f, now))
            .collect(),
        audit: detail
            .actions
            .iter()
            .map(|a| Entry {
                at: time::short(a.at),
                what: text::cell(&a.action, 20),
                detail: text::cell(
                    &format!(
                        "by {}{} (failure {})",
                        a.actor,
                        a.queue
                            .as_deref()
                            .map(|q| format!(", to queue {q}"))
                            .unwrap_or_default(),
                        a.failure_id
                    ),
                    400,
                ),
            })
            .collect(),
    };
    Ok(render(&page)?.into_response())
}

/// The arguments as pretty JSON, or the raw body when they could not be decoded.
fn arguments(detail: &FailureDetail) -> String {
    match (&detail.args, &detail.raw_body) {
        (Some(args), _) => serde_json::to_string_pretty(args).unwrap_or_default(),
        (None, Some(raw)) => format!(
            "(not decodable with {:?}; the raw body:)\n{raw}",
            detail.failure.serializer
        ),
        (None, None) => String::new(),
    }
}

fn fields(detail: &FailureDetail) -> Vec<(&'static str, String)> {
    let f = &detail.failure;
    let when = |ms: Option<i64>| {
        ms.map_or_else(|| "–".to_string(), |ms| format!("{} UTC", time::short(ms)))
    };
    vec![
        ("Failure id", text::cell(&f.id, 200)),
        ("Job id", text::cell(&f.job_id, 200)),
        ("Job", text::cell(&f.job_name, 200)),
        ("Queue", text::cell(&f.queue, 200)),
        ("Consumed from", text::cell(&f.source_queue, 200)),
        ("Error kind", text::cell(&f.error_kind, 60)),
        (
            "Gave up because",
            text::cell(f.gave_up.as_deref().unwrap_or("–"), 200),
        ),
        (
            "Attempt",
            match f.max_attempts {
                Some(max) => format!("{} of {max}", f.attempt),
                None => f.attempt.to_string(),
            },
        ),
        ("Worker", text::cell(&f.worker, 200)),
        ("Serializer", text::cell(&f.serializer, 40)),
        ("Enqueued", when(f.enqueued_at)),
        ("First failed", when(Some(f.first_failed_at))),
        ("Failed", when(Some(f.failed_at))),
        ("Recorded", when(Some(f.recorded_at))),
        ("Status", text::cell(&f.status, 20)),
        ("Resolved", when(f.resolved_at)),
        ("Chain", chain_field(detail)),
    ]
}

/// The chain this job is a step of, on one line, or `–`.
fn chain_field(detail: &FailureDetail) -> String {
    match &detail.chain {
        Some(chain) => text::cell(&chain.summary(), 200),
        None => "–".into(),
    }
}

/// The steps a retry resumes, one per line, when this job is a step of a chain.
fn chain_steps(detail: &FailureDetail) -> Option<String> {
    let chain = detail.chain.as_ref()?;
    let lines = match chain.next.len() {
        0 => vec!["(the chain's last step: nothing follows it)".to_string()],
        _ => chain.remaining(),
    };
    Some(text::visible(&lines.join("\n")))
}

/// One failed attempt of this run, from the job's error history.
fn attempt(attempt: &FailedAttempt) -> Entry {
    Entry {
        at: time::short(attempt.at),
        what: text::cell(
            &format!("attempt {} ({})", attempt.attempt, attempt.kind),
            80,
        ),
        detail: text::visible(&attempt.error),
    }
}
