//! A worker process SIGKILLed in the middle of a chain step (docs/workflows.md): the broker
//! gives the step back, a second worker runs it again and the chain finishes, every step in
//! order, none lost. The killed step ran (at most) twice under its one fixed job id, as the
//! docs say of a crash; no other step ran twice. It kills only its own process, so
//! scripts/test.sh may run it beside the other such tests.

use crate::support;

use std::{path::PathBuf, time::Duration};

use palermo::Options;
use support::{
    chaos::{record_id, recorded},
    eventually,
    process::Running,
    Rig,
};

/// Steps in the chain.
const STEPS: usize = 6;
/// How long each step works: long enough to kill the worker in the middle of one.
const WORK_MS: u64 = 1500;

#[tokio::test]
#[ignore = "disruptive: kills a worker process; run by scripts/test.sh after the other tests"]
async fn a_chain_finishes_after_its_worker_is_killed_mid_step() {
    let rig = Rig::new("chains-killed").await;
    let log = rig.temp_file("worker.log");
    // One record file per step: which steps ran, under which job id, how many times.
    let records: Vec<PathBuf> = (1..=STEPS)
        .map(|n| rig.temp_file(&format!("step{n}.rec")))
        .collect();
    let mut chain = rig.client().chain();
    for record in &records {
        chain = chain.then_raw(record_id(&rig.queue, record, WORK_MS), Options::new());
    }
    let args = rig.worker_args();
    let first = Running::spawn(&args, &log);
    let id = chain.enqueue().await.expect("enqueue the chain");
    let done = |n: usize| !recorded(&records[n - 1]).is_empty();
    eventually(Duration::from_secs(30), "step 2 done", || async { done(2) }).await;
    // In the middle of step 3's work.
    tokio::time::sleep(Duration::from_millis(WORK_MS / 2)).await;
    first.kill();
    let killed_in_step = (1..=STEPS).find(|&n| !done(n)).unwrap_or(STEPS + 1);
    let _second = Running::spawn(&args, &log);
    eventually(Duration::from_secs(60), "the chain finished", || async {
        done(STEPS)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut duplicates = 0;
    for (n, record) in records.iter().enumerate() {
        let seen = recorded(record);
        assert_eq!(seen.len(), 1, "step {}: one job id ({seen:?})", n + 1);
        let runs = seen.values().sum::<usize>();
        duplicates += runs - 1;
        // The step killed mid-work, or one killed between its work and its ack.
        if n + 1 != killed_in_step && n + 2 != killed_in_step {
            assert_eq!(runs, 1, "step {} ran {runs} times", n + 1);
        }
    }
    assert!(duplicates <= 1, "only the killed step may run twice");
    // In order: each step's record was written after the one before it.
    let written = |p: &PathBuf| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    for pair in records.windows(2) {
        assert!(written(&pair[0]) <= written(&pair[1]), "steps out of order");
    }
    assert_eq!(rig.ready(&rig.queue).await, 0);
    assert_eq!(rig.ready(&rig.failed).await, 0);
    println!(
        "chain {id}: steps={STEPS} lost=0 killed_in_step={killed_in_step} duplicates={duplicates}"
    );
}
