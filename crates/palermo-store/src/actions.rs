//! What people do to failures, on the database side: check the ids they name, mark a failure
//! retried (after its job was republished, see [`crate::requeue`]) or removed, and write the
//! history row for each.

use sqlx::Row;

use crate::{
    error::{Rejection, Result, StoreError},
    time, Store,
};

impl Store {
    /// Checks that every id names an open failure; the list says what is wrong with the
    /// others (unknown, already retried, already removed). Empty: all can be acted on.
    pub async fn check_open(&self, ids: &[String]) -> Result<Vec<Rejection>> {
        let mut rejections = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                continue;
            }
            let row = sqlx::query("SELECT status, resolved_at FROM failures WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query("looking failures up"))?;
            let reason = match row {
                None => Some("no failure has this id (see `palermo failed list`)".to_string()),
                Some(row) => {
                    let status: String = row
                        .try_get(0)
                        .map_err(StoreError::query("looking failures up"))?;
                    let at: Option<i64> = row
                        .try_get(1)
                        .map_err(StoreError::query("looking failures up"))?;
                    let when = at.map(time::rfc3339).unwrap_or_default();
                    match status.as_str() {
                        "failed" => None,
                        "retried" => Some(format!("already retried at {when}")),
                        "removed" => Some(format!("already removed at {when}")),
                        other => Some(format!("has status {other:?}")),
                    }
                }
            };
            if let Some(reason) = reason {
                rejections.push(Rejection {
                    id: id.clone(),
                    reason,
                });
            }
        }
        Ok(rejections)
    }

    /// Marks failures retried (their jobs now back on the queue given with each) and records
    /// the retries, in one transaction. Returns how many were still open (one retried or
    /// removed meanwhile by someone else is left as it is).
    pub async fn mark_retried(&self, retried: &[(String, String)], actor: &str) -> Result<u64> {
        let items: Vec<(&str, Option<&str>)> = retried
            .iter()
            .map(|(id, queue)| (id.as_str(), Some(queue.as_str())))
            .collect();
        self.resolve(&items, "retried", actor).await
    }

    /// Removes open failures by id, all or none: if any id is unknown or no longer open,
    /// nothing changes and the error lists them.
    pub async fn remove(&self, ids: &[String], actor: &str) -> Result<u64> {
        let rejections = self.check_open(ids).await?;
        if !rejections.is_empty() {
            return Err(StoreError::Rejected(rejections));
        }
        let items: Vec<(&str, Option<&str>)> = ids.iter().map(|id| (id.as_str(), None)).collect();
        self.resolve(&items, "removed", actor).await
    }

    /// Deletes failures retried or removed before `before`.
    pub async fn prune_resolved(&self, before: i64) -> Result<u64> {
        let doing = "pruning resolved failures";
        let mut tx = self.pool.begin().await.map_err(StoreError::query(doing))?;
        // resolved_at is set exactly when a failure is no longer open; its index finds them.
        for table in ["failure_actions", "failure_payloads"] {
            let sql = format!(
                "DELETE FROM {table} WHERE failure_id IN \
                 (SELECT id FROM failures WHERE resolved_at IS NOT NULL AND resolved_at < $1)"
            );
            sqlx::query(&sql)
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?;
        }
        let deleted =
            sqlx::query("DELETE FROM failures WHERE resolved_at IS NOT NULL AND resolved_at < $1")
                .bind(before)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?
                .rows_affected();
        tx.commit().await.map_err(StoreError::query(doing))?;
        Ok(deleted)
    }

    async fn resolve(
        &self,
        items: &[(&str, Option<&str>)],
        action: &str,
        actor: &str,
    ) -> Result<u64> {
        let doing = "updating failures";
        let now = time::now_ms();
        let mut tx = self.pool.begin().await.map_err(StoreError::query(doing))?;
        let mut resolved = 0;
        for (id, queue) in items {
            let changed = sqlx::query(
                "UPDATE failures SET status = $1, resolved_at = $2 WHERE id = $3 AND status = 'failed'",
            )
            .bind(action)
            .bind(now)
            .bind(*id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?
            .rows_affected();
            if changed == 0 {
                continue;
            }
            resolved += changed;
            sqlx::query(
                "INSERT INTO failure_actions (failure_id, job_id, action, queue, at, actor) \
                 SELECT id, job_id, $1, $2, $3, $4 FROM failures WHERE id = $5",
            )
            .bind(action)
            .bind(*queue)
            .bind(now)
            .bind(actor)
            .bind(*id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
        }
        tx.commit().await.map_err(StoreError::query(doing))?;
        Ok(resolved)
    }
}
