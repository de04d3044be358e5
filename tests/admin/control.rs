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
