//! Per-job metrics from heartbeats' histograms (exact bucket sums, percentiles within their
//! bucket, a repeated or late heartbeat adding nothing), the blocked state of workers, and
//! prunes of failures by age and by count, each recorded with its actor.

use palermo::admin::wire::event::{Histogram, Timing, TIMING_BOUNDS_MS};
use palermo_store::{
    prunes::{Rule, RETENTION_ACTOR},
    timings::{By, Kind, UNBOUNDED},
};

use super::{beat, each_backend, failure};

/// A histogram with `counts` in the buckets whose bounds (ms) are given, each observation
/// at its bucket's bound (a bound that is not one of them: the unbounded bucket).
fn histogram(counts: &[(u64, u64)]) -> Histogram {
    let mut out = Histogram::default();
    for &(bound, count) in counts {
        let i = TIMING_BOUNDS_MS
            .iter()
            .position(|&b| b == bound)
            .unwrap_or(TIMING_BOUNDS_MS.len());
        if out.counts.len() <= i {
            out.counts.resize(i + 1, 0);
            out.sums_us.resize(i + 1, 0);
        }
        out.counts[i] = count;
        out.sums_us[i] = count * bound * 1000;
    }
    out
}

fn timing(queue: &str, job: &str, duration: &[(u64, u64)], latency: &[(u64, u64)]) -> Timing {
    Timing {
        queue: queue.into(),
        job: job.into(),
        duration: histogram(duration),
        latency: histogram(latency),
    }
}

