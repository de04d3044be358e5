//! Batches end to end (docs/workflows.md, "Batches"), on the real broker with SQLite and
//! PostgreSQL: members on two queues run by two workers, two recorders competing on the
//! store, each callback run exactly once with the batch's outcome in `ctx.batch()`; a member
//! failing for good fires only on_complete, and retried from the failed list and succeeding
//! fires on_success then, once; a recorder that died between a callback's publish and its
//! mark does not make it run twice; `palermo batches` and `batches show` report it all.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use palermo::{BatchOutcome, JobContext, Options, State, Worker};
use palermo_store::{Recorder, RecorderConfig, Store};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    admin_support::{stderr, Admin, BACKENDS},
    support::{eventually, RunningWorker},
    WAIT,
};

/// What the jobs of these tests saw.
#[derive(Default)]
struct BatchSeen {
    /// While set, members whose number is a multiple of 5 fail.
    fail: AtomicBool,
    ran: AtomicUsize,
    /// Each callback run: its kind and what `ctx.batch()` said.
    callbacks: Mutex<Vec<(String, Option<BatchOutcome>)>>,
}

impl BatchSeen {
    fn runs(&self, kind: &str) -> Vec<Option<BatchOutcome>> {
        let callbacks = self.callbacks.lock().unwrap_or_else(|p| p.into_inner());
        callbacks
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, o)| o.clone())
            .collect()
    }
}

#[palermo::job(max_attempts = 1)]
async fn batch_member(n: u64, seen: State<Arc<BatchSeen>>) -> anyhow::Result<()> {
    seen.ran.fetch_add(1, Ordering::SeqCst);
    if n.is_multiple_of(5) && seen.fail.load(Ordering::SeqCst) {
        anyhow::bail!("member {n} fails");
    }
    Ok(())
}

#[palermo::job(max_attempts = 1)]
async fn batch_callback(
    kind: String,
    seen: State<Arc<BatchSeen>>,
    ctx: JobContext,
) -> anyhow::Result<()> {
    let outcome = ctx.batch().cloned();
    seen.callbacks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((kind, outcome));
    Ok(())
}

/// A recorder of `admin`'s deployment on its store, running until the returned trigger
/// stops, its upkeep five times a second and its firing lease `lease`.
async fn recorder(
    admin: &Admin,
    config: &palermo::WorkerConfig,
    lease: Duration,
) -> (palermo::shutdown::Trigger, tokio::task::JoinHandle<()>) {
    let store = Store::open(&admin.db.url).await.expect("store");
    let recorder = Recorder::connect(store, recorder_config(config, lease))
        .await
        .expect("recorder");
    let (trigger, stop) = palermo::shutdown::channel();
    let task = tokio::spawn(async move {
        recorder.run(stop).await.expect("recorder run");
    });
    (trigger, task)
}

fn recorder_config(config: &palermo::WorkerConfig, lease: Duration) -> RecorderConfig {
    RecorderConfig {
        deployment: config.deployment.clone(),
        maintenance_interval: Duration::from_millis(200),
        batch_firing_lease: lease,
        ..RecorderConfig::default()
    }
}

/// A client of the test's deployment: batch events go to its events exchange's batches
/// queue, which the test's recorders read.
async fn client(config: &palermo::WorkerConfig) -> palermo::Client {
    crate::support::client_with(palermo::ClientConfig::new(config.deployment.clone())).await
}

/// Tracks what a batch leaves on the broker: its events queue and its callbacks' locks.
fn track_batch(admin: &Admin, batch: Uuid) {
    let lock = |kind: &str| {
        palermo::admin::unique::lock_name(
            format!("batch:{batch}:{kind}").as_bytes(),
            palermo_store::batches::CALLBACK_LOCK,
        )
    };
    admin.rig.track(&[&lock("success"), &lock("complete")]);
}

