//! Periodic jobs against the real RabbitMQ: two workers run the scheduler at once and each
//! tick's job is enqueued exactly once, under its deterministic id.

mod support;

use std::time::Duration;

use chrono::Utc;
use palermo::{admin::schedules, CatchUp, Periodic, Worker};
use support::{eventually, ticks::ticks_of, unique, Rig};

/// The periodic job of this file; its ticks go to a queue nobody consumes, to be counted.
#[palermo::job(queue = "periodic-test")]
async fn tick() -> anyhow::Result<()> {
    Ok(())
}

/// Declared with the macro's options; its one tick is far away, so it never fires here.
#[palermo::job(
    queue = "periodic-test",
    cron = "0 0 0 1 1 * 2099",
    tz = "Europe/Rome",
    catch_up = "all"
)]
async fn new_century() -> anyhow::Result<()> {
    Ok(())
}

#[tokio::test]
async fn two_schedulers_enqueue_each_tick_once() {
    support::init_tracing();
    let rig = Rig::new("periodic").await;
    let ticks = rig.another_queue("ticks");
    let election = rig.another_queue("scheduler");
    let status_queue = schedules::status_queue(&election);
    rig.track(&[&status_queue]);
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
    check_status(&rig, &election, &schedule).await;
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

/// The table `palermo schedules` shows: the active scheduler, the builder's schedule with its
/// last and next run, and the macro's schedule in its time zone.
async fn check_status(rig: &Rig, election: &str, schedule: &str) {
    let channel = rig.channel().await;
    let status = schedules::read(&channel, election)
        .await
        .expect("read the status")
        .expect("a status");
    assert!(status.leader.contains(&rig.queue), "{status:?}");
    let every = status.schedules.iter().find(|r| r.name == schedule);
    let every = every.expect("the builder's schedule");
    assert_eq!(every.spec, "every 1s");
    let (last, next) = (every.last_run.expect("ran"), every.next_run.expect("next"));
    assert_eq!(next - last, 1000, "{every:?}");
    let century = status.schedules.iter().find(|r| r.name == "new_century");
    let century = century.expect("the macro's schedule");
    assert_eq!(century.last_run, None);
    // Midnight in Rome is 23:00 UTC the day before, in winter.
    let expected = chrono::DateTime::parse_from_rfc3339("2098-12-31T23:00:00Z").expect("t");
    assert_eq!(century.next_run, Some(expected.timestamp_millis()));
    // Read again: the read leaves the status in place.
    let again = schedules::read(&channel, election).await.expect("read");
    assert!(again.is_some());
}

/// The last ticks live in the token: a scheduler started after none ran for a while finds
/// them there and, with `catch_up = "all"`, enqueues every missed tick, so the ticks have no
/// gap and none twice.
#[tokio::test]
async fn a_restarted_scheduler_catches_up_from_the_token() {
    support::init_tracing();
    let rig = Rig::new("catch-up").await;
    let ticks = rig.another_queue("ticks");
    let election = rig.another_queue("scheduler");
    rig.track(&[&schedules::status_queue(&election)]);
    let schedule = unique("every-second");
    let start = || {
        let mut config = rig.config();
        config.scheduler = true;
        config.scheduler_queue = election.clone();
        let every = Periodic::every(&schedule, "1s").and_then(|p| p.queue(&ticks));
        let every = every.expect("schedule").catch_up(CatchUp::All);
        rig.start(Worker::builder(config).periodic(every, Tick {}));
    };
    let from = Utc::now();
    start();
    eventually(Duration::from_secs(10), "two ticks", || async {
        rig.ready(&ticks).await >= 2
    })
    .await;
    rig.stop().await;
    let before = rig.ready(&ticks).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    start();
    eventually(
        Duration::from_secs(10),
        "the missed ticks and one more",
        || async { rig.ready(&ticks).await >= before + 4 },
    )
    .await;
    rig.stop().await;
    let to = Utc::now();
    let counts = ticks_of(&rig.drain(&ticks).await, &schedule, from, to);
    let first = counts.keys().min().copied().expect("ticks");
    let last = counts.keys().max().copied().expect("ticks");
    for second in first..=last {
        assert_eq!(counts.get(&second), Some(&1), "tick {second}: {counts:?}");
    }
}
