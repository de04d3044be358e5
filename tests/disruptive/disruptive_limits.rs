//! A worker SIGKILLed while it holds concurrency slots of a limit: the broker frees them as
//! soon as it sees the connection close (docs/limits.md), and another worker can take the
//! limit to full again, running the killed jobs (redelivered). It kills only its own
//! process, so scripts/test.sh runs it beside the other such tests.

use crate::support;

use std::time::{Duration, Instant};

use palermo::LimitNames;
use support::{
    eventually,
    limits::slot_held,
    process::{enqueue_sleep, read_log, Running},
    Rig, WAIT,
};

/// How soon the slots of a worker killed on the broker's own host must be free: the
/// broker sees the TCP connection close at once.
const FREED_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
#[ignore = "disruptive: kills a worker process; run by scripts/test.sh after the other tests"]
async fn a_killed_workers_slots_come_back_without_an_operator() {
    let rig = Rig::new("limits-killed").await;
    let log = rig.temp_file("worker.log");
    let limit = format!("sleep_ms:concurrency=2,name={}", rig.queue);
    let mut args: Vec<&str> = rig.worker_args().to_vec();
    args.extend(["--concurrency", "4", "--limit", &limit]);
    let names = LimitNames::of(&rig.queue, None);
    let slots = [names.slot(0), names.slot(1)];
    let both_held = || async {
        slot_held(&rig.connection, &slots[0]).await && slot_held(&rig.connection, &slots[1]).await
    };

    let first = Running::spawn(&args, &log);
    for _ in 0..3 {
        enqueue_sleep(rig.client(), &rig.queue, 60_000).await;
    }
    eventually(WAIT, "two runs holding both slots", both_held).await;
    eventually(WAIT, "the third job waiting for the limit", || async {
        read_log(&log).contains("limit reached")
    })
    .await;
    first.kill();
    let killed = Instant::now();
    eventually(FREED_WITHIN, "both slots free after the kill", || async {
        !slot_held(&rig.connection, &slots[0]).await && !slot_held(&rig.connection, &slots[1]).await
    })
    .await;
    println!(
        "the killed worker's 2 slots were free {:?} after the kill",
        killed.elapsed()
    );

    // The limit is whole again: a new worker runs two of the jobs (two of them redelivered
    // after the kill) at once, and not three. The count starts after the kill: the killed
    // worker may have taken a slot without having logged its run yet.
    let running = || read_log(&log).matches("sleep_ms: sleeping").count();
    let before = running();
    let _second = Running::spawn(&args, &log);
    eventually(WAIT, "a new worker holding both slots", both_held).await;
    eventually(WAIT, "two runs in the new worker", || async {
        running() >= before + 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        running(),
        before + 2,
        "a third run started beside the two holding the limit"
    );
}
