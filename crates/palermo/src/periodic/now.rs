//! Run now: one extra run of a schedule's job, outside its ticks, for an operator (`palermo
//! schedules run`, the dashboard). Admin tools link no job code, so the job is rebuilt from
//! what the active scheduler published in its status (name, queue, serialized arguments,
//! priority, unique lock): the same message a tick would enqueue, under a fresh random id.
//! A fresh id, not a tick's: the schedule's ticks, their ids and the token's last ticks are
//! untouched, so the next tick comes at its time as if nothing happened.

use std::time::Duration;

use super::status::ScheduleRow;
use crate::{
    client::{Client, ClientConfig, Enqueued, Options, RawJob},
    deployment::Deployment,
    error::Error,
    serializer::Format,
    unique,
};

/// `bytes` in lowercase hex (the status's form of MessagePack arguments).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lowercase or uppercase hex `text`; `None` when it is not hex.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The job and options schedule `row` enqueues at each tick. A status written by a scheduler
/// older than Run now carries no arguments: refused, saying so.
pub fn job(row: &ScheduleRow) -> Result<(RawJob, Options), Error> {
    let missing = || {
        Error::Config(format!(
            "the scheduler's status has no arguments for schedule {:?} (a scheduler older than Run now published it); upgrade the workers that run --scheduler",
            row.name
        ))
    };
    let format_name = row.format.as_deref().ok_or_else(missing)?;
    let args = row.args.as_deref().ok_or_else(missing)?;
    let format = Format::from_name(format_name).ok_or_else(|| {
        Error::Config(format!(
            "schedule {:?}: unknown serializer {format_name:?} in the scheduler's status",
            row.name
        ))
    })?;
    let body = match format {
        Format::Json => args.as_bytes().to_vec(),
        _ => unhex(args).ok_or_else(|| {
            Error::Config(format!(
                "schedule {:?}: the arguments in the scheduler's status are not hex",
                row.name
            ))
        })?,
    };
    let mut options = Options::new();
    if let Some(priority) = row.priority {
        options = options.priority(priority);
    }
    if let Some(ms) = row.unique_ms {
        let key = unique::default_key(&row.job, &body);
        options = options.unique(key, Duration::from_millis(ms));
    }
    let job = RawJob {
        name: row.job.clone(),
        queue: row.queue.clone(),
        format,
        body,
        max_attempts: row.max_attempts,
    };
    Ok((job, options))
}

/// Enqueues one run of schedule `row`'s job now, under a fresh id (confirmed). A unique job
/// whose lock is held answers [`Enqueued::Duplicate`], as a tick would.
pub async fn run_now(deployment: &Deployment, row: &ScheduleRow) -> Result<Enqueued, Error> {
    let (job, options) = job(row)?;
    let client = Client::connect_with(&ClientConfig::new(deployment.clone())).await?;
    let enqueued = client.enqueue_raw(job, options).await;
    if let Err(e) = client.close().await {
        tracing::warn!(error = %e, "closing the run-now client failed");
    }
    enqueued
}

#[cfg(test)]
mod tests {
    use super::{hex, unhex};

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(hex(&bytes), "00017f80ff");
        assert_eq!(unhex(&hex(&bytes)), Some(bytes.to_vec()));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
