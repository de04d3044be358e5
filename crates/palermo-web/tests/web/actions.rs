//! Retry, remove and purge through the pages' forms and the API, against the real broker
//! (queues with unique names, deleted at the end) and a real SQLite store: the job is back
//! in its queue, the audit names who did it, a stale id changes nothing and says why.

use crate::support;

use axum::http::StatusCode;
use lapin::{
    options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
    BasicProperties, Connection, ConnectionProperties,
};
use support::*;

/// The broker side of a test: a connection and the queues to delete at the end.
struct Broker {
    connection: Connection,
    queues: Vec<String>,
}

impl Broker {
    async fn connect() -> Broker {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ must run for these tests");
        Broker {
            connection,
            queues: Vec::new(),
        }
    }

    fn queue(&mut self, prefix: &str) -> String {
        let name = unique(prefix);
        self.queues.push(name.clone());
        name
    }

    /// Ready messages in `queue`, `None` if it does not exist.
    async fn ready(&self, queue: &str) -> Option<u32> {
        let channel = self.connection.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let found = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .ok();
        found.map(|q| q.message_count())
    }

    async fn fill(&self, queue: &str, messages: usize) {
        let channel = self.connection.create_channel().await.expect("channel");
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare");
        for _ in 0..messages {
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    b"{}",
                    BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("published");
        }
    }

