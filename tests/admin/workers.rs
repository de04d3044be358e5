//! Heartbeats: workers, statistics, queues, and the recorder running continuously.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use palermo::Options;
use serde_json::Value;

use crate::{
    admin_support::{stdout, Admin, BACKENDS},
    support::eventually,
    worker, AlwaysFails, Charge, Seen, Sleepy, WAIT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_a_real_run_exactly() {
    for backend in BACKENDS {
        let admin = Admin::new(backend, "stats").await;
        let rig = &admin.rig;
        let (queue, other) = (rig.queue.clone(), rig.another_queue("stats-other"));
        let seen = Arc::new(Seen::default());
        let running = worker(&admin, &[&queue, &other], 3, &seen);
        let client = rig.client();
        client
            .enqueue_many(
                (0..17).map(|order| Charge { order }),
                Options::new().queue(&queue),
            )
            .await
            .expect("enqueue");
        client
            .enqueue_many(
                (0..5).map(|n| AlwaysFails { n }),
                Options::new().queue(&other),
            )
            .await
            .expect("enqueue");
        eventually(WAIT, "every job ran", || async {
            seen.succeeded.load(Ordering::SeqCst) == 17 && rig.ready(&admin.failed).await == 5
        })
        .await;
        // Mid-run the numbers come from heartbeats; after the stop, from the offline event.
        running.stop().await;

        let stats = admin.json(&["stats"]);
        assert_eq!(
            (
                stats["total"]["processed"].as_i64(),
                stats["total"]["failed"].as_i64()
            ),
            (Some(22), Some(5)),
            "{backend}: {stats}"
        );
        assert_eq!(stats["last_hour"], stats["total"]);
        let by_job = stats["by_job"].as_array().expect("by_job");
        let of = |job: &str| {
            by_job
                .iter()
                .find(|j| j["job"] == job)
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(
            of("charge")["total"],
            serde_json::json!({"processed": 17, "failed": 0})
        );
        assert_eq!(
            of("always_fails")["total"],
            serde_json::json!({"processed": 5, "failed": 5})
        );
        assert_eq!(of("always_fails")["queue"], other.as_str());
        let human = admin.palermo(&["stats"]);
        assert!(stdout(&human).contains("last hour"), "{}", stdout(&human));
        let workers = admin.json(&["workers"]);
        assert_eq!(workers[0]["status"], "stopped");
        assert_eq!(workers[0]["processed"], 22);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_shows_up_within_a_heartbeat_with_its_job_and_its_queue_with_the_unacked_count() {
    let admin = Admin::new("sqlite", "busy").await;
    let (rig, queue) = (&admin.rig, admin.rig.queue.clone());
    let seen = Arc::new(Seen::default());
    let running = worker(&admin, &[&queue], 2, &seen);
    let client = rig.client();
    let job = client
        .enqueue_with(Sleepy { ms: 4000 }, Options::new().queue(&queue))
        .await
        .expect("enqueue")
        .id();
    eventually(WAIT, "the job started", || async {
        seen.running.load(Ordering::SeqCst) == 1
    })
    .await;

    // Within one heartbeat (250 ms) plus the time a `palermo` run takes.
    let started = std::time::Instant::now();
    let mut workers = Value::Null;
    while started.elapsed() < Duration::from_secs(3) {
        workers = admin.json(&["workers"]);
        if workers[0]["running"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
    }
    let w = &workers[0];
    assert_eq!(w["status"], "alive", "{workers}");
    assert_eq!(w["concurrency"], 2);
    assert_eq!(w["queues"], serde_json::json!([queue.as_str()]));
    assert_eq!(w["pid"], std::process::id());
    let current = &w["running"][0];
    assert_eq!(
        (current["id"].as_str(), current["name"].as_str()),
        (Some(job.to_string().as_str()), Some("sleepy")),
        "{w}"
    );
    assert_eq!(current["queue"], queue.as_str());
    assert_eq!(current["args_preview"], r#"{"ms":4000}"#);

    let queues = admin.json(&["queues"]);
    let row = queues
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["queue"] == queue.as_str())
        .cloned()
        .expect("the worker's queue is listed");
    assert_eq!(
        (
            row["unacked"].as_i64(),
            row["consumers"].as_i64(),
            row["ready"].as_i64()
        ),
        (Some(1), Some(2), Some(0)),
        "{queues}"
    );
    assert!(queues
        .as_array()
        .expect("rows")
        .iter()
        .any(|r| r["queue"] == admin.failed.as_str()));
    let table = stdout(&admin.palermo(&["workers"]));
    assert!(
        table.contains("alive") && table.contains("sleepy"),
        "{table}"
    );

    running.stop().await;
    assert_eq!(admin.json(&["workers"])[0]["status"], "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_can_run_continuously() {
    let admin = Admin::new("sqlite", "continuous").await;
    let (rig, queue) = (&admin.rig, admin.rig.queue.clone());
    let store = palermo_store::Store::open(&admin.db.url)
        .await
        .expect("store");
    let config = palermo_store::RecorderConfig {
        deployment: palermo::Deployment {
            failed_queue: admin.failed.clone(),
            events_exchange: admin.events.clone(),
            ..crate::support::deployment()
        },
        ..Default::default()
    };
    let recorder = palermo_store::Recorder::connect(store.clone(), config)
        .await
        .expect("recorder");
    let (trigger, shutdown) = crate::support::shutdown::channel();
    let recording = tokio::spawn(recorder.run(shutdown));

    let seen = Arc::new(Seen::default());
    let running = worker(&admin, &[&queue], 1, &seen);
    let client = rig.client();
    client
        .enqueue_with(AlwaysFails { n: 1 }, Options::new().queue(&queue))
        .await
        .expect("enqueue");
    eventually(
        WAIT,
        "the recorder stored the failure and the worker",
        || async {
            let list = store
                .list_failures(&Default::default(), Default::default())
                .await
                .expect("list");
            let workers = store.workers().await.expect("workers");
            list.total == 1 && workers.iter().any(|w| w.processed == 1)
        },
    )
    .await;
    assert_eq!(rig.ready(&admin.failed).await, 0);
    running.stop().await;
    trigger.stop();
    recording
        .await
        .expect("task")
        .expect("recorder ends cleanly");
    store.close().await;
}
