//! Periodic jobs against the real RabbitMQ: two workers run the scheduler at once and each
//! tick's job is enqueued exactly once, under its deterministic id.

use crate::support;

use std::time::Duration;

use chrono::{DateTime, Utc};
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

/// A test's schedulers: their election queue, the queue the ticks go to, the schedule name.
struct Setup {
    rig: Rig,
    ticks: String,
    election: String,
    schedule: String,
}

impl Setup {
    async fn new(prefix: &str) -> Setup {
        support::init_tracing();
        let rig = Rig::new(prefix).await;
        let ticks = rig.another_queue("ticks");
        let election = rig.another_queue("scheduler");
        rig.track(&[&schedules::status_queue(&election)]);
        let schedule = unique("every-second");
        Setup {
            rig,
            ticks,
            election,
            schedule,
        }
    }

    /// Starts a worker running the scheduler of a job every second, with `catch_up`.
    fn start_scheduler(&self, catch_up: CatchUp) {
        let mut config = self.rig.config();
        config.scheduler = true;
        config.deployment.scheduler_queue = self.election.clone();
        let every = Periodic::every(&self.schedule, "1s").and_then(|p| p.queue(&self.ticks));
        let every = every.expect("schedule").catch_up(catch_up);
        self.rig
            .start(Worker::builder(config).periodic(every, Tick {}));
    }

    /// Every tick from the first to the last enqueued exactly once.
    async fn check_ticks_once(&self, from: DateTime<Utc>, to: DateTime<Utc>, at_least: i64) {
        let messages = self.rig.drain(&self.ticks).await;
        let counts = ticks_of(&messages, &self.schedule, from, to);
        let first = counts.keys().min().copied().expect("ticks");
        let last = counts.keys().max().copied().expect("ticks");
        assert!(last - first >= at_least, "ticks from {first} to {last}");
        for second in first..=last {
            assert_eq!(counts.get(&second), Some(&1), "tick {second}: {counts:?}");
        }
    }
}

#[tokio::test]
async fn two_schedulers_enqueue_each_tick_once() {
    let setup = Setup::new("periodic").await;
    let rig = &setup.rig;
    setup.start_scheduler(CatchUp::Latest);
    setup.start_scheduler(CatchUp::Latest);
    eventually(Duration::from_secs(10), "a first tick", || async {
        rig.ready(&setup.ticks).await >= 1
    })
    .await;
    let from = Utc::now();
    check_status(rig, &setup.election, &setup.schedule).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let to = Utc::now();
    rig.stop().await;
    setup.check_ticks_once(from, to, 10).await;
    assert_eq!(
        rig.consumers(&setup.election).await,
        0,
        "both schedulers left"
    );
}

/// The table `palermo schedules` shows: the active scheduler, the builder's schedule with its
/// last and next run, and the macro's schedule in its time zone.
async fn check_status(rig: &Rig, election: &str, schedule: &str) {
    let connection = &rig.connection;
    // The leader publishes its table after each tick's job: wait for the table of a tick.
    let ran = || async {
        let status = schedules::read(connection, election).await.ok().flatten();
        status.is_some_and(|s| {
            s.schedules
                .iter()
                .any(|r| r.name == schedule && r.last_run.is_some())
        })
    };
    eventually(Duration::from_secs(5), "the status table of a tick", ran).await;
    let status = schedules::read(connection, election)
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
    let again = schedules::read(connection, election).await.expect("read");
    assert!(again.is_some());
}

/// The last ticks live in the token: a scheduler started after none ran for a while finds
/// them there and, with `catch_up = "all"`, enqueues every missed tick, so the ticks have no
/// gap and none twice.
#[tokio::test]
async fn a_restarted_scheduler_catches_up_from_the_token() {
    let setup = Setup::new("catch-up").await;
    let rig = &setup.rig;
    let from = Utc::now();
    setup.start_scheduler(CatchUp::All);
    eventually(Duration::from_secs(10), "two ticks", || async {
        rig.ready(&setup.ticks).await >= 2
    })
    .await;
    rig.stop().await;
    let before = rig.ready(&setup.ticks).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    setup.start_scheduler(CatchUp::All);
    eventually(
        Duration::from_secs(10),
        "the missed ticks and one more",
        || async { rig.ready(&setup.ticks).await >= before + 4 },
    )
    .await;
    rig.stop().await;
    setup.check_ticks_once(from, Utc::now(), 5).await;
}

