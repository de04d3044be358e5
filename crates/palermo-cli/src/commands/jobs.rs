//! `palermo jobs cancel ID... [--json]`: cancels jobs by id (docs/admin.md, "Control"). A
//! queued or delayed job is acked without running when it is delivered; a running one is told
//! (`JobContext::cancelled`) and dropped after its worker's cancel grace period. The
//! cancellations are kept by the broker for 7 days, so workers started later honour them.
//!
//! Each id gets a line saying what the admin side knew of it (`palermo_store::cancel`).
//! Exit status: 0 when every id was running or retried (so known, and cancelled); 2 when some
//! id was unknown (cancelled anyway: a queued or delayed job cannot be seen from here, so
//! check the id); 1 when some id was refused (finished, already cancelled, not a job id).

use palermo_store::cancel;
use uuid::Uuid;

use crate::{admin::Settings, output::escape};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Cancel jobs by id: a waiting job never runs; a running one is told to stop.
    Cancel(Cancel),
}

#[derive(Debug, clap::Args)]
struct Cancel {
    /// The job ids (UUIDs: what enqueue printed, `palermo workers` shows).
    #[arg(required = true)]
    ids: Vec<String>,
    /// Print JSON: one object per id.
    #[arg(long)]
    json: bool,
}

/// A run that did its work but must exit with `code` (said on stderr by `main`).
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let Action::Cancel(args) = args.action;
    let mut ids = Vec::new();
    for text in &args.ids {
        match Uuid::parse_str(text.trim()) {
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(_) => {}
            Err(_) => {
                return Err(Exit {
                    code: 1,
                    message: format!(
                        "{:?} is not a job id (a UUID); nothing was cancelled",
                        escape(text)
                    ),
                }
                .into())
            }
        }
    }
    let recorder = settings.recorder().await?;
    let (deployment, actor) = (settings.deployment(), crate::admin::actor());
    let (connection, store) = (recorder.connection(), recorder.store());
    let answers = cancel::cancel_jobs(connection, &deployment, store, &ids, true, &actor).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answers)?);
    } else {
        for answer in &answers {
            let verb = if answer.cancelled {
                "cancelled"
            } else {
                "not cancelled"
            };
            println!("{} {verb}: {}", answer.id, escape(&answer.message));
        }
    }
    let refused = answers.iter().filter(|a| !a.cancelled).count();
    let unknown = answers
        .iter()
        .filter(|a| a.known == cancel::Known::Unknown)
        .count();
    if refused > 0 {
        return Err(Exit {
            code: 1,
            message: format!("{refused} of {} id(s) not cancelled", answers.len()),
        }
        .into());
    }
    if unknown > 0 {
        return Err(Exit {
            code: 2,
            message: format!(
                "{unknown} of {} id(s) unknown to the admin side: cancelled anyway",
                answers.len()
            ),
        }
        .into());
    }
    Ok(())
}
