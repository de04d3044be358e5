//! Per-job metrics and failure retention end to end: a real worker's run times and waits
//! reach the real `palermo web`'s `/api/metrics` and `/metrics`; `palermo failed prune`
//! deletes old failures and records who (and refuses a bad duration); the dashboard's
//! retention policy prunes beyond its cap and says so; `palermo workers` shows a blocked
//! worker.

use std::{sync::Arc, time::Duration};

use palermo::Options;
use serde_json::Value;

use crate::{
    admin_support::{stderr, Admin, BACKENDS},
    support::eventually,
    web_support::Dashboard,
    worker, Seen, Sleepy, WAIT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_run_time_and_wait_reach_the_metrics_api_and_prometheus() {
    let admin = Admin::new("sqlite", "metrics").await;
    let (rig, queue) = (&admin.rig, admin.rig.queue.clone());
    let dashboard = Dashboard::start(&admin, &[]);
    let seen = Arc::new(Seen::default());
    let running = worker(&admin, &[&queue], 2, &seen);
    rig.client()
        .enqueue_many(
            (0..6).map(|_| Sleepy { ms: 120 }),
            Options::new().queue(&queue),
        )
        .await
        .expect("enqueue");
    let sleepy = |metrics: &Value| {
        metrics["jobs"]
            .as_array()
            .and_then(|jobs| jobs.iter().find(|j| j["job"] == "sleepy").cloned())
            .unwrap_or_default()
    };
    let mut metrics = Value::Null;
    eventually(WAIT, "six runs of sleepy in /api/metrics", || {
        let (_, body) = dashboard.get("/api/metrics");
        metrics = serde_json::from_str(&body).unwrap_or_default();
        let done = sleepy(&metrics)["last_hour"]["duration"]["count"] == 6;
        async move { done }
    })
    .await;
    let hour = &sleepy(&metrics)["last_hour"];
    assert_eq!(hour["processed"], 6, "{metrics}");
    // 120 ms runs fall in the (100, 200] ms bucket: every percentile is inside it.
    for p in ["p50_ms", "p95_ms", "p99_ms"] {
        let value = hour["duration"][p].as_f64().unwrap_or_default();
        assert!((100.0..=200.0).contains(&value), "{p} = {value}: {metrics}");
    }
    let mean = hour["duration"]["mean_ms"].as_f64().unwrap_or_default();
    assert!((120.0..200.0).contains(&mean), "mean {mean}: {metrics}");
    let waits = metrics["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["queue"] == queue.as_str()).cloned())
        .expect("the queue's waits");
    assert_eq!(waits["last_hour"]["count"], 6, "{metrics}");
    // Two slots, six 120 ms jobs: the last ones waited for the first.
    assert!(waits["last_hour"]["p95_ms"].as_f64().unwrap_or_default() > 0.0);

    let (_, prometheus) = dashboard.get("/metrics");
    for line in [
        r#"palermo_job_duration_seconds_bucket{le="0.1",job="sleepy"} 0"#.to_string(),
        r#"palermo_job_duration_seconds_bucket{le="0.2",job="sleepy"} 6"#.to_string(),
        r#"palermo_job_duration_seconds_count{job="sleepy"} 6"#.to_string(),
        format!(r#"palermo_queue_latency_seconds_count{{queue="{queue}"}} 6"#),
    ] {
        assert!(prometheus.contains(&line), "{line} not in\n{prometheus}");
    }
    let (status, page) = dashboard.get("/job-metrics");
    assert_eq!(status, 200);
    assert!(page.contains("sleepy") && page.contains("chart-job-0"));
    running.stop().await;
    assert_eq!(
        dashboard.stop(Duration::from_secs(15)).code(),
        Some(0),
        "the dashboard stops cleanly"
    );
}

const DAY: i64 = 86_400_000;

/// Five failures recorded into the admin's store, failed 0, 50, 100, 150 and 200 days ago.
async fn old_failures(admin: &Admin, queue: &str) {
    let store = palermo_store::Store::open(&admin.db.url)
        .await
        .expect("store");
    let now = palermo_store::time::now_ms();
    let failures: Vec<_> = (0..5)
        .map(|i| {
            let mut f = palermo_store::sample::failure(i, 5, now);
            f.queue = queue.to_string();
            f.failed_at = now - i as i64 * 50 * DAY;
            f
        })
        .collect();
    store.insert_failures(&failures).await.expect("insert");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_prune_deletes_old_failures_records_who_and_refuses_bad_durations() {
    for backend in BACKENDS {
        let admin = Admin::new(backend, "prune").await;
        old_failures(&admin, &admin.rig.queue).await;
        let pruned = admin.json(&["failed", "prune", "--older-than", "90d"]);
        assert_eq!(pruned["pruned"], 3, "{backend}: {pruned}");
        assert_eq!(pruned["rule"], "older than 90d");
        assert!(
            pruned["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("palermo cli (")),
            "{pruned}"
        );
        let list = admin.json(&["failed", "list"]);
        assert_eq!(list["total"], 2, "{backend}: {list}");
        let human = admin.palermo(&["failed", "prune", "--older-than", "90d"]);
        assert!(human.status.success());
        assert_eq!(
            String::from_utf8_lossy(&human.stdout).trim(),
            "pruned 0 failures older than 90d"
        );
        for (bad, says) in [
            ("90 parsecs", "--older-than"),
            ("-5d", "negative"),
            ("0s", "every failure"),
        ] {
            let flag = format!("--older-than={bad}");
            let out = admin.palermo(&["failed", "prune", &flag]);
            assert!(!out.status.success(), "{bad} accepted");
            assert!(stderr(&out).contains(says), "{bad}: {}", stderr(&out));
        }
        let out = admin.palermo(&["failed", "prune"]);
        assert!(!out.status.success() && stderr(&out).contains("--older-than"));
        let list = admin.json(&["failed", "list"]);
        assert_eq!(list["total"], 2, "a refused prune deletes nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_retention_policy_prunes_beyond_its_cap_and_says_so() {
    let admin = Admin::new("sqlite", "retention").await;
    old_failures(&admin, &admin.rig.queue).await;
    let dashboard = Dashboard::start(&admin, &["--failure-max-count", "2"]);
    let mut prunes = Value::Null;
    eventually(WAIT, "the policy pruned and recorded it", || {
        let (_, body) = dashboard.get("/api/failed/prunes");
        prunes = serde_json::from_str(&body).unwrap_or_default();
        let done = prunes[0]["pruned"] == 3;
        async move { done }
    })
    .await;
    assert_eq!(prunes[0]["actor"], "recorder retention policy", "{prunes}");
    assert_eq!(prunes[0]["rule"], "beyond the newest 2");
    assert_eq!(
        prunes.as_array().map(Vec::len),
        Some(1),
        "a prune of nothing is not listed"
    );
    let (_, page) = dashboard.get("/failed");
    assert!(page.contains("recorder retention policy") && page.contains("beyond the newest 2"));
    assert!(dashboard
        .log_text()
        .contains("failures pruned by the retention policy"));
    let bad = admin.palermo(&["web", "--failure-max-count", "0", "--bind", "127.0.0.1:0"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("failure_max_count is 0"),
        "{}",
        stderr(&bad)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palermo_workers_says_when_the_broker_blocks_a_worker() {
    let admin = Admin::new("sqlite", "blocked").await;
    let store = palermo_store::Store::open(&admin.db.url)
        .await
        .expect("store");
    let now = palermo_store::time::now_ms();
    let beat = serde_json::json!({
        "version": 1, "event": "heartbeat", "id": uuid::Uuid::new_v4(),
        "identity": "web-1:7:mail", "host": "web-1", "pid": 7, "queues": ["mail"],
        "concurrency": 2, "started_at": now - 1000, "sent_at": now, "seq": 1,
        "interval_ms": 60_000, "processed": 0, "failed": 0, "blocked": "low on disk"
    });
    let beat = palermo::admin::wire::event::Heartbeat::parse(beat.to_string().as_bytes())
        .expect("a heartbeat");
    store.record_heartbeat(&beat).await.expect("record");
    store.close().await;
    let table = crate::admin_support::stdout(&admin.palermo(&["workers"]));
    assert!(table.contains("alive (blocked: low on disk)"), "{table}");
    let json = admin.json(&["workers"]);
    assert_eq!(json[0]["blocked"], "low on disk", "{json}");
}
