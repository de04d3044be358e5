//! Text from messages reaches the operator's terminal escaped: a job name or error carrying
//! terminal escape sequences is shown as `\u{1b}...`, never interpreted, and the table's
//! columns stay aligned.

use lapin::{options::BasicPublishOptions, types::FieldTable, BasicProperties};
use palermo::admin::{
    topology,
    wire::{self, failure::FailureRecord, header},
};

use crate::{
    admin_support::{stderr, stdout, Admin},
    support::Broker,
};

/// Terminal escapes: red text, clear screen, set the window title, ring the bell.
const EVIL_NAME: &str = "evil\u{1b}[31mRED\u{1b}[2J";
const EVIL_ERROR: &str = "boom\u{1b}]0;pwned\u{7}\u{9b}6n\nsecond line";

/// Publishes a failure as a worker would, with hostile text in its name and error.
async fn publish_hostile_failure(broker: &Broker, admin: &Admin) {
    topology::declare_queue(&broker.channel, &admin.failed, crate::support::queue_type())
        .await
        .expect("declare the failed queue");
    let mut headers = FieldTable::default();
    wire::put_str(&mut headers, header::JOB, EVIL_NAME);
    wire::put_str(&mut headers, header::QUEUE, "mail\ttab");
    wire::put_str(&mut headers, header::SERIALIZER, "json");
    wire::put_int(&mut headers, header::ATTEMPT, 1);
    FailureRecord {
        kind: "error".into(),
        error: EVIL_ERROR.into(),
        failed_at: wire::now_ms(),
        first_failed_at: wire::now_ms(),
        worker: "host:1:mail".into(),
        failure_id: Some(uuid::Uuid::new_v4().to_string()),
        gave_up: Some("attempts_exhausted".into()),
        backtrace: Some("   0: \u{1b}[1mframe\u{1b}[0m".into()),
        source_queue: Some("mail".into()),
    }
    .write(&mut headers);
    let properties = BasicProperties::default()
        .with_message_id(uuid::Uuid::new_v4().to_string().into())
        .with_delivery_mode(2)
        .with_headers(headers);
    broker
        .channel
        .basic_publish(
            "".into(),
            admin.failed.as_str().into(),
            BasicPublishOptions::default(),
            br#"{"to":"\u001b[31m"}"#,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
}

fn assert_inert(text: &str) {
    for c in ['\u{1b}', '\u{7}', '\u{9b}', '\t'] {
        assert!(!text.contains(c), "{c:?} reached the terminal: {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_from_messages_are_escaped_in_failed_list_and_show() {
    let admin = Admin::new("sqlite", "escaping").await;
    publish_hostile_failure(&admin.rig, &admin).await;

    let out = admin.palermo(&["failed", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&out);
    assert_inert(&list);
    assert!(list.contains(r"evil\u{1b}[31mRED\u{1b}[2J"), "{list}");
    assert!(list.contains(r"mail\ttab"), "{list}");
    let lines: Vec<&str> = list.lines().collect();
    let column = |line: &str, text: &str| line.find(text).map(|byte| line[..byte].chars().count());
    assert_eq!(
        column(lines[0], "ATTEMPT"),
        column(lines[1], "  1  ").map(|c| c + 2),
        "the ATTEMPT column is aligned:\n{list}"
    );
    assert_eq!(
        column(lines[0], "ERROR"),
        column(lines[1], "error: boom"),
        "the ERROR column is aligned:\n{list}"
    );

    let id = admin.json(&["failed", "list"])["failures"][0]["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let out = admin.palermo(&["failed", "show", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let show = stdout(&out);
    assert_inert(&show);
    assert!(show.contains(r"evil\u{1b}[31mRED\u{1b}[2J"), "{show}");
    assert!(show.contains(r"boom\u{1b}]0;pwned\u{7}\u{9b}6n"), "{show}");
    assert!(
        show.contains("  second line"),
        "errors keep their lines: {show}"
    );
    assert!(show.contains(r"\u{1b}[1mframe"), "{show}");
}
