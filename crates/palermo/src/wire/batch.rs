//! Batches on the wire (docs/workflows.md, "Batches"): the events the client and the workers
//! send to the batches queue, and the outcome the recorder writes into a callback.
//!
//! - A member carries the header [`HEADER`] (the batch id); a job without it costs nothing.
//! - The client sends [`Event::Opened`] (the members' ids and the callbacks, chunked for a
//!   large batch) before it publishes the members; a worker sends [`Event::MemberDone`]
//!   before it acks a member that succeeded. A member that fails for good needs no event: its
//!   message on the failed queue carries the header, and the recorder reads it there.
//! - A callback carries [`OUTCOME_HEADER`]: the batch's [`Outcome`] when it fired, which
//!   [`crate::JobContext::batch`] reads. Workers never read the store.
//!
//! The events go to one durable queue ([`crate::Deployment::batches_queue`]), not to the
//! events exchange: that queue has a length limit (heartbeats can be dropped, a member's
//! outcome cannot).

use lapin::{types::FieldTable, BasicProperties};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The header that makes a job a member of a batch: the batch id.
pub const HEADER: &str = "x-palermo-batch";
/// The header of a callback: the batch's [`Outcome`], JSON.
pub const OUTCOME_HEADER: &str = "x-palermo-batch-outcome";
/// The AMQP `type` of batch events.
pub const EVENT_TYPE: &str = "palermo.batch";
/// The version of the event format this library writes.
pub const EVENT_VERSION: u32 = 1;
/// Members listed per [`Event::Opened`] message: a batch of 100,000 members is 20 messages
/// of about 200 KB.
pub const CHUNK: usize = 5_000;
/// Failed members' ids listed in a callback's [`Outcome`] at most (a header must fit in an
/// AMQP frame); [`Outcome::failed`] counts them all.
pub const FAILED_IDS_MAX: usize = 1_000;

/// One message on the batches queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A batch was opened (one chunk of its members).
    Opened(Box<Opened>),
    /// A member finished.
    MemberDone(MemberDone),
}

/// One chunk of a new batch: every chunk repeats the batch's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    /// [`EVENT_VERSION`].
    pub version: u32,
    /// The batch id.
    pub batch: Uuid,
    /// For people.
    pub description: String,
    /// When the client opened it, ms since the epoch.
    pub created_at: i64,
    /// Members in the whole batch.
    pub total: u64,
    /// This chunk's members' job ids.
    pub members: Vec<Uuid>,
    /// Runs once, when every member succeeded.
    pub on_success: Option<Callback>,
    /// Runs once, when every member finished (succeeded or failed for good).
    pub on_complete: Option<Callback>,
}

/// A callback job, serialized when the batch was opened; its id is fixed then, so a second
/// publish of it is recognisably the same job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// The job id it will run under.
    pub id: Uuid,
    /// The job's wire name.
    pub name: String,
    /// Its queue.
    pub queue: String,
    /// The serializer of `body`: `json` or `msgpack`.
    pub serializer: String,
    /// The serialized arguments.
    pub body: Vec<u8>,
    /// Max attempts, when the job sets them.
    pub max_attempts: Option<u32>,
}

/// A member that finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDone {
    /// [`EVENT_VERSION`].
    pub version: u32,
    /// The batch id.
    pub batch: Uuid,
    /// The member's job id.
    pub member: Uuid,
    /// `succeeded` or `failed`.
    pub outcome: String,
    /// When, ms since the epoch (worker's clock).
    pub at: i64,
}

/// What a callback knows of its batch: [`crate::JobContext::batch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The batch id.
    pub id: Uuid,
    /// Its description.
    pub description: String,
    /// Its members.
    pub total: u64,
    /// Members that succeeded.
    pub succeeded: u64,
    /// Members that failed for good.
    pub failed: u64,
    /// The failed members' job ids, at most [`FAILED_IDS_MAX`] of them.
    pub failed_ids: Vec<Uuid>,
}

impl Event {
    /// Reads an event body; the error says why it is not one this version reads.
    pub fn parse(body: &[u8]) -> Result<Event, String> {
        let event: Event = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let version = match &event {
            Event::Opened(o) => o.version,
            Event::MemberDone(m) => m.version,
        };
        if version != EVENT_VERSION {
            return Err(format!(
                "unsupported batch event version {version} (this version reads {EVENT_VERSION})"
            ));
        }
        Ok(event)
    }

    /// The message: JSON body and its properties (persistent, typed [`EVENT_TYPE`]).
    pub fn message(&self) -> (Vec<u8>, BasicProperties) {
        // Plain structs of strings, numbers and ids: serialising cannot fail.
        let body = serde_json::to_vec(self).unwrap_or_default();
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_type(EVENT_TYPE.into())
            .with_app_id(super::APP_ID.into())
            .with_delivery_mode(2);
        (body, properties)
    }
}

/// The batch a message belongs to, from its headers.
pub fn batch_of(headers: &FieldTable) -> Option<Uuid> {
    let id = super::get_str(headers, HEADER).ok().flatten()?;
    Uuid::parse_str(&id).ok()
}

/// A callback's outcome, from its headers.
pub fn outcome_of(headers: &FieldTable) -> Option<Outcome> {
    let json = super::get_str(headers, OUTCOME_HEADER).ok().flatten()?;
    serde_json::from_str(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_versions_are_checked() {
        let done = Event::MemberDone(MemberDone {
            version: EVENT_VERSION,
            batch: Uuid::new_v4(),
            member: Uuid::new_v4(),
            outcome: "succeeded".into(),
            at: 1,
        });
        let (body, properties) = done.message();
        assert_eq!(
            properties.kind().as_ref().map(|k| k.as_str()),
            Some(EVENT_TYPE)
        );
        assert_eq!(Event::parse(&body).expect("reads back"), done);
        let json = String::from_utf8(body).expect("json");
        assert!(json.contains(r#""event":"member_done""#), "{json}");
        let newer = json.replace(r#""version":1"#, r#""version":2"#);
        assert!(Event::parse(newer.as_bytes())
            .expect_err("a newer version")
            .contains("version 2"));
    }
}
