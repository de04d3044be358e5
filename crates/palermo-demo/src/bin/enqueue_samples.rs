//! Enqueues a burst of sample jobs, as a web app's handlers would.

use anyhow::Context;
use clap::Parser;
use palermo::Options;
use palermo_demo::{
    ChargeCard, ExportReport, RebuildSearchIndex, RenderReport, SendEmail, TranscodeVideo,
};

#[derive(Parser)]
#[command(about = "Enqueue a burst of the demo's sample jobs")]
struct Args {
    /// How many of each kind of job.
    #[arg(long, default_value_t = 20)]
    count: u64,
    /// Also enqueue a 60 s `export_report` job, to cancel by hand (`palermo jobs cancel`).
    #[arg(long)]
    long_job: bool,
    /// The deployment, as the workers take it (`PALERMO_MAX_PRIORITY=reports=10` for the
    /// demo's priority queue).
    #[command(flatten)]
    deployment: palermo::cli::DeploymentArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = palermo::ClientConfig::new(args.deployment.deployment());
    let client = palermo::Client::connect_with(&config)
        .await
        .context("connecting to RabbitMQ")?;
    let emails = (0..args.count).map(|i| SendEmail {
        // Every tenth address is malformed: those fail for good, straight into palermo.failed.
        to: if i % 10 == 9 {
            format!("user{i}.example.com")
        } else {
            format!("user{i}@example.com")
        },
        subject: format!("Welcome #{i}"),
    });
    let mails = client.enqueue_many(emails, Options::new()).await?;
    let charges = client
        .enqueue_many(
            (0..args.count).map(|i| ChargeCard {
                order_id: 1000 + i,
                cents: 500 + i * 10,
            }),
            Options::new(),
        )
        .await?;
    let videos = client
        .enqueue_many(
            (0..args.count.div_ceil(5)).map(|i| TranscodeVideo {
                video_id: i,
                resolution: "1080p".into(),
                seconds: 2 + i % 3,
            }),
            Options::new(),
        )
        .await?;
    println!(
        "enqueued {} emails, {} card charges, {} videos (all confirmed by RabbitMQ)",
        mails.len(),
        charges.len(),
        videos.len()
    );
    // A unique job enqueued twice: the second enqueue finds the first queued and returns its id.
    let first = client.enqueue(RebuildSearchIndex { shop_id: 7 }).await?;
    let second = client.enqueue(RebuildSearchIndex { shop_id: 7 }).await?;
    println!("unique job: first enqueue {first:?}, second {second:?}");
    // Routine reports (priority 1), then an urgent one (priority 9) that overtakes them.
    let routine = (0..5).map(|i| RenderReport {
        report_id: i,
        urgent: false,
    });
    client.enqueue_many(routine, Options::new()).await?;
    let urgent = RenderReport {
        report_id: 99,
        urgent: true,
    };
    client
        .enqueue_with(urgent, Options::new().priority(9))
        .await?;
    println!("reports: 5 routine (priority 1) and 1 urgent (priority 9) on the priority queue");
    // Jobs due minutes from now: with `palermo queues pause mail` they wait in the queue when
    // they come due, and run at `palermo queues resume mail` (docs/admin.md, "Control").
    for minutes in [2, 5, 10] {
        let reminder = SendEmail {
            to: "ada@example.com".into(),
            subject: format!("Reminder due in {minutes} minutes"),
        };
        let delay = std::time::Duration::from_secs(60 * minutes);
        client
            .enqueue_with(reminder, Options::new().delay(delay))
            .await?;
    }
    println!("scheduled: 3 reminder emails due in 2, 5 and 10 minutes");
    // A long job to cancel by hand: 60 s, checking ctx.cancelled() every second.
    if !args.long_job {
        client.close().await?;
        return Ok(());
    }
    let export = client
        .enqueue(ExportReport {
            report_id: 42,
            pages: 60,
        })
        .await?;
    println!(
        "long job: export_report {} runs 60 s; cancel it with `palermo jobs cancel {}` or on the Workers page",
        export.id(),
        export.id()
    );
    client.close().await?;
    Ok(())
}
