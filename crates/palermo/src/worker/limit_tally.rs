//! What a worker tells the admin side about its limits, in each heartbeat (docs/limits.md,
//! "Seeing limits"): per limited job, the concurrency slots it holds now, and how many
//! different jobs it sent back to wait since its previous heartbeat. Counted here because
//! workers never talk to the store: the recorder keeps each worker's last report with its
//! row, and the CLI and the dashboard add up the alive workers' reports.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use uuid::Uuid;

use crate::{limits::Limit, wire::event::LimitUse};

/// Which check of a limit a job met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Concurrency,
    Rate,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Concurrency => "concurrency",
            Kind::Rate => "rate",
        }
    }
}

/// The counts behind [`LimitUse`], per job.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Slots held now, per job.
    held: HashMap<String, u64>,
    /// The jobs sent back to wait since the last report, per job and kind: a job waiting
    /// comes back about once a second, and counts once.
    waited: HashMap<(String, Kind), HashSet<Uuid>>,
}

impl Tally {
    /// A run of `job` took a concurrency slot.
    pub fn took_slot(&self, job: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.held.entry(job.to_string()).or_default() += 1;
        }
    }

    /// A run of `job` gave its slot back.
    pub fn gave_slot(&self, job: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            if let Some(held) = counts.held.get_mut(job) {
                *held = held.saturating_sub(1);
            }
        }
    }

    /// Job `id` (of job `job`) was sent back to wait for the `kind` of its limit.
    pub fn waited(&self, job: &str, kind: Kind, id: Uuid) {
        if let Ok(mut counts) = self.counts.lock() {
            let key = (job.to_string(), kind);
            counts.waited.entry(key).or_default().insert(id);
        }
    }

    /// The report of `limits` (job → limit), starting a new count of the jobs waiting.
    pub fn report(&self, limits: &[(&str, &Limit)]) -> Vec<LimitUse> {
        let Ok(mut counts) = self.counts.lock() else {
            return Vec::new();
        };
        let waited = std::mem::take(&mut counts.waited);
        let mut report = Vec::new();
        for &(job, limit) in limits {
            let kinds = [
                limit.concurrency.map(|n| (Kind::Concurrency, n, None)),
                limit.rate.map(|rate| {
                    let window = u64::try_from(rate.per.as_millis()).unwrap_or(u64::MAX);
                    (Kind::Rate, rate.count, Some(window))
                }),
            ];
            for (kind, value, window_ms) in kinds.into_iter().flatten() {
                let held = match kind {
                    Kind::Concurrency => counts.held.get(job).copied().unwrap_or(0),
                    Kind::Rate => 0,
                };
                let waited = waited.get(&(job.to_string(), kind));
                report.push(LimitUse {
                    job: job.to_string(),
                    limit: limit.name_for(job).to_string(),
                    kind: kind.as_str().to_string(),
                    value,
                    window_ms,
                    key: limit.per(),
                    held,
                    waited: waited.map_or(0, |ids| ids.len() as u64),
                });
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Rate;

    #[test]
    fn a_report_counts_slots_now_and_each_waiting_job_once() {
        let tally = Tally::default();
        let limit = Limit {
            concurrency: Some(2),
            rate: Some(Rate::parse("10/s").expect("rate")),
            key: Some("account".into()),
            key_fn: None,
            name: Some("pay".into()),
        };
        let limits = [("charge", &limit)];
        tally.took_slot("charge");
        tally.took_slot("charge");
        tally.gave_slot("charge");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for id in [a, a, b] {
            tally.waited("charge", Kind::Concurrency, id);
        }
        tally.waited("charge", Kind::Rate, a);
        let report = tally.report(&limits);
        assert_eq!(report.len(), 2, "{report:?}");
        let (slots, rate) = (&report[0], &report[1]);
        assert_eq!((slots.kind.as_str(), slots.value), ("concurrency", 2));
        assert_eq!((slots.held, slots.waited), (1, 2));
        assert_eq!(
            (slots.limit.as_str(), slots.key.as_deref()),
            ("pay", Some("account"))
        );
        assert_eq!(
            (rate.kind.as_str(), rate.value, rate.window_ms),
            ("rate", 10, Some(1000))
        );
        assert_eq!((rate.held, rate.waited), (0, 1));
        // The waiting count starts again; the slots held do not.
        let next = tally.report(&limits);
        assert_eq!((next[0].held, next[0].waited, next[1].waited), (1, 0, 0));
    }
}
