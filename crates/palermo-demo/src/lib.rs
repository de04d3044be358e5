//! The demo app: three jobs that show what Palermo users write, and the state they share.
//!
//! - `send_email` (queue `mail`): quick; an address without `@` fails for good (`fail_now`).
//! - `transcode_video` (queue `video`): takes a few seconds and logs its progress.
//! - `charge_card` (queue `default`): the card processor declines now and then; the error
//!   is retried, and lands in `palermo.failed` when attempts run out.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

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
