//! Paging through failures by key instead of by offset, for the dashboard.
//!
//! `OFFSET 50000` makes the database walk and throw away 50,000 rows, and a page shifts
//! under the reader when failures arrive. A keyset page starts after the last row seen
//! instead: the list is ordered by `(failed_at, id)` descending, and the next page is the
//! rows strictly below the last one's key, which the `(status, failed_at)` index (and the
//! queue and job ones) reach directly at any depth.

use sqlx::FromRow;
use std::{fmt, str::FromStr};

use serde::Serialize;
use sqlx::Row;

use crate::{
    error::{Result, StoreError},
    failures::{Failure, COLUMNS},
    filter::{Clause, Filter},
    Store,
};

/// A position in the failures list: the key of a row, `<failed_at>.<id>` as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub failed_at: i64,
    pub id: String,
}

impl Cursor {
    fn of(failure: &Failure) -> Cursor {
        Cursor {
            failed_at: failure.failed_at,
            id: failure.id.clone(),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.failed_at, self.id)
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Cursor, String> {
        let bad =
            || format!("{text:?} is not a page position (expected <failed_at ms>.<failure id>)");
        let (at, id) = text.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            failed_at: at.parse().map_err(|_| bad())?,
            id: id.to_string(),
        })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Where a page starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Position {
    /// The newest failures.
    #[default]
    Newest,
    /// The failures older than this row (the "older" link).
    Older(Cursor),
    /// The failures newer than this row (the "newer" link).
    Newer(Cursor),
}

/// One page of open failures, newest first, with the positions of its neighbours.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeysetPage {
    /// Open failures matching the filter, on all pages.
    pub total: i64,
    pub failures: Vec<Failure>,
    /// Where the next (older) page starts; `None` on the last page.
    pub older: Option<Cursor>,
    /// Where the previous (newer) page starts; `None` on the first page.
    pub newer: Option<Cursor>,
}

impl Store {
    /// `limit` open failures matching `filter` from `from`, and how many match in all.
    /// Going newer past the first page gives the first page.
    pub async fn failures_page(
        &self,
        filter: &Filter,
        from: &Position,
        limit: u32,
    ) -> Result<KeysetPage> {
        let limit = limit.clamp(1, crate::Page::MAX_LIMIT);
        let (total, rows) = tokio::try_join!(
            self.count_failures(filter),
            self.keyset_rows(filter, from, limit + 1)
        )?;
        let (mut failures, more) = cut(rows, limit);
        let (older, newer) = match from {
            Position::Newer(_) if !more => {
                // Less than a page above the cursor: that is the first page, shown whole.
                let rows = self
                    .keyset_rows(filter, &Position::Newest, limit + 1)
                    .await?;
                let (first, more) = cut(rows, limit);
                failures = first;
                (more.then(|| last(&failures)).flatten(), None)
            }
            Position::Newer(_) => {
                failures.reverse();
                (last(&failures), failures.first().map(Cursor::of))
            }
            Position::Older(_) => (
                more.then(|| last(&failures)).flatten(),
                failures.first().map(Cursor::of),
            ),
            Position::Newest => (more.then(|| last(&failures)).flatten(), None),
        };
        Ok(KeysetPage {
            total,
            failures,
            older,
            newer,
        })
    }

    /// How many open failures match `filter`.
    pub async fn count_failures(&self, filter: &Filter) -> Result<i64> {
        let clause = Clause::open(filter);
        let sql = format!("SELECT COUNT(*) FROM failures WHERE {}", clause.sql);
        let row = clause
            .bind(sqlx::query(&sql))
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("counting failures"))?;
        row.try_get(0)
            .map_err(StoreError::query("counting failures"))
    }

    /// Up to `limit` rows from `from`: newest first, except [`Position::Newer`], whose rows come
    /// oldest first (nearest the cursor first).
    async fn keyset_rows(
        &self,
        filter: &Filter,
        from: &Position,
        limit: u32,
    ) -> Result<Vec<Failure>> {
        let doing = "listing failures";
        let mut clause = Clause::open(filter);
        let (below, order) = match from {
            Position::Newest => (None, "DESC"),
            Position::Older(cursor) => (Some((cursor, '<')), "DESC"),
            Position::Newer(cursor) => (Some((cursor, '>')), "ASC"),
        };
        if let Some((cursor, op)) = below {
            let at = clause.int(cursor.failed_at);
            let id = clause.text(&cursor.id);
            clause.sql.push_str(&format!(
                " AND (failed_at {op} {at} OR (failed_at = {at} AND id {op} {id}))"
            ));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM failures WHERE {} ORDER BY failed_at {order}, id {order} LIMIT ${}",
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
            .map(Failure::from_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::query(doing))
    }
}

/// The first `limit` rows, and whether there were more.
fn cut(mut rows: Vec<Failure>, limit: u32) -> (Vec<Failure>, bool) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    (rows, more)
}

fn last(rows: &[Failure]) -> Option<Cursor> {
    rows.last().map(Cursor::of)
}
