//! Pause and resume a queue, quiet and stop a worker, through the pages' forms and the API,
//! against the real broker and a SQLite store: behind a confirmation, audited with the actor,
//! unknown names refused, and refused like every action without a login, from another
//! site, or in read-only mode. Each test has its own control exchange, deleted at the end.

use crate::support;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use lapin::{
    options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
    Connection, ConnectionProperties,
};
use palermo::control;
use support::*;

/// The broker side: a connection, a queue and a control exchange of this test.
struct Side {
    connection: Connection,
    queue: String,
    deployment: palermo::Deployment,
}

impl Side {
    async fn new(prefix: &str) -> Side {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ must run for these tests");
        let queue = unique(prefix);
        let channel = connection.create_channel().await.expect("channel");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare");
        let deployment = palermo::Deployment {
            control_exchange: unique("control"),
            ..palermo::Deployment::new(amqp_url())
        };
        Side {
            connection,
            queue,
            deployment,
        }
    }

    async fn paused(&self) -> bool {
        let queues = [self.queue.clone()];
        !control::paused(&self.connection, &self.deployment, &queues)
            .await
            .expect("look for the marker")
            .is_empty()
    }

    async fn clean_up(self) {
        let channel = self.connection.create_channel().await.expect("channel");
        let _ = channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        let stream = control::cancellations::stream_name(&self.deployment);
        let _ = channel
            .queue_delete(stream.as_str().into(), QueueDeleteOptions::default())
            .await;
        for exchange in [
            control::pause_marker(&self.deployment, &self.queue),
            self.deployment.control_exchange.clone(),
        ] {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
}

#[tokio::test]
async fn pause_and_resume_a_queue_behind_a_confirmation() {
    let (store, db) = store("sqlite").await;
    let side = Side::new("web-pause").await;
    let queue = side.queue.clone();
    // A worker serving it: the queues table lists it.
    heartbeat(&store, &queue).await;
    let router = palermo_web::router(config_of(&store, side.deployment.clone()));

    let page = send(&router, get(&format!("/queues/{queue}"))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"id="pause-button""#), "{}", page.body);
    let ask = send(&router, post_form(&format!("/queues/{queue}/pause"), "")).await;
    assert!(ask.body.contains("confirm-page-yes"), "{}", ask.body);
    assert!(!side.paused().await, "nothing paused unconfirmed");

    let done = send(
        &router,
        post_form(&format!("/queues/{queue}/pause"), "confirmed=1"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(side.paused().await, "the marker is on the broker");
    let page = send(&router, get(&format!("/queues/{queue}"))).await;
    assert!(page.body.contains(r#"id="queue-paused""#));
    assert!(page.body.contains(r#"id="resume-button""#));
    assert!(page.body.contains("queue-actions") && page.body.contains("<td>web</td>"));
    let listed = send(&router, get("/queues")).await;
    assert!(listed.body.contains("status-paused"), "{}", listed.body);
    let api = send(&router, get(&format!("/api/queues/{queue}"))).await;
    assert_eq!(api.json()["paused"], true, "{}", api.body);
    let metrics = send(&router, get("/metrics")).await;
    assert!(
        metrics
            .body
            .contains(&format!("palermo_queue_paused{{queue=\"{queue}\"}} 1")),
        "{}",
        metrics.body
    );

    let resumed = send(
        &router,
        post_json(
            &format!("/api/queues/{queue}/resume"),
            serde_json::json!({}),
        ),
    )
    .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert_eq!(resumed.json()["paused"], false);
    assert!(!side.paused().await, "the marker is gone");
    let audit = store.control_actions(&queue).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["resume", "pause"], "newest first");

    let unknown = unique("none");
    let missing = send(
        &router,
        post_json(
            &format!("/api/queues/{unknown}/pause"),
            serde_json::json!({}),
        ),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    let failed = send(
        &router,
        post_json("/api/queues/palermo.failed/pause", serde_json::json!({})),
    )
    .await;
    assert_eq!(failed.status, StatusCode::BAD_REQUEST, "{}", failed.body);

    side.clean_up().await;
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn quiet_and_stop_a_worker_and_refuse_unknown_ids() {
    let (store, db) = store("sqlite").await;
    let side = Side::new("web-quiet").await;
    heartbeat(&store, &side.queue).await;
    let id = store.workers().await.expect("workers")[0].id.clone();
    let router = palermo_web::router(config_of(&store, side.deployment.clone()));

    let page = send(&router, get("/workers")).await;
    assert!(page.body.contains("quiet-button") && page.body.contains("stop-button"));
    let ask = send(&router, post_form(&format!("/workers/{id}/quiet"), "")).await;
    assert!(ask.body.contains("confirm-page-yes"), "{}", ask.body);
    assert!(store.control_actions(&id).await.expect("audit").is_empty());
    let done = send(
        &router,
        post_form(&format!("/workers/{id}/quiet"), "confirmed=1"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let stop = send(
        &router,
        post_json(&format!("/api/workers/{id}/stop"), serde_json::json!({})),
    )
    .await;
    assert_eq!(stop.status, StatusCode::OK, "{}", stop.body);
    assert_eq!(stop.json()["workers"][0], id.as_str());
    let audit = store.control_actions(&id).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["stop", "quiet"]);

    let unknown = send(
        &router,
        post_json("/api/workers/nobody/quiet", serde_json::json!({})),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    assert!(
        unknown.body.contains(&id),
        "lists the alive workers: {}",
        unknown.body
    );

    side.clean_up().await;
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn control_actions_need_login_same_origin_and_a_writable_dashboard() {
    let (store, db) = store("sqlite").await;
    let side = Side::new("web-guard").await;
    let job = uuid::Uuid::new_v4().to_string();
    heartbeat_running(&store, &side.queue, &job).await;
    let id = store.workers().await.expect("workers")[0].id.clone();
    let queue = side.queue.clone();
    let paths = [
        format!("/queues/{queue}/pause"),
        format!("/queues/{queue}/resume"),
        format!("/workers/{id}/quiet"),
        format!("/workers/{id}/stop"),
        format!("/api/queues/{queue}/pause"),
        format!("/api/workers/{id}/stop"),
        format!("/jobs/{job}/cancel"),
        format!("/api/jobs/{job}/cancel"),
    ];
    let deployment = side.deployment.clone();

    let credentials: palermo_web::Credentials = "ada:pw".parse().expect("credentials");
    let login = palermo_web::router(config_of(&store, deployment.clone()).auth(Some(credentials)));
    let read_only = palermo_web::router(config_of(&store, deployment.clone()).read_only(true));
    let open = palermo_web::router(config_of(&store, deployment));
    for path in &paths {
        let answer = send(&login, post_form(path, "confirmed=1")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        let answer = send(&read_only, post_form(path, "confirmed=1")).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        let cross = Request::post(path.as_str())
            .header(header::HOST, "dash.test")
            .header("sec-fetch-site", "cross-site")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("confirmed=1"))
            .expect("request");
        let answer = send(&open, cross).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        let answer = send(&open, get(path)).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
    assert!(!side.paused().await, "nothing was paused");
    assert!(store.control_actions(&id).await.expect("audit").is_empty());
    assert!(store.control_actions(&job).await.expect("audit").is_empty());
    for page in [
        format!("/queues/{queue}"),
        "/queues".into(),
        "/workers".into(),
    ] {
        let answer = send(&read_only, get(&page)).await;
        for button in [
            "pause-button",
            "quiet-button",
            "stop-button",
            "cancel-button",
        ] {
            assert!(
                !answer.body.contains(button),
                "{page}: {button} in read-only mode"
            );
        }
    }

    side.clean_up().await;
    store.close().await;
    db.remove().await;
}

/// The job ids on the test's cancellations stream, read from its first entry.
async fn cancelled_on_the_stream(side: &Side) -> Vec<uuid::Uuid> {
    use futures_lite::StreamExt;
    let channel = side.connection.create_channel().await.expect("channel");
    channel
        .basic_qos(100, lapin::options::BasicQosOptions::default())
        .await
        .expect("qos");
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-stream-offset".into(),
        lapin::types::AMQPValue::LongString("first".into()),
    );
    let stream = control::cancellations::stream_name(&side.deployment);
    let mut consumer = channel
        .basic_consume(
            stream.as_str().into(),
            "probe".into(),
            lapin::options::BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .expect("consume the stream");
    let mut ids = Vec::new();
    let wait = std::time::Duration::from_millis(500);
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout(wait, consumer.next()).await {
        if let Ok(c) =
            serde_json::from_slice::<control::cancellations::Cancellation>(&delivery.data)
        {
            ids.push(c.id);
        }
        let _ = delivery
            .ack(lapin::options::BasicAckOptions::default())
            .await;
    }
    let _ = channel.close(200, "read".into()).await;
    ids
}

#[tokio::test]
async fn cancel_a_running_job_behind_a_confirmation_and_refuse_unknown_and_repeated_ids() {
    let (store, db) = store("sqlite").await;
    let side = Side::new("web-cancel").await;
    let job = uuid::Uuid::new_v4();
    heartbeat_running(&store, &side.queue, &job.to_string()).await;
    let router = palermo_web::router(config_of(&store, side.deployment.clone()));

    let page = send(&router, get("/workers")).await;
    assert!(
        page.body.contains(&format!("jobs/{job}/cancel")) && page.body.contains("cancel-button"),
        "{}",
        page.body
    );
    let ask = send(&router, post_form(&format!("/jobs/{job}/cancel"), "")).await;
    assert!(ask.body.contains("confirm-page-yes"), "{}", ask.body);
    let target = job.to_string();
    assert!(store
        .control_actions(&target)
        .await
        .expect("audit")
        .is_empty());
    let done = send(
        &router,
        post_form(&format!("/jobs/{job}/cancel"), "confirmed=1"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(done.header("location").contains("done=cancelled"));
    let audit = store.control_actions(&target).await.expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].action.as_str(), audit[0].actor.as_str()),
        ("cancel", "web")
    );
    assert_eq!(cancelled_on_the_stream(&side).await, [job], "on the broker");

    let again = send(
        &router,
        post_json(&format!("/api/jobs/{job}/cancel"), serde_json::json!({})),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(
        again.body.contains("already cancelled by web"),
        "{}",
        again.body
    );

    let nobody = uuid::Uuid::new_v4();
    let unknown = send(
        &router,
        post_json(&format!("/api/jobs/{nobody}/cancel"), serde_json::json!({})),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    assert!(unknown.body.contains("nobody knows"), "{}", unknown.body);
    let garbage = send(
        &router,
        post_json("/api/jobs/not-a-job/cancel", serde_json::json!({})),
    )
    .await;
    assert_eq!(garbage.status, StatusCode::NOT_FOUND, "{}", garbage.body);
    assert_eq!(
        cancelled_on_the_stream(&side).await,
        [job],
        "nothing more published"
    );

    let anyway = send(
        &router,
        post_json(
            &format!("/api/jobs/{nobody}/cancel?even_unknown=true"),
            serde_json::json!({}),
        ),
    )
    .await;
    assert_eq!(anyway.status, StatusCode::OK, "{}", anyway.body);
    assert_eq!(anyway.json()["status"], "unknown", "{}", anyway.body);
    assert_eq!(anyway.json()["cancelled"], true);
    assert_eq!(cancelled_on_the_stream(&side).await, [job, nobody]);

    side.clean_up().await;
    store.close().await;
    db.remove().await;
}
