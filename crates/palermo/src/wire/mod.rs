//! Wire format v1: what a job message looks like on RabbitMQ (docs/wire-format.md is the
//! reference for other languages; this module is the implementation).
//!
//! The body is the serialized arguments. Everything else travels in AMQP properties and
//! `x-palermo-*` headers, so any admin tool can list, show and requeue a job without linking
//! its code. Parsing is strict about meaning and lenient about AMQP integer widths, because
//! other clients (pika, amqplib) pick their own.

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::{
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties,
};
use uuid::Uuid;

use crate::serializer::Format;

pub mod batch;
pub mod chain;
pub mod event;
pub mod failure;
mod fit;
pub mod history;
pub mod republish;

mod values;

pub use fit::{encoded_len, fit_headers, HEADERS_BUDGET};
pub(crate) use values::{find, int_value, str_ref, str_value};
pub use values::{get_int, get_str, headers, put_int, put_str, Malformed};

/// The wire version this library writes and reads.
pub const VERSION: i64 = 1;
/// The `app_id` property of messages Palermo publishes.
pub const APP_ID: &str = "palermo";
/// How long the arguments preview may be, in characters.
pub const PREVIEW_MAX_CHARS: usize = 120;
/// Longest error text kept in a failure header, in bytes.
pub const ERROR_MAX_BYTES: usize = 8 * 1024;
/// Longest backtrace kept in a failure header, in bytes.
pub const BACKTRACE_MAX_BYTES: usize = 16 * 1024;

/// Header names.
pub mod header {
    /// The wire version, [`super::VERSION`].
    pub const VERSION: &str = "x-palermo-version";
    /// The job's wire name.
    pub const JOB: &str = "x-palermo-job";
    /// The serializer of the body: `json` or `msgpack`.
    pub const SERIALIZER: &str = "x-palermo-serializer";
    /// A short rendering of the arguments, at most [`super::PREVIEW_MAX_CHARS`] characters.
    pub const PREVIEW: &str = "x-palermo-args-preview";
    /// The queue the job belongs to (where a retry from the failed queue goes).
    pub const QUEUE: &str = "x-palermo-queue";
    /// The attempt this message runs, 1 for the first.
    pub const ATTEMPT: &str = "x-palermo-attempt";
    /// Runs before the failed queue, when the enqueuer or the worker set it.
    pub const MAX_ATTEMPTS: &str = "x-palermo-max-attempts";
    /// When the job was first enqueued, ms since the epoch.
    pub const ENQUEUED_AT: &str = "x-palermo-enqueued-at";
    /// On the failed queue: the failure record's id, stable across redeliveries.
    pub const FAILURE_ID: &str = "x-palermo-failure-id";
    /// The last error, at most [`super::ERROR_MAX_BYTES`].
    pub const ERROR: &str = "x-palermo-error";
    /// What went wrong, in a word: `error`, `panic`, `timeout`, `malformed`...
    pub const ERROR_KIND: &str = "x-palermo-error-kind";
    /// On the failed queue: a backtrace, where there is one.
    pub const BACKTRACE: &str = "x-palermo-backtrace";
    /// When the last attempt failed, ms since the epoch.
    pub const FAILED_AT: &str = "x-palermo-failed-at";
    /// When the first attempt failed, ms since the epoch.
    pub const FIRST_FAILED_AT: &str = "x-palermo-first-failed-at";
    /// The identity of the worker that ran the last attempt.
    pub const WORKER: &str = "x-palermo-worker";
    /// On the failed queue: the queue the job was consumed from.
    pub const SOURCE_QUEUE: &str = "x-palermo-source-queue";
    /// Times the message came back without a run finishing (classic queues; see
    /// `worker::poison`).
    pub const REDELIVERIES: &str = "x-palermo-redeliveries";
    /// Times the admin side retried the job from the failed queue.
    pub const REQUEUES: &str = "x-palermo-requeues";
    /// Header values cut to fit a frame (see [`super::fit_headers`]), comma-separated.
    pub const HEADERS_CUT: &str = "x-palermo-headers-cut";
    // Retry and scheduling headers (docs/retries.md).
    /// Every failed attempt so far, as a JSON array (see [`super::HISTORY_MAX_ENTRIES`]).
    pub const ERROR_HISTORY: &str = "x-palermo-error-history";
    /// When a delayed job (retry, snooze or scheduled) is due, ms since the epoch.
    pub const NEXT_RUN_AT: &str = "x-palermo-next-run-at";
    /// When `Options::delay` / `Options::at` asked the job to run, ms since the epoch.
    pub const SCHEDULED_FOR: &str = "x-palermo-scheduled-for";
    /// How many times the job snoozed (snoozes use no attempt).
    pub const SNOOZES: &str = "x-palermo-snoozes";
    /// On a job waiting in the delay queues because its limit was reached: the limit's name
    /// (docs/limits.md). Not a failure; the attempt number is unchanged.
    pub const WAITING_FOR: &str = "x-palermo-waiting-for";
    /// On the failed queue: why no retry follows (`attempts_exhausted`, `fail_now`,
    /// `not_retryable`).
    pub const GAVE_UP: &str = "x-palermo-gave-up";
    /// On a step of a chain: the chain and its steps still to run, as JSON (see
    /// [`super::chain`]).
    pub const CHAIN: &str = super::chain::HEADER;
}

