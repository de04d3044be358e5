//! Taking failures for a retry or a removal when several admins share one store (two
//! dashboards, a dashboard and the CLI): each failure is acted on once, and the others are
//! told who was first.
//!
//! A [`Claim`] is one transaction. [`Claim::take`] is a conditional update (`status =
//! 'failed'` → the action), so it locks the failure's row: a second admin's take of the same
//! failure waits for the first transaction and then finds it no longer open (PostgreSQL
//! re-checks the condition on the committed row; SQLite has one writer at a time). A retry
//! keeps its claim open while it publishes and waits for the broker's confirms, so a failure
//! is never published twice by two admins, and one whose publish was not confirmed is given
//! back (or the whole claim rolls back) and stays listed. Rows are taken in id order, so that
//! two admins taking overlapping sets wait for each other instead of deadlocking.

use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::{
    error::{Rejection, Result, StoreError},
    filter::Clause,
    time, Store,
};

const DOING: &str = "updating failures";

/// Failures being retried or removed, in one open transaction; dropped without
/// [`Claim::commit`], it changes nothing.
pub(crate) struct Claim {
    tx: Transaction<'static, Any>,
    action: &'static str,
    now: i64,
}

impl Store {
    /// Starts a claim for `action` (`retried` or `removed`).
    pub(crate) async fn claim(&self, action: &'static str) -> Result<Claim> {
        let tx = self.pool.begin().await.map_err(StoreError::query(DOING))?;
        Ok(Claim {
            tx,
            action,
            now: time::now_ms(),
        })
    }
}

impl Claim {
    /// Marks each open failure of `ids` with the action, in id order; returns the rejections of
    /// the others (unknown, or resolved by someone else, who is named), in the order given.
    pub async fn take_all(&mut self, ids: &[String]) -> Result<(Vec<String>, Vec<Rejection>)> {
        let mut sorted: Vec<&String> = ids.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut taken = Vec::new();
        let mut rejections = Vec::new();
        for id in sorted {
            if self.take(id).await? {
                taken.push(id.clone());
            } else {
                let reason = why_not_open(&mut self.tx, id).await?;
                rejections.push(Rejection {
                    id: id.clone(),
                    reason: reason.unwrap_or_else(|| "changed meanwhile; try again".into()),
                });
            }
        }
        rejections.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
        Ok((taken, rejections))
    }

    /// Marks every open failure `clause` selects with the action and records it for `actor`;
    /// returns how many. The history is written for the rows this update changed (`RETURNING`),
    /// not for those a concurrent admin took between a read and the update.
    pub async fn take_matching(&mut self, clause: &Clause, actor: &str) -> Result<u64> {
        let (action, at) = (clause.next(), clause.next() + 1);
        let sql = format!(
            "UPDATE failures SET status = ${action}, resolved_at = ${at} WHERE {} RETURNING id",
            clause.sql
        );
        let rows = clause
            .bind(sqlx::query(&sql))
            .bind(self.action)
            .bind(self.now)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(StoreError::query(DOING))?;
        for row in &rows {
            let id: String = row.try_get(0).map_err(StoreError::query(DOING))?;
            self.record(&id, None, actor).await?;
        }
        Ok(rows.len() as u64)
    }

    /// Marks `id` with the action if it is still open; `false` when it is unknown or no longer
    /// open (after waiting for whoever holds it).
    async fn take(&mut self, id: &str) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE failures SET status = $1, resolved_at = $2 WHERE id = $3 AND status = 'failed'",
        )
        .bind(self.action)
        .bind(self.now)
        .bind(id)
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::query(DOING))?
        .rows_affected();
        Ok(changed > 0)
    }

    /// Opens `id` again: its retry was not confirmed by the broker.
    pub async fn give_back(&mut self, id: &str) -> Result<()> {
        sqlx::query("UPDATE failures SET status = 'failed', resolved_at = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::query(DOING))?;
        Ok(())
    }

    /// Writes the history row of a taken failure (`queue`: where a retry published it).
    pub async fn record(&mut self, id: &str, queue: Option<&str>, actor: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO failure_actions (failure_id, job_id, action, queue, at, actor) \
             SELECT id, job_id, $1, $2, $3, $4 FROM failures WHERE id = $5",
        )
        .bind(self.action)
        .bind(queue)
        .bind(self.now)
        .bind(actor)
        .bind(id)
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::query(DOING))?;
        Ok(())
    }

    /// The queue, body and properties (JSON) of a failure, read inside the claim.
    pub async fn payload(&mut self, id: &str) -> Result<Option<(String, Vec<u8>, String)>> {
        crate::failures::payload(&mut self.tx, id).await
    }

    /// Makes the claim's changes visible to everyone.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(StoreError::query(DOING))
    }
}

/// Why `id` cannot be retried or removed, or `None` when it is open: unknown, or already
/// retried or removed, by whom and when (from the latest history row).
async fn why_not_open(conn: &mut AnyConnection, id: &str) -> Result<Option<String>> {
    let doing = "looking failures up";
    let row = sqlx::query(
        "SELECT status, resolved_at, (SELECT actor FROM failure_actions a WHERE a.failure_id = f.id \
         ORDER BY a.at DESC, a.id DESC LIMIT 1) FROM failures f WHERE f.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(StoreError::query(doing))?;
    let Some(row) = row else {
        return Ok(Some(
            "no failure has this id (see `palermo failed list`)".into(),
        ));
    };
    let read = || -> Result<(String, Option<i64>, Option<String>), sqlx::Error> {
        Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
    };
    let (status, at, actor) = read().map_err(StoreError::query(doing))?;
    let by = actor.map(|a| format!(" by {a}")).unwrap_or_default();
    let when = at
        .map(|at| format!(" at {}", time::rfc3339(at)))
        .unwrap_or_default();
    Ok(match status.as_str() {
        "failed" => None,
        "retried" | "removed" => Some(format!("already {status}{by}{when}")),
        other => Some(format!("has status {other:?}")),
    })
}
