//! The demo app: three jobs that show what Palermo users write, and the state they share.
//!
//! - `send_email` (queue `mail`): quick; an address without `@` fails for good (`fail_now`).
//! - `transcode_video` (queue `video`): takes a few seconds and logs its progress.
//! - `charge_card` (queue `default`): the card processor declines now and then; the error
//!   is retried, and lands in `palermo.failed` when attempts run out.
//! - `notify_webhook` (queue `default`): calls a partner's webhook; a busy endpoint snoozes
//!   the job (no attempt used), one that is down fails the run (retried).
//! - `rebuild_search_index` (queue `default`): a unique job (`unique = "1m"`): enqueued twice
//!   by `enqueue-samples`, it is queued and run once (the second enqueue gets the first id).
//! - `render_report` (queue `reports`, a priority queue: scripts/demo.sh gives every process
//!   `PALERMO_MAX_PRIORITY=reports=10`): the urgent report, enqueued last with priority 9,
//!   runs before the routine ones still waiting.
//! - `tidy_carts` (queue `default`): a periodic job, every 10 s, enqueued by whichever demo
//!   worker's scheduler is active (`--scheduler`): once per tick however many run.
//!
//! The worker binary adds [`JobLines`], a middleware that logs one `job done` line per
//! successful run, so the demo's terminal shows one line per job at info.

mod job_lines;

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

pub use job_lines::JobLines;
use palermo::{JobContext, JobError, State};
use tracing::info;

/// Application state handed to the worker with `.state(Mailer::default())` and taken by jobs
/// as `State<Mailer>`: in a real app, an SMTP client or a database pool.
#[derive(Debug, Default)]
pub struct Mailer {
    sent: AtomicU64,
}

impl Mailer {
    /// Emails sent by this process.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Sends an email (pretends to, in 50–250 ms).
#[palermo::job(queue = "mail", timeout = "30s")]
pub async fn send_email(
    to: String,
    subject: String,
    mailer: State<Mailer>,
) -> Result<(), JobError> {
    if !to.contains('@') {
        return Err(JobError::fail_now(anyhow::anyhow!(
            "{to:?} is not an email address; retrying cannot fix that"
        )));
    }
    tokio::time::sleep(Duration::from_millis(50 + (to.len() as u64 * 17) % 200)).await;
    let total = mailer.sent.fetch_add(1, Ordering::Relaxed) + 1;
    info!(%to, %subject, total, "email sent");
    Ok(())
}

/// Transcodes a video (pretends to, in `seconds` seconds), logging progress.
#[palermo::job(queue = "video", timeout = "5m")]
pub async fn transcode_video(
    video_id: u64,
    resolution: String,
    seconds: u64,
) -> anyhow::Result<()> {
    for step in 1..=seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        info!(video_id, %resolution, progress = format!("{}%", step * 100 / seconds.max(1)), "transcoding");
    }
    Ok(())
}

/// Charges a card; the processor declines about one order in three.
#[palermo::job(queue = "default", max_attempts = 2)]
pub async fn charge_card(order_id: u64, cents: u64, ctx: JobContext) -> anyhow::Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    if (u64::from(nanos) + order_id).is_multiple_of(3) {
        anyhow::bail!(
            "card declined for order {order_id} (attempt {})",
            ctx.attempt
        );
    }
    info!(order_id, cents, "card charged");
    Ok(())
}

/// A partner's webhook endpoint, as state (in a real app, an HTTP client and its URL). It can
/// be made busy or down for a number of calls, to show snoozes and retries.
#[derive(Debug, Default)]
pub struct Webhooks {
    busy_for: AtomicU32,
    down_for: AtomicU32,
    delivered: AtomicU64,
}

impl Webhooks {
    /// The next `calls` calls find the endpoint rate-limited.
    pub fn busy_for(&self, calls: u32) {
        self.busy_for.store(calls, Ordering::Relaxed);
    }

    /// The next `calls` calls find the endpoint down.
    pub fn down_for(&self, calls: u32) {
        self.down_for.store(calls, Ordering::Relaxed);
    }

    /// Webhooks delivered by this process.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

/// Takes one from `counter` when it is above zero; says whether it did.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Tells the partner's webhook that an order was placed. A rate-limited endpoint snoozes the
/// job for 30 s (it has not failed); one that is down fails the run, which is retried.
#[palermo::job(queue = "default", max_attempts = 3)]
pub async fn notify_webhook(order_id: u64, webhooks: State<Webhooks>) -> Result<(), JobError> {
    if take_one(&webhooks.busy_for) {
        return Err(JobError::snooze(Duration::from_secs(30)));
    }
    if take_one(&webhooks.down_for) {
        return Err(JobError::retry(anyhow::anyhow!(
            "webhook for order {order_id}: endpoint down (503)"
        )));
    }
    webhooks.delivered.fetch_add(1, Ordering::Relaxed);
    info!(order_id, "webhook delivered");
    Ok(())
}

/// Every 10 seconds: the demo's periodic job. scripts/demo.sh starts two workers with
/// `--scheduler`; one is active, so each tick runs once (docs/scheduling.md).
#[palermo::job(queue = "default", every = "10s")]
pub async fn tidy_carts(ctx: JobContext) -> anyhow::Result<()> {
    info!(job_id = %ctx.id, "periodic: tidying abandoned carts");
    Ok(())
}

/// Rebuilds a shop's search index: a unique job. While one is queued or running for the same
/// shop, enqueueing another does nothing and returns the first one's id.
#[palermo::job(queue = "default", unique = "1m")]
pub async fn rebuild_search_index(shop_id: u64) -> anyhow::Result<()> {
    info!(shop_id, "rebuilding the search index (unique job)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Renders a report; routine ones go with priority 1 (`#[job(priority = 1)]`), an urgent one
/// is enqueued with `Options::new().priority(9)` and overtakes them.
#[palermo::job(queue = "reports", priority = 1)]
pub async fn render_report(report_id: u64, urgent: bool) -> anyhow::Result<()> {
    info!(report_id, urgent, "rendering report (priority queue)");
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// Exports a report, one page a second for `pages` seconds (60 in the demo): a long job to
/// cancel by hand (`palermo jobs cancel ID`, or Cancel on the dashboard's Workers page). It
/// checks `ctx.cancelled()` between pages and stops at once when told; its outcome is then
/// cancelled, not failed, and it is not retried (docs/admin.md, "Control").
#[palermo::job(queue = "reports", max_attempts = 1)]
pub async fn export_report(report_id: u64, pages: u32, ctx: JobContext) -> anyhow::Result<()> {
    info!(report_id, pages, job.id = %ctx.id, "exporting report: cancel it with `palermo jobs cancel {}`", ctx.id);
    for page in 1..=pages {
        tokio::select! {
            () = ctx.cancelled() => {
                info!(report_id, page, "export cancelled; stopping");
                return Ok(());
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    info!(report_id, pages, "report exported");
    Ok(())
}