/// Most entries kept in the error history header: the first failure and the latest ones.
pub const HISTORY_MAX_ENTRIES: usize = 20;
/// Longest error text kept in one error history entry, in bytes (the last error is also in
/// `x-palermo-error`, up to [`ERROR_MAX_BYTES`]).
pub const HISTORY_ERROR_MAX_BYTES: usize = 512;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Shortens `text` to at most [`PREVIEW_MAX_CHARS`] characters, ending in `…` when cut.
pub fn preview(text: &str) -> String {
    truncate_chars(text, PREVIEW_MAX_CHARS)
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if text[cut..].chars().nth(1).is_some() => format!("{}…", &text[..cut]),
        _ => text.to_string(),
    }
}

/// Shortens `text` to at most `max` bytes on a character boundary.
pub fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// The metadata of one job message.
#[derive(Clone, Debug, PartialEq)]
pub struct JobMeta {
    /// The job id, also the AMQP `message_id`.
    pub id: Uuid,
    /// The job's wire name, also the AMQP `type`.
    pub name: String,
    /// The queue the job belongs to.
    pub queue: String,
    /// The serializer of the body.
    pub format: Format,
    /// A short rendering of the arguments.
    pub preview: String,
    /// 1 for the first run.
    pub attempt: u32,
    /// Set when the enqueuer knew it; otherwise the worker's default applies.
    pub max_attempts: Option<u32>,
    /// When it was first enqueued, ms since the epoch.
    pub enqueued_at_ms: i64,
    /// The AMQP `priority` property; it orders jobs only on a queue declared with
    /// `x-max-priority` (docs/unique-and-priority.md).
    pub priority: Option<u8>,
}

impl JobMeta {
    /// The AMQP properties of a message carrying this job.
    pub fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(header::VERSION.into(), AMQPValue::LongLongInt(VERSION));
        put_str(&mut headers, header::JOB, &self.name);
        put_str(&mut headers, header::SERIALIZER, self.format.name());
        put_str(&mut headers, header::PREVIEW, &self.preview);
        put_str(&mut headers, header::QUEUE, &self.queue);
        put_int(&mut headers, header::ATTEMPT, self.attempt.into());
        if let Some(max) = self.max_attempts {
            put_int(&mut headers, header::MAX_ATTEMPTS, max.into());
        }
        put_int(&mut headers, header::ENQUEUED_AT, self.enqueued_at_ms);
        let properties = match self.priority {
            Some(priority) => BasicProperties::default().with_priority(priority),
            None => BasicProperties::default(),
        };
        properties
            .with_message_id(self.id.to_string().into())
            .with_type(short(&self.name))
            .with_timestamp((self.enqueued_at_ms / 1000).max(0) as u64)
            .with_content_type(self.format.content_type().into())
            .with_delivery_mode(2)
            .with_app_id(APP_ID.into())
            .with_headers(headers)
    }

    /// Reads the metadata of a received message; the error names what is wrong.
    pub fn parse(props: &BasicProperties) -> Result<Self, Malformed> {
        // One walk over the headers rather than a lookup per field: a worker parses every
        // delivery.
        let [version, job, serializer, queue, attempt, max_attempts, preview, enqueued_at] =
            find(headers(props), PARSED);
        let version =
            int_value(header::VERSION, version)?.ok_or_else(|| missing(header::VERSION))?;
        if version != VERSION {
            return Err(Malformed(format!(
                "unsupported wire version {version} in header {} (this worker reads version {VERSION})",
                header::VERSION
            )));
        }
        let id = props
            .message_id()
            .as_ref()
            .ok_or("the message_id property (the job id) is missing")?;
        let id = Uuid::parse_str(id.as_str())
            .map_err(|_| format!("the message_id property {:?} is not a UUID", id.as_str()))?;
        let name = str_value(header::JOB, job)?.ok_or_else(|| missing(header::JOB))?;
        if name.is_empty() {
            return Err(Malformed(format!("header {} is empty", header::JOB)));
        }
        let format_name = str_value(header::SERIALIZER, serializer)?
            .ok_or_else(|| missing(header::SERIALIZER))?;
        let format = Format::from_name(format_name).ok_or_else(|| {
            format!(
                "unknown serializer {format_name:?} in header {} (known: json, msgpack)",
                header::SERIALIZER
            )
        })?;
        let queue = str_value(header::QUEUE, queue)?.ok_or_else(|| missing(header::QUEUE))?;
        let attempt = positive(header::ATTEMPT, attempt)?.unwrap_or(1);
        let max_attempts = positive(header::MAX_ATTEMPTS, max_attempts)?;
        Ok(Self {
            id,
            name: name.to_string(),
            queue: queue.to_string(),
            format,
            preview: str_value(header::PREVIEW, preview)?
                .unwrap_or_default()
                .to_string(),
            attempt,
            max_attempts,
            enqueued_at_ms: int_value(header::ENQUEUED_AT, enqueued_at)?.unwrap_or(0),
            priority: *props.priority(),
        })
    }
}

