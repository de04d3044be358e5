//! The dashboard in a real Chromium (see tests/browser_support): a real worker fails jobs
//! into the test's own failed queue, the real `palermo web` records them, and the test works
//! the pages as an operator would.
//!
//! - The Failed page lists the failure; selecting it, Retry and the confirmation send it back
//!   to its queue: the row is gone, the store says retried, and the job runs again and
//!   succeeds.
//! - A failure whose arguments and error hold HTML and a `<script>` shows them as text on the
//!   list and the detail page, and runs nothing.
//! - Pause on a queue's page (and the confirmation) stops its worker: enqueued jobs wait, the
//!   page shows them ready and the queue paused; Resume runs them.
//! - Pause on the Schedules page (and the confirmation) stops a schedule's ticks, Run now
//!   adds one run, Resume brings the ticks back; a screenshot of the page.
//! - Screenshots of the overview, the Failed page (also phone-sized in dark mode) and the
//!   probe's page go to `target/screenshots/`, for a person to look at.

use crate::admin_support;
use crate::browser_support;
use crate::support;
use crate::web_support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use admin_support::Admin;
use browser_support::Browser;
use fantoccini::Locator;
use palermo::{Options, State, Worker};
use palermo_store::{Failure, Filter, Page, Store};
use support::{eventually, RunningWorker};
use web_support::Dashboard;

const WAIT: Duration = Duration::from_secs(20);

/// Runs of [`browser_charge`].
#[derive(Default)]
struct Runs {
    count: AtomicUsize,
}

/// Fails on its first run and succeeds on the next: the retry from the dashboard.
#[palermo::job(max_attempts = 1)]
async fn browser_charge(order: u64, runs: State<Arc<Runs>>) -> anyhow::Result<()> {
    if runs.count.fetch_add(1, Ordering::SeqCst) == 0 {
        anyhow::bail!("card declined for order {order}");
    }
    Ok(())
}

/// Fails with its argument in the error.
#[palermo::job(max_attempts = 1)]
async fn browser_probe(html: String) -> anyhow::Result<()> {
    anyhow::bail!("rejected {html}")
}