    async fn clean_up(self) {
        let channel = self.connection.create_channel().await.expect("channel");
        for queue in &self.queues {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self.connection.close(200, "done".into()).await;
    }
}

async fn status(store: &palermo_store::Store, id: &str) -> String {
    store
        .failure(id)
        .await
        .expect("read")
        .expect("exists")
        .failure
        .status
}

#[tokio::test]
async fn retry_from_the_failed_page_then_a_stale_retry() {
    let (store, db) = store("sqlite").await;
    let mut broker = Broker::connect().await;
    let queue = broker.queue("web-retry");
    store
        .insert_failures(&[failure(
            "r-1",
            &queue,
            "send_email",
            "boom",
            r#"{"n":1}"#,
            now_ms(),
        )])
        .await
        .expect("insert");
    let router = palermo_web::router(config(&store));

    // Unconfirmed: a confirmation page, nothing done.
    let ask = send(
        &router,
        post_form("/failed/retry", "id=r-1&return_to=failed"),
    )
    .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(
        ask.body.contains("Retry 1 failure?") && ask.body.contains(r#"name="confirmed" value="1""#),
        "{}",
        ask.body
    );
    assert_eq!(status(&store, "r-1").await, "failed");

    let done = send(
        &router,
        post_form(
            "/failed/retry",
            "id=r-1&return_to=failed%3Fqueue%3Dx&confirmed=1",
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.header("location"),
        "../failed?queue=x&done=retried&n=1"
    );
    assert_eq!(status(&store, "r-1").await, "retried");
    assert_eq!(
        broker.ready(&queue).await,
        Some(1),
        "the job is back in its queue"
    );
    let detail = store.failure("r-1").await.expect("read").expect("exists");
    assert_eq!(
        detail.actions.last().map(|a| a.actor.as_str()),
        Some("web"),
        "no login, no peer: 'web'"
    );
    let page = send(&router, get("/failed?done=retried&n=1")).await.body;
    assert!(page.contains("Retried 1 failure"), "the notice");
    assert!(
        !page.contains(r#"data-failure-id="r-1""#),
        "a retried failure leaves the list"
    );

    // Someone else retried it already: 409, nothing published, the reason names who.
    let stale = send(&router, post_form("/failed/retry", "id=r-1&confirmed=1")).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(
        stale.body.contains("already retried") && stale.body.contains("by web"),
        "{}",
        stale.body
    );
    assert!(stale
        .body
        .contains(r#"class="rejection" data-failure-id="r-1""#));
    assert_eq!(
        broker.ready(&queue).await,
        Some(1),
        "nothing published twice"
    );

    // All or nothing: a stale id next to an open one changes neither.
    store
        .insert_failures(&[failure("r-2", &queue, "send_email", "boom", "{}", now_ms())])
        .await
        .expect("insert");
    let api = send(
        &router,
        post_json(
            "/api/failed/retry",
            serde_json::json!({"ids": ["r-2", "r-1", "nope"]}),
        ),
    )
    .await;
    assert_eq!(api.status, StatusCode::CONFLICT);
    let rejected = api.json()["rejected"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rejected.len(), 2, "{}", api.body);
    assert_eq!(status(&store, "r-2").await, "failed");
    let ok = send(
        &router,
        post_json("/api/failed/retry", serde_json::json!({"ids": ["r-2"]})),
    )
    .await;
    assert_eq!(ok.json()["retried"], serde_json::json!(["r-2"]));
    assert_eq!(broker.ready(&queue).await, Some(2));
    let empty = send(&router, post_form("/failed/retry", "confirmed=1")).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);

    broker.clean_up().await;
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn retry_all_and_remove_all_act_on_the_filter_only() {
    let (store, db) = store("sqlite").await;
    let mut broker = Broker::connect().await;
    let (mail, video) = (broker.queue("web-all-mail"), broker.queue("web-all-video"));
    let now = now_ms();
    let mut rows = Vec::new();
    for i in 0..3 {
        rows.push(failure(
            &format!("m-{i}"),
            &mail,
            "send_email",
            "smtp",
            "{}",
            now - i,
        ));
        rows.push(failure(
            &format!("v-{i}"),
            &video,
            "encode",
            "ffmpeg",
            "{}",
            now - i,
        ));
    }
    store.insert_failures(&rows).await.expect("insert");
    let router = palermo_web::router(config(&store));

    let page = send(&router, get(&format!("/failed?queue={mail}")))
        .await
        .body;
    assert!(
        page.contains("Retry all 3 failures matching this filter?"),
        "the confirmation says how many"
    );
    let ask = send(
        &router,
        post_form("/failed/retry-all", &format!("queue={mail}")),
    )
    .await;
    assert!(
        ask.body
            .contains("Retry all 3 failures matching this filter?"),
        "{}",
        ask.body
    );

    let done = send(
        &router,
        post_form("/failed/retry-all", &format!("queue={mail}&confirmed=1")),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        done.header("location"),
        format!("../failed?queue={mail}&done=retried&n=3")
    );
    assert_eq!(broker.ready(&mail).await, Some(3));
    assert_eq!(
        status(&store, "v-0").await,
        "failed",
        "the other queue is untouched"
    );

    let one = send(
        &router,
        post_json("/api/failed/remove", serde_json::json!({"ids": ["v-0"]})),
    )
    .await;
    assert_eq!(one.json()["removed"], 1, "{}", one.body);
    let again = send(
        &router,
        post_json("/api/failed/remove", serde_json::json!({"ids": ["v-0"]})),
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "removing twice is refused"
    );
    let none = send(
        &router,
        post_json(
            "/api/failed/retry-all",
            serde_json::json!({"queue": video, "job": "no-such-job"}),
        ),
    )
    .await;
    assert_eq!(none.json()["retried"], 0, "{}", none.body);
    let removed = send(
        &router,
        post_json(
            "/api/failed/remove-all",
            serde_json::json!({"queue": video, "q": "ffmpeg"}),
        ),
    )
    .await;
    assert_eq!(removed.json()["removed"], 2, "{}", removed.body);
    assert_eq!(status(&store, "v-2").await, "removed");
    let remove_stale = send(&router, post_form("/failed/remove", "id=v-1&confirmed=1")).await;
    assert_eq!(remove_stale.status, StatusCode::CONFLICT);
    assert!(
        remove_stale.body.contains("already removed"),
        "{}",
        remove_stale.body
    );

    broker.clean_up().await;
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn purge_a_queue_behind_a_confirmation() {
    let (store, db) = store("sqlite").await;
    let mut broker = Broker::connect().await;
    let queue = broker.queue("web-purge");
    broker.fill(&queue, 4).await;
    let router = palermo_web::router(config(&store));

    let page = send(&router, get(&format!("/queues/{queue}"))).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("delete its 4 ready message(s)?")
            && page.body.contains(r#"id="purge-button""#)
    );
    let ask = send(&router, post_form(&format!("/queues/{queue}/purge"), "")).await;
    assert!(ask.body.contains("confirm-page-yes"));
    assert_eq!(
        broker.ready(&queue).await,
        Some(4),
        "nothing purged unconfirmed"
    );
    let done = send(
        &router,
        post_form(&format!("/queues/{queue}/purge"), "confirmed=1"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(broker.ready(&queue).await, Some(0));

    broker.fill(&queue, 2).await;
    let api = send(
        &router,
        post_json(&format!("/api/queues/{queue}/purge"), serde_json::json!({})),
    )
    .await;
    assert_eq!(api.json()["purged"], 2, "{}", api.body);
    let failed_queue = send(
        &router,
        post_json("/api/queues/palermo.failed/purge", serde_json::json!({})),
    )
    .await;
    assert_eq!(
        failed_queue.status,
        StatusCode::CONFLICT,
        "the failed queue is never purged"
    );
    let missing = send(
        &router,
        post_json(
            &format!("/api/queues/{}/purge", unique("none")),
            serde_json::json!({}),
        ),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    broker.clean_up().await;
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn retry_into_a_priority_queue_declares_it_as_the_workers_do() {
    let (store, db) = store("sqlite").await;
    let mut broker = Broker::connect().await;
    let queue = broker.queue("web-priority");
    // The workers declared it as a priority queue (max 10).
    let channel = broker.connection.create_channel().await.expect("channel");
    palermo::admin::topology::declare_job_queue(
        &channel,
        &queue,
        palermo::QueueType::Classic,
        Some(10),
    )
    .await
    .expect("declare the priority queue");
    store
        .insert_failures(&[failure("p-1", &queue, "report", "boom", "{}", now_ms())])
        .await
        .expect("insert");

    // Without the setting the retry's declare is refused by the broker: nothing changes.
    let plain = palermo_web::router(config(&store));
    let refused = send(&plain, post_form("/failed/retry", "id=p-1&confirmed=1")).await;
    assert!(
        !refused.status.is_success() && refused.status != StatusCode::SEE_OTHER,
        "{}",
        refused.body
    );
    assert_eq!(status(&store, "p-1").await, "failed");

    let deployment = palermo::Deployment {
        priorities: palermo::Priorities::default().with(queue.clone(), 10),
        ..palermo::Deployment::new(amqp_url())
    };
    let router = palermo_web::router(config_of(&store, deployment));
    let done = send(&router, post_form("/failed/retry", "id=p-1&confirmed=1")).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(status(&store, "p-1").await, "retried");
    assert_eq!(broker.ready(&queue).await, Some(1), "back in its queue");

    broker.clean_up().await;
    store.close().await;
    db.remove().await;
}
