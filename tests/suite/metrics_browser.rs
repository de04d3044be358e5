//! The Metrics page in a real Chromium (see tests/browser_support): a real worker runs jobs
//! of two kinds, the real `palermo web` records their heartbeats, and the page shows each
//! job's run-time chart with bars; a screenshot goes to `target/screenshots/metrics.png`
//! for a person to look at.

use crate::admin_support;
use crate::browser_support;
use crate::support;
use crate::web_support;

use std::time::Duration;

use admin_support::Admin;
use browser_support::Browser;
use palermo::{Options, Worker};
use support::RunningWorker;
use web_support::Dashboard;

const WAIT: Duration = Duration::from_secs(30);

/// Takes `ms` milliseconds.
#[palermo::job(max_attempts = 1)]
async fn metrics_render_report(ms: u64) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(())
}

/// Fails after `ms` milliseconds.
#[palermo::job(max_attempts = 1)]
async fn metrics_sync_crm(ms: u64) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    anyhow::bail!("the CRM said 503")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_page_charts_each_jobs_run_time() {
    if !browser_support::available() {
        return;
    }
    let admin = Admin::new("sqlite", "metrics-browser").await;
    let queue = admin.rig.queue.clone();
    let mut config = admin.worker_config(&[&queue]);
    config.concurrency = 4;
    let worker = RunningWorker::start_with(Worker::builder(config));
    let dashboard = Dashboard::start(&admin, &["--env-name", "browser-test"]);
    let client = support::client().await;
    let on = || Options::new().queue(&queue);
    client
        .enqueue_many((0..24).map(|i| MetricsRenderReport { ms: 5 + i * 7 }), on())
        .await
        .expect("enqueue the reports");
    client
        .enqueue_many((0..6).map(|i| MetricsSyncCrm { ms: 30 + i * 40 }), on())
        .await
        .expect("enqueue the syncs");

    let browser = Browser::start(1280, 1400, &[]).await;
    let page = format!("{}/job-metrics", dashboard.url);
    // The page shows what the recorder has; reload until both jobs' runs are in.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        browser
            .client
            .goto(&page)
            .await
            .expect("open the Metrics page");
        let runs = browser
            .eval("return Array.from(document.querySelectorAll('tr.job-metrics-row')).map(r => r.cells[1].innerText).join(',')")
            .await;
        if runs.as_str() == Some("24,6") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runs on the page: {runs}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let bars = browser
        .eval("return document.querySelectorAll('figure.job-chart svg rect.bar-p95').length")
        .await;
    assert!(bars.as_u64().is_some_and(|n| n >= 2), "bars: {bars}");
    let captions = browser
        .eval("return Array.from(document.querySelectorAll('figure.job-chart figcaption')).map(c => c.innerText).join('|')")
        .await;
    let captions = captions.as_str().unwrap_or_default();
    assert!(
        captions.contains("metrics_render_report") && captions.contains("metrics_sync_crm"),
        "{captions}"
    );
    let shot = browser.screenshot("metrics").await;
    println!("screenshot: {}", shot.display());
    browser.close().await;
    worker.stop().await;
    assert!(dashboard.stop(WAIT).success());
    client.close().await.expect("close the client");
}