fn batch_json(admin: &Admin, batch: Uuid) -> Value {
    admin.json(&["batches", "show", &batch.to_string()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_fire_once_with_two_workers_and_two_recorders() {
    for backend in BACKENDS {
        let admin = Admin::new(backend, "batch").await;
        let rig = &admin.rig;
        let other = rig.another_queue("batch2");
        let config = admin.worker_config(&[&rig.queue, &other]);
        rig.track(&[&config.deployment.batches_queue()]);
        let seen = Arc::new(BatchSeen::default());
        let mut workers = Vec::new();
        for _ in 0..2 {
            let mut config = config.clone();
            config.concurrency = 8;
            workers.push(RunningWorker::start_with(
                Worker::builder(config).state(seen.clone()),
            ));
        }
        let lease = Duration::from_secs(30);
        let recorders = [
            recorder(&admin, &config, lease).await,
            recorder(&admin, &config, lease).await,
        ];
        let members = 200u64;
        let on = |n: u64| {
            Options::new().queue(if n.is_multiple_of(2) {
                &rig.queue
            } else {
                &other
            })
        };
        let client = client(&config).await;
        let mut builder = client
            .batch()
            .description("two queues")
            .on_success_in(
                BatchCallback {
                    kind: "success".into(),
                },
                &rig.queue,
            )
            .on_complete_in(
                BatchCallback {
                    kind: "complete".into(),
                },
                &other,
            );
        for n in 1..=members {
            builder = builder.member_with(BatchMember { n }, on(n));
        }
        let batch = builder.enqueue_added().await.expect("batch");
        track_batch(&admin, batch);
        eventually(WAIT, "both callbacks ran", || async {
            !seen.runs("success").is_empty() && !seen.runs("complete").is_empty()
        })
        .await;
        // Give a duplicate every chance to show up: the recorders' upkeep runs five times a
        // second, and a CLI command records and checks too.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let shown = batch_json(&admin, batch);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(seen.ran.load(Ordering::SeqCst) as u64, members, "{backend}");
        for kind in ["success", "complete"] {
            let runs = seen.runs(kind);
            assert_eq!(runs.len(), 1, "{backend}: {kind} ran {} times", runs.len());
            let outcome = runs[0].clone().expect("ctx.batch() in a callback");
            assert_eq!(outcome.id, batch);
            assert_eq!(outcome.description, "two queues");
            assert_eq!(
                (outcome.total, outcome.succeeded, outcome.failed),
                (members, members, 0)
            );
        }
        assert_eq!(shown["total"], members, "{shown}");
        assert_eq!(shown["succeeded"], members, "{shown}");
        assert_eq!(shown["pending"], 0, "{shown}");
        assert_eq!(shown["success_state"], "fired", "{shown}");
        assert_eq!(shown["complete_state"], "fired", "{shown}");
        let listed = admin.json(&["batches"]);
        let row = listed
            .as_array()
            .and_then(|all| all.iter().find(|b| b["id"] == batch.to_string().as_str()))
            .cloned()
            .expect("the batch is listed");
        assert_eq!(row["description"], "two queues", "{row}");
        for (trigger, task) in recorders {
            trigger.stop();
            task.await.expect("recorder task");
        }
        for worker in workers {
            worker.stop().await;
        }
    }
}

/// A batch of six members on the rig's queue, member 5 failing while `seen.fail` is set.
async fn six(admin: &Admin, config: &palermo::WorkerConfig, description: &str) -> Uuid {
    let rig = &admin.rig;
    let client = client(config).await;
    let mut builder = client
        .batch()
        .description(description)
        .on_success_in(
            BatchCallback {
                kind: "success".into(),
            },
            &rig.queue,
        )
        .on_complete_in(
            BatchCallback {
                kind: "complete".into(),
            },
            &rig.queue,
        );
    for n in 1..=6 {
        builder = builder.member_with(BatchMember { n }, Options::new().queue(&rig.queue));
    }
    let batch = builder.enqueue_added().await.expect("batch");
    track_batch(admin, batch);
    client.close().await.expect("close");
    batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_member_fires_on_complete_then_on_success_once_retried() {
    for backend in BACKENDS {
        let admin = Admin::new(backend, "batchfail").await;
        let rig = &admin.rig;
        let config = admin.worker_config(&[&rig.queue]);
        rig.track(&[&config.deployment.batches_queue()]);
        let seen = Arc::new(BatchSeen::default());
        seen.fail.store(true, Ordering::SeqCst);
        let worker = RunningWorker::start_with(Worker::builder(config.clone()).state(seen.clone()));
        let (trigger, task) = recorder(&admin, &config, Duration::from_secs(30)).await;
        let batch = six(&admin, &config, "one fails").await;
        eventually(WAIT, "on_complete ran", || async {
            !seen.runs("complete").is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let complete = seen.runs("complete");
        assert_eq!(complete.len(), 1, "{backend}");
        let outcome = complete[0].clone().expect("ctx.batch()");
        assert_eq!(
            (outcome.total, outcome.succeeded, outcome.failed),
            (6, 5, 1),
            "{backend}"
        );
        assert!(
            seen.runs("success").is_empty(),
            "{backend}: a member failed"
        );
        let shown = batch_json(&admin, batch);
        assert_eq!(shown["success_state"], "pending", "{shown}");
        assert_eq!(shown["complete_state"], "fired", "{shown}");
        assert_eq!(
            shown["failed_ids"],
            serde_json::json!([outcome.failed_ids[0].to_string()]),
            "{shown}"
        );

        // Retried from the failed list, it succeeds: on_success runs now, once.
        seen.fail.store(false, Ordering::SeqCst);
        let retried = admin.palermo(&["failed", "retry", "--all"]);
        assert!(retried.status.success(), "{}", stderr(&retried));
        eventually(WAIT, "on_success ran", || async {
            !seen.runs("success").is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let success = seen.runs("success");
        assert_eq!(success.len(), 1, "{backend}");
        let outcome = success[0].clone().expect("ctx.batch()");
        assert_eq!((outcome.succeeded, outcome.failed), (6, 0), "{backend}");
        assert_eq!(
            seen.runs("complete").len(),
            1,
            "{backend}: on_complete ran once"
        );
        let shown = batch_json(&admin, batch);
        assert_eq!(shown["success_state"], "fired", "{shown}");
        trigger.stop();
        task.await.expect("recorder");
        worker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recorder_dying_between_publish_and_mark_does_not_run_a_callback_twice() {
    for backend in BACKENDS {
        let admin = Admin::new(backend, "batchcrash").await;
        let rig = &admin.rig;
        let config = admin.worker_config(&[&rig.queue]);
        rig.track(&[&config.deployment.batches_queue()]);
        let seen = Arc::new(BatchSeen::default());
        let worker = RunningWorker::start_with(Worker::builder(config.clone()).state(seen.clone()));
        let batch = six(&admin, &config, "crash").await;
        eventually(WAIT, "the members ran", || async {
            seen.ran.load(Ordering::SeqCst) == 6
        })
        .await;
        // A recorder records the batch, publishes a callback and dies before its mark.
        let crashed = admin.palermo(&["batches", "--crash-after-callback"]);
        assert_eq!(crashed.status.code(), Some(70), "{}", stderr(&crashed));
        eventually(WAIT, "the published callback ran", || async {
            seen.callbacks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
                == 1
        })
        .await;
        // Another recorder takes the claim again after the lease and publishes again: the
        // callback's lock drops that copy, and both callbacks end fired.
        let (trigger, task) = recorder(&admin, &config, Duration::from_millis(500)).await;
        eventually(WAIT, "both callbacks fired", || async {
            let shown = batch_json(&admin, batch);
            shown["success_state"] == "fired" && shown["complete_state"] == "fired"
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(seen.runs("success").len(), 1, "{backend}");
        assert_eq!(seen.runs("complete").len(), 1, "{backend}");
        trigger.stop();
        task.await.expect("recorder");
        worker.stop().await;
    }
}
