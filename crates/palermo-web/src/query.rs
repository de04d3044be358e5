//! What a request says about failures: the filter (queue, job, error kind, text, time) and
//! the page position, as query parameters of the Failed page and `GET /api/failed`, as
//! hidden fields of the "all matching" forms, and as the JSON body of the API's `-all`
//! actions. One reader for all of them, so a filter means the same everywhere.

use palermo_store::{
    keyset::{Cursor, Position},
    time, Filter,
};
use serde::{Deserialize, Serialize};

use crate::{error::WebError, links::encode};

/// The filter and position, as text from the request. Empty values mean "any".
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct FailedQuery {
    /// The job's original queue.
    pub(crate) queue: Option<String>,
    /// The job name.
    pub(crate) job: Option<String>,
    /// The error kind (`error`, `panic`, `timeout`, ...).
    pub(crate) kind: Option<String>,
    /// Text in the error, arguments or job name, or a failure or job id.
    pub(crate) q: Option<String>,
    /// Failed at or after: `15m`, `2h`, `7d`, `2024-05-01`, `2024-05-01T12:00:00Z`.
    pub(crate) since: Option<String>,
    /// Failed before (same forms as `since`).
    pub(crate) until: Option<String>,
    /// Page position: failures older than this cursor.
    pub(crate) after: Option<String>,
    /// Page position: failures newer than this cursor.
    pub(crate) before: Option<String>,
}

/// `Some(trimmed)` unless empty.
fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
}

impl FailedQuery {
    /// The store filter; a time that does not parse is a 400 that says which forms work.
    pub(crate) fn filter(&self, now: i64) -> Result<Filter, WebError> {
        let moment = |value: &Option<String>, name: &str| {
            given(value)
                .map(|t| {
                    time::parse_since(&t, now)
                        .map_err(|e| WebError::BadRequest(format!("{name}: {e}")))
                })
                .transpose()
        };
        Ok(Filter {
            queue: given(&self.queue),
            job: given(&self.job),
            search: given(&self.q),
            since: moment(&self.since, "since")?,
            error_kind: given(&self.kind),
            until: moment(&self.until, "until")?,
        })
    }

    /// Where the page starts.
    pub(crate) fn position(&self) -> Result<Position, WebError> {
        let cursor = |value: String| value.parse::<Cursor>().map_err(WebError::BadRequest);
        match (given(&self.after), given(&self.before)) {
            (Some(after), _) => Ok(Position::Older(cursor(after)?)),
            (None, Some(before)) => Ok(Position::Newer(cursor(before)?)),
            (None, None) => Ok(Position::Newest),
        }
    }

    /// The filter alone (no position), for forms and links.
    pub(crate) fn filter_only(&self) -> FailedQuery {
        FailedQuery {
            after: None,
            before: None,
            ..self.clone()
        }
    }

    /// A field's value, `""` when unset (for the filter form).
    pub(crate) fn get(&self, name: &str) -> &str {
        let value = match name {
            "queue" => &self.queue,
            "job" => &self.job,
            "kind" => &self.kind,
            "q" => &self.q,
            "since" => &self.since,
            "until" => &self.until,
            _ => &None,
        };
        value.as_deref().unwrap_or("")
    }

    /// Whether any filter is set.
    pub(crate) fn is_filtered(&self) -> bool {
        [
            &self.queue,
            &self.job,
            &self.kind,
            &self.q,
            &self.since,
            &self.until,
        ]
        .into_iter()
        .any(|v| given(v).is_some())
    }

    /// The filter fields that are set, as (name, value).
    pub(crate) fn fields(&self) -> Vec<(&'static str, String)> {
        [
            ("queue", &self.queue),
            ("job", &self.job),
            ("kind", &self.kind),
            ("q", &self.q),
            ("since", &self.since),
            ("until", &self.until),
            ("after", &self.after),
            ("before", &self.before),
        ]
        .into_iter()
        .filter_map(|(name, value)| given(value).map(|v| (name, v)))
        .collect()
    }

    /// `failed?queue=...` with these fields, relative to the root.
    pub(crate) fn link(&self) -> String {
        let query: Vec<String> = self
            .fields()
            .into_iter()
            .map(|(name, value)| format!("{name}={}", encode(&value)))
            .collect();
        if query.is_empty() {
            "failed".to_string()
        } else {
            format!("failed?{}", query.join("&"))
        }
    }

    /// Reads the filter from form fields (the "all matching" forms).
    pub(crate) fn from_fields(fields: &[(String, String)]) -> FailedQuery {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        FailedQuery {
            queue: get("queue"),
            job: get("job"),
            kind: get("kind"),
            q: get("q"),
            since: get("since"),
            until: get("until"),
            after: None,
            before: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_the_filter() {
        let query = FailedQuery {
            queue: Some("mail".into()),
            q: Some("a&b c".into()),
            kind: Some(" ".into()),
            ..Default::default()
        };
        assert_eq!(query.link(), "failed?queue=mail&q=a%26b+c");
        assert!(query.is_filtered());
        assert!(!FailedQuery::default().is_filtered());
        let filter = query.filter(0).expect("filter");
        assert_eq!(filter.error_kind, None);
        assert!(FailedQuery {
            since: Some("soon".into()),
            ..Default::default()
        }
        .filter(0)
        .is_err());
        assert!(FailedQuery {
            after: Some("x".into()),
            ..Default::default()
        }
        .position()
        .is_err());
    }
}
