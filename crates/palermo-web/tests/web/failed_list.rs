//! The failures list on both databases: keyset pages walked older and newer, filters by
//! queue, job, error kind, text and time, through the page and the API.

use crate::support;

use axum::http::StatusCode;
use support::*;

#[tokio::test]
async fn keyset_pages_on_sqlite_and_postgres() {
    for backend in db::BACKENDS {
        let (store, db) = store(backend).await;
        let now = now_ms();
        // 60 failures, two per millisecond so that ties on failed_at are broken by id.
        let rows: Vec<_> = (0..60)
            .map(|i| {
                let mut f = failure(
                    &format!("k-{i:02}"),
                    if i % 3 == 0 { "mail" } else { "video" },
                    "job",
                    &format!("err {i}"),
                    "{}",
                    now - 100 + i / 2,
                );
                if i % 10 == 0 {
                    f.error_kind = "timeout".into();
                }
                f
            })
            .collect();
        store.insert_failures(&rows).await.expect("insert");
        let router = palermo_web::router(config(&store));

        let mut seen = Vec::new();
        let mut next = Some("/api/failed".to_string());
        let mut cursors = Vec::new();
        while let Some(path) = next.take() {
            let page = send(&router, get(&path)).await.json();
            assert_eq!(page["total"], 60, "{backend}");
            let ids: Vec<String> = page["failures"]
                .as_array()
                .expect("rows")
                .iter()
                .map(|f| f["id"].as_str().unwrap_or("").to_string())
                .collect();
            assert!(ids.len() <= 25);
            seen.extend(ids);
            if let Some(older) = page["older"].as_str() {
                cursors.push(older.to_string());
                next = Some(format!("/api/failed?after={older}"));
            }
        }
        let expected: Vec<String> = (0..60).rev().map(|i| format!("k-{i:02}")).collect();
        assert_eq!(
            seen, expected,
            "{backend}: every failure once, newest first"
        );
        assert_eq!(cursors.len(), 2, "{backend}: three pages");

        // Back from the last page: the middle page, then the first.
        let middle = send(
            &router,
            get(&format!("/api/failed?before=50.x&after={}", cursors[0])),
        )
        .await
        .json();
        assert_eq!(middle["failures"][0]["id"], "k-34", "{backend}");
        let back = middle["newer"].as_str().expect("a newer page").to_string();
        let first = send(&router, get(&format!("/api/failed?before={back}")))
            .await
            .json();
        assert_eq!(first["failures"][0]["id"], "k-59", "{backend}");
        assert!(
            first["newer"].is_null(),
            "{backend}: the first page has no newer"
        );
        assert_eq!(
            first["failures"].as_array().map(Vec::len),
            Some(25),
            "{backend}: a whole first page"
        );

        // Filters, through the page.
        let html = send(&router, get("/failed?queue=mail&kind=timeout")).await;
        assert_eq!(html.status, StatusCode::OK);
        assert!(
            html.body.contains(r#"data-total="2""#),
            "{backend}: k-00 and k-30"
        );
        let json = send(&router, get("/api/failed?q=ERR%204&since=1h"))
            .await
            .json();
        assert_eq!(
            json["total"], 11,
            "{backend}: search by text, case-insensitive"
        );
        let by_id = send(&router, get("/api/failed?q=k-45")).await.json();
        assert_eq!(
            by_id["failures"][0]["id"], "k-45",
            "{backend}: search by id"
        );
        let until = send(
            &router,
            get(&format!("/api/failed?until={}", chrono_text(now - 90))),
        )
        .await
        .json();
        assert_eq!(
            until["total"], 20,
            "{backend}: until excludes later failures"
        );
        let older_link = html.body.contains("page-older");
        assert!(!older_link, "{backend}: two rows fit one page");

        store.close().await;
        db.remove().await;
    }
}

fn chrono_text(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[tokio::test]
async fn metrics_name_queues_jobs_and_workers() {
    let (store, db) = store("sqlite").await;
    let queue = unique("metrics");
    store
        .insert_failures(&[failure("m-1", &queue, "send_email", "boom", "{}", now_ms())])
        .await
        .expect("insert");
    heartbeat(&store, &queue).await;
    // The queue exists on the broker (the test's own, deleted at the end), so its depth is
    // exported too.
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            queue.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("declare the test's queue");
    let router = palermo_web::router(config(&store));
    let answer = send(&router, get("/metrics")).await;
    channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .expect("delete the test's queue");
    let _ = connection.close(200, "done".into()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer
        .header("content-type")
        .starts_with("application/openmetrics-text"));
    let text = answer.body;
    for line in [
        format!(r#"palermo_jobs_processed_total{{queue="{queue}",job="send_email"}} 12"#),
        format!(r#"palermo_jobs_failed_total{{queue="{queue}",job="send_email"}} 3"#),
        format!(r#"palermo_failures_unresolved{{queue="{queue}"}} 1"#),
        r#"palermo_workers{status="alive"} 1"#.to_string(),
        format!(r#"palermo_jobs_running{{queue="{queue}"}} 1"#),
        "palermo_broker_up 1".to_string(),
        r#"palermo_jobs_delayed{kind="retry"}"#.to_string(),
        // Classic queues drop a delayed job whose queue was deleted: no orphans to count.
        r#"palermo_jobs_delayed{kind="orphaned"} 0"#.to_string(),
        "# EOF".to_string(),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
    let ready = format!(r#"palermo_queue_ready{{queue="{queue}"}} 0"#);
    assert!(text.contains(&ready), "missing {ready:?} in\n{text}");
    store.close().await;
    db.remove().await;
}
