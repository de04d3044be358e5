//! The Metrics page, `/api/metrics` and `/metrics`' histograms from recorded heartbeats; a
//! blocked worker on the workers page, the API and `/metrics`; pruning old failures through
//! the form and the API (confirmation, audit, a bad duration, read-only, cross-origin, login)
//! and the list of prunes on the Failed page.

use crate::support;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use palermo::admin::wire::event::{Heartbeat, Histogram, Timing, TIMING_BOUNDS_MS};
use support::*;

/// `counts` observations at each bound (ms) given.
fn histogram(counts: &[(u64, u64)]) -> Histogram {
    let mut out = Histogram::default();
    for &(bound, count) in counts {
        let i = TIMING_BOUNDS_MS
            .iter()
            .position(|&b| b == bound)
            .expect("a standard bound");
        out.counts.resize(out.counts.len().max(i + 1), 0);
        out.sums_us.resize(out.counts.len(), 0);
        out.counts[i] = count;
        out.sums_us[i] = count * bound * 1000;
    }
    out
}

/// A heartbeat of a worker on `queue` that ran `job` 20 times (10 up to 20 ms, 10 up to
/// 50 ms) after waits of 50 to 100 ms; `blocked` as the broker's alarm.
fn beat(queue: &str, job: &str, blocked: Option<&str>) -> Heartbeat {
    let now = now_ms();
    Heartbeat {
        version: 1,
        event: "heartbeat".into(),
        id: uuid::Uuid::new_v4(),
        identity: format!("host:1:{queue}"),
        host: "host".into(),
        pid: 1,
        queues: vec![queue.into()],
        concurrency: 1,
        started_at: now - 60_000,
        sent_at: now,
        seq: 1,
        interval_ms: 5000,
        processed: 20,
        failed: 2,
        counters: vec![palermo::admin::wire::event::Counter {
            queue: queue.into(),
            job: job.into(),
            processed: 20,
            failed: 2,
        }],
        jobs: Vec::new(),
        blocked: blocked.map(String::from),
        state: None,
        paused: Vec::new(),
        timing_bounds_ms: TIMING_BOUNDS_MS.to_vec(),
        timings: vec![Timing {
            queue: queue.into(),
            job: job.into(),
            duration: histogram(&[(20, 10), (50, 10)]),
            latency: histogram(&[(100, 20)]),
        }],
        limits: Vec::new(),
    }
}

