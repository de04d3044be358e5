//! The Schedules page and its actions (Run now, Pause, Resume), through the forms and the
//! API, against the real broker and a SQLite store. The active scheduler's table is put in
//! the test's own status queue as a scheduler publishes it; Run now enqueues on the test's
//! own job queue, where the run is counted. Behind a confirmation, audited with the actor,
//! unknown names a 404 with the known ones, and refused without a login, from another site
//! or in read-only mode.

use crate::support;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use lapin::{
    options::{
        BasicPublishOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Connection, ConnectionProperties,
};
use palermo::{
    admin::schedules::{status_queue, ScheduleRow, Status},
    control,
};
use support::*;

/// The broker side: a scheduler table naming one schedule, the queue it enqueues on.
struct Side {
    connection: Connection,
    deployment: palermo::Deployment,
    schedule: String,
    jobs: String,
}

impl Side {
    async fn new() -> Side {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ must run for these tests");
        let deployment = palermo::Deployment {
            control_exchange: unique("control"),
            scheduler_queue: unique("scheduler"),
            ..palermo::Deployment::new(amqp_url())
        };
        let side = Side {
            connection,
            deployment,
            schedule: unique("nightly"),
            jobs: unique("schedule-jobs"),
        };
        side.publish_status().await;
        side
    }

    /// What a scheduler publishes after a checkpoint.
    async fn publish_status(&self) {
        let status = Status {
            leader: "host-a:42:default".into(),
            written_at: now_ms(),
            schedules: vec![ScheduleRow {
                name: self.schedule.clone(),
                spec: "0 0 3 * * *".into(),
                job: "nightly_report".into(),
                queue: self.jobs.clone(),
                last_run: Some(now_ms() - 3_600_000),
                next_run: Some(now_ms() + 3_600_000),
                format: Some("json".into()),
                args: Some(r#"{"day":"<b>today</b>"}"#.into()),
                priority: None,
                unique_ms: None,
                max_attempts: Some(3),
            }],
        };
        let channel = self.connection.create_channel().await.expect("channel");
        let queue = status_queue(&self.deployment.scheduler_queue);
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
        channel
            .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
            .await
            .expect("declare the status queue");
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(&status).expect("json"),
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    async fn paused(&self) -> bool {
        let names = [self.schedule.clone()];
        !control::paused_schedules(&self.connection, &self.deployment, &names)
            .await
            .expect("look for the marker")
            .is_empty()
    }

    /// Ready jobs in the schedule's queue (0 when Run now never declared it).
    async fn runs(&self) -> u32 {
        let channel = self.connection.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(self.jobs.as_str().into(), passive, FieldTable::default())
            .await;
        declared.map_or(0, |q| q.message_count())
    }

    async fn clean_up(self) {
        let channel = self.connection.create_channel().await.expect("channel");
        for queue in [
            self.jobs.clone(),
            status_queue(&self.deployment.scheduler_queue),
        ] {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = channel
            .exchange_delete(
                control::schedule_pause_marker(&self.deployment, &self.schedule)
                    .as_str()
                    .into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

#[tokio::test]
async fn run_pause_and_resume_a_schedule_behind_a_confirmation() {
    let (store, db) = store("sqlite").await;
    let side = Side::new().await;
    let name = side.schedule.clone();
    let router = palermo_web::router(config_of(&store, side.deployment.clone()));

    let page = send(&router, get("/schedules")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&name), "{}", page.body);
    assert!(
        page.body.contains("host-a:42:default"),
        "the active scheduler"
    );
    assert!(page.body.contains("0 0 3 * * *") && page.body.contains("nightly_report"));
    assert!(
        page.body.contains("&#60;b&#62;today") && !page.body.contains("<b>today"),
        "arguments escaped: {}",
        page.body
    );
    assert!(page.body.contains("run-button") && page.body.contains("pause-button"));
    assert!(
        page.body.contains(r#"aria-current="page">Schedules"#),
        "the nav link"
    );

    // Run now: asked first, then exactly one run on the schedule's queue.
    let ask = send(&router, post_form(&format!("/schedules/{name}/run"), "")).await;
    assert!(ask.body.contains("confirm-page-yes"), "{}", ask.body);
    assert_eq!(side.runs().await, 0, "nothing run unconfirmed");
    let done = send(
        &router,
        post_form(&format!("/schedules/{name}/run"), "confirmed=1"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(side.runs().await, 1, "one run");
    let api = send(
        &router,
        post_json(&format!("/api/schedules/{name}/run"), serde_json::json!({})),
    )
    .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    assert_eq!(api.json()["enqueued"], true, "{}", api.body);
    assert_eq!(side.runs().await, 2, "one more");

    // Pause through the form, resume through the API.
    let ask = send(&router, post_form(&format!("/schedules/{name}/pause"), "")).await;
    assert!(ask.body.contains("confirm-page-yes"), "{}", ask.body);
    assert!(!side.paused().await, "nothing paused unconfirmed");
    let done = send(
        &router,
        post_form(&format!("/schedules/{name}/pause"), "confirmed=1"),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(side.paused().await, "the marker is on the broker");
    let page = send(&router, get("/schedules?done=schedule-paused&n=1")).await;
    assert!(page.body.contains("status-paused") && page.body.contains("resume-button"));
    assert!(page.body.contains("Paused: the schedule"), "the notice");
    assert!(page.body.contains("schedule-actions") && page.body.contains("<td>web</td>"));
    let listed = send(&router, get("/api/schedules")).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let row = &listed.json()["status"]["schedules"][0];
    assert_eq!(row["name"], name.as_str(), "{}", listed.body);
    assert_eq!(row["paused"], true, "{}", listed.body);
    let metrics = send(&router, get("/metrics")).await;
    assert!(
        metrics
            .body
            .contains(&format!("palermo_schedule_paused{{schedule=\"{name}\"}} 1")),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains(&format!(
        "palermo_schedule_last_run_timestamp_seconds{{schedule=\"{name}\"}}"
    )));
    let resumed = send(
        &router,
        post_json(
            &format!("/api/schedules/{name}/resume"),
            serde_json::json!({}),
        ),
    )
    .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert_eq!(resumed.json()["paused"], false);
    assert!(!side.paused().await, "the marker is gone");

    let audit = store.schedule_actions().await.expect("audit");
    let audit: Vec<&str> = audit
        .iter()
        .filter(|a| a.target == name)
        .map(|a| a.action.as_str())
        .collect();
    assert_eq!(
        audit,
        [
            "schedule-resume",
            "schedule-pause",
            "schedule-run",
            "schedule-run"
        ],
        "newest first"
    );
    assert!(
        store
            .control_actions(&name)
            .await
            .expect("queue actions")
            .is_empty(),
        "a queue of the same name shows none of them"
    );

    // Unknown names and actions.
    let unknown = unique("none");
    for verb in ["run", "pause", "resume"] {
        let missing = send(
            &router,
            post_json(
                &format!("/api/schedules/{unknown}/{verb}"),
                serde_json::json!({}),
            ),
        )
        .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
        assert!(
            missing.body.contains(&name),
            "lists the known: {}",
            missing.body
        );
        let form = send(
            &router,
            post_form(&format!("/schedules/{unknown}/{verb}"), "confirmed=1"),
        )
        .await;
        assert_eq!(form.status, StatusCode::NOT_FOUND, "{}", form.body);
    }
    let bad = send(
        &router,
        post_form(&format!("/schedules/{name}/explode"), "confirmed=1"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND, "{}", bad.body);
    assert_eq!(side.runs().await, 2, "nothing else ran");

    side.clean_up().await;
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn schedule_actions_need_login_same_origin_and_a_writable_dashboard() {
    let (store, db) = store("sqlite").await;
    let side = Side::new().await;
    let name = side.schedule.clone();
    let paths = [
        format!("/schedules/{name}/run"),
        format!("/schedules/{name}/pause"),
        format!("/schedules/{name}/resume"),
        format!("/api/schedules/{name}/run"),
        format!("/api/schedules/{name}/pause"),
        format!("/api/schedules/{name}/resume"),
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
    assert_eq!(side.runs().await, 0, "nothing ran");
    assert!(store.schedule_actions().await.expect("audit").is_empty());
    let page = send(&read_only, get("/schedules")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&name));
    for button in ["run-button", "pause-button", "resume-button"] {
        assert!(!page.body.contains(button), "{button} in read-only mode");
    }
    let api = send(&read_only, get("/api/schedules")).await;
    assert_eq!(
        api.status,
        StatusCode::OK,
        "reading stays open: {}",
        api.body
    );

    side.clean_up().await;
    store.close().await;
    db.remove().await;
}

/// Before any scheduler was active there is no table: the page says so, the API answers
/// `null`, and an action names no known schedule (404).
#[tokio::test]
async fn without_a_scheduler_the_page_says_so() {
    let (store, db) = store("sqlite").await;
    let deployment = palermo::Deployment {
        control_exchange: unique("control"),
        scheduler_queue: unique("no-scheduler"),
        ..palermo::Deployment::new(amqp_url())
    };
    let router = palermo_web::router(config_of(&store, deployment));
    let page = send(&router, get("/schedules")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"id="no-scheduler""#), "{}", page.body);
    let api = send(&router, get("/api/schedules")).await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    assert!(api.json()["status"].is_null(), "{}", api.body);
    let run = send(
        &router,
        post_json("/api/schedules/nightly/run", serde_json::json!({})),
    )
    .await;
    assert_eq!(run.status, StatusCode::NOT_FOUND, "{}", run.body);
    assert!(run.body.contains("known schedules: none"), "{}", run.body);
    store.close().await;
    db.remove().await;
}
