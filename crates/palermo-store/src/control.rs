//! Operators' commands to the workers, on the admin side: pause and resume a queue, quiet
//! and stop workers. Each is one call shared by the CLI, the dashboard's pages and its JSON
//! API: it acts on the broker (`palermo::control`: the pause marker and a confirmed command)
//! and records the action with its actor in `control_actions`, which the queue and workers
//! pages show. The broker acts first: an action recorded is an action the broker confirmed.

use lapin::Connection;
use palermo::{
    control::{self, Command},
    Deployment,
};
use serde::Serialize;
use sqlx::FromRow;

use crate::{
    error::{Result, StoreError},
    time,
    workers::WorkerRow,
    Store,
};

/// How many recent actions a page shows for one queue or worker.
pub const RECENT_ACTIONS: i64 = 20;

/// One recorded command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, FromRow)]
pub struct ControlAction {
    /// `pause`, `resume`, `quiet` or `stop`; `schedule-run`, `schedule-pause` or
    /// `schedule-resume` (palermo_store::schedules).
    pub action: String,
    /// The queue, or the worker's run id.
    pub target: String,
    #[serde(serialize_with = "time::serialize")]
    pub at: i64,
    pub actor: String,
}

/// Which workers a quiet or stop is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers<'a> {
    /// The alive worker with this run id (its heartbeats' `id`) or identity.
    One(&'a str),
    /// Every alive worker.
    All,
}

/// Pauses (`paused`) `queue` for every worker, present and future, or resumes it, and
/// records the action.
pub async fn set_paused(
    connection: &Connection,
    deployment: &Deployment,
    store: &Store,
    queue: &str,
    paused: bool,
    actor: &str,
) -> Result<()> {
    if paused {
        control::pause(connection, deployment, queue).await?;
    } else {
        control::resume(connection, deployment, queue).await?;
    }
    let action = if paused { "pause" } else { "resume" };
    store.record_control(action, queue, actor).await
}

/// Sends `command` (quiet or stop) to `workers`, among the alive ones the store knows, and
/// records it for each; returns them. An unknown id is refused with the known ones.
pub async fn command_workers(
    connection: &Connection,
    deployment: &Deployment,
    store: &Store,
    workers: Workers<'_>,
    command: &Command,
    actor: &str,
) -> Result<Vec<WorkerRow>> {
    let alive: Vec<WorkerRow> = store
        .workers()
        .await?
        .into_iter()
        .filter(|w| w.status == "alive")
        .collect();
    let chosen: Vec<WorkerRow> = match workers {
        Workers::All => alive,
        Workers::One(id) => {
            let found: Vec<WorkerRow> = alive
                .iter()
                .filter(|w| w.id == id || w.identity == id)
                .cloned()
                .collect();
            if found.is_empty() {
                return Err(StoreError::UnknownWorker {
                    id: id.to_string(),
                    known: alive
                        .iter()
                        .map(|w| format!("{} ({})", w.id, w.identity))
                        .collect(),
                });
            }
            found
        }
    };
    let action = match command {
        Command::Stop => "stop",
        _ => "quiet",
    };
    for worker in &chosen {
        let key = control::worker_key(&worker.id);
        control::send(connection, deployment, &key, command).await?;
        store.record_control(action, &worker.id, actor).await?;
    }
    Ok(chosen)
}

impl Store {
    /// Records a command and its actor.
    pub async fn record_control(&self, action: &str, target: &str, actor: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO control_actions (action, target, at, actor) VALUES ($1, $2, $3, $4)",
        )
        .bind(action)
        .bind(target)
        .bind(time::now_ms())
        .bind(actor)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("recording a control action"))?;
        Ok(())
    }

    /// The newest commands about `target` (a queue or a worker's run id), newest first;
    /// schedule actions (`schedule-*`, whose target is a schedule's name) are not among them.
    pub async fn control_actions(&self, target: &str) -> Result<Vec<ControlAction>> {
        sqlx::query_as(
            "SELECT action, target, at, actor FROM control_actions WHERE target = $1 \
             AND action NOT LIKE 'schedule-%' ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(target)
        .bind(RECENT_ACTIONS)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading control actions"))
    }
}