#[tokio::test]
async fn the_metrics_page_api_and_prometheus_show_run_times_and_waits() {
    let (store, db) = store("sqlite").await;
    let queue = unique("metrics");
    let evil = "<script>alert(1)</script>";
    store
        .record_heartbeat(&beat(&queue, "send_email", None))
        .await
        .expect("record");
    store
        .record_heartbeat(&beat(&queue, evil, None))
        .await
        .expect("record");
    let router = palermo_web::router(config(&store));

    let page = send(&router, get("/job-metrics")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"aria-current="page">Metrics"#));
    assert!(page.body.contains("send_email"));
    assert!(!page.body.contains(evil), "a job name is escaped");
    assert!(page.body.contains("&#60;script&#62;") || page.body.contains("&lt;script&gt;"));
    // p50 of 20 runs: rank 10 ends the (10, 20] ms bucket; p95: 47 ms inside (20, 50].
    assert!(
        page.body.contains("20 ms") && page.body.contains("47 ms"),
        "{}",
        page.body
    );
    assert_eq!(
        page.body
            .matches(r#"<svg class="chart" id="chart-job-"#)
            .count(),
        2
    );
    let svg_start = page.body.find("<svg").expect("a chart");
    assert!(
        !page.body[svg_start..].contains("send_email</"),
        "no job name inside a chart"
    );

    let api = send(&router, get("/api/metrics")).await.json();
    let job = api["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["job"] == "send_email")
        .cloned()
        .expect("send_email");
    assert_eq!(job["last_hour"]["processed"], 20);
    assert_eq!(job["last_hour"]["failed"], 2);
    assert_eq!(job["last_hour"]["duration"]["p50_ms"], 20.0);
    assert_eq!(job["last_hour"]["duration"]["p95_ms"], 47.0);
    assert_eq!(job["last_day"]["duration"]["count"], 20);
    assert_eq!(job["minutes"].as_array().map(Vec::len), Some(60));
    let waits = &api["queues"][0];
    assert_eq!(waits["queue"], queue.as_str());
    assert_eq!(
        (
            waits["last_hour"]["count"].as_i64(),
            waits["last_hour"]["p50_ms"].as_f64()
        ),
        (Some(40), Some(75.0))
    );

    let metrics = send(&router, get("/metrics")).await.body;
    for line in [
        "# TYPE palermo_job_duration_seconds histogram".to_string(),
        r#"palermo_job_duration_seconds_bucket{le="0.01",job="send_email"} 0"#.to_string(),
        r#"palermo_job_duration_seconds_bucket{le="0.02",job="send_email"} 10"#.to_string(),
        r#"palermo_job_duration_seconds_bucket{le="+Inf",job="send_email"} 20"#.to_string(),
        r#"palermo_job_duration_seconds_count{job="send_email"} 20"#.to_string(),
        r#"palermo_job_duration_seconds_sum{job="send_email"} 0.7"#.to_string(),
        format!(r#"palermo_queue_latency_seconds_bucket{{le="0.1",queue="{queue}"}} 40"#),
    ] {
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn a_blocked_worker_is_marked_on_the_page_the_api_and_metrics() {
    let (store, db) = store("sqlite").await;
    let queue = unique("blocked");
    store
        .record_heartbeat(&beat(&queue, "send_email", Some("low on disk")))
        .await
        .expect("record");
    let router = palermo_web::router(config(&store));
    let page = send(&router, get("/workers")).await;
    assert!(page.body.contains("data-blocked"), "{}", page.body);
    assert!(page.body.contains("blocked: low on disk"));
    let api = send(&router, get("/api/workers")).await.json();
    assert_eq!(api["workers"][0]["blocked"], "low on disk");
    let metrics = send(&router, get("/metrics")).await.body;
    assert!(metrics.contains("palermo_workers_blocked 1"), "{metrics}");
    store.close().await;
    db.remove().await;
}

const DAY: i64 = 86_400_000;

/// A store with a failure 100 days old and one from now.
async fn with_old_failures() -> (palermo_store::Store, TestDb) {
    let (store, db) = store("sqlite").await;
    let queue = unique("prune");
    let now = now_ms();
    store
        .insert_failures(&[
            failure("old", &queue, "send_email", "boom", "{}", now - 100 * DAY),
            failure("new", &queue, "send_email", "boom", "{}", now),
        ])
        .await
        .expect("insert");
    (store, db)
}

async fn exists(store: &palermo_store::Store, id: &str) -> bool {
    store.failure(id).await.expect("read").is_some()
}

#[tokio::test]
async fn prune_asks_first_then_deletes_old_failures_and_records_who() {
    let (store, db) = with_old_failures().await;
    let router = palermo_web::router(config(&store));
    let asked = send(&router, post_form("/failed/prune", "older_than=90d")).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.body.contains("older than 90d?"), "{}", asked.body);
    assert!(exists(&store, "old").await, "nothing done unconfirmed");

    let done = send(
        &router,
        post_form("/failed/prune", "older_than=90d&confirmed=1"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.header("location"), "../failed?done=pruned&n=1");
    assert!(!exists(&store, "old").await && exists(&store, "new").await);
    let page = send(&router, get("/failed?done=pruned&n=1")).await.body;
    assert!(page.contains("Pruned 1 old failure."), "{page}");
    assert!(page.contains(r#"<tr class="prune-row">"#) && page.contains("older than 90d"));

    let bad = send(
        &router,
        post_json(
            "/api/failed/prune",
            serde_json::json!({"older_than": "90 parsecs"}),
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("older_than")),
        "{bad:?}"
    );
    let zero = send(
        &router,
        post_json("/api/failed/prune", serde_json::json!({"older_than": "0s"})),
    )
    .await;
    assert_eq!(zero.status, StatusCode::BAD_REQUEST);
    assert!(exists(&store, "new").await);

    let api = send(
        &router,
        post_json(
            "/api/failed/prune",
            serde_json::json!({"older_than": "30d"}),
        ),
    )
    .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    assert_eq!(
        api.json()["pruned"],
        0,
        "a prune that deletes nothing is still recorded"
    );
    let prunes = send(&router, get("/api/failed/prunes")).await.json();
    let listed: Vec<_> = prunes
        .as_array()
        .expect("prunes")
        .iter()
        .map(|p| {
            (
                p["rule"].as_str().unwrap_or(""),
                p["pruned"].as_i64(),
                p["actor"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].0, listed[0].1), ("older than 30d", Some(0)));
    assert_eq!((listed[1].0, listed[1].1), ("older than 90d", Some(1)));
    assert!(
        listed.iter().all(|p| !p.2.is_empty()),
        "each names its actor: {listed:?}"
    );
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn prune_is_refused_read_only_cross_origin_and_without_the_login() {
    let (store, db) = with_old_failures().await;
    let read_only = palermo_web::router(config(&store).read_only(true));
    let page = send(&read_only, get("/failed")).await.body;
    assert!(
        !page.contains("prune-form"),
        "no prune form in read-only mode"
    );
    let form = send(
        &read_only,
        post_form("/failed/prune", "older_than=1d&confirmed=1"),
    )
    .await;
    assert_eq!(form.status, StatusCode::FORBIDDEN);
    let api = send(
        &read_only,
        post_json("/api/failed/prune", serde_json::json!({"older_than": "1d"})),
    )
    .await;
    assert_eq!(api.status, StatusCode::FORBIDDEN);

    let router = palermo_web::router(config(&store));
    let cross = Request::post("/api/failed/prune")
        .header(header::HOST, "dash.test")
        .header("sec-fetch-site", "cross-site")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"older_than":"1d"}"#))
        .expect("request");
    assert_eq!(send(&router, cross).await.status, StatusCode::FORBIDDEN);

    let credentials: palermo_web::Credentials = "ada:pw".parse().expect("credentials");
    let login = palermo_web::router(config(&store).auth(Some(credentials)));
    for request in [
        post_form("/failed/prune", "older_than=1d&confirmed=1"),
        post_json("/api/failed/prune", serde_json::json!({"older_than": "1d"})),
        get("/job-metrics"),
        get("/api/metrics"),
        get("/api/failed/prunes"),
    ] {
        assert_eq!(send(&login, request).await.status, StatusCode::UNAUTHORIZED);
    }
    assert!(exists(&store, "old").await, "nothing was pruned");
    assert!(store.prunes(10).await.expect("prunes").is_empty());
    store.close().await;
    db.remove().await;
}