/// The headers [`JobMeta::parse`] reads, in the order it destructures them.
const PARSED: [&str; 8] = [
    header::VERSION,
    header::JOB,
    header::SERIALIZER,
    header::QUEUE,
    header::ATTEMPT,
    header::MAX_ATTEMPTS,
    header::PREVIEW,
    header::ENQUEUED_AT,
];

fn missing(name: &str) -> Malformed {
    Malformed(format!("header {name} is missing"))
}

fn positive(name: &str, value: Option<&AMQPValue>) -> Result<Option<u32>, Malformed> {
    match int_value(name, value)? {
        None => Ok(None),
        Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(Malformed(format!(
            "header {name} is {n}; it must be a whole number from 1"
        ))),
    }
}

fn short(text: &str) -> ShortString {
    ShortString::try_new(truncate_bytes(text, 255)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> JobMeta {
        JobMeta {
            id: Uuid::new_v4(),
            name: "send_email".into(),
            queue: "mail".into(),
            format: Format::Json,
            preview: "{}".into(),
            attempt: 1,
            max_attempts: Some(3),
            enqueued_at_ms: 1_700_000_000_000,
            priority: Some(4),
        }
    }

    #[test]
    fn properties_round_trip() {
        let meta = meta();
        let props = meta.properties();
        assert_eq!(JobMeta::parse(&props).expect("parse"), meta);
        assert_eq!(props.delivery_mode(), &Some(2));
        assert_eq!(
            props.kind().as_ref().map(|k| k.as_str()),
            Some("send_email")
        );
    }

    #[test]
    fn parse_names_the_problem() {
        let mut props = meta().properties();
        let mut headers = props.headers().clone().unwrap_or_default();
        headers.insert(header::ATTEMPT.into(), AMQPValue::LongString("two".into()));
        props = props.with_headers(headers.clone());
        let err = JobMeta::parse(&props).expect_err("bad attempt type").0;
        assert!(
            err.contains("x-palermo-attempt") && err.contains("integer"),
            "{err}"
        );

        headers.insert(header::ATTEMPT.into(), AMQPValue::LongInt(-1));
        let err = JobMeta::parse(&props.clone().with_headers(headers.clone()))
            .expect_err("negative")
            .0;
        assert!(err.contains("-1"), "{err}");

        headers.insert(header::VERSION.into(), AMQPValue::LongInt(2));
        let err = JobMeta::parse(&props.with_headers(headers))
            .expect_err("future version")
            .0;
        assert!(err.contains("version 2"), "{err}");

        let err = JobMeta::parse(&BasicProperties::default())
            .expect_err("nothing")
            .0;
        assert!(err.contains(header::VERSION), "{err}");
    }

    #[test]
    fn preview_is_capped_at_120_chars() {
        assert_eq!(preview("short"), "short");
        let long = "é".repeat(300);
        let p = preview(&long);
        assert_eq!(p.chars().count(), PREVIEW_MAX_CHARS);
        assert!(p.ends_with('…'));
        assert_eq!(preview(&"x".repeat(120)), "x".repeat(120));
        assert_eq!(truncate_bytes("héllo", 2), "h");
    }
}
