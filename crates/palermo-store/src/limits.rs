//! Limits as the admin side sees them (docs/limits.md, "Seeing limits"). Workers never talk
//! to the store, so each reports its jobs' limits and its use of them in its heartbeats; the
//! recorder keeps the last report with the worker's row, and this module adds up the alive
//! workers' reports per limit. A rate's window is counted on the broker instead, where it
//! is exact: its rate queue holds one message per start of the window.

use std::collections::{BTreeMap, BTreeSet};

use lapin::Connection;
use palermo::admin::{topology, wire::event::LimitUse};
use serde::Serialize;

use crate::{
    error::{Result, StoreError},
    queues::BrokerAdmin,
    Store,
};

/// One limit of one kind (a limit with both a concurrency and a rate is two rows), over
/// the alive workers that run its jobs with the same setting: workers given different
/// settings for one limit show as one row per setting (docs/limits.md, "Mismatched
/// settings").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LimitRow {
    /// The limit's name.
    pub limit: String,
    /// `concurrency` or `rate`.
    pub kind: String,
    /// Runs at once (`concurrency`), or starts per window (`rate`).
    pub value: u32,
    /// The rate's window, ms; `None` for a concurrency.
    pub window_ms: Option<u64>,
    /// The argument the limit holds per value of; `None` when it limits the whole job.
    pub key: Option<String>,
    /// The jobs it limits.
    pub jobs: Vec<String>,
    /// The alive workers that run them with this setting.
    pub workers: u32,
    /// Concurrency: the slots held now, over every key, as of the workers' last
    /// heartbeats. Rate without key: the starts recorded in the current window, from the
    /// broker (its rate queue's depth). Rate per key: `None`, not counted (each key has its
    /// own window).
    pub in_use: Option<u64>,
    /// The jobs sent back to wait for this limit during each alive worker's last heartbeat
    /// interval, added up (a job sent back by two workers counts twice).
    pub waiting: u64,
}

impl LimitRow {
    /// The setting as people write it: `3`, `10/1s`, with ` per account_id` for a key.
    pub fn setting(&self) -> String {
        let mut text = match self.window_ms {
            Some(ms) => format!(
                "{}/{}",
                self.value,
                humantime::format_duration(std::time::Duration::from_millis(ms))
            ),
            None => self.value.to_string(),
        };
        if let Some(key) = &self.key {
            text.push_str(" per ");
            text.push_str(key);
        }
        text
    }
}

impl Store {
    /// The limits of the alive workers' jobs, their slots held and jobs waiting, by name
    /// and kind. Rates' windows are not counted here: [`report`] adds them from the broker.
    pub async fn limits(&self) -> Result<Vec<LimitRow>> {
        let reports: Vec<(String, String)> =
            sqlx::query_as("SELECT id, limits FROM workers WHERE status = 'alive'")
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query("listing limits"))?;
        Ok(add_up(reports.iter().map(|(worker, limits)| {
            // A report this version cannot read counts as none.
            let uses: Vec<LimitUse> = serde_json::from_str(limits).unwrap_or_default();
            (worker.as_str(), uses)
        })))
    }
}

type Setting = (String, String, u32, Option<u64>, Option<String>);

/// The rows of the workers' reports (worker id, its entries).
fn add_up<'a>(reports: impl Iterator<Item = (&'a str, Vec<LimitUse>)>) -> Vec<LimitRow> {
    let mut rows: BTreeMap<Setting, (LimitRow, BTreeSet<String>, BTreeSet<&str>)> = BTreeMap::new();
    for (worker, uses) in reports {
        for entry in uses {
            let setting = (
                entry.limit.clone(),
                entry.kind.clone(),
                entry.value,
                entry.window_ms,
                entry.key.clone(),
            );
            let (row, jobs, workers) = rows.entry(setting).or_insert_with(|| {
                let row = LimitRow {
                    limit: entry.limit.clone(),
                    kind: entry.kind.clone(),
                    value: entry.value,
                    window_ms: entry.window_ms,
                    key: entry.key.clone(),
                    jobs: Vec::new(),
                    workers: 0,
                    in_use: (entry.kind == "concurrency").then_some(0),
                    waiting: 0,
                };
                (row, BTreeSet::new(), BTreeSet::new())
            });
            if let Some(in_use) = row.in_use.as_mut() {
                *in_use += entry.held;
            }
            row.waiting += entry.waited;
            jobs.insert(entry.job);
            workers.insert(worker);
        }
    }
    rows.into_values()
        .map(|(mut row, jobs, workers)| {
            row.jobs = jobs.into_iter().collect();
            row.workers = u32::try_from(workers.len()).unwrap_or(u32::MAX);
            row
        })
        .collect()
}

/// [`Store::limits`], with the starts in the current window of each rate without key read
/// from the broker (a passive declare of its rate queue: nothing is created; no queue yet
/// means no start). Used by `palermo limits`, the dashboard, `/api` and `/metrics`.
pub async fn report(connection: &Connection, store: &Store) -> Result<Vec<LimitRow>> {
    let mut rows = store.limits().await?;
    for row in rows.iter_mut() {
        if row.kind == "rate" && row.key.is_none() {
            let queue = palermo::LimitNames::of(&row.limit, None).rate();
            let depth = topology::inspect(connection, &queue).await?;
            row.in_use = Some(depth.map_or(0, |d| u64::from(d.ready)));
        }
    }
    Ok(rows)
}

impl BrokerAdmin {
    /// [`report`] over this connection.
    pub async fn limits(&self, store: &Store) -> Result<Vec<LimitRow>> {
        let connection = self.connection().await?;
        report(&connection, store).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(job: &str, kind: &str, value: u32, held: u64, waited: u64) -> LimitUse {
        LimitUse {
            job: job.into(),
            limit: "pay".into(),
            kind: kind.into(),
            value,
            window_ms: (kind == "rate").then_some(1000),
            key: None,
            held,
            waited,
        }
    }

    #[test]
    fn workers_reports_add_up_per_limit_kind_and_setting() {
        let a = vec![
            entry("charge", "concurrency", 3, 2, 1),
            entry("refund", "concurrency", 3, 1, 0),
            entry("charge", "rate", 10, 0, 4),
        ];
        let b = vec![
            entry("charge", "concurrency", 3, 0, 5),
            entry("charge", "concurrency", 4, 1, 0),
        ];
        let rows = add_up([("w1", a), ("w2", b)].into_iter());
        let shown: Vec<_> = rows
            .iter()
            .map(|r| (r.kind.as_str(), r.setting(), r.workers, r.in_use, r.waiting))
            .collect();
        assert_eq!(
            shown,
            [
                ("concurrency", "3".to_string(), 2, Some(3), 6),
                ("concurrency", "4".to_string(), 1, Some(1), 0),
                ("rate", "10/1s".to_string(), 1, None, 4),
            ]
        );
        assert_eq!(rows[0].jobs, ["charge", "refund"]);
    }
}
