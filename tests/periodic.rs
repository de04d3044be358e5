//! Periodic jobs against the real RabbitMQ: two workers run the scheduler at once and each
//! tick's job is enqueued exactly once, under its deterministic id.

mod support;

use std::time::Duration;

use chrono::Utc;
use palermo::{Periodic, Worker};
use support::{eventually, ticks::ticks_of, unique, Rig};

/// The periodic job of this file; its ticks go to a queue nobody consumes, to be counted.
#[palermo::job(queue = "periodic-test")]
async fn tick() -> anyhow::Result<()> {
    Ok(())
}

#[tokio::test]
async fn two_schedulers_enqueue_each_tick_once() {
    support::init_tracing();
    let rig = Rig::new("periodic").await;
    let ticks = rig.another_queue("ticks");
    let election = rig.another_queue("scheduler");
    let schedule = unique("every-second");
    for _ in 0..2 {
        let mut config = rig.config();
        config.scheduler = true;
        config.scheduler_queue = election.clone();
        let every = Periodic::every(&schedule, "1s").and_then(|p| p.queue(&ticks));
        let builder = Worker::builder(config).periodic(every.expect("schedule"), Tick {});
        rig.start(builder);
    }
    eventually(Duration::from_secs(10), "a first tick", || async {
        rig.ready(&ticks).await >= 1
    })
    .await;
    let from = Utc::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let to = Utc::now();
    rig.stop().await;
    let messages = rig.drain(&ticks).await;
    let counts = ticks_of(&messages, &schedule, from, to);
    let first = counts.keys().min().copied().expect("ticks");
    let last = counts.keys().max().copied().expect("ticks");
    assert!(last - first >= 10, "ticks from {first} to {last}");
    for second in first..=last {
        assert_eq!(counts.get(&second), Some(&1), "tick {second}: {counts:?}");
    }
    assert_eq!(rig.consumers(&election).await, 0, "both schedulers left");
}
