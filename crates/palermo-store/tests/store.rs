//! The store against real SQLite and PostgreSQL databases (one fresh database per test and
//! backend): idempotent recording, filters and paging, retry/remove marks, heartbeats into
//! workers and exact statistics.

use palermo::admin::wire::event::{Counter, Heartbeat, LimitUse, RunningJob};
use palermo_store::{failures::NewFailure, Filter, Page, Store, StoreError};
use palermo_testdb::{TestDb, BACKENDS};

fn failure(id: &str, queue: &str, job: &str, error: &str, failed_at: i64) -> NewFailure {
    NewFailure {
        id: id.into(),
        job_id: format!("job-{id}"),
        job_name: job.into(),
        queue: queue.into(),
        source_queue: queue.into(),
        serializer: "json".into(),
        args_preview: format!(r#"{{"n":"{id}"}}"#),
        body: format!(r#"{{"n":"{id}"}}"#).into_bytes(),
        properties: "{}".into(),
        error_kind: "error".into(),
        error: error.into(),
        backtrace: Some("at main.rs:1".into()),
        error_history: Some(r#"[{"attempt":1,"at":1,"kind":"error","error":"first"}]"#.into()),
        gave_up: Some("attempts_exhausted".into()),
        attempt: 2,
        max_attempts: Some(2),
        worker: "host:1:mail".into(),
        enqueued_at: Some(failed_at - 10),
        first_failed_at: failed_at - 5,
        failed_at,
    }
}

async fn each_backend<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in BACKENDS {
        let db = TestDb::new(backend).await;
        let store = Store::open(&db.url).await.expect("open");
        test(store.clone()).await;
        store.close().await;
        db.remove().await;
    }
}

#[tokio::test]
async fn migrations_apply_once() {
    for backend in BACKENDS {
        let db = TestDb::new(backend).await;
        let store = Store::connect(&db.url).await.expect("connect");
        let first = store.migrate().await.expect("migrate");
        assert_eq!(first.applied, vec![1, 2, 3, 4, 5], "{backend}");
        let again = store.migrate().await.expect("migrate again");
        assert!(again.applied.is_empty(), "{backend}");
        assert_eq!(again.current, vec![1, 2, 3, 4, 5]);
        store.close().await;
        db.remove().await;
    }
}

#[tokio::test]
async fn recording_is_idempotent_and_lists_filter_and_page() {
    each_backend(|store| async move {
        let batch: Vec<_> = (0..30)
            .map(|i| {
                let (queue, job) = if i % 3 == 0 {
                    ("video", "transcode")
                } else {
                    ("mail", "send_email")
                };
                failure(
                    &format!("f{i:02}"),
                    queue,
                    job,
                    &format!("Error {i}: 50%_off"),
                    1000 + i,
                )
            })
            .collect();
        assert_eq!(store.insert_failures(&batch).await.expect("insert"), 30);
        assert_eq!(
            store.insert_failures(&batch[..5]).await.expect("again"),
            0,
            "no duplicates"
        );

        let all = store
            .list_failures(&Filter::default(), Page { limit: 25, page: 1 })
            .await
            .expect("list");
        assert_eq!((all.total, all.failures.len()), (30, 25));
        assert_eq!(all.failures[0].id, "f29", "newest first");
        let page2 = store
            .list_failures(&Filter::default(), Page { limit: 25, page: 2 })
            .await
            .expect("page 2");
        assert_eq!(page2.failures.len(), 5);

        let video = Filter {
            queue: Some("video".into()),
            ..Default::default()
        };
        assert_eq!(
            store
                .list_failures(&video, Page::default())
                .await
                .expect("q")
                .total,
            10
        );
        let job = Filter {
            job: Some("send_email".into()),
            since: Some(1020),
            ..Default::default()
        };
        assert_eq!(
            store
                .list_failures(&job, Page::default())
                .await
                .expect("job")
                .total,
            7
        );
        let search = Filter {
            search: Some("error 7: 50%_OFF".into()),
            ..Default::default()
        };
        let found = store
            .list_failures(&search, Page::default())
            .await
            .expect("search");
        assert_eq!(
            found
                .failures
                .iter()
                .map(|f| f.id.as_str())
                .collect::<Vec<_>>(),
            ["f07"]
        );
        let by_id = Filter {
            search: Some("job-f03".into()),
            ..Default::default()
        };
        assert_eq!(
            store
                .list_failures(&by_id, Page::default())
                .await
                .expect("id")
                .total,
            1
        );

        let detail = store.failure("f07").await.expect("show").expect("exists");
        assert_eq!(detail.args, Some(serde_json::json!({"n": "f07"})));
        assert_eq!(detail.backtrace.as_deref(), Some("at main.rs:1"));
        assert_eq!(detail.attempts.len(), 1);
        assert_eq!((detail.attempts[0].attempt, detail.attempts[0].at), (1, 1));
        assert_eq!(detail.attempts[0].error, "first");
        assert_eq!(
            detail.failure.gave_up.as_deref(),
            Some("attempts_exhausted")
        );
        assert!(store.failure("nope").await.expect("show").is_none());
    })
    .await;
}

#[tokio::test]
async fn retried_and_removed_failures_leave_the_list_and_say_so() {
    each_backend(|store| async move {
        let batch: Vec<_> = (0..4)
            .map(|i| failure(&format!("f{i}"), "mail", "send_email", "boom", i))
            .collect();
        store.insert_failures(&batch).await.expect("insert");
        let f0 = [("f0".to_string(), "mail".to_string())];
        assert_eq!(store.mark_retried(&f0, "test").await.expect("retry"), 1);
        assert_eq!(
            store.mark_retried(&f0, "test").await.expect("twice"),
            0,
            "already retried"
        );

        let err = store
            .remove(&["f1".into(), "f0".into(), "zz".into()], "test")
            .await
            .expect_err("bad ids");
        let StoreError::Rejected(rejections) = &err else {
            panic!("{err}")
        };
        assert_eq!(rejections.len(), 2, "{err}");
        assert!(
            err.to_string().contains("already retried") && err.to_string().contains("no failure"),
            "{err}"
        );
        assert_eq!(
            store
                .list_failures(&Filter::default(), Page::default())
                .await
                .expect("list")
                .total,
            3,
            "f1 untouched"
        );

        assert_eq!(
            store.remove(&["f1".into()], "test").await.expect("remove"),
            1
        );
        let left = store
            .list_failures(&Filter::default(), Page::default())
            .await
            .expect("list");
        assert_eq!(
            left.failures
                .iter()
                .map(|f| f.id.as_str())
                .collect::<Vec<_>>(),
            ["f3", "f2"]
        );

        // The same message recorded again after its retry does not come back.
        store
            .insert_failures(&batch[..1])
            .await
            .expect("redelivered");
        let left = store
            .list_failures(&Filter::default(), Page::default())
            .await
            .expect("list");
        assert_eq!(
            left.total,
            2,
            "{:?}",
            left.failures
                .iter()
                .map(|f| (&f.id, &f.status))
                .collect::<Vec<_>>()
        );
        // A later failure of the same job shows the earlier one and the retry.
        let mut again = failure("f0b", "mail", "send_email", "boom again", 10);
        again.job_id = "job-f0".into();
        store.insert_failures(&[again]).await.expect("fails again");
        let detail = store.failure("f0b").await.expect("show").expect("exists");
        assert_eq!(detail.earlier_failures.len(), 1);
        assert_eq!(detail.actions.len(), 1);
        assert_eq!(
            (
                detail.actions[0].action.as_str(),
                detail.actions[0].queue.as_deref()
            ),
            ("retried", Some("mail"))
        );

        assert_eq!(
            store
                .remove_matching(&Filter::default(), "test")
                .await
                .expect("remove all"),
            3
        );
        assert_eq!(store.prune_resolved(i64::MAX).await.expect("prune"), 5);
    })
    .await;
}

fn beat(id: uuid::Uuid, seq: u64, sent_at: i64, counters: &[(&str, &str, u64, u64)]) -> Heartbeat {
    Heartbeat {
        version: 1,
        event: "heartbeat".into(),
        id,
        identity: "host:1:mail".into(),
        host: "host".into(),
        pid: 1,
        queues: vec!["mail".into(), "video".into()],
        concurrency: 2,
        started_at: 0,
        sent_at,
        seq,
        interval_ms: 1000,
        processed: counters.iter().map(|c| c.2).sum(),
        failed: counters.iter().map(|c| c.3).sum(),
        counters: counters
            .iter()
            .map(|(queue, job, processed, failed)| Counter {
                queue: (*queue).into(),
                job: (*job).into(),
                processed: *processed,
                failed: *failed,
            })
            .collect(),
        jobs: vec![RunningJob {
            id: "j1".into(),
            name: "send_email".into(),
            queue: "mail".into(),
            started_at: sent_at,
            preview: "{}".into(),
        }],
        blocked: None,
        state: None,
        paused: Vec::new(),
        timing_bounds_ms: Vec::new(),
        timings: Vec::new(),
        limits: Vec::new(),
    }
}

#[tokio::test]
async fn heartbeats_make_workers_and_exact_statistics() {
    each_backend(|store| async move {
        let now = palermo_store::time::now_ms();
        let id = uuid::Uuid::new_v4();
        let b1 = beat(id, 1, now - 2000, &[("mail", "send_email", 3, 1)]);
        let b2 = beat(
            id,
            2,
            now - 1000,
            &[("mail", "send_email", 5, 2), ("video", "transcode", 1, 0)],
        );
        store.record_heartbeat(&b1).await.expect("b1");
        store.record_heartbeat(&b2).await.expect("b2");
        store
            .record_heartbeat(&b1)
            .await
            .expect("late b1 changes nothing");
        store
            .record_heartbeat(&b2)
            .await
            .expect("repeated b2 changes nothing");

        let stats = store.stats(now).await.expect("stats");
        assert_eq!((stats.total.processed, stats.total.failed), (6, 2));
        assert_eq!((stats.last_hour.processed, stats.last_hour.failed), (6, 2));
        assert_eq!(stats.by_job.len(), 2);
        let workers = store.workers().await.expect("workers");
        assert_eq!(workers.len(), 1);
        let w = &workers[0];
        assert_eq!(
            (w.status.as_str(), w.processed, w.running.len()),
            ("alive", 6, 1)
        );
        assert_eq!(w.running[0].name, "send_email");

        assert_eq!(store.mark_gone(now + 1500, 3).await.expect("not yet"), 0);
        assert_eq!(store.mark_gone(now + 2500, 3).await.expect("gone"), 1);
        assert_eq!(store.workers().await.expect("workers")[0].status, "gone");

        let mut offline = beat(
            id,
            3,
            now,
            &[("mail", "send_email", 6, 2), ("video", "transcode", 1, 0)],
        );
        offline.event = "offline".into();
        store.record_heartbeat(&offline).await.expect("offline");
        let w = &store.workers().await.expect("workers")[0];
        assert_eq!((w.status.as_str(), w.running.len()), ("stopped", 0));
        assert_eq!(store.stats(now).await.expect("stats").total.processed, 7);
        assert_eq!(store.prune_workers(now + 1).await.expect("prune"), 1);
        assert!(store.workers().await.expect("workers").is_empty());
    })
    .await;
}

/// Run-time and wait histograms, blocked workers, prunes: `store/metrics.rs`.
#[path = "store/metrics.rs"]
mod metrics;

#[tokio::test]
async fn alive_workers_limits_add_up_and_a_stopped_workers_do_not_count() {
    each_backend(|store| async move {
        let now = palermo_store::time::now_ms();
        let uses = |held, waited| {
            vec![LimitUse {
                job: "transcode".into(),
                limit: "transcode".into(),
                kind: "concurrency".into(),
                value: 3,
                window_ms: None,
                key: None,
                held,
                waited,
            }]
        };
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        for (id, held, waited) in [(a, 2, 4), (b, 1, 3)] {
            let mut with = beat(id, 1, now, &[]);
            with.limits = uses(held, waited);
            store.record_heartbeat(&with).await.expect("record");
        }
        let rows = store.limits().await.expect("limits");
        assert_eq!(rows.len(), 1, "{rows:?}");
        let row = &rows[0];
        assert_eq!((row.in_use, row.waiting, row.workers), (Some(3), 7, 2));
        assert_eq!(
            (row.setting(), row.jobs.clone()),
            ("3".into(), vec!["transcode".into()])
        );
        let mut offline = beat(b, 2, now + 1, &[]);
        offline.event = "offline".into();
        offline.limits = uses(0, 0);
        store.record_heartbeat(&offline).await.expect("record");
        let rows = store.limits().await.expect("limits");
        assert_eq!(
            (rows[0].in_use, rows[0].waiting, rows[0].workers),
            (Some(2), 4, 1)
        );
    })
    .await;
}
