//! The chain header, `x-palermo-chain`: a chain's later steps travel with the step that runs,
//! so a chain needs the broker alone (docs/workflows.md says why; docs/wire-format.md is the
//! reference for other languages).
//!
//! The value is a JSON document in a string header: the chain's id, which step this message
//! runs (from 1) of how many, and the steps still to run as raw jobs (name, queue,
//! serializer, arguments, options) with their job ids fixed at enqueue. The worker that
//! finishes a step builds the next one from it ([`ChainHeader::next_step`]), with the same
//! header minus that step; the testing mode builds it the same way. Retries, snoozes, the
//! failed queue and a requeue from it keep the header as it is, so a failed step keeps its
//! chain and a retried one resumes it.
//!
//! The header is bounded ([`MAX_BYTES`]): AMQP sends all headers in one frame, and a chain
//! too large for it is refused at enqueue ([`crate::Error::ChainTooLarge`]), not later in a
//! worker. [`super::fit_headers`] never cuts it.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use lapin::{
    types::{AMQPValue, FieldTable},
    BasicProperties,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{header, put_int, put_str, str_ref, JobMeta, Malformed};
use crate::serializer::Format;

/// The header's name.
pub const HEADER: &str = "x-palermo-chain";
/// The version of the header's document this library writes and reads.
pub const VERSION: u32 = 1;
/// The largest header accepted, in bytes of JSON: a quarter of the smallest frame RabbitMQ
/// negotiates (64 KiB), leaving room for a failure's error, backtrace and history.
pub const MAX_BYTES: usize = 16 * 1024;

/// What a chain step's message carries about its chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainHeader {
    /// The document's version, [`VERSION`].
    pub v: u32,
    /// The chain's id (what [`crate::Client::chain`]'s enqueue returned).
    pub id: Uuid,
    /// The step this message runs, from 1.
    pub step: u32,
    /// How many steps the chain has.
    pub steps: u32,
    /// The steps still to run after this one, in order.
    #[serde(default)]
    pub next: Vec<Step>,
}

/// A later step of a chain: a raw job and the options it is published with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The job id it will run under, fixed at enqueue: a step published twice (a crash
    /// between the publish and the ack of the step before) is the same job twice.
    pub id: Uuid,
    /// The job's wire name.
    pub job: String,
    /// The queue it is published to.
    pub queue: String,
    /// The serializer of its arguments: `json` or `msgpack`.
    pub serializer: String,
    /// The arguments, for `json`: the JSON value itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// The arguments, for `msgpack`: the bytes in lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_hex: Option<String>,
    /// Runs before the failed queue, when the enqueuer knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// The AMQP priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Runs this long after the step before it succeeded, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Runs at this time (ms since the epoch), or at once if it has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<i64>,
    /// Extra string headers ([`crate::Options::header`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// The next step of a chain, ready to publish.
#[derive(Clone, Debug)]
pub struct NextStep {
    /// Its metadata (its fixed id, attempt 1).
    pub meta: JobMeta,
    /// Its serialized arguments.
    pub body: Vec<u8>,
    /// Its properties, with the chain header for the steps after it.
    pub properties: BasicProperties,
    /// When it is due, if later than now: a delay after the step before, or a time.
    pub due: Option<Due>,
}

/// When a delayed step is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// This long after the step before it succeeded.
    After(Duration),
    /// At this time.
    At(SystemTime),
}

impl ChainHeader {
    /// The chain header of `headers`: `None` when there is none, an error that names the
    /// problem when it does not read.
    pub fn read(headers: &FieldTable) -> Result<Option<Self>, Malformed> {
        let Some(text) = str_ref(headers, HEADER)? else {
            return Ok(None);
        };
        let chain: Self = serde_json::from_str(text)
            .map_err(|e| Malformed(format!("header {HEADER} is not a chain: {e}")))?;
        if chain.v != VERSION {
            return Err(Malformed(format!(
                "header {HEADER} has version {}; this library reads version {VERSION}",
                chain.v
            )));
        }
        let remaining = u32::try_from(chain.next.len()).unwrap_or(u32::MAX);
        if chain.step == 0 || chain.step.checked_add(remaining) != Some(chain.steps) {
            return Err(Malformed(format!(
                "header {HEADER}: step {} of {} with {remaining} steps after it does not add up",
                chain.step, chain.steps
            )));
        }
        // Every later step is checked now, before this one runs: a step whose successor
        // could not be built would succeed and then stop its chain.
        for step in &chain.next {
            step.body(step.format()?)?;
        }
        Ok(Some(chain))
    }

