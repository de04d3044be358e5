//! The scheduler's handover: two worker processes run `--scheduler`; the active one is
//! SIGKILLed; the other takes over within [`HANDOVER`] and no tick after the handover is
//! lost (a tick may be enqueued twice under the same id, docs/scheduling.md).

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use support::{
    eventually,
    process::{read_log, Running},
    ticks::ticks_of,
    unique, Rig,
};

/// The documented bound on a handover after SIGKILL (docs/scheduling.md): the broker sees
/// the closed socket at once; the rest is a delivery and a confirm.
const HANDOVER: Duration = Duration::from_secs(2);

/// The bound after a silent death: the scheduler connection's 10 s AMQP heartbeat, missed
/// until the broker gives up (measured about 30 s, docs/scheduling.md), with a margin.
const SILENT_HANDOVER: Duration = Duration::from_secs(45);

#[tokio::test]
#[ignore = "SIGKILLs a worker process; run by scripts/test.sh, one at a time"]
async fn a_killed_scheduler_hands_over_without_losing_a_tick() {
    let rig = Rig::new("sched-kill").await;
    let ticks = rig.another_queue("ticks");
    let election = rig.another_queue("scheduler");
    rig.track(&[&palermo::admin::schedules::status_queue(&election)]);
    let schedule = unique("every-second");
    let env = [
        ("PALERMO_TEST_SCHEDULE", schedule.as_str()),
        ("PALERMO_TEST_TICKS", ticks.as_str()),
    ];
    let mut args = rig.worker_args().to_vec();
    args.extend(["--scheduler", "--scheduler-queue", &election]);
    let (log_a, log_b) = (rig.temp_file("a.log"), rig.temp_file("b.log"));
    let from = Utc::now();
    let a = Running::spawn_with_env(&args, &env, &log_a);
    eventually(
        Duration::from_secs(20),
        "the first scheduler active",
        || async { read_log(&log_a).contains("scheduler active") },
    )
    .await;
    let b = Running::spawn_with_env(&args, &env, &log_b);
    eventually(
        Duration::from_secs(20),
        "the second one waiting",
        || async { read_log(&log_b).contains("scheduler waiting to become active") },
    )
    .await;
    eventually(Duration::from_secs(10), "three ticks", || async {
        rig.ready(&ticks).await >= 3
    })
    .await;
    let killed = Instant::now();
    a.kill();
    while !read_log(&log_b).contains("scheduler active") {
        assert!(killed.elapsed() < Duration::from_secs(10), "no takeover");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let handover = killed.elapsed();
    println!("handover after SIGKILL: {handover:?}");
    assert!(handover < HANDOVER, "handover took {handover:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let to = Utc::now();
    assert!(b.stop(Duration::from_secs(30)).await.success());
    let counts = ticks_of(&rig.drain(&ticks).await, &schedule, from, to);
    let first = counts.keys().min().copied().expect("ticks");
    let last = counts.keys().max().copied().expect("ticks");
    assert!(
        last >= to.timestamp() - 2,
        "ticks went on after the handover"
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    println!("ticks {first}..={last}, enqueued twice (same id): {twice:?}");
    for second in first..=last {
        let n = counts.get(&second).copied().unwrap_or(0);
        assert!((1..=2).contains(&n), "tick {second} enqueued {n} times");
    }
    assert!(twice.len() <= 1, "{twice:?}");
}

/// A silent death: the active scheduler's process is frozen (SIGSTOP), its sockets stay
/// open, so the broker notices only after missed AMQP heartbeats (10 s each). The other
/// scheduler then takes over; the frozen one, resumed, finds its connection closed and
/// enqueues nothing the new leader owns.
#[tokio::test]
#[ignore = "freezes a worker process for a minute; run by scripts/test.sh, one at a time"]
async fn a_frozen_scheduler_is_replaced_after_the_heartbeat_timeout() {
    let rig = Rig::new("sched-stop").await;
    let ticks = rig.another_queue("ticks");
    let election = rig.another_queue("scheduler");
    rig.track(&[&palermo::admin::schedules::status_queue(&election)]);
    let schedule = unique("every-second");
    let env = [
        ("PALERMO_TEST_SCHEDULE", schedule.as_str()),
        ("PALERMO_TEST_TICKS", ticks.as_str()),
    ];
    let mut args = rig.worker_args().to_vec();
    args.extend(["--scheduler", "--scheduler-queue", &election]);
    let (log_a, log_b) = (rig.temp_file("a.log"), rig.temp_file("b.log"));
    let from = Utc::now();
    let a = Running::spawn_with_env(&args, &env, &log_a);
    eventually(
        Duration::from_secs(20),
        "the first scheduler active",
        || async { read_log(&log_a).contains("scheduler active") },
    )
    .await;
    let b = Running::spawn_with_env(&args, &env, &log_b);
    eventually(
        Duration::from_secs(20),
        "the second one waiting",
        || async { read_log(&log_b).contains("scheduler waiting to become active") },
    )
    .await;
    let frozen = Instant::now();
    a.signal(libc::SIGSTOP);
    while !read_log(&log_b).contains("scheduler active") {
        assert!(frozen.elapsed() < Duration::from_secs(100), "no takeover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handover = frozen.elapsed();
    println!("handover after SIGSTOP (silent death): {handover:?}");
    assert!(handover < SILENT_HANDOVER, "handover took {handover:?}");
    a.signal(libc::SIGCONT);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let to = Utc::now();
    assert!(a.stop(Duration::from_secs(30)).await.success());
    assert!(b.stop(Duration::from_secs(30)).await.success());
    let counts = ticks_of(&rig.drain(&ticks).await, &schedule, from, to);
    let first = counts.keys().min().copied().expect("ticks");
    let last = counts.keys().max().copied().expect("ticks");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    println!("ticks {first}..={last}, enqueued twice (same id): {twice:?}");
    for second in first..=last {
        let n = counts.get(&second).copied().unwrap_or(0);
        assert!((1..=2).contains(&n), "tick {second} enqueued {n} times");
    }
    assert!(
        twice.len() <= 1,
        "the resumed scheduler enqueued again: {twice:?}"
    );
}
