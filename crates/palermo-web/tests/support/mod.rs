//! What the dashboard's handler tests share: a fresh store (a SQLite file in the temp dir,
//! or a PostgreSQL database, from palermo-testdb, removed on drop), seeded failures and
//! heartbeats, the router, and requests sent with `tower::ServiceExt::oneshot`.

#![allow(dead_code)]

pub use palermo_testdb as db;

use axum::{
    body::Body,
    http::{header, HeaderMap, Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use palermo::admin::wire::event::{Counter, Heartbeat, RunningJob};
use palermo_store::{failures::NewFailure, Store};
use palermo_web::WebConfig;
use tower::ServiceExt;

pub use db::TestDb;

/// The broker the tests use (`PALERMO_AMQP_URL`, else the local default).
pub fn amqp_url() -> String {
    std::env::var("PALERMO_AMQP_URL").unwrap_or_else(|_| palermo::DEFAULT_AMQP_URL.to_string())
}

/// A fresh store of `backend` (`sqlite` or `postgres`); drop the [`TestDb`] at the end.
pub async fn store(backend: &str) -> (Store, TestDb) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.expect("open the store");
    (store, db)
}

/// A unique name (queues, ids), `test.<prefix>.<uuid>` like the other suites' names, so a
/// queue left behind by a failed test is easy to find and delete.
pub fn unique(prefix: &str) -> String {
    format!("test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// A failure of `job` from `queue`, failed at `failed_at`.
pub fn failure(
    id: &str,
    queue: &str,
    job: &str,
    error: &str,
    args: &str,
    failed_at: i64,
) -> NewFailure {
    NewFailure {
        id: id.into(),
        job_id: format!("job-{id}"),
        job_name: job.into(),
        queue: queue.into(),
        source_queue: queue.into(),
        serializer: "json".into(),
        args_preview: args.into(),
        body: args.as_bytes().to_vec(),
        properties: r#"{"message_id":null}"#.into(),
        error_kind: "error".into(),
        error: error.into(),
        backtrace: Some("   0: app::charge\n   1: palermo::worker::execute".into()),
        error_history: Some(
            r#"[{"attempt":1,"at":1000,"kind":"error","error":"first try"}]"#.into(),
        ),
        gave_up: Some("attempts_exhausted".into()),
        attempt: 2,
        max_attempts: Some(2),
        worker: "host:1:mail".into(),
        enqueued_at: Some(failed_at - 10),
        first_failed_at: failed_at - 5,
        failed_at,
    }
}

/// Records a heartbeat of a worker serving `queue`, running one job.
pub async fn heartbeat(store: &Store, queue: &str) {
    heartbeat_running(store, queue, "running-1").await
}

/// [`heartbeat`] of a worker running the job `job_id`.
pub async fn heartbeat_running(store: &Store, queue: &str, job_id: &str) {
    let now = chrono::Utc::now().timestamp_millis();
    let beat = Heartbeat {
        version: 1,
        event: "heartbeat".into(),
        id: uuid::Uuid::new_v4(),
        identity: format!("host:1:{queue}"),
        host: "host".into(),
        pid: 1,
        queues: vec![queue.into()],
        concurrency: 2,
        started_at: now - 60_000,
        sent_at: now,
        seq: 1,
        interval_ms: 5000,
        processed: 12,
        failed: 3,
        counters: vec![Counter {
            queue: queue.into(),
            job: "send_email".into(),
            processed: 12,
            failed: 3,
        }],
        blocked: None,
        state: None,
        paused: Vec::new(),
        timing_bounds_ms: Vec::new(),
        timings: Vec::new(),
        limits: Vec::new(),
        jobs: vec![RunningJob {
            id: job_id.into(),
            name: "send_email".into(),
            queue: queue.into(),
            started_at: now - 7000,
            preview: r#"{"to":"ada@example.com"}"#.into(),
        }],
    };
    store
        .record_heartbeat(&beat)
        .await
        .expect("record a heartbeat");
}

/// A dashboard over `store` with the default settings.
pub fn config(store: &Store) -> WebConfig {
    config_of(store, palermo::Deployment::new(amqp_url()))
}

/// A dashboard over `store` for `deployment`.
pub fn config_of(store: &Store, deployment: palermo::Deployment) -> WebConfig {
    WebConfig::new(store.clone(), deployment)
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request to `router`.
pub async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `GET path` from the same origin.
pub fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, "dash.test")
        .body(Body::empty())
        .expect("request")
}

/// A same-origin form POST, as a browser sends it from a dashboard page.
pub fn post_form(path: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, "dash.test")
        .header("sec-fetch-site", "same-origin")
        .header(header::ORIGIN, "http://dash.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .expect("request")
}

/// A JSON POST as a script sends it (no browser headers).
pub fn post_json(path: &str, json: serde_json::Value) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, "dash.test")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json.to_string()))
        .expect("request")
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
