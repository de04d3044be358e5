//! The Failed page: open failures, newest first, 25 a page by key (see
//! `palermo_store::keyset`), filtered by queue, job, error kind, text and time; checkboxes
//! with Retry and Remove for the selected rows, and Retry all / Remove all for the current
//! filter behind a confirmation that says how many; the latest prunes of old failures (who,
//! when, which rule, how many) and a form to prune.

use askama::Template;
use axum::{
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use palermo_store::{facets::Counted, time, Failure};

use super::{render, Base, Done};
use crate::{
    error::WebError,
    links::{segment, Root},
    query::FailedQuery,
    state::App,
    text,
};

/// Rows on a page.
pub(crate) const PAGE_SIZE: u32 = 25;

/// A failure as a row of the list.
pub(crate) struct FailureLine {
    pub(crate) id: String,
    pub(crate) link: String,
    pub(crate) failed_at: String,
    pub(crate) failed_ago: String,
    pub(crate) queue: String,
    pub(crate) job: String,
    pub(crate) kind: String,
    pub(crate) error: String,
    pub(crate) args: String,
    pub(crate) attempt: String,
}

impl FailureLine {
    pub(crate) fn new(f: &Failure, now: i64) -> FailureLine {
        FailureLine {
            id: f.id.clone(),
            link: format!("failed/{}", segment(&f.id)),
            failed_at: time::short(f.failed_at),
            failed_ago: format!("{} ago", time::ago(f.failed_at, now)),
            queue: text::cell(&f.queue, 60),
            job: text::cell(
                if f.job_name.is_empty() {
                    "(unknown)"
                } else {
                    &f.job_name
                },
                60,
            ),
            kind: text::cell(&f.error_kind, 30),
            error: text::cell(&f.error, 160),
            args: text::cell(&f.args_preview, 100),
            attempt: match f.max_attempts {
                Some(max) => format!("{}/{max}", f.attempt),
                None => f.attempt.to_string(),
            },
        }
    }
}

#[derive(Template)]
#[template(path = "failed.html")]
struct FailedPage {
    base: Base,
    query: FailedQuery,
    /// The filter as hidden form fields (for the "all matching" form).
    filter_fields: Vec<(&'static str, String)>,
    filtered: bool,
    /// `failed?...` of this page (the filter and position), for redirects after actions.
    return_to: String,
    total: i64,
    failures: Vec<FailureLine>,
    older: Option<String>,
    newer: Option<String>,
    queues: Counted,
    jobs: Counted,
    kinds: Counted,
    /// The latest prunes of failures, newest first: none is silent.
    prunes: Vec<PruneLine>,
}

/// How many of the latest prunes the page lists.
const PRUNES_SHOWN: u32 = 5;

/// A prune of failures, as the page lists it.
pub(crate) struct PruneLine {
    pub(crate) at: String,
    pub(crate) ago: String,
    pub(crate) pruned: i64,
    pub(crate) rule: String,
    pub(crate) actor: String,
}

impl PruneLine {
    fn new(prune: &palermo_store::prunes::Prune, now: i64) -> PruneLine {
        PruneLine {
            at: time::short(prune.at),
            ago: format!("{} ago", time::ago(prune.at, now)),
            pruned: prune.pruned,
            rule: text::cell(&prune.rule, 80),
            actor: text::cell(&prune.actor, 120),
        }
    }
}

/// `GET /failed`.
pub(crate) async fn page(
    State(app): State<App>,
    root: Root,
    Query(query): Query<FailedQuery>,
    Query(done): Query<Done>,
) -> Result<Response, WebError> {
    let now = time::now_ms();
    let filter = query.filter(now)?;
    let position = query.position()?;
    let store = app.store();
    let (found, facets, prunes) = tokio::try_join!(
        store.failures_page(&filter, &position, PAGE_SIZE),
        store.failure_facets(),
        store.prunes(PRUNES_SHOWN)
    )?;
    let at = |cursor: &palermo_store::keyset::Cursor, key: &str| {
        let mut link = query.filter_only();
        match key {
            "after" => link.after = Some(cursor.to_string()),
            _ => link.before = Some(cursor.to_string()),
        }
        link.link()
    };
    let visible = |list: Counted| -> Counted {
        list.into_iter()
            .map(|(v, n)| (text::cell(&v, 60), n))
            .collect()
    };
    let page = FailedPage {
        base: Base::new(&app, &root, "Failed", "failed").notice(&done),
        filter_fields: query.filter_only().fields(),
        filtered: query.is_filtered(),
        return_to: query.link(),
        total: found.total,
        failures: found
            .failures
            .iter()
            .map(|f| FailureLine::new(f, now))
            .collect(),
        older: found.older.as_ref().map(|c| at(c, "after")),
        newer: found.newer.as_ref().map(|c| at(c, "before")),
        queues: visible(facets.queues),
        jobs: visible(facets.jobs),
        kinds: visible(facets.error_kinds),
        prunes: prunes.iter().map(|p| PruneLine::new(p, now)).collect(),
        query,
    };
    Ok(render(&page)?.into_response())
}