/// Counts its runs: the jobs of the paused queue.
#[palermo::job(max_attempts = 1)]
async fn browser_counted(runs: State<Arc<Runs>>) -> anyhow::Result<()> {
    runs.count.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Markup that would run or show up as markup if a page forgot to escape it.
const PROBE: &str = r#"<script>window.__pwned = 1; document.title = "pwned"</script><img src=x onerror="window.__pwned = 2"><b id="probe-bold">bold</b>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_from_the_failed_page_and_no_script_from_a_message() {
    if !browser_support::available() {
        return;
    }
    let started = Instant::now();
    let admin = Admin::new("sqlite", "browser").await;
    let queue = admin.rig.queue.clone();
    let runs = Arc::new(Runs::default());
    let worker = RunningWorker::start_with(
        Worker::builder(admin.worker_config(&[&queue])).state(runs.clone()),
    );
    let dashboard = Dashboard::start(&admin, &["--env-name", "browser-test"]);
    let client = support::client().await;
    client
        .enqueue_with(BrowserCharge { order: 42 }, Options::new().queue(&queue))
        .await
        .expect("enqueue the charge");
    client
        .enqueue_with(
            BrowserProbe {
                html: PROBE.to_string(),
            },
            Options::new().queue(&queue),
        )
        .await
        .expect("enqueue the probe");
    let store = Store::open(&admin.db.url).await.expect("open the store");
    let failures = recorded(&store, &queue, 2).await;
    let charge = by_job(&failures, "browser_charge");
    let probe = by_job(&failures, "browser_probe");

    let browser = Browser::start(1280, 1800, &[]).await;
    let at_start = started.elapsed();
    open(&browser, &format!("{}/", dashboard.url), "main").await;
    let overview = browser.screenshot("overview").await;
    let list = format!("{}/failed?queue={queue}", dashboard.url);
    open(&browser, &list, &row(&charge.id)).await;
    browser.element(&row(&probe.id), WAIT).await;
    let failed = browser.screenshot("failed").await;
    assert_inert(&browser, "the failed list").await;
    let other_looks = other_looks(&list, &row(&probe.id)).await;

    open(
        &browser,
        &format!("{}/failed/{}", dashboard.url, probe.id),
        "main",
    )
    .await;
    assert_inert(&browser, "the failure's page").await;
    browser.screenshot("failure").await;
    let text = body_text(&browser).await;
    assert!(
        text.contains("rejected <script>window.__pwned = 1;") && text.contains("onerror="),
        "the probe's error and arguments are not shown as text:\n{text}"
    );

    retry_through_the_page(&browser, &list, &charge.id).await;
    eventually(WAIT, "the retried job runs again and succeeds", || async {
        runs.count.load(Ordering::SeqCst) == 2
    })
    .await;
    let detail = store
        .failure(&charge.id)
        .await
        .expect("read the failure")
        .expect("the failure is kept for its history");
    assert_eq!(detail.failure.status, "retried");
    open(&browser, &list, &row(&probe.id)).await;
    assert!(
        browser
            .client
            .find(Locator::Css(&row(&charge.id)))
            .await
            .is_err(),
        "the retried failure is still listed"
    );

    println!(
        "screenshots: {}, {}, {}; browser test took {:?} ({:?} before the browser started)",
        overview.display(),
        failed.display(),
        other_looks.display(),
        started.elapsed(),
        at_start
    );
    browser.close().await;
    worker.stop().await;
    assert!(dashboard.stop(WAIT).success());
    store.close().await;
    client.close().await.expect("close the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_a_queue_from_its_page_and_resume_it() {
    if !browser_support::available() {
        return;
    }
    let admin = Admin::new("sqlite", "browserpause").await;
    let rig = &admin.rig;
    let queue = rig.queue.clone();
    let exchange = support::unique("control");
    let mut config = admin.worker_config(&[&queue]);
    config.deployment.control_exchange = exchange.clone();
    rig.owned().exchange(&exchange);
    rig.owned()
        .exchange(&palermo::control::pause_marker(&config.deployment, &queue));
    let runs = Arc::new(Runs::default());
    let worker = RunningWorker::start_with(Worker::builder(config).state(runs.clone()));
    rig.wait_consuming().await;
    let dashboard = Dashboard::start(&admin, &["--control-exchange", &exchange]);
    let browser = Browser::start(1280, 1000, &[]).await;
    let page = format!("{}/queues/{queue}", dashboard.url);

    open(&browser, &page, "#pause-button").await;
    click(&browser, "#pause-button").await;
    let question = browser
        .text("#confirm-dialog[open] #confirm-message", WAIT)
        .await;
    assert!(
        question.contains("Pause queue"),
        "the confirmation says {question:?}"
    );
    click(&browser, "#confirm-dialog[open] #confirm-yes").await;
    browser.element("#queue-paused", WAIT).await;
    let notice = browser.text("#notice", WAIT).await;
    assert!(notice.contains("Paused"), "the page says {notice:?}");
    eventually(WAIT, "no consumer", || async {
        rig.consumers(&queue).await == 0
    })
    .await;
    let client = support::client().await;
    for _ in 0..2 {
        client
            .enqueue_with(BrowserCounted {}, Options::new().queue(&queue))
            .await
            .expect("enqueue");
    }
    open(&browser, &page, "#resume-button").await;
    let ready = browser.text("[data-stat=ready] .value", WAIT).await;
    assert_eq!(ready, "2", "the jobs wait in the paused queue");
    assert_eq!(runs.count.load(Ordering::SeqCst), 0);
    let screenshot = browser.screenshot("queue-paused").await;

    click(&browser, "#resume-button").await;
    click(&browser, "#confirm-dialog[open] #confirm-yes").await;
    browser.element("#pause-button", WAIT).await;
    eventually(WAIT, "the waiting jobs ran after the resume", || async {
        runs.count.load(Ordering::SeqCst) == 2
    })
    .await;
    println!("screenshot: {}", screenshot.display());
    browser.close().await;
    worker.stop().await;
    assert!(dashboard.stop(WAIT).success());
    client.close().await.expect("close the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_run_and_resume_a_schedule_from_the_schedules_page() {
    if !browser_support::available() {
        return;
    }
    let admin = Admin::new("sqlite", "browsersched").await;
    let rig = &admin.rig;
    let (exchange, election) = (support::unique("control"), rig.another_queue("scheduler"));
    let ticks = rig.another_queue("ticks");
    let name = support::unique("every-second");
    let mut config = admin.worker_config(&[&rig.queue]);
    config.scheduler = true;
    config.deployment.control_exchange = exchange.clone();
    config.deployment.scheduler_queue = election.clone();
    let deployment = config.deployment.clone();
    rig.track(&[&palermo::admin::schedules::status_queue(&election)]);
    rig.owned()
        .exchange(&palermo::control::schedule_pause_marker(&deployment, &name));
    let every = palermo::Periodic::every(&name, "1s").and_then(|p| p.queue(&ticks));
    let builder = Worker::builder(config)
        .state(Arc::new(Runs::default()))
        .periodic(every.expect("schedule"), BrowserCounted {});
    let worker = RunningWorker::start_with(builder);
    eventually(WAIT, "a first tick", || async {
        rig.ready(&ticks).await >= 1
    })
    .await;
    let dashboard = Dashboard::start(
        &admin,
        &[
            "--control-exchange",
            &exchange,
            "--scheduler-queue",
            &election,
        ],
    );
    let browser = Browser::start(1280, 800, &[]).await;
    let page = format!("{}/schedules", dashboard.url);
    let row = format!("tr[data-schedule=\"{name}\"]");

    open(&browser, &page, &format!("{row} .pause-button")).await;
    click(&browser, &format!("{row} .pause-button")).await;
    let question = browser
        .text("#confirm-dialog[open] #confirm-message", WAIT)
        .await;
    assert!(
        question.contains("Pause schedule"),
        "the confirmation says {question:?}"
    );
    click(&browser, "#confirm-dialog[open] #confirm-yes").await;
    browser
        .element(&format!("{row} .resume-button"), WAIT)
        .await;
    let notice = browser.text("#notice", WAIT).await;
    assert!(notice.contains("Paused"), "the page says {notice:?}");
    let names = [name.clone()];
    let paused = palermo::control::paused_schedules(&rig.connection, &deployment, &names).await;
    assert_eq!(
        paused.expect("markers").len(),
        1,
        "the marker is on the broker"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = rig.ready(&ticks).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.ready(&ticks).await, during, "no tick while paused");

    click(&browser, &format!("{row} .run-button")).await;
    click(&browser, "#confirm-dialog[open] #confirm-yes").await;
    let deadline = Instant::now() + WAIT;
    while !browser
        .text("#notice", WAIT)
        .await
        .contains("Enqueued one run")
    {
        assert!(Instant::now() < deadline, "no Run now notice");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rig.ready(&ticks).await, during + 1, "one run");
    let screenshot = browser.screenshot("schedules").await;

    click(&browser, &format!("{row} .resume-button")).await;
    click(&browser, "#confirm-dialog[open] #confirm-yes").await;
    browser.element(&format!("{row} .pause-button"), WAIT).await;
    eventually(WAIT, "ticks again", || async {
        rig.ready(&ticks).await >= during + 3
    })
    .await;
    let text = body_text(&browser).await;
    assert!(text.contains("Operator actions"), "the audit: {text}");
    println!("screenshot: {}", screenshot.display());
    browser.close().await;
    worker.stop().await;
    assert!(dashboard.stop(WAIT).success());
}

/// The Failed page on a phone-sized window in dark mode (Chromium's `--force-dark-mode` makes
/// `prefers-color-scheme: dark` match), saved as `failed-phone-dark.png` for a person to look
/// at; the page must still show the rows.
async fn other_looks(list: &str, ready: &str) -> std::path::PathBuf {
    let phone = Browser::start(390, 844, &["--force-dark-mode"]).await;
    open(&phone, list, ready).await;
    let dark = phone
        .eval("return window.matchMedia('(prefers-color-scheme: dark)').matches")
        .await;
    assert_eq!(dark, true, "the dark-mode window does not prefer dark");
    let path = phone.screenshot("failed-phone-dark").await;
    phone.close().await;
    path
}

/// Ticks the failure's checkbox, presses Retry, confirms, and waits for its row to go.
async fn retry_through_the_page(browser: &Browser, list: &str, id: &str) {
    open(browser, list, &row(id)).await;
    click(browser, &format!("{} input.select-failure", row(id))).await;
    click(browser, "#retry-selected").await;
    let question = browser
        .text("#confirm-dialog[open] #confirm-message", WAIT)
        .await;
    assert!(
        question.contains("Retry 1 selected"),
        "the confirmation says {question:?}"
    );
    click(browser, "#confirm-dialog[open] #confirm-yes").await;
    let gone = format!(
        "return document.querySelector('{}') === null",
        row(id).replace('\'', "\\'")
    );
    let deadline = Instant::now() + WAIT;
    while browser.eval(&gone).await != serde_json::Value::Bool(true) {
        assert!(Instant::now() < deadline, "the retried row did not go away");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let notice = browser.text("#notice", WAIT).await;
    assert!(
        notice.contains("Retried 1 failure"),
        "the page says {notice:?}"
    );
}

/// The CSS selector of a failure's row on the list.
fn row(id: &str) -> String {
    format!("tr[data-failure-id=\"{id}\"]")
}

/// Goes to `url` and waits until `ready` (a CSS selector) is on the page.
async fn open(browser: &Browser, url: &str, ready: &str) {
    browser
        .client
        .goto(url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    browser.element(ready, WAIT).await;
}

async fn click(browser: &Browser, selector: &str) {
    browser
        .element(selector, WAIT)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

async fn body_text(browser: &Browser) -> String {
    browser
        .eval("return document.body.innerText")
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Nothing of [`PROBE`] ran or became markup, and its text is visible.
async fn assert_inert(browser: &Browser, page: &str) {
    let state = browser
        .eval(
            "return {
                pwned: window.__pwned === undefined ? null : window.__pwned,
                title: document.title,
                scripts: [...document.scripts].filter(s => s.textContent.includes('__pwned')).length,
                handlers: document.querySelectorAll('[onerror]').length,
                bold: document.querySelectorAll('#probe-bold').length,
                shown: document.body.innerText.includes('<script>'),
            }",
        )
        .await;
    assert_eq!(state["pwned"], serde_json::Value::Null, "{page}: {state}");
    let title = state["title"].as_str().unwrap_or_default();
    assert!(
        title.contains("browser-test") && !title.contains("pwned"),
        "{page}: {state}"
    );
    assert_eq!(state["scripts"], 0, "{page}: a script element: {state}");
    assert_eq!(state["handlers"], 0, "{page}: an onerror handler: {state}");
    assert_eq!(
        state["bold"], 0,
        "{page}: the probe's <b> became markup: {state}"
    );
    assert_eq!(
        state["shown"], true,
        "{page}: the probe's text is not shown: {state}"
    );
}

/// Waits until the dashboard's recorder has recorded `count` failures of `queue`.
async fn recorded(store: &Store, queue: &str, count: i64) -> Vec<Failure> {
    let filter = Filter {
        queue: Some(queue.to_string()),
        ..Filter::default()
    };
    eventually(WAIT, "the dashboard records the failures", || async {
        let page = store.list_failures(&filter, Page::default()).await;
        page.is_ok_and(|page| page.total == count)
    })
    .await;
    store
        .list_failures(&filter, Page::default())
        .await
        .expect("list the failures")
        .failures
}

fn by_job<'a>(failures: &'a [Failure], job: &str) -> &'a Failure {
    failures
        .iter()
        .find(|f| f.job_name == job)
        .unwrap_or_else(|| panic!("no failure of {job} among {failures:?}"))
}
