//! What a failure is, and publishing one to the failed queue: the original body and headers,
//! plus `x-palermo-*` failure headers and the error history of every attempt. The caller
//! acks the original only after this publish is confirmed.
//!
//! The headers every failed run adds, whether a retry follows ([`super::retrying`]) or not,
//! are written here as one [`FailureRecord`] (`wire/failure.rs`), so a retrying job and a
//! failed one carry the same record, and the recorder reads it with the same type.

use lapin::{message::Delivery, types::FieldTable, Channel};
use uuid::Uuid;

use super::Shared;
use crate::{
    broker::delay,
    error::Error,
    wire::{
        self,
        failure::FailureRecord,
        header,
        history::{self, FailedAttempt},
        republish::{republished, without},
    },
};

pub use crate::wire::failure::{FailureKind, GaveUp};

/// A failed run or a rejected message.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong, in a word.
    pub kind: FailureKind,
    /// The error, panic message or reason, for people.
    pub message: String,
    /// A backtrace, where there is one.
    pub backtrace: Option<String>,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            backtrace: None,
        }
    }
}

/// Publishes `delivery` to the failed queue with `failure`'s headers and waits for the
/// confirm. `max_attempts` is written when known.
pub(crate) async fn publish(
    shared: &Shared,
    channel: &Channel,
    delivery: &Delivery,
    failure: &Failure,
    gave_up: GaveUp,
    max_attempts: Option<u32>,
) -> Result<(), Error> {
    let attempt = wire::get_int(wire::headers(&delivery.properties), header::ATTEMPT)
        .ok()
        .flatten()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1);
    let routing_key = delivery.routing_key.as_str();
    let source = delay::destination(routing_key).unwrap_or(routing_key);
    let mut headers = failure_headers(shared, delivery, failure, attempt, |record| {
        record.failure_id = Some(Uuid::new_v4().to_string());
        record.gave_up = Some(gave_up.as_str().into());
        record.backtrace.clone_from(&failure.backtrace);
        record.source_queue = Some(source.into());
    });
    if let Some(max) = max_attempts {
        wire::put_int(&mut headers, header::MAX_ATTEMPTS, max.into());
    }
    crate::worker::heal::publish_declaring(
        channel,
        &shared.config.deployment.failed_queue,
        &shared.config.deployment,
        &delivery.data,
        republished(&delivery.properties, headers),
    )
    .await?;
    // Failed for good: a unique job's key is free again.
    crate::unique::release_after(channel, &delivery.properties).await;
    Ok(())
}

/// The delivery's headers with this failure's [`FailureRecord`] (`finish` fills in what only
/// the failed queue gets) and the attempt appended to the error history. The broker's
/// dead-lettering headers and the previous run's backtrace, failure id and due time are
/// dropped.
pub(crate) fn failure_headers(
    shared: &Shared,
    delivery: &Delivery,
    failure: &Failure,
    attempt: u32,
    finish: impl FnOnce(&mut FailureRecord),
) -> FieldTable {
    let now = wire::now_ms();
    let mut headers = without(
        wire::headers(&delivery.properties),
        &[
            header::BACKTRACE,
            header::FAILURE_ID,
            header::GAVE_UP,
            header::NEXT_RUN_AT,
        ],
    );
    let mut record = FailureRecord {
        kind: failure.kind.as_str().into(),
        error: failure.message.clone(),
        failed_at: now,
        first_failed_at: wire::get_int(&headers, header::FIRST_FAILED_AT)
            .ok()
            .flatten()
            .unwrap_or(now),
        worker: shared.identity.clone(),
        failure_id: None,
        gave_up: None,
        backtrace: None,
        source_queue: None,
    };
    finish(&mut record);
    record.write(&mut headers);
    history::append(
        &mut headers,
        FailedAttempt {
            attempt,
            at: now,
            kind: record.kind,
            error: record.error,
        },
    );
    headers
}
