//! Enqueues a burst of sample jobs, as a web app's handlers would.

use anyhow::Context;
use clap::Parser;
use palermo_demo::{ChargeCard, SendEmail, TranscodeVideo};

#[derive(Parser)]
#[command(about = "Enqueue a burst of the demo's sample jobs")]
struct Args {
    /// How many of each kind of job.
    #[arg(long, default_value_t = 20)]
    count: u64,
    /// RabbitMQ URL.
    #[arg(long, env = "PALERMO_AMQP_URL", default_value = palermo::DEFAULT_AMQP_URL)]
    amqp_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = palermo::Client::connect(&args.amqp_url)
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
    let mails = client.enqueue_many(emails).await?;
    let charges = client
        .enqueue_many((0..args.count).map(|i| ChargeCard {
            order_id: 1000 + i,
            cents: 500 + i * 10,
        }))
        .await?;
    let videos = client
        .enqueue_many((0..args.count.div_ceil(5)).map(|i| TranscodeVideo {
            video_id: i,
            resolution: "1080p".into(),
            seconds: 2 + i % 3,
        }))
        .await?;
    println!(
        "enqueued {} emails, {} card charges, {} videos (all confirmed by RabbitMQ)",
        mails.len(),
        charges.len(),
        videos.len()
    );
    client.close().await?;
    Ok(())
}
