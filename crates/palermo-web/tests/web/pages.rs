//! Every page and API read route, on a real SQLite store: rendered, escaped, with the
//! security headers, under a mount prefix, and answering 404 for unknown ids.

use crate::support;

use axum::{http::StatusCode, Router};
use support::*;

/// A store with two failures (one carrying HTML, script and control characters) and a worker.
async fn seeded() -> (palermo_store::Store, TestDb, String) {
    let (store, db) = store("sqlite").await;
    let queue = unique("pages");
    let now = now_ms();
    store
        .insert_failures(&[
            failure(
                "f-plain",
                &queue,
                "send_email",
                "SMTP said no",
                r#"{"to":"ada@example.com"}"#,
                now - 60_000,
            ),
            failure(
                "f-xss",
                &queue,
                "<b>bold</b>",
                "<img src=x onerror=alert(2)> \u{1b}[31mred\u{1b}[0m\rhidden\u{202e}txt",
                r#"{"html":"<script>alert(1)</script>"}"#,
                now - 30_000,
            ),
        ])
        .await
        .expect("insert");
    heartbeat(&store, &queue).await;
    (store, db, queue)
}

#[tokio::test]
async fn every_page_renders_with_the_security_headers() {
    let (store, db, queue) = seeded().await;
    let router = palermo_web::router(config(&store).env_name(Some("staging".into())));
    for path in [
        "/",
        "/queues",
        &format!("/queues/{queue}"),
        "/workers",
        "/failed",
        "/failed/f-plain",
    ] {
        let answer = send(&router, get(path)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        assert!(
            answer.header("content-type").starts_with("text/html"),
            "{path}"
        );
        assert_eq!(answer.header("cache-control"), "no-store", "{path}");
        assert_eq!(answer.header("x-content-type-options"), "nosniff", "{path}");
        let csp = answer.header("content-security-policy");
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(
            answer.body.contains("<title>[staging]"),
            "{path}: env label in the title"
        );
        assert!(
            answer.body.contains(r#"id="env-name""#),
            "{path}: env label in the header"
        );
        assert!(
            !answer.body.contains("<script>") && !answer.body.contains(" style="),
            "{path}: no inline script or style"
        );
    }
    let overview = send(&router, get("/")).await.body;
    assert!(overview.contains(r#"id="chart-minutes""#) && overview.contains(r#"id="chart-hours""#));
    assert!(
        overview.contains(r#"data-stat="processed"><span class="value">12<"#),
        "{overview}"
    );
    assert!(
        overview.contains(&format!(r#"data-queue="{queue}""#)),
        "the queue is listed"
    );
    let workers = send(&router, get("/workers")).await.body;
    assert!(
        workers.contains("busy-row") && workers.contains("ada@example.com"),
        "running job shown"
    );
    assert!(workers.contains(r#"data-status="alive""#));
    let failed = send(&router, get("/failed")).await.body;
    assert!(
        failed.contains(r#"data-failure-id="f-plain""#)
            && failed.contains(r#"data-failure-id="f-xss""#)
    );
    assert!(
        failed.find("f-xss") < failed.find("f-plain"),
        "newest first"
    );
    assert!(
        failed.contains(r#"name="id" value="f-plain""#),
        "checkbox per row"
    );
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn message_text_is_escaped_and_control_characters_shown() {
    let (store, db, _queue) = seeded().await;
    let router = palermo_web::router(config(&store));
    for path in ["/failed", "/failed/f-xss"] {
        let body = send(&router, get(path)).await.body;
        assert!(
            !body.contains("<script>alert(1)"),
            "{path}: script tag passed through"
        );
        assert!(
            !body.contains("<img src=x"),
            "{path}: img tag passed through"
        );
        assert!(!body.contains("<b>bold"), "{path}");
        assert!(
            body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{path}: {body}"
        );
        assert!(
            body.contains("\u{241b}[31mred"),
            "{path}: ESC shown as a symbol"
        );
        assert!(
            !body.contains('\u{1b}') && !body.contains('\r') && !body.contains('\u{202e}'),
            "{path}: raw control characters"
        );
        assert!(
            body.contains("\\u{202e}"),
            "{path}: bidi override made visible"
        );
    }
    let api = send(&router, get("/api/failed/f-xss")).await;
    assert_eq!(api.header("content-type"), "application/json");
    assert_eq!(
        api.json()["args"]["html"],
        "<script>alert(1)</script>",
        "the API returns the data as it is"
    );
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let (store, db, _queue) = seeded().await;
    let router = palermo_web::router(config(&store));
    let page = send(&router, get("/failed/no-such-id")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.body.contains("no failure has the id") && page.body.contains("id=\"error-message\""),
        "{}",
        page.body
    );
    let api = send(&router, get("/api/failed/no-such-id")).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert!(api.json()["error"]
        .as_str()
        .unwrap_or("")
        .contains("no failure"));
    assert_eq!(
        send(&router, get("/queues/no-such-queue-x1")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&router, get("/api/queues/no-such-queue-x1"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&router, get("/nothing-here")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&router, get("/api/nothing")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&router, get("/failed?since=whenever")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&router, get("/failed?after=garbage")).await.status,
        StatusCode::BAD_REQUEST
    );
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn the_api_answers_what_the_pages_show() {
    let (store, db, queue) = seeded().await;
    let router = palermo_web::router(config(&store));
    let overview = send(&router, get("/api/overview")).await.json();
    assert_eq!(overview["unresolved_failures"], 2);
    assert_eq!(overview["processed"]["processed"], 12);
    assert_eq!(overview["busy"], 1);
    assert_eq!(
        overview["per_minute"]["buckets"].as_array().map(Vec::len),
        Some(60)
    );
    assert_eq!(
        overview["per_hour"]["buckets"].as_array().map(Vec::len),
        Some(7 * 24)
    );
    let failed = send(&router, get(&format!("/api/failed?queue={queue}&limit=1")))
        .await
        .json();
    assert_eq!(failed["total"], 2);
    assert_eq!(failed["failures"][0]["id"], "f-xss");
    let older = failed["older"].as_str().expect("an older page").to_string();
    let next = send(
        &router,
        get(&format!("/api/failed?queue={queue}&limit=1&after={older}")),
    )
    .await
    .json();
    assert_eq!(next["failures"][0]["id"], "f-plain");
    assert!(next["older"].is_null());
    let queues = send(&router, get("/api/queues")).await.json();
    assert!(
        queues["queues"]
            .as_array()
            .is_some_and(|q| q.iter().any(|q| q["queue"] == queue.as_str())),
        "{queues}"
    );
    let one = send(&router, get(&format!("/api/queues/{queue}")))
        .await
        .json();
    assert_eq!(
        (one["failed"].as_i64(), one["unacked"].as_i64()),
        (Some(2), Some(1))
    );
    let workers = send(&router, get("/api/workers")).await.json();
    assert_eq!(workers["busy"][0]["name"], "send_email");
    assert!(workers["busy"][0]["running_ms"]
        .as_i64()
        .is_some_and(|ms| ms >= 7000));
    let facets = send(&router, get("/api/failed/facets")).await.json();
    assert_eq!(facets["queues"][0][0], queue.as_str());
    let stats = send(&router, get("/api/stats")).await.json();
    assert_eq!(stats["total"]["failed"], 3);
    let series = send(&router, get("/api/series")).await.json();
    let last = &series["per_minute"]["buckets"][59];
    assert_eq!(
        (last["processed"].as_i64(), last["failed"].as_i64()),
        (Some(12), Some(3)),
        "{series}"
    );
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn mounted_under_a_prefix_links_stay_inside() {
    let (store, db, _queue) = seeded().await;
    let router = Router::new().nest("/palermo", palermo_web::router(config(&store)));
    let overview = send(&router, get("/palermo")).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(
        overview.body.contains(r#"href="palermo/failed""#),
        "relative links from /palermo"
    );
    let css = overview
        .body
        .split(r#"rel="stylesheet" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a stylesheet link")
        .to_string();
    assert!(
        css.starts_with("palermo/static/app.") && css.ends_with(".css"),
        "{css}"
    );
    let asset = send(&router, get(&format!("/{css}"))).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert_eq!(
        asset.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert!(asset.header("content-type").starts_with("text/css"));
    let detail = send(&router, get("/palermo/failed/f-plain")).await;
    assert!(
        detail.body.contains(r#"href="../failed""#)
            && detail.body.contains(r#"href="../static/app."#)
    );
    assert_eq!(
        send(&router, get("/palermo/static/app.0000.css"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(send(&router, get("/palermo/health")).await.body, "ok\n");
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn without_the_broker_the_store_part_still_shows() {
    let (store, db, _queue) = seeded().await;
    let router = palermo_web::router(palermo_web::WebConfig::new(
        store.clone(),
        palermo::Deployment::new("amqp://guest:guest@127.0.0.1:1/%2f"),
    ));
    let overview = send(&router, get("/")).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(
        overview.body.contains(r#"id="broker-error""#),
        "{}",
        overview.body
    );
    assert!(overview
        .body
        .contains(r#"data-stat="unresolved"><span class="value">2<"#));
    let queues = send(&router, get("/api/queues")).await.json();
    assert!(queues["broker_error"].is_string(), "{queues}");
    let metrics = send(&router, get("/metrics")).await.body;
    assert!(
        metrics.contains("palermo_broker_up 0") && metrics.contains("palermo_failures_unresolved")
    );
    let retry = send(
        &router,
        post_form("/failed/retry", "id=f-plain&confirmed=1"),
    )
    .await;
    assert_eq!(retry.status, StatusCode::BAD_GATEWAY, "{}", retry.body);
    assert_eq!(
        store
            .failure("f-plain")
            .await
            .expect("read")
            .expect("exists")
            .failure
            .status,
        "failed",
        "nothing marked retried without the broker"
    );
    store.close().await;
    db.remove().await;
}
