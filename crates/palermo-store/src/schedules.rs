//! The schedules (periodic jobs) as operators see them and act on them, shared by `palermo
//! schedules`, the dashboard's Schedules page and its JSON API: the table the active
//! scheduler last published (RabbitMQ only, `palermo::admin::schedules::read`), which
//! schedules are paused (their markers on the broker, read now: the table may be older than
//! the last pause), and the actions, Run now, Pause and Resume. Each action acts on the
//! broker first and is then recorded with its actor in `control_actions` (action
//! `schedule-run`, `schedule-pause` or `schedule-resume`, target the schedule's name). A name
//! the table does not hold is refused with the names it does.

use lapin::Connection;
use palermo::{
    admin::schedules::{self, ScheduleRow},
    control, Deployment, Enqueued,
};
use serde::Serialize;

use crate::{
    control::ControlAction,
    error::{Result, StoreError},
    time, Store,
};

/// How many recent schedule actions the Schedules page shows.
pub const RECENT_SCHEDULE_ACTIONS: i64 = 50;

/// The schedules, as of the active scheduler's last status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Schedules {
    /// The active scheduler (`hostname:pid:queues`).
    pub leader: String,
    /// When it published the table, Unix milliseconds.
    pub written_at: i64,
    /// Its schedules, in declaration order.
    pub schedules: Vec<Schedule>,
}

/// One schedule, with whether it is paused now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Schedule {
    #[serde(flatten)]
    pub row: ScheduleRow,
    /// Its pause marker exists: its ticks are skipped.
    pub paused: bool,
}

/// The schedules with their pause state; `None` when no scheduler has been active.
pub async fn load(connection: &Connection, deployment: &Deployment) -> Result<Option<Schedules>> {
    let Some(status) = schedules::read(connection, &deployment.scheduler_queue).await? else {
        return Ok(None);
    };
    let names: Vec<String> = status.schedules.iter().map(|r| r.name.clone()).collect();
    let paused = control::paused_schedules(connection, deployment, &names).await?;
    Ok(Some(Schedules {
        leader: status.leader,
        written_at: status.written_at,
        schedules: status
            .schedules
            .into_iter()
            .map(|row| Schedule {
                paused: paused.contains(&row.name),
                row,
            })
            .collect(),
    }))
}

/// The row of schedule `name` in the active scheduler's table; an unknown name (or no
/// scheduler yet) is [`StoreError::UnknownSchedule`] with the known names.
async fn find(connection: &Connection, deployment: &Deployment, name: &str) -> Result<ScheduleRow> {
    let status = schedules::read(connection, &deployment.scheduler_queue).await?;
    let rows = status.map(|s| s.schedules).unwrap_or_default();
    let known = rows.iter().map(|r| r.name.clone()).collect();
    rows.into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| StoreError::UnknownSchedule {
            name: name.to_string(),
            known,
        })
}

/// Pauses (`paused`) or resumes schedule `name` for every scheduler, now and after failovers
/// and restarts, and records the action. A paused schedule's ticks are skipped, not queued
/// up for later.
pub async fn set_paused(
    connection: &Connection,
    deployment: &Deployment,
    store: &Store,
    name: &str,
    paused: bool,
    actor: &str,
) -> Result<()> {
    find(connection, deployment, name).await?;
    control::set_schedule_paused(connection, deployment, name, paused).await?;
    let action = if paused {
        "schedule-pause"
    } else {
        "schedule-resume"
    };
    store.record_control(action, name, actor).await
}

/// Enqueues one run of schedule `name`'s job now (its job, queue and arguments, a fresh id;
/// its next tick is not moved), and records the action. Returns what the enqueue answered:
/// [`Enqueued::Duplicate`] when the job is unique and its lock is held (nothing enqueued).
pub async fn run_now(
    connection: &Connection,
    deployment: &Deployment,
    store: &Store,
    name: &str,
    actor: &str,
) -> Result<Enqueued> {
    let row = find(connection, deployment, name).await?;
    let enqueued = schedules::run_now(deployment, &row).await?;
    if let Enqueued::New(_) = enqueued {
        store.record_control("schedule-run", name, actor).await?;
    }
    Ok(enqueued)
}

impl Store {
    /// The newest schedule actions (run now, pause, resume), newest first.
    pub async fn schedule_actions(&self) -> Result<Vec<ControlAction>> {
        sqlx::query_as(
            "SELECT action, target, at, actor FROM control_actions WHERE action LIKE 'schedule-%' \
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(RECENT_SCHEDULE_ACTIONS)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading schedule actions"))
    }
}

/// `at` as the pages and the CLI show it (`-` for none).
pub fn at(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_string(), time::short)
}