#[tokio::test]
async fn histograms_add_up_exactly_into_percentiles_per_job_and_queue() {
    each_backend(|store| async move {
        let now = palermo_store::time::now_ms();
        let (w1, w2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let mut first = beat(w1, 1, now - 2000, &[("mail", "send_email", 10, 1)]);
        first.timing_bounds_ms = TIMING_BOUNDS_MS.to_vec();
        first.timings = vec![timing("mail", "send_email", &[(20, 10)], &[(100, 10)])];
        // The same worker later: 10 more runs in (20, 50] ms; cumulative, as workers send.
        let mut second = beat(w1, 2, now - 1000, &[("mail", "send_email", 20, 1)]);
        second.timing_bounds_ms = TIMING_BOUNDS_MS.to_vec();
        second.timings = vec![timing(
            "mail",
            "send_email",
            &[(20, 10), (50, 10)],
            &[(100, 20)],
        )];
        // Another worker runs the same job from another queue, one run past every bound.
        let mut other = beat(w2, 1, now - 1000, &[("bulk", "send_email", 1, 0)]);
        other.timing_bounds_ms = TIMING_BOUNDS_MS.to_vec();
        other.timings = vec![timing("bulk", "send_email", &[(7_200_000, 1)], &[(1, 1)])];
        for b in [&first, &second, &first, &second, &other] {
            store.record_heartbeat(b).await.expect("record");
        }

        let metrics = store.metrics(now).await.expect("metrics");
        assert_eq!(metrics.bucket_bounds_ms, TIMING_BOUNDS_MS.to_vec());
        let job = &metrics.jobs[0];
        assert_eq!(job.job, "send_email");
        let hour = &job.last_hour;
        assert_eq!((hour.runs.processed, hour.runs.failed), (21, 1));
        assert_eq!(hour.duration.count, 21, "a repeated heartbeat adds nothing");
        // Ranks 10.5 and 19.95 of 21: interpolated inside (20, 50]; rank 20.79 is the run
        // past every bound, read as the last bound (1 h).
        assert_eq!(hour.duration.p50_ms, Some(21.5));
        assert_eq!(hour.duration.p95_ms, Some(49.85));
        assert_eq!(hour.duration.p99_ms, Some(3_600_000.0));
        assert_eq!(job.last_day, job.last_hour.clone());
        assert_eq!(job.minutes.len(), 60);
        assert_eq!(job.minutes.iter().map(|m| m.runs).sum::<i64>(), 21);

        let queues: Vec<_> = metrics
            .queues
            .iter()
            .map(|q| (q.queue.as_str(), q.last_hour.count, q.last_hour.p50_ms))
            .collect();
        assert_eq!(queues, [("bulk", 1, Some(0.5)), ("mail", 20, Some(75.0))]);

        let totals = store
            .timing_buckets(Kind::Duration, By::Job, None)
            .await
            .expect("totals");
        let buckets: Vec<_> = totals["send_email"]
            .iter()
            .map(|b| (b.le_ms, b.count, b.sum_us))
            .collect();
        assert_eq!(
            buckets,
            [
                (20, 10, 200_000),
                (50, 10, 500_000),
                (UNBOUNDED, 1, 7_200_000_000)
            ],
            "the run past every bound is counted in the unbounded bucket"
        );

        // Minute rows go with the statistics' retention; the totals stay.
        store.prune_stats(now + 60_000).await.expect("prune");
        let metrics = store.metrics(now).await.expect("metrics");
        assert!(
            metrics.jobs.is_empty() && metrics.queues.is_empty(),
            "{metrics:?}"
        );
        let totals = store
            .timing_buckets(Kind::Latency, By::Queue, None)
            .await
            .expect("totals");
        assert_eq!(totals["mail"][0].count, 20);
    })
    .await;
}

#[tokio::test]
async fn a_blocked_worker_says_why_until_the_alarm_clears() {
    each_backend(|store| async move {
        let now = palermo_store::time::now_ms();
        let id = uuid::Uuid::new_v4();
        let mut blocked = beat(id, 1, now - 1000, &[]);
        blocked.blocked = Some("low on disk".into());
        store.record_heartbeat(&blocked).await.expect("record");
        let workers = store.workers().await.expect("workers");
        assert_eq!(workers[0].blocked.as_deref(), Some("low on disk"));
        store
            .record_heartbeat(&beat(id, 2, now, &[]))
            .await
            .expect("record");
        assert_eq!(store.workers().await.expect("workers")[0].blocked, None);
    })
    .await;
}

#[tokio::test]
async fn prunes_by_age_and_by_count_delete_failures_and_are_recorded() {
    each_backend(|store| async move {
        let now = palermo_store::time::now_ms();
        let day = 86_400_000;
        let failures: Vec<_> = (0..6)
            .map(|i| {
                failure(
                    &format!("p-{i}"),
                    "mail",
                    "send_email",
                    "boom",
                    now - i * 30 * day,
                )
            })
            .collect();
        store.insert_failures(&failures).await.expect("insert");
        store
            .remove(&["p-5".into()], "ada")
            .await
            .expect("a resolved failure is pruned too");

        // Older than 90 days: p-4 (120 d) and p-5 (150 d).
        let prune = store
            .prune_failures(
                Rule::FailedBefore(now - 90 * day - 1),
                "older than 90d",
                "ada",
                now,
                true,
            )
            .await
            .expect("prune");
        assert_eq!((prune.pruned, prune.actor.as_str()), (2, "ada"));
        assert!(store.failure("p-5").await.expect("read").is_none());
        assert!(store.failure("p-3").await.expect("read").is_some());

        // A policy prune that deletes nothing leaves no row; one that does, a row.
        let none = store
            .prune_failures(
                Rule::BeyondNewest(10),
                "beyond the newest 10",
                RETENTION_ACTOR,
                now + 1,
                false,
            )
            .await
            .expect("prune");
        assert_eq!(none.pruned, 0);
        let capped = store
            .prune_failures(
                Rule::BeyondNewest(1),
                "beyond the newest 1",
                RETENTION_ACTOR,
                now + 2,
                false,
            )
            .await
            .expect("prune");
        assert_eq!(capped.pruned, 3);
        let left = store
            .list_failures(&Default::default(), Default::default())
            .await
            .expect("list");
        assert_eq!(
            left.failures
                .iter()
                .map(|f| f.id.as_str())
                .collect::<Vec<_>>(),
            ["p-0"]
        );

        let prunes: Vec<_> = store
            .prunes(10)
            .await
            .expect("prunes")
            .into_iter()
            .map(|p| (p.actor, p.rule, p.pruned))
            .collect();
        assert_eq!(
            prunes,
            [
                (
                    RETENTION_ACTOR.to_string(),
                    "beyond the newest 1".to_string(),
                    3
                ),
                ("ada".to_string(), "older than 90d".to_string(), 2),
            ]
        );
    })
    .await;
}
