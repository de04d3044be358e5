//! What people do to failures, on the database side: mark a failure retried (after its job
//! was republished, see [`crate::requeue`]) or removed, refusing ids that are unknown or no
//! longer open, and write the history row for each. Two admins acting on one failure at
//! once: see `claim.rs`.

use crate::{
    error::{Result, StoreError},
    Store,
};

impl Store {
    /// Marks failures retried (their jobs now back on the queue given with each) and records
    /// the retries, in one transaction. Returns how many were still open (one retried or
    /// removed meanwhile by someone else is left as it is).
    pub async fn mark_retried(&self, retried: &[(String, String)], actor: &str) -> Result<u64> {
        let ids: Vec<String> = retried.iter().map(|(id, _)| id.clone()).collect();
        let mut claim = self.claim("retried").await?;
        let (taken, _) = claim.take_all(&ids).await?;
        for id in &taken {
            let queue = retried
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, q)| q.as_str());
            claim.record(id, queue, actor).await?;
        }
        claim.commit().await?;
        Ok(taken.len() as u64)
    }

    /// Removes open failures by id, all or none: if any id is unknown or no longer open
    /// (another admin was first), nothing changes and the error lists them.
    pub async fn remove(&self, ids: &[String], actor: &str) -> Result<u64> {
        let mut claim = self.claim("removed").await?;
        let (taken, rejections) = claim.take_all(ids).await?;
        if !rejections.is_empty() {
            return Err(StoreError::Rejected(rejections));
        }
        for id in &taken {
            claim.record(id, None, actor).await?;
        }
        claim.commit().await?;
        Ok(taken.len() as u64)
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
}
