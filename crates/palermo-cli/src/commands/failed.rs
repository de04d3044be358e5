//! `palermo failed list|show|retry|remove|prune`: the failures recorded from the failed queue.
//!
//! Ids are failure ids (one per trip to the failed queue), as `failed list` prints them.
//! `retry` and `remove` act on all the ids given or on none: an unknown, already retried or
//! removed id is reported and nothing changes (exit 1). A retry publishes the job back to its
//! original queue and waits for the broker's confirm before marking it retried, so a crash in
//! between leaves at worst a duplicate, never a lost job (docs/admin.md). `prune` deletes old
//! failures for good and records who did it (the dashboard shows it).

use anyhow::bail;
use palermo_store::{time, FailureDetail, Filter, Page, Requeuer};
use serde_json::json;

use crate::{
    admin::{self, Settings},
    output::{self, Table},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Open failures, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Rows per page (1 to 10000).
        #[arg(long, default_value_t = 25)]
        limit: u32,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One failure in full: arguments, error, backtrace, attempts, history.
    Show {
        /// The failure id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Publish failed jobs back to their original queue (attempt count reset).
    Retry(Act),
    /// Remove failures from the list without running them.
    Remove(Act),
    /// Delete failures (open or resolved) that failed longer ago than --older-than, for good;
    /// the prune is recorded with who did it.
    Prune {
        /// How old a failure must be to go: 90d, 12w, 36h.
        #[arg(long, value_name = "DURATION", value_parser = time::parse_duration)]
        older_than: std::time::Duration,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct FilterArgs {
    /// Only failures of jobs from this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only failures of this job name.
    #[arg(long)]
    job: Option<String>,
    /// Only failures whose error, arguments, job name or id contain this text.
    #[arg(long)]
    search: Option<String>,
    /// Only failures since: a duration back (15m, 2h, 7d, 1w) or a time (2024-05-01,
    /// 2024-05-01T12:00:00Z).
    #[arg(long, value_parser = since)]
    since: Option<i64>,
}

/// `--since`, read against the clock when the command starts.
fn since(text: &str) -> Result<i64, time::TimeError> {
    time::parse_since(text, time::now_ms())
}

#[derive(Debug, clap::Args)]
struct Act {
    /// Failure ids.
    ids: Vec<String>,
    /// Every open failure matching the filters instead of ids.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<Filter> {
        Ok(Filter {
            queue: self.queue.clone(),
            job: self.job.clone(),
            search: self.search.clone(),
            since: self.since,
            ..Filter::default()
        })
    }

    fn is_empty(&self) -> bool {
        self.queue.is_none() && self.job.is_none() && self.search.is_none() && self.since.is_none()
    }
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::List {
            filter,
            limit,
            page,
            json,
        } => list(settings, &filter, Page { limit, page }, json).await,
        Command::Show { id, json } => show(settings, &id, json).await,
        Command::Retry(act) => retry(settings, &act).await,
        Command::Remove(act) => remove(settings, &act).await,
        Command::Prune { older_than, json } => prune(settings, older_than, json).await,
    }
}

/// `failed prune --older-than D`: delete failures that failed before now − D, recorded.
async fn prune(
    settings: &Settings,
    older_than: std::time::Duration,
    json: bool,
) -> anyhow::Result<()> {
    if older_than.is_zero() {
        bail!("--older-than 0 would delete every failure; give an age such as 90d");
    }
    let recorder = settings.recorder().await?;
    let now = time::now_ms();
    let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    let rule = format!("older than {}", time::format_duration(older_than));
    let prune = recorder
        .store()
        .prune_failures(
            palermo_store::prunes::Rule::FailedBefore(now.saturating_sub(age)),
            &rule,
            &admin::actor(),
            now,
            true,
        )
        .await?;
    if json {
        println!("{}", serde_json::to_string(&prune)?);
    } else {
        let plural = if prune.pruned == 1 { "" } else { "s" };
        println!("pruned {} failure{plural} {rule}", prune.pruned);
    }
    Ok(())
}

/// `failed list`: one page of open failures, newest first.
async fn list(
    settings: &Settings,
    filter: &FilterArgs,
    page: Page,
    json: bool,
) -> anyhow::Result<()> {
    let Page { limit, page } = page;
    if !(1..=Page::MAX_LIMIT).contains(&limit) || page == 0 {
        bail!(
            "--limit must be from 1 to {} and --page from 1",
            Page::MAX_LIMIT
        );
    }
    let filter = filter.filter()?;
    let recorder = settings.recorder().await?;
    let found = recorder
        .store()
        .list_failures(&filter, Page { limit, page })
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    let mut table = Table::new(["ID", "FAILED AT", "QUEUE", "JOB", "ATTEMPT", "ERROR"]);
    for f in &found.failures {
        let attempt = match f.max_attempts {
            Some(max) => format!("{}/{max}", f.attempt),
            None => f.attempt.to_string(),
        };
        table.row([
            f.id.clone(),
            time::short(f.failed_at),
            f.queue.clone(),
            admin::job_name(&f.job_name).to_string(),
            attempt,
            admin::cell(&format!("{}: {}", f.error_kind, f.error), 70),
        ]);
    }
    print!("{table}");
    let first = u64::from(limit) * u64::from(page - 1);
    let shown = found.failures.len() as u64;
    if shown > 0 {
        println!(
            "{}–{} of {} open failures",
            first + 1,
            first + shown,
            found.total
        );
    } else {
        println!("no open failures on this page ({} in all)", found.total);
    }
    Ok(())
}

/// `failed show ID`: one failure in full.
async fn show(settings: &Settings, id: &str, json: bool) -> anyhow::Result<()> {
    let recorder = settings.recorder().await?;
    let Some(detail) = recorder.store().failure(id).await? else {
        bail!("no failure has id {id} (see `palermo failed list`)");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        print!("{}", describe(&detail));
    }
    Ok(())
}

/// `failed retry`: publish back to the original queue (confirmed), then mark retried.
async fn retry(settings: &Settings, act: &Act) -> anyhow::Result<()> {
    let recorder = settings.recorder().await?;
    let (store, connection) = (recorder.store(), recorder.connection());
    let deployment = settings.deployment();
    let mut requeuer = Requeuer::new(store, connection, admin::actor(), &deployment).await?;
    if act.all {
        let count = requeuer.retry_matching(&act.filter.filter()?).await?;
        report(act.json, "retried", count, None);
    } else {
        let ids = ids(act, "retry")?;
        let done = requeuer.retry(&ids).await?;
        report(act.json, "retried", done.len() as u64, Some(&done));
    }
    Ok(())
}

/// `failed remove`: mark failures removed without running them.
async fn remove(settings: &Settings, act: &Act) -> anyhow::Result<()> {
    let recorder = settings.recorder().await?;
    let store = recorder.store();
    if act.all {
        let count = store
            .remove_matching(&act.filter.filter()?, &admin::actor())
            .await?;
        report(act.json, "removed", count, None);
    } else {
        let ids = ids(act, "remove")?;
        let count = store.remove(&ids, &admin::actor()).await?;
        report(act.json, "removed", count, Some(&ids));
    }
    Ok(())
}

fn ids(act: &Act, verb: &str) -> anyhow::Result<Vec<String>> {
    if !act.filter.is_empty() {
        bail!("--queue, --job, --search and --since select failures for --all; with ids, name only ids");
    }
    if act.ids.is_empty() {
        bail!("name the failures to {verb} by id (see `palermo failed list`), or pass --all");
    }
    Ok(act.ids.clone())
}

fn report(json: bool, verb: &str, count: u64, ids: Option<&[String]>) {
    if json {
        println!("{}", json!({ verb: count, "ids": ids }));
        return;
    }
    match ids {
        Some(ids) => ids.iter().for_each(|id| println!("{verb} {id}")),
        None => println!(
            "{verb} {count} failure{}",
            if count == 1 { "" } else { "s" }
        ),
    }
}

fn describe(d: &FailureDetail) -> String {
    let f = &d.failure;
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        out.push_str(&format!("{label:<14}{}\n", output::escape(&value)));
    };
    line("Failure", f.id.clone());
    line(
        "Job",
        format!("{} (job id {})", admin::job_name(&f.job_name), f.job_id),
    );
    line(
        "Queue",
        format!("{} (failed in {})", f.queue, f.source_queue),
    );
    let status = match f.resolved_at {
        Some(at) => format!("{} at {}", f.status, time::rfc3339(at)),
        None => f.status.clone(),
    };
    line("Status", status);
    if let Some(chain) = &d.chain {
        let rest = match chain.next.len() {
            0 => "its last step".to_string(),
            n => format!(
                "{n} step{} after it; a retry resumes them",
                if n == 1 { "" } else { "s" }
            ),
        };
        line("Chain", format!("{} ({rest})", chain.summary()));
        for step in chain.remaining() {
            line("", step);
        }
    }
    let mut attempt = match f.max_attempts {
        Some(max) => format!("{} of {max}", f.attempt),
        None => f.attempt.to_string(),
    };
    if let Some(reason) = &f.gave_up {
        attempt.push_str(&format!(" (gave up: {reason})"));
    }
    line("Attempt", attempt);
    line("Worker", f.worker.clone());
    if let Some(at) = f.enqueued_at {
        line("Enqueued at", time::rfc3339(at));
    }
    line("First failed", time::rfc3339(f.first_failed_at));
    line("Failed at", time::rfc3339(f.failed_at));
    line("Error kind", f.error_kind.clone());
    let mut section = |title: &str, body: &str| {
        out.push_str(&format!("\n{title}:\n"));
        for text in output::escape_lines(body).lines() {
            out.push_str(&format!("  {text}\n"));
        }
    };
    section("Error", &f.error);
    let args = match (&d.args, &d.raw_body) {
        (Some(args), _) => serde_json::to_string_pretty(args).unwrap_or_default(),
        (None, Some(raw)) => format!("(not decodable as {:?}) {raw}", f.serializer),
        (None, None) => String::new(),
    };
    section("Arguments", &args);
    if let Some(backtrace) = &d.backtrace {
        section("Backtrace", backtrace);
    }
    if !d.attempts.is_empty() {
        let lines: Vec<String> = d
            .attempts
            .iter()
            .map(|a| {
                format!(
                    "#{} {} {}: {}",
                    a.attempt,
                    time::rfc3339(a.at),
                    a.kind,
                    a.error
                )
            })
            .collect();
        section("Failed attempts", &lines.join("\n"));
    }
    if !d.earlier_failures.is_empty() {
        let lines: Vec<String> = d
            .earlier_failures
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} {}",
                    e.id,
                    time::rfc3339(e.failed_at),
                    e.status,
                    admin::cell(&e.error, 60)
                )
            })
            .collect();
        section("Earlier failures of this job", &lines.join("\n"));
    }
    if !d.actions.is_empty() {
        let lines: Vec<String> = d
            .actions
            .iter()
            .map(|a| {
                let to = a
                    .queue
                    .as_ref()
                    .map(|q| format!(" to {q}"))
                    .unwrap_or_default();
                format!(
                    "{} {} {}{to} by {}",
                    time::rfc3339(a.at),
                    a.failure_id,
                    a.action,
                    a.actor
                )
            })
            .collect();
        section("History", &lines.join("\n"));
    }
    out
}
