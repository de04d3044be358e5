//! What the failures list can be filtered by: the queues, job names and error kinds of the
//! open failures, with their counts, for the dashboard's filter choices. Also the database
//! probe behind `/health`.

use serde::Serialize;
use sqlx::Row;

use crate::{
    error::{Result, StoreError},
    Store,
};

/// Values of one column among open failures, with how many have each, most first.
pub type Counted = Vec<(String, i64)>;

/// The filter choices of the open failures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facets {
    pub queues: Counted,
    pub jobs: Counted,
    pub error_kinds: Counted,
}

impl Store {
    /// Queues, job names and error kinds of the open failures.
    pub async fn failure_facets(&self) -> Result<Facets> {
        let (queues, jobs, error_kinds) = tokio::try_join!(
            self.counted("queue"),
            self.counted("job_name"),
            self.counted("error_kind")
        )?;
        Ok(Facets {
            queues,
            jobs,
            error_kinds,
        })
    }

    async fn counted(&self, column: &'static str) -> Result<Counted> {
        let doing = "counting failures for the filters";
        let sql = format!(
            "SELECT {column}, COUNT(*) FROM failures WHERE status = 'failed' GROUP BY {column} \
             ORDER BY COUNT(*) DESC, {column} LIMIT 200"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(doing))?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::query(doing))
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("checking the database"))?;
        Ok(())
    }
}
