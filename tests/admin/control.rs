//! The control commands of the `palermo` binary against a real worker (docs/admin.md,
//! "Control"): `queues pause|resume`, `workers quiet|stop`, an unknown worker id refused with
//! the alive ones, and what `palermo queues` and `palermo workers` show meanwhile.

use std::{process::Output, sync::Arc};

use palermo::{control, shutdown, Worker};
use serde_json::Value;

use crate::{
    admin_support::{stderr, stdout, Admin},
    support::{eventually, unique},
    Seen, WAIT,
};

/// `palermo ARGS` with the test's control exchange.
fn palermo(admin: &Admin, control: &str, args: &[&str]) -> Output {
    let mut command = admin.command(args);
    command.env("PALERMO_CONTROL_EXCHANGE", control);
    command.output().expect("run palermo")
}

fn json(admin: &Admin, control: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = palermo(admin, control, &all);
    assert!(out.status.success(), "palermo {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// The worker's row in `palermo workers --json`.
fn row(admin: &Admin, control: &str, id: &str) -> Value {
    let workers = json(admin, control, &["workers"]);
    workers
        .as_array()
        .and_then(|all| all.iter().find(|w| w["id"] == id).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_quiet_and_stop_from_the_command_line() {
    let admin = Admin::new("sqlite", "ctlcli").await;
    let rig = &admin.rig;
    let queue = rig.queue.clone();
    let exchange = unique("control");
    let mut config = admin.worker_config(&[&queue]);
    config.deployment.control_exchange = exchange.clone();
    rig.owned().exchange(&exchange);
    rig.owned()
        .exchange(&control::pause_marker(&config.deployment, &queue));
    let worker = Worker::builder(config)
        .state(Arc::new(Seen::default()))
        .build()
        .expect("worker");
    let id = worker.id().to_string();
    let (_trigger, stop) = shutdown::channel();
    let running = tokio::spawn(worker.run(stop));
    rig.wait_consuming().await;

    let paused = json(&admin, &exchange, &["queues", "pause", &queue]);
    assert_eq!(paused["paused"], true);
    eventually(WAIT, "no consumer", || async {
        rig.consumers(&queue).await == 0
    })
    .await;
    let queues = json(&admin, &exchange, &["queues"]);
    let listed = queues
        .as_array()
        .and_then(|all| all.iter().find(|q| q["queue"] == queue.as_str()).cloned())
        .expect("the queue is listed");
    assert_eq!(listed["paused"], true, "{listed}");
    eventually(WAIT, "the heartbeat says paused", || async {
        row(&admin, &exchange, &id)["paused"][0] == queue.as_str()
    })
    .await;
    let table = stdout(&palermo(&admin, &exchange, &["queues"]));
    assert!(table.contains("paused"), "{table}");

    let nobody = palermo(&admin, &exchange, &["workers", "quiet", "nobody"]);
    assert!(!nobody.status.success());
    assert!(stderr(&nobody).contains(&id), "{}", stderr(&nobody));

    json(&admin, &exchange, &["queues", "resume", &queue]);
    eventually(WAIT, "consuming again", || async {
        rig.consumers(&queue).await >= 1
    })
    .await;
    json(&admin, &exchange, &["workers", "quiet", &id]);
    eventually(WAIT, "the heartbeat says quiet", || async {
        row(&admin, &exchange, &id)["state"] == "quiet"
    })
    .await;
    assert_eq!(
        rig.consumers(&queue).await,
        0,
        "a quiet worker consumes nothing"
    );

    let stopped = json(&admin, &exchange, &["workers", "stop", "--all"]);
    assert_eq!(stopped["workers"][0], id.as_str(), "{stopped}");
    let ended = tokio::time::timeout(WAIT, running)
        .await
        .expect("the worker stops")
        .expect("task");
    assert!(ended.is_ok(), "{ended:?}");
}

/// `palermo jobs cancel` with the test's control exchange; the exit code and the JSON.
fn cancel(admin: &Admin, control: &str, ids: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["jobs", "cancel"];
    args.extend_from_slice(ids);
    args.push("--json");
    let out = palermo(admin, control, &args);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_cancel_tells_running_jobs_and_says_what_it_knew_of_each_id() {
    let admin = Admin::new("sqlite", "cancelcli").await;
    let rig = &admin.rig;
    let queue = rig.queue.clone();
    let exchange = unique("control");
    let mut config = admin.worker_config(&[&queue]);
    config.deployment.control_exchange = exchange.clone();
    config.cancel_grace = std::time::Duration::from_millis(300);
    rig.owned().exchange(&exchange);
    rig.owned()
        .queue(&control::cancellations::stream_name(&config.deployment));
    let seen = Arc::new(Seen::default());
    rig.start(Worker::builder(config).state(seen.clone()));
    rig.wait_consuming().await;

    let failed = rig.enqueue(crate::AlwaysFails { n: 1 }).await.to_string();
    rig.wait_failed(1).await;
    let running = rig.enqueue(crate::Sleepy { ms: 60_000 }).await.to_string();
    eventually(WAIT, "the heartbeats show the job running", || async {
        let workers = json(&admin, &exchange, &["workers"]);
        workers.to_string().contains(&running)
    })
    .await;
    let unknown = uuid::Uuid::new_v4().to_string();

    let (code, answers) = cancel(&admin, &exchange, &[&running, &failed, &unknown]);
    assert_eq!(code, Some(1), "the failed job is refused: {answers}");
    let statuses: Vec<(&str, bool)> = answers
        .as_array()
        .map(|all| {
            all.iter()
                .map(|a| (a["status"].as_str().unwrap_or(""), a["cancelled"] == true))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        statuses,
        [("running", true), ("finished", false), ("unknown", true)],
        "{answers}"
    );
    // The job does not listen: it is dropped after the grace period, acked, not failed.
    eventually(
        WAIT,
        "the cancelled run is gone from the heartbeats",
        || async {
            !json(&admin, &exchange, &["workers"])
                .to_string()
                .contains(&running)
        },
    )
    .await;
    assert_eq!(seen.succeeded.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(rig.ready(&queue).await, 0);
    let list = json(&admin, &exchange, &["failed", "list"]);
    assert_eq!(
        crate::failure_rows(&list).len(),
        1,
        "cancelled is not failed"
    );

    let (code, again) = cancel(&admin, &exchange, &[&running]);
    assert_eq!(code, Some(1), "{again}");
    assert_eq!(again[0]["status"], "already_cancelled", "{again}");
    let other = uuid::Uuid::new_v4().to_string();
    let (code, answers) = cancel(&admin, &exchange, &[&other]);
    assert_eq!(
        code,
        Some(2),
        "an unknown id is cancelled with its own code: {answers}"
    );
    let out = palermo(&admin, &exchange, &["jobs", "cancel", "not-a-job"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not a job id"), "{}", stderr(&out));
    rig.stop().await;
}

/// `palermo ARGS` with the test's control exchange and scheduler queue.
fn scheduling(admin: &Admin, control: &str, election: &str, args: &[&str]) -> Output {
    let mut command = admin.command(args);
    command.env("PALERMO_CONTROL_EXCHANGE", control);
    command.env("PALERMO_SCHEDULER_QUEUE", election);
    command.output().expect("run palermo")
}

/// `palermo schedules run|pause|resume NAME`: the listing shows the pause, a paused
/// schedule's ticks stop and come back on resume, Run now enqueues one run with the
/// schedule's arguments, and an unknown name is refused (exit 1) with the known names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pause_and_resume_a_schedule_from_the_command_line() {
    let admin = Admin::new("sqlite", "schedcli").await;
    let rig = &admin.rig;
    let (exchange, election) = (unique("control"), rig.another_queue("scheduler"));
    let ticks = rig.another_queue("ticks");
    let name = unique("every-second");
    let mut config = admin.worker_config(&[&rig.queue]);
    config.scheduler = true;
    config.deployment.control_exchange = exchange.clone();
    config.deployment.scheduler_queue = election.clone();
    rig.track(&[&palermo::admin::schedules::status_queue(&election)]);
    rig.owned()
        .exchange(&control::schedule_pause_marker(&config.deployment, &name));
    let every = palermo::Periodic::every(&name, "1s").and_then(|p| p.queue(&ticks));
    let worker = Worker::builder(config)
        .state(Arc::new(Seen::default()))
        .periodic(every.expect("schedule"), crate::Charge { order: 7 })
        .build()
        .expect("worker");
    let (trigger, stop) = shutdown::channel();
    let running = tokio::spawn(worker.run(stop));
    let run = |args: &[&str]| scheduling(&admin, &exchange, &election, args);
    let listed = |run: &dyn Fn(&[&str]) -> Output| {
        let out = run(&["schedules", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let all: Value = serde_json::from_slice(&out.stdout).expect("json");
        let mine = all["schedules"]
            .as_array()
            .and_then(|s| s.iter().find(|r| r["name"] == name.as_str()).cloned());
        mine.unwrap_or(Value::Null)
    };
    eventually(WAIT, "the schedule ran", || async {
        listed(&run)["last_run"].is_i64()
    })
    .await;
    assert_eq!(listed(&run)["paused"], false);

    let out = run(&["schedules", "pause", &name, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["paused"], true);
    assert_eq!(listed(&run)["paused"], true);
    let table = stdout(&run(&["schedules"]));
    assert!(table.contains("paused"), "{table}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let during = rig.ready(&ticks).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(rig.ready(&ticks).await, during, "no tick while paused");

    let out = run(&["schedules", "run", &name, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["enqueued"], true, "{answer}");
    assert_eq!(
        rig.ready(&ticks).await,
        during + 1,
        "one run, paused or not"
    );

    let out = run(&["schedules", "resume", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("resumed"), "{}", stdout(&out));
    eventually(WAIT, "ticks again", || async {
        rig.ready(&ticks).await >= during + 3
    })
    .await;

    let nobody = run(&["schedules", "pause", "nobody"]);
    assert_eq!(nobody.status.code(), Some(1));
    assert!(stderr(&nobody).contains(&name), "{}", stderr(&nobody));
    let nobody = run(&["schedules", "run", "nobody"]);
    assert_eq!(nobody.status.code(), Some(1));

    let messages = rig.drain(&ticks).await;
    let run_now: Vec<_> = messages
        .iter()
        .filter(|(_, body)| body.as_slice() == br#"{"order":7}"#)
        .collect();
    assert_eq!(run_now.len(), messages.len(), "every run has the arguments");
    trigger.stop();
    let ended = tokio::time::timeout(WAIT, running).await.expect("stops");
    assert!(ended.expect("task").is_ok());
}