    /// The header as JSON; an error when it is longer than [`MAX_BYTES`] (the length).
    pub fn encode(&self) -> Result<String, usize> {
        let text = serde_json::to_string(self).unwrap_or_default();
        if text.len() > MAX_BYTES {
            return Err(text.len());
        }
        Ok(text)
    }

    /// Writes the header into `headers`; an error when it is too long (its length).
    pub fn write(&self, headers: &mut FieldTable) -> Result<(), usize> {
        let text = self.encode()?;
        headers.insert(HEADER.into(), AMQPValue::LongString(text.as_str().into()));
        Ok(())
    }

    /// The step after this one, as a message (`None` after the last step). Its header is
    /// this one with that step taken off the front. An error when the step's arguments do
    /// not read.
    pub fn next_step(&self) -> Result<Option<NextStep>, Malformed> {
        let Some((step, rest)) = self.next.split_first() else {
            return Ok(None);
        };
        let format = step.format()?;
        let body = step.body(format)?;
        let meta = JobMeta {
            id: step.id,
            name: step.job.clone(),
            queue: step.queue.clone(),
            format,
            preview: step.preview(),
            attempt: 1,
            max_attempts: step.max_attempts,
            enqueued_at_ms: super::now_ms(),
            priority: step.priority,
        };
        let mut headers = super::headers(&meta.properties()).clone();
        for (name, value) in &step.headers {
            put_str(&mut headers, name, value);
        }
        let due = match (step.at_ms, step.delay_ms) {
            (Some(at), _) => Some(Due::At(
                UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap_or(0)),
            )),
            (None, Some(ms)) => Some(Due::After(Duration::from_millis(ms))),
            (None, None) => None,
        };
        if let Some(due) = due {
            let due_ms = match due {
                Due::At(_) => step.at_ms.unwrap_or(0),
                Due::After(delay) => super::now_ms()
                    .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            };
            put_int(&mut headers, header::SCHEDULED_FOR, due_ms);
            put_int(&mut headers, header::NEXT_RUN_AT, due_ms);
        }
        let after = Self {
            v: VERSION,
            id: self.id,
            step: self.step + 1,
            steps: self.steps,
            next: rest.to_vec(),
        };
        // Shorter than this header, which was within the bound.
        let _ = after.write(&mut headers);
        let properties = meta.properties().with_headers(headers);
        Ok(Some(NextStep {
            meta,
            body,
            properties,
            due,
        }))
    }
}

impl ChainHeader {
    /// One line about the chain, for people: `chain ID, step 2 of 3`.
    pub fn summary(&self) -> String {
        format!("chain {}, step {} of {}", self.id, self.step, self.steps)
    }

    /// One line per step still to run, for people: its number, job, queue, job id and
    /// arguments.
    pub fn remaining(&self) -> Vec<String> {
        (self.step + 1..)
            .zip(&self.next)
            .map(|(n, step)| {
                format!(
                    "step {n}: {} on {} (job id {}) {}",
                    step.job,
                    step.queue,
                    step.id,
                    step.preview()
                )
            })
            .collect()
    }
}

impl Step {
    /// A step for a job of `meta` with `body`, its arguments in `meta.format`.
    pub fn of(meta: &JobMeta, body: &[u8]) -> Result<Self, Malformed> {
        let (args, args_hex) = match meta.format {
            Format::Json => {
                let value = serde_json::from_slice(body).map_err(|e| {
                    Malformed(format!(
                        "the arguments of {:?} are not JSON: {e}",
                        meta.name
                    ))
                })?;
                (Some(value), None)
            }
            Format::MessagePack => (None, Some(hex(body))),
        };
        Ok(Self {
            id: meta.id,
            job: meta.name.clone(),
            queue: meta.queue.clone(),
            serializer: meta.format.name().to_string(),
            args,
            args_hex,
            max_attempts: meta.max_attempts,
            priority: meta.priority,
            delay_ms: None,
            at_ms: None,
            headers: BTreeMap::new(),
        })
    }

    fn format(&self) -> Result<Format, Malformed> {
        Format::from_name(&self.serializer).ok_or_else(|| {
            Malformed(format!(
                "header {HEADER}: step {:?} has the unknown serializer {:?} (known: json, msgpack)",
                self.job, self.serializer
            ))
        })
    }

