//! The deployment's flags are the workers' (one spelling, one environment variable each):
//! `palermo --max-priority QUEUE=N enqueue ...` (or `PALERMO_MAX_PRIORITY`) declares the queue
//! as a priority queue, as the deployment's workers do, and without it the broker's refusal
//! names that setting, not the queue type.

use crate::admin_support::{stderr, Admin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_declares_the_deployments_priority_queues() {
    let admin = Admin::new("sqlite", "admin-priority").await;
    let queue = admin.rig.another_queue("reports");
    let priority = format!("{queue}=5");
    // Priority queues are classic: the flag wins over a quorum run's PALERMO_QUEUE_TYPE.
    let enqueue = [
        "enqueue",
        "job",
        "--queue",
        &queue,
        "--queue-type",
        "classic",
    ];

    let flagged = [
        &["--max-priority", &priority][..],
        &enqueue,
        &["--priority", "3"],
    ]
    .concat();
    let out = admin.palermo(&flagged);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = admin.palermo(&enqueue);
    assert!(!out.status.success(), "a plain declare of a priority queue");
    let err = stderr(&out);
    assert!(err.contains(&format!("--max-priority {queue}=N")), "{err}");
    assert!(!err.contains("--queue-type"), "{err}");

    let out = admin
        .command(&enqueue)
        .env("PALERMO_MAX_PRIORITY", &priority)
        .output()
        .expect("run palermo");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(admin.rig.ready(&queue).await, 2);
}
