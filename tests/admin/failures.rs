//! Failures: listed with every field, shown, retried, removed, and bad input.

use std::sync::{atomic::Ordering, Arc};

use palermo::Options;
use serde_json::Value;

use crate::{
    admin_support::{stderr, stdout, Admin, BACKENDS},
    failure_rows,
    support::eventually,
    worker, AlwaysFails, Charge, Seen, WAIT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_listed_with_every_field_and_a_retry_runs_it_and_clears_it() {
    for backend in BACKENDS {
        let admin = Admin::new(backend, "billing").await;
        let (rig, queue) = (&admin.rig, admin.rig.queue.clone());
        let seen = Arc::new(Seen::default());
        seen.fail.store(true, Ordering::SeqCst);
        let running = worker(&admin, &[&queue], 1, &seen);
        let client = rig.client();
        let job_id = client
            .enqueue_with(Charge { order: 42 }, Options::new().queue(&queue))
            .await
            .expect("enqueue")
            .id();
        eventually(WAIT, "the job failed", || async {
            rig.ready(&admin.failed).await == 1
        })
        .await;

        let list = admin.json(&["failed", "list"]);
        assert_eq!(list["total"], 1, "{backend}: {list}");
        let f = &failure_rows(&list)[0];
        assert_eq!(f["job_id"], job_id.to_string());
        assert_eq!(f["job_name"], "charge");
        assert_eq!(f["queue"], queue.as_str());
        assert_eq!(f["source_queue"], queue.as_str());
        assert_eq!(f["serializer"], "json");
        assert_eq!(f["args_preview"], r#"{"order":42}"#);
        assert_eq!(f["error_kind"], "error");
        assert!(
            f["error"]
                .as_str()
                .is_some_and(|e| e.contains("card declined for order 42")),
            "{f}"
        );
        assert_eq!(
            (f["attempt"].as_i64(), f["max_attempts"].as_i64()),
            (Some(1), Some(1))
        );
        assert!(
            f["worker"]
                .as_str()
                .is_some_and(|w| w.contains(&format!(":{}:", std::process::id()))),
            "{f}"
        );
        assert_eq!(f["status"], "failed");
        for field in [
            "id",
            "enqueued_at",
            "first_failed_at",
            "failed_at",
            "recorded_at",
        ] {
            assert!(
                f[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field} missing: {f}"
            );
        }
        assert_eq!(rig.ready(&admin.failed).await, 0, "recorded and acked");
        let id = f["id"].as_str().expect("id").to_string();

        let show = admin.json(&["failed", "show", &id]);
        assert_eq!(show["args"], serde_json::json!({"order": 42}));
        let human = admin.palermo(&["failed", "show", &id]);
        assert!(
            human.status.success() && stdout(&human).contains("card declined"),
            "{}",
            stdout(&human)
        );

        seen.fail.store(false, Ordering::SeqCst);
        let retried = admin.palermo(&["failed", "retry", &id]);
        assert!(retried.status.success(), "{}", stderr(&retried));
        eventually(WAIT, "the retried job succeeded", || async {
            seen.succeeded.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_eq!(admin.json(&["failed", "list"])["total"], 0);
        let again = admin.palermo(&["failed", "retry", &id]);
        assert_eq!(again.status.code(), Some(1));
        assert!(
            stderr(&again).contains("already retried"),
            "{}",
            stderr(&again)
        );
        running.stop().await;
        assert_eq!(seen.ran.load(Ordering::SeqCst), 2, "ran once, retried once");
        assert_eq!(rig.ready(&queue).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_all_by_queue_and_remove_by_id_touch_only_what_they_name() {
    let admin = Admin::new("sqlite", "qa").await;
    let rig = &admin.rig;
    let (qa, qb) = (rig.queue.clone(), rig.another_queue("qb"));
    let seen = Arc::new(Seen::default());
    let running = worker(&admin, &[&qa, &qb], 2, &seen);
    let client = rig.client();
    for n in 0..2 {
        client
            .enqueue_with(AlwaysFails { n }, Options::new().queue(&qa))
            .await
            .expect("enqueue qa");
        client
            .enqueue_with(AlwaysFails { n }, Options::new().queue(&qb))
            .await
            .expect("enqueue qb");
    }
    eventually(WAIT, "four failures", || async {
        rig.ready(&admin.failed).await == 4
    })
    .await;
    running.stop().await;

    let out = admin.palermo(&["failed", "retry", "--all", "--queue", &qa]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("retried 2 failures"),
        "{}",
        stdout(&out)
    );
    assert_eq!((rig.ready(&qa).await, rig.ready(&qb).await), (2, 0));
    let left = failure_rows(&admin.json(&["failed", "list"]));
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|f| f["queue"] == qb.as_str()), "{left:?}");

    let keep = left[0]["id"].as_str().expect("id").to_string();
    let drop = left[1]["id"].as_str().expect("id").to_string();
    let bad = admin.palermo(&["failed", "remove", &drop, "no-such-id"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("no-such-id") && stderr(&bad).contains("nothing was changed"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(
        admin.json(&["failed", "list"])["total"],
        2,
        "a bad id changes nothing"
    );

    let removed = admin.json(&["failed", "remove", &drop]);
    assert_eq!(removed["removed"], 1);
    let left = failure_rows(&admin.json(&["failed", "list"]));
    assert_eq!(
        left.iter().map(|f| f["id"].clone()).collect::<Vec<_>>(),
        [Value::from(keep)]
    );
    assert_eq!(rig.ready(&qb).await, 0, "remove publishes nothing");
    let filtered = admin.json(&["failed", "list", "--queue", &qa]);
    assert_eq!(filtered["total"], 0);

    let usage = admin.palermo(&["failed", "retry"]);
    assert_eq!(usage.status.code(), Some(1));
    assert!(stderr(&usage).contains("--all"), "{}", stderr(&usage));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_of_a_job_no_worker_knows_can_be_listed_shown_retried_and_removed() {
    let admin = Admin::new("postgres", "orphans").await;
    let (rig, queue) = (&admin.rig, admin.rig.queue.clone());
    let seen = Arc::new(Seen::default());
    let running = worker(&admin, &[&queue], 1, &seen);
    let client = rig.client();
    for n in 0..2 {
        let raw = crate::support::RawJob {
            name: "nobody_knows_me".into(),
            queue: queue.clone(),
            format: palermo::Format::Json,
            body: format!(r#"{{"n":{n}}}"#).into_bytes(),
            max_attempts: Some(1),
        };
        client
            .enqueue_raw(raw, Options::new())
            .await
            .expect("enqueue");
    }
    eventually(WAIT, "two failures", || async {
        rig.ready(&admin.failed).await == 2
    })
    .await;
    running.stop().await;

    let list = failure_rows(&admin.json(&["failed", "list", "--job", "nobody_knows_me"]));
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["error_kind"], "unknown_job");
    let (first, second) = (
        list[0]["id"].as_str().expect("id"),
        list[1]["id"].as_str().expect("id"),
    );
    let show = admin.json(&["failed", "show", first]);
    assert!(show["args"]["n"].is_number(), "{show}");
    let out = admin.palermo(&["failed", "retry", first]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rig.ready(&queue).await, 1, "back on its queue");
    let out = admin.palermo(&["failed", "remove", second]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(admin.json(&["failed", "list"])["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_or_broker_is_one_line_and_exit_1() {
    let admin = Admin::new("sqlite", "cli").await;
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "failed",
                "list",
                "--database-url",
                "sqlite:/nonexistent/dir/palermo.db",
            ],
            "cannot open the database",
        ),
        (
            &[
                "workers",
                "--database-url",
                "postgres://postgres@127.0.0.1:1/x",
            ],
            "cannot open the database",
        ),
        (
            &["stats", "--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f"],
            "cannot connect to RabbitMQ",
        ),
    ];
    for (args, expected) in cases {
        let out = admin.palermo(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with("error: ") && err.contains(expected),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
    let migrated = admin.json(&["migrate"]);
    assert_eq!(migrated["current"], serde_json::json!([1, 2, 3, 4, 5]));
}