    /// The serialized arguments.
    fn body(&self, format: Format) -> Result<Vec<u8>, Malformed> {
        let missing = || {
            Malformed(format!(
                "header {HEADER}: step {:?} has no arguments",
                self.job
            ))
        };
        match format {
            Format::Json => {
                let value = self.args.as_ref().ok_or_else(missing)?;
                Ok(serde_json::to_vec(value).unwrap_or_default())
            }
            Format::MessagePack => {
                unhex(self.args_hex.as_deref().ok_or_else(missing)?).ok_or_else(|| {
                    Malformed(format!(
                        "header {HEADER}: step {:?}: args_hex is not hex",
                        self.job
                    ))
                })
            }
        }
    }

    /// A short rendering of the arguments, as the enqueue would write it.
    pub fn preview(&self) -> String {
        match (&self.args, &self.args_hex) {
            (Some(value), _) => super::preview(&value.to_string()),
            (None, Some(hex)) => super::preview(&format!("<msgpack, {} bytes>", hex.len() / 2)),
            (None, None) => String::new(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, format: Format) -> JobMeta {
        JobMeta {
            id: Uuid::new_v4(),
            name: name.into(),
            queue: "q".into(),
            format,
            preview: String::new(),
            attempt: 1,
            max_attempts: Some(2),
            enqueued_at_ms: 0,
            priority: Some(3),
        }
    }

    #[test]
    fn each_step_carries_the_rest() {
        let b = Step::of(&meta("b", Format::Json), br#"{"n":2}"#).expect("json");
        let packed = rmp_serde::to_vec(&(7u32,)).expect("msgpack");
        let mut c = Step::of(&meta("c", Format::MessagePack), &packed).expect("msgpack");
        c.delay_ms = Some(1500);
        c.headers.insert("x-tenant".into(), "acme".into());
        let first = ChainHeader {
            v: VERSION,
            id: Uuid::new_v4(),
            step: 1,
            steps: 3,
            next: vec![b.clone(), c.clone()],
        };
        let mut headers = FieldTable::default();
        first.write(&mut headers).expect("small");
        assert_eq!(ChainHeader::read(&headers), Ok(Some(first.clone())));

        let second = first.next_step().expect("reads").expect("a next step");
        assert_eq!((second.meta.id, second.meta.name.as_str()), (b.id, "b"));
        assert_eq!(second.body, br#"{"n":2}"#);
        assert_eq!(second.meta.priority, Some(3));
        assert_eq!(second.due, None);
        let chain = ChainHeader::read(super::super::headers(&second.properties))
            .expect("reads")
            .expect("kept");
        assert_eq!((chain.step, chain.steps, chain.next.len()), (2, 3, 1));

        let third = chain.next_step().expect("reads").expect("the last step");
        assert_eq!(third.body, packed);
        assert_eq!(third.due, Some(Due::After(Duration::from_millis(1500))));
        let headers = super::super::headers(&third.properties);
        assert_eq!(str_ref(headers, "x-tenant"), Ok(Some("acme")));
        let last = ChainHeader::read(headers).expect("reads").expect("kept");
        assert_eq!((last.step, last.next.len()), (3, 0));
        assert!(last.next_step().expect("reads").is_none());
    }

    #[test]
    fn a_bad_header_says_what_is_wrong() {
        let mut headers = FieldTable::default();
        put_str(&mut headers, HEADER, "{");
        assert!(ChainHeader::read(&headers).is_err());
        let wrong = format!(
            r#"{{"v":1,"id":"{}","step":2,"steps":5,"next":[]}}"#,
            Uuid::nil()
        );
        put_str(&mut headers, HEADER, &wrong);
        let error = ChainHeader::read(&headers).expect_err("does not add up").0;
        assert!(error.contains("step 2 of 5"), "{error}");
        assert_eq!(ChainHeader::read(&FieldTable::default()), Ok(None));
    }

    #[test]
    fn a_huge_chain_is_refused() {
        let big = Step::of(
            &meta("b", Format::Json),
            format!("{:?}", "x".repeat(MAX_BYTES)).as_bytes(),
        )
        .expect("json");
        let chain = ChainHeader {
            v: VERSION,
            id: Uuid::nil(),
            step: 1,
            steps: 2,
            next: vec![big],
        };
        assert!(chain.encode().is_err_and(|len| len > MAX_BYTES));
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("zz"), None);
    }
}