/// The schedule's row in the active scheduler's table, once that table shows a tick of it.
async fn status_row(setup: &Setup) -> schedules::ScheduleRow {
    let connection = &setup.rig.connection;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = schedules::read(connection, &setup.election)
            .await
            .ok()
            .flatten();
        let row = status
            .and_then(|s| s.schedules.into_iter().find(|r| r.name == setup.schedule))
            .filter(|r| r.last_run.is_some());
        if let Some(row) = row {
            return row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status row that ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pauses (`paused`) or resumes the setup's schedule, as `palermo schedules pause` does.
async fn set_paused(setup: &Setup, paused: bool) {
    let deployment = setup.rig.config().deployment;
    let connection = &setup.rig.connection;
    palermo::control::set_schedule_paused(connection, &deployment, &setup.schedule, paused)
        .await
        .expect("pause or resume the schedule");
    let names = [setup.schedule.clone()];
    let marked = palermo::control::paused_schedules(connection, &deployment, &names).await;
    assert_eq!(marked.expect("markers").len(), usize::from(paused));
}

/// Pausing a schedule stops its ticks within one tick, and the skipped ticks are not
/// enqueued later; its last run stays put while its next run moves on. Resuming brings the
/// ticks back.
#[tokio::test]
async fn a_paused_schedule_skips_its_ticks_until_resumed() {
    let setup = Setup::new("paused-schedule").await;
    let rig = &setup.rig;
    setup.start_scheduler(CatchUp::All);
    eventually(Duration::from_secs(10), "two ticks", || async {
        rig.ready(&setup.ticks).await >= 2
    })
    .await;
    set_paused(&setup, true).await;
    let paused_at = Utc::now();
    // A tick whose marker check ran before the pause may still land: wait it out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = rig.ready(&setup.ticks).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        rig.ready(&setup.ticks).await,
        during,
        "no tick while paused"
    );
    let row = status_row(&setup).await;
    let last = row.last_run.expect("last run");
    assert!(last <= paused_at.timestamp_millis() + 1000, "{row:?}");
    assert!(
        row.next_run.expect("next") > paused_at.timestamp_millis() + 4000,
        "{row:?}"
    );
    set_paused(&setup, false).await;
    let resumed_at = Utc::now();
    eventually(Duration::from_secs(5), "ticks again", || async {
        rig.ready(&setup.ticks).await >= during + 2
    })
    .await;
    rig.stop().await;
    let messages = rig.drain(&setup.ticks).await;
    let counts = ticks_of(&messages, &setup.schedule, paused_at, Utc::now());
    let skipped = (paused_at.timestamp() + 2)..resumed_at.timestamp();
    for (second, n) in &counts {
        assert_eq!(*n, 1, "tick {second} once");
        assert!(
            !skipped.contains(second),
            "tick {second} was paused: {counts:?}"
        );
    }
}

/// The pause is on the broker, not in the scheduler: a scheduler started after the pause
/// (a failover, a restart) skips the ticks too, even with `catch_up = "all"`, and the ticks
/// it skipped at its takeover are not enqueued after the resume.
#[tokio::test]
async fn a_new_scheduler_honours_the_pause() {
    let setup = Setup::new("pause-failover").await;
    let rig = &setup.rig;
    setup.start_scheduler(CatchUp::All);
    eventually(Duration::from_secs(10), "a tick", || async {
        rig.ready(&setup.ticks).await >= 1
    })
    .await;
    set_paused(&setup, true).await;
    rig.stop().await;
    let before = rig.ready(&setup.ticks).await;
    let stopped_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    setup.start_scheduler(CatchUp::All);
    // The new scheduler is active once it publishes its table.
    let connection = &rig.connection;
    eventually(
        Duration::from_secs(10),
        "the new scheduler's table",
        || async {
            let status = schedules::read(connection, &setup.election)
                .await
                .ok()
                .flatten();
            status.is_some_and(|s| s.written_at > stopped_at.timestamp_millis() + 2000)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rig.ready(&setup.ticks).await,
        before,
        "the new leader skipped"
    );
    set_paused(&setup, false).await;
    let resumed_at = Utc::now();
    eventually(Duration::from_secs(5), "ticks after the resume", || async {
        rig.ready(&setup.ticks).await >= before + 2
    })
    .await;
    rig.stop().await;
    let messages = rig.drain(&setup.ticks).await;
    let counts = ticks_of(&messages, &setup.schedule, stopped_at, Utc::now());
    let skipped = (stopped_at.timestamp() + 1)..resumed_at.timestamp();
    for (second, n) in &counts {
        assert_eq!(*n, 1, "tick {second} once");
        assert!(
            !skipped.contains(second),
            "tick {second} was paused: {counts:?}"
        );
    }
}

/// Run now enqueues exactly one extra run (the schedule's job, queue and arguments, a fresh
/// id) and leaves the ticks alone: every tick is still enqueued once, none skipped.
#[tokio::test]
async fn run_now_enqueues_one_extra_run() {
    let setup = Setup::new("run-now").await;
    let rig = &setup.rig;
    let from = Utc::now();
    setup.start_scheduler(CatchUp::Latest);
    let row = status_row(&setup).await;
    assert_eq!(row.format.as_deref(), Some("json"));
    assert_eq!(
        row.args.as_deref(),
        Some("{}"),
        "the unit struct's arguments"
    );
    let deployment = rig.config().deployment;
    let enqueued = schedules::run_now(&deployment, &row)
        .await
        .expect("run now");
    let palermo::Enqueued::New(id) = enqueued else {
        panic!("not unique, so enqueued: {enqueued:?}")
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.stop().await;
    let messages = rig.drain(&setup.ticks).await;
    let (extra, ticks): (Vec<_>, Vec<_>) = messages
        .into_iter()
        .partition(|(p, _)| p.message_id().as_ref().map(|m| m.to_string()) == Some(id.to_string()));
    assert_eq!(extra.len(), 1, "exactly one extra run");
    assert_eq!(extra[0].1, b"{}".to_vec(), "the schedule's arguments");
    let counts = ticks_of(&ticks, &setup.schedule, from, Utc::now());
    let first = counts.keys().min().copied().expect("ticks");
    let last = counts.keys().max().copied().expect("ticks");
    assert!(last - first >= 3, "ticks from {first} to {last}");
    for second in first..=last {
        assert_eq!(counts.get(&second), Some(&1), "tick {second}: {counts:?}");
    }
}
