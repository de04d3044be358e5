//! Finding failures: the filters `failed list`, `retry --all` and `remove --all` share, turned
//! into one parameterized WHERE clause, and paging.
//!
//! The list is newest first and reads through the `(status, queue, failed_at)`,
//! `(status, job_name, failed_at)` and `(status, failed_at)` indexes; a text search scans the
//! open failures' `search_text` (job name, error and arguments preview, lowercased when
//! recorded) and matches ids exactly.

use serde::Serialize;
use sqlx::{any::AnyArguments, query::Query, Any, FromRow, Row};

use crate::{
    error::{Result, StoreError},
    failures::{Failure, COLUMNS},
    Store,
};

/// Which open failures to act on. Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// The job's original queue.
    pub queue: Option<String>,
    /// The job's wire name.
    pub job: Option<String>,
    /// Text in the error, the arguments preview, the job name, or an id.
    pub search: Option<String>,
    /// Failed at or after this time, ms since the epoch.
    pub since: Option<i64>,
    /// The error kind (`error`, `panic`, `timeout`, `malformed`, ...).
    pub error_kind: Option<String>,
    /// Failed before this time, ms since the epoch.
    pub until: Option<i64>,
}

/// A page of a list: `limit` rows from row `(page - 1) × limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Rows per page, from 1 to [`Page::MAX_LIMIT`]. Defaults to 25.
    pub limit: u32,
    /// From 1. Defaults to 1.
    pub page: u32,
}

impl Page {
    /// The most rows one page may have.
    pub const MAX_LIMIT: u32 = 10_000;
}

impl Default for Page {
    fn default() -> Self {
        Page { limit: 25, page: 1 }
    }
}

/// One page of open failures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailurePage {
    /// Open failures matching the filter, on all pages.
    pub total: i64,
    pub page: u32,
    pub limit: u32,
    pub failures: Vec<Failure>,
}

enum Param {
    Text(String),
    Int(i64),
}

/// A WHERE clause and its parameters, numbered from `$1`.
pub(crate) struct Clause {
    pub(crate) sql: String,
    params: Vec<Param>,
}

impl Clause {
    pub(crate) fn open(filter: &Filter) -> Clause {
        let mut clause = Clause {
            sql: "status = 'failed'".into(),
            params: Vec::new(),
        };
        if let Some(queue) = &filter.queue {
            let p = clause.param(Param::Text(queue.clone()));
            clause.sql.push_str(&format!(" AND queue = {p}"));
        }
        if let Some(job) = &filter.job {
            let p = clause.param(Param::Text(job.clone()));
            clause.sql.push_str(&format!(" AND job_name = {p}"));
        }
        if let Some(kind) = &filter.error_kind {
            let p = clause.param(Param::Text(kind.clone()));
            clause.sql.push_str(&format!(" AND error_kind = {p}"));
        }
        if let Some(since) = filter.since {
            let p = clause.param(Param::Int(since));
            clause.sql.push_str(&format!(" AND failed_at >= {p}"));
        }
        if let Some(until) = filter.until {
            let p = clause.param(Param::Int(until));
            clause.sql.push_str(&format!(" AND failed_at < {p}"));
        }
        if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
            let pattern = clause.param(Param::Text(format!(
                "%{}%",
                escape_like(&search.to_lowercase())
            )));
            let exact = clause.param(Param::Text(search.to_string()));
            clause.sql.push_str(&format!(
                " AND (search_text LIKE {pattern} ESCAPE '\\' OR id = {exact} OR job_id = {exact})"
            ));
        }
        clause
    }

    pub(crate) fn text(&mut self, text: &str) -> String {
        self.param(Param::Text(text.to_string()))
    }

    pub(crate) fn int(&mut self, n: i64) -> String {
        self.param(Param::Int(n))
    }

    fn param(&mut self, param: Param) -> String {
        self.params.push(param);
        format!("${}", self.params.len())
    }

    pub(crate) fn next(&self) -> usize {
        self.params.len() + 1
    }

    pub(crate) fn bind<'q>(
        &'q self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for param in &self.params {
            query = match param {
                Param::Text(text) => query.bind(text.as_str()),
                Param::Int(n) => query.bind(*n),
            };
        }
        query
    }
}

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Store {
    /// A page of open failures matching `filter`, newest first, and how many match in all.
    pub async fn list_failures(&self, filter: &Filter, page: Page) -> Result<FailurePage> {
        let doing = "listing failures";
        let page = Page {
            limit: page.limit.clamp(1, Page::MAX_LIMIT),
            page: page.page.max(1),
        };
        let clause = Clause::open(filter);
        let count_sql = format!("SELECT COUNT(*) FROM failures WHERE {}", clause.sql);
        let (limit, offset) = (clause.next(), clause.next() + 1);
        let page_sql = format!(
            "SELECT {COLUMNS} FROM failures WHERE {} ORDER BY failed_at DESC, id DESC \
             LIMIT ${limit} OFFSET ${offset}",
            clause.sql
        );
        // Two connections at once: a text search makes both queries scan the table, and
        // side by side they take the time of one.
        let count = clause.bind(sqlx::query(&count_sql)).fetch_one(&self.pool);
        let rows = clause
            .bind(sqlx::query(&page_sql))
            .bind(i64::from(page.limit))
            .bind(i64::from(page.limit) * i64::from(page.page - 1))
            .fetch_all(&self.pool);
        let (count, rows) = tokio::try_join!(count, rows).map_err(StoreError::query(doing))?;
        let total: i64 = count.try_get(0).map_err(StoreError::query(doing))?;
        let failures = rows
            .iter()
            .map(Failure::from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::query(doing))?;
        Ok(FailurePage {
            total,
            page: page.page,
            limit: page.limit,
            failures,
        })
    }

    /// Up to `limit` ids of open failures matching `filter`, oldest first.
    pub async fn failure_ids(&self, filter: &Filter, limit: u32) -> Result<Vec<String>> {
        let doing = "selecting failures";
        let clause = Clause::open(filter);
        let sql = format!(
            "SELECT id FROM failures WHERE {} ORDER BY failed_at, id LIMIT ${}",
            clause.sql,
            clause.next()
        );
        let rows = clause
            .bind(sqlx::query(&sql))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(doing))?;
        rows.iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(StoreError::query(doing))
    }

    /// Open failures per original queue.
    pub async fn failed_per_queue(&self) -> Result<Vec<(String, i64)>> {
        let doing = "counting failures per queue";
        let rows = sqlx::query(
            "SELECT queue, COUNT(*) FROM failures WHERE status = 'failed' GROUP BY queue ORDER BY queue",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(doing))?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query(doing))
    }

    /// Marks every open failure matching `filter` removed; returns how many. Failures another
    /// admin retries or removes at the same moment are left to them.
    pub async fn remove_matching(&self, filter: &Filter, actor: &str) -> Result<u64> {
        let mut claim = self.claim("removed").await?;
        let removed = claim.take_matching(&Clause::open(filter), actor).await?;
        claim.commit().await?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clause_numbers_its_parameters() {
        let filter = Filter {
            queue: Some("mail".into()),
            search: Some("50%_off".into()),
            ..Default::default()
        };
        let clause = Clause::open(&filter);
        assert!(clause.sql.contains("queue = $1"), "{}", clause.sql);
        assert!(
            clause.sql.contains("search_text LIKE $2") && clause.sql.contains("id = $3"),
            "{}",
            clause.sql
        );
        assert_eq!(clause.next(), 4);
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }
}
