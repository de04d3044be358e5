//! Operators see limits (docs/limits.md, "Seeing limits"): a real worker holds both slots of
//! a `concurrency = 2` limit while five more of its jobs wait, and has recorded three starts
//! of a `3/min` rate while two more wait; its heartbeats carry that to the store, and
//! `palermo limits`, `/api/limits`, the Limits page and `/metrics` show it. Once the worker
//! stops, no limit is listed.

use crate::admin_support;
use crate::browser_support;
use crate::support;
use crate::web_support;

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use admin_support::{stdout, Admin};
use palermo::{Limit, LimitNames, Options, Rate, Worker};
use serde_json::Value;
use support::RunningWorker;
use web_support::Dashboard;

const WAIT: Duration = Duration::from_secs(60);

/// Lets the held jobs end.
static RELEASE: AtomicBool = AtomicBool::new(false);

/// Holds its concurrency slot until the test lets go (at most a minute).
#[palermo::job(max_attempts = 1)]
async fn limits_seen_hold(n: u32) -> anyhow::Result<()> {
    let _ = n;
    let until = Instant::now() + Duration::from_secs(60);
    while !RELEASE.load(Ordering::SeqCst) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[palermo::job(max_attempts = 1)]
async fn limits_seen_tick(n: u32) -> anyhow::Result<()> {
    let _ = n;
    Ok(())
}

/// The row of limit `name` in a limits listing (the suite's other jobs with limits of
/// their own are listed too: the worker runs them).
fn row(rows: &Value, name: &str) -> Value {
    rows.as_array()
        .and_then(|rows| rows.iter().find(|r| r["limit"] == name))
        .cloned()
        .unwrap_or_default()
}

/// The row of limit `name`, as `(in_use, waiting)`.
fn use_of(rows: &Value, name: &str) -> (Value, Value) {
    let row = row(rows, name);
    (row["in_use"].clone(), row["waiting"].clone())
}

/// Reads limits with `read` until the rows of `names` show 2 in use and 5 waiting (the
/// concurrency), and 3 in use and 2 waiting (the rate); panics with the last reading after [`WAIT`].
async fn until(what: &str, names: (&str, &str), mut read: impl FnMut() -> Value) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = read();
        if use_of(&rows, names.0) == (2.into(), 5.into())
            && use_of(&rows, names.1) == (3.into(), 2.into())
        {
            return rows;
        }
        assert!(Instant::now() < deadline, "{what}: timed out, last {rows}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_api_page_and_metrics_show_slots_in_use_and_jobs_waiting() {
    let admin = Admin::new("sqlite", "limits-seen").await;
    let queue = admin.rig.queue.clone();
    let (hold, tick) = (format!("{queue}-hold"), format!("{queue}-tick"));
    let names = (hold.as_str(), tick.as_str());
    admin.rig.track(&[&LimitNames::of(&tick, None).rate()]);
    let mut config = admin.worker_config(&[&queue]);
    config.concurrency = 8;
    // A job waiting comes back about once a second: every interval of 2 s sees each one.
    config.heartbeat_interval = Duration::from_secs(2);
    let limit = |concurrency, rate, name: &str| Limit {
        concurrency,
        rate,
        key: None,
        key_fn: None,
        name: Some(name.to_string().into()),
    };
    config
        .limits
        .insert("limits_seen_hold".into(), limit(Some(2), None, &hold));
    let per_minute = Rate::parse("3/min").expect("rate");
    config.limits.insert(
        "limits_seen_tick".into(),
        limit(None, Some(per_minute), &tick),
    );
    let worker = RunningWorker::start_with(Worker::builder(config));
    let client = support::client().await;
    let on = || Options::new().queue(&queue);
    client
        .enqueue_many((0..7).map(|n| LimitsSeenHold { n }), on())
        .await
        .expect("enqueue the holds");
    client
        .enqueue_many((0..5).map(|n| LimitsSeenTick { n }), on())
        .await
        .expect("enqueue the ticks");

    let enqueued = Instant::now();
    let rows = until(
        "palermo limits: 2 slots in use, 5 + 2 jobs waiting",
        names,
        || admin.json(&["limits"]),
    )
    .await;
    println!(
        "palermo limits --json, {:?} after the enqueue: {rows}",
        enqueued.elapsed()
    );
    let concurrency = row(&rows, &hold);
    assert_eq!(concurrency["limit"], hold.as_str(), "{rows}");
    assert_eq!(concurrency["value"], 2);
    assert_eq!(concurrency["jobs"], serde_json::json!(["limits_seen_hold"]));
    assert_eq!(concurrency["workers"], 1);
    let rate = row(&rows, &tick);
    assert_eq!(rate["limit"], tick.as_str(), "{rows}");
    assert_eq!(
        (rate["value"].clone(), rate["window_ms"].clone()),
        (3.into(), 60_000.into())
    );
    let table = stdout(&admin.palermo(&["limits"]));
    assert!(table.contains("IN USE") && table.contains(&hold), "{table}");
    assert!(table.contains("3/1m"), "{table}");

    let dashboard = Dashboard::start(&admin, &[]);
    let _api = until("/api/limits: the same", names, || {
        let (status, body) = dashboard.get("/api/limits");
        assert_eq!(status, 200, "{body}");
        let api: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(api["broker_error"], Value::Null, "{api}");
        api["limits"].clone()
    })
    .await;
    let (status, page) = dashboard.get("/limits");
    assert_eq!(status, 200);
    assert!(page.matches(r#"class="limit-row""#).count() >= 2, "{page}");
    assert!(
        page.contains(&hold) && page.contains("status-waiting"),
        "{page}"
    );
    assert!(
        page.contains(r#"href="./limits" aria-current="page""#),
        "{page}"
    );
    let (_, metrics) = dashboard.get("/metrics");
    for line in [
        format!("palermo_limit_setting{{limit=\"{hold}\",kind=\"concurrency\"}} 2"),
        format!("palermo_limit_in_use{{limit=\"{tick}\",kind=\"rate\"}} 3"),
    ] {
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    assert!(metrics.contains("palermo_limit_waiting{"), "{metrics}");
    if browser_support::available() {
        let browser = browser_support::Browser::start(1280, 700, &[]).await;
        let url = format!("{}/limits", dashboard.url);
        browser
            .client
            .goto(&url)
            .await
            .expect("open the Limits page");
        let shot = browser.screenshot("limits").await;
        println!("screenshot: {}", shot.display());
        browser.close().await;
    }

    RELEASE.store(true, Ordering::SeqCst);
    worker.stop().await;
    let rows = admin.json(&["limits"]);
    assert_eq!(
        rows,
        serde_json::json!([]),
        "a stopped worker's limits are not listed"
    );
    let empty = stdout(&admin.palermo(&["limits"]));
    assert!(empty.contains("no alive worker"), "{empty}");
    assert!(dashboard.stop(WAIT).success());
    client.close().await.expect("close the client");
}
