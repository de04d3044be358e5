//! Failure retention: deleting old failures, and the record that it happened.
//!
//! A failure is otherwise kept until someone retries or removes it. Two rules delete them
//! for good, open or resolved, with their payloads and history: by age (`palermo failed
//! prune --older-than 90d`, or the recorder's `failure_max_age`) and by count (the
//! recorder's `failure_max_count`: the newest N are kept). Both are off unless asked for.
//!
//! A prune is never silent (Sidekiq users lost failures to an unannounced cap): each one that
//! a person asks for, and each one of the retention policy that deleted anything, is a row of
//! `failure_prunes` with who, when, by which rule and how many, in the same transaction as
//! the deletion. The dashboard's Failed page and `/api/failed/prunes` show them.

use serde::Serialize;
use sqlx::{Any, FromRow, Row, Transaction};

use crate::{
    error::{Result, StoreError},
    time, Store,
};

/// One prune of failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
pub struct Prune {
    pub id: i64,
    #[serde(serialize_with = "time::serialize")]
    pub at: i64,
    /// Who asked: a person (`palermo cli (ada@host)`, the dashboard's login) or
    /// [`RETENTION_ACTOR`].
    pub actor: String,
    /// Which rule, in words: `older than 90d`, `beyond the newest 10000`.
    pub rule: String,
    /// Failures deleted.
    pub pruned: i64,
}

/// The actor of the recorder's retention policy.
pub const RETENTION_ACTOR: &str = "recorder retention policy";

/// Which failures a prune deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Those that failed before this time, ms since the epoch.
    FailedBefore(i64),
    /// All but the newest this many (by failure time).
    BeyondNewest(u64),
}

const DELETE_DEPENDENTS: [&str; 2] = ["failure_actions", "failure_payloads"];

impl Store {
    /// Deletes the failures `rule` selects and records the prune as done by `actor`, described
    /// as `rule_text`, at `now`. With `always_record` false (the retention policy) a prune
    /// that deleted nothing leaves no row.
    pub async fn prune_failures(
        &self,
        rule: Rule,
        rule_text: &str,
        actor: &str,
        now: i64,
        always_record: bool,
    ) -> Result<Prune> {
        let doing = "pruning failures";
        let mut tx = self.pool.begin().await.map_err(StoreError::query(doing))?;
        let pruned = match rule {
            Rule::FailedBefore(before) => {
                delete(&mut tx, "failed_at < $1", before, String::new()).await?
            }
            Rule::BeyondNewest(keep) => {
                // The newest failure to delete: it and every older one go.
                let first = sqlx::query(
                    "SELECT failed_at, id FROM failures ORDER BY failed_at DESC, id DESC \
                     LIMIT 1 OFFSET $1",
                )
                .bind(i64::try_from(keep).unwrap_or(i64::MAX))
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query(doing))?;
                match first {
                    None => 0,
                    Some(row) => {
                        let at: i64 = row.try_get(0).map_err(StoreError::query(doing))?;
                        let id: String = row.try_get(1).map_err(StoreError::query(doing))?;
                        delete(
                            &mut tx,
                            "failed_at < $1 OR (failed_at = $1 AND id <= $2)",
                            at,
                            id,
                        )
                        .await?
                    }
                }
            }
        };
        let pruned = i64::try_from(pruned).unwrap_or(i64::MAX);
        let mut prune = Prune {
            id: 0,
            at: now,
            actor: actor.to_string(),
            rule: rule_text.to_string(),
            pruned,
        };
        if pruned > 0 || always_record {
            let row = sqlx::query(
                "INSERT INTO failure_prunes (at, actor, rule, pruned) VALUES ($1, $2, $3, $4) \
                 RETURNING id",
            )
            .bind(now)
            .bind(actor)
            .bind(rule_text)
            .bind(pruned)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::query(doing))?;
            prune.id = row.try_get(0).map_err(StoreError::query(doing))?;
        }
        tx.commit().await.map_err(StoreError::query(doing))?;
        Ok(prune)
    }

    /// The latest prunes, newest first.
    pub async fn prunes(&self, limit: u32) -> Result<Vec<Prune>> {
        let doing = "listing prunes";
        let rows = sqlx::query(
            "SELECT id, at, actor, rule, pruned FROM failure_prunes ORDER BY at DESC, id DESC \
             LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(doing))?;
        rows.iter()
            .map(Prune::from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query(doing))
    }
}

/// Deletes the failures matching `condition` (over `failed_at` and `id`, as `$1` and `$2`)
/// and what hangs off them; returns how many failures.
async fn delete(
    tx: &mut Transaction<'_, Any>,
    condition: &str,
    at: i64,
    id: String,
) -> Result<u64> {
    let doing = "pruning failures";
    let uses_id = condition.contains("$2");
    for table in DELETE_DEPENDENTS {
        let sql = format!(
            "DELETE FROM {table} WHERE failure_id IN (SELECT id FROM failures WHERE {condition})"
        );
        let mut query = sqlx::query(&sql).bind(at);
        if uses_id {
            query = query.bind(id.clone());
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query(doing))?;
    }
    let sql = format!("DELETE FROM failures WHERE {condition}");
    let mut query = sqlx::query(&sql).bind(at);
    if uses_id {
        query = query.bind(id);
    }
    Ok(query
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query(doing))?
        .rows_affected())
}
