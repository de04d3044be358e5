//! Unique jobs: at most one job per key queued, delayed or running, using RabbitMQ alone.
//!
//! Why a queue per key: workers never use the SQL store, so the lock must live in the
//! broker. A lock is the classic queue `palermo.unique.<hash>` declared with
//! `x-max-length = 1` and `x-overflow = reject-publish`: the broker keeps at most one message
//! in it and *nacks* a second publish. The enqueue publishes the job's id there with a
//! publisher confirm: an ack means this enqueue took the lock (it then publishes the job); a
//! nack means another job holds it, and its id is read back with a `basic.get` that is
//! rejected (requeued) at once, so the holder keeps the lock.
//!
//! The lock message expires after the TTL (`expiration`, so a worker that dies holding the
//! lock frees it then), and the queue itself after the TTL without use (`x-expires`). The
//! job carries the lock's name in the `x-palermo-unique` header; the worker releases it when
//! the job succeeded or failed for good, by taking the lock message off the queue (only if
//! it holds this job's id: a lock that expired and was taken again is someone else's).
//!
//! The TTL is part of the lock's name: the queue arguments differ per TTL and RabbitMQ
//! refuses to re-declare a queue with other arguments, so the same key with another TTL is
//! another lock. Limits are in docs/unique-and-priority.md.

use std::time::Duration;

use lapin::{
    options::{BasicAckOptions, BasicGetOptions, BasicRejectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{broker, error::Error};

/// The prefix of every lock queue's name.
pub const LOCK_PREFIX: &str = "palermo.unique.";
/// The header that names a job's lock queue.
pub const HEADER: &str = "x-palermo-unique";
/// The shortest lock TTL accepted (the broker's expiry works in milliseconds; less than a
/// second would expire before the job is even delivered).
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// The default unique key of a job: its name and its serialized arguments.
pub fn default_key(name: &str, body: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 1 + body.len());
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.extend_from_slice(body);
    key
}

/// The lock queue of `key` with `ttl`: `palermo.unique.<sha256 of the key, hex>.<ttl ms>`.
pub fn lock_name(key: &[u8], ttl: Duration) -> String {
    let digest = Sha256::digest(key);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{LOCK_PREFIX}{hex}.{}", ttl.as_millis())
}

/// Checks a lock TTL: at least [`MIN_TTL`], and one the broker can store.
pub fn validate_ttl(ttl: Duration) -> Result<(), Error> {
    if ttl < MIN_TTL || ttl_ms(ttl) > i64::from(u32::MAX) {
        return Err(Error::Config(format!(
            "a unique lock's TTL must be between 1s and about 49 days, not {ttl:?}"
        )));
    }
    Ok(())
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Declares the lock queue `lock` (idempotent: the arguments depend only on the name's TTL).
async fn declare(channel: &Channel, lock: &str, ttl: Duration) -> Result<(), Error> {
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    args.insert("x-expires".into(), AMQPValue::LongLongInt(ttl_ms(ttl)));
    channel
        .queue_declare(lock.into(), QueueDeclareOptions::durable(), args)
        .await
        .map_err(Error::broker("queue.declare"))?;
    Ok(())
}

/// How an attempt at a lock ended.
pub(crate) enum Taken {
    /// This job's id is in the lock now.
    Yes,
    /// Another job holds it.
    HeldBy(Uuid),
}

/// Tries to take `lock` for job `id` on a confirm-mode `channel`. A nack whose holder is gone
/// by the time it is read (released in between) tries again, a few times.
pub(crate) async fn acquire(
    channel: &Channel,
    lock: &str,
    ttl: Duration,
    id: Uuid,
) -> Result<Taken, Error> {
    declare(channel, lock, ttl).await?;
    let properties = BasicProperties::default().with_expiration(ttl_ms(ttl).to_string().into());
    for _ in 0..5 {
        let body = id.to_string();
        let sent =
            broker::publish_via(channel, "", lock, lock, body.as_bytes(), properties.clone());
        match sent.await?.confirmed().await {
            Ok(()) => return Ok(Taken::Yes),
            Err(Error::Nacked { .. }) => {}
            Err(e) => return Err(e),
        }
        if let Some(holder) = peek(channel, lock).await? {
            return Ok(Taken::HeldBy(holder));
        }
    }
    Err(Error::Config(format!(
        "the unique lock {lock} kept changing hands; try again"
    )))
}

/// The id in `lock`, left in place (read and rejected with requeue).
async fn peek(channel: &Channel, lock: &str) -> Result<Option<Uuid>, Error> {
    let got = channel
        .basic_get(lock.into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(Error::broker("basic.get"))?;
    let Some(message) = got else {
        return Ok(None);
    };
    let holder = std::str::from_utf8(&message.delivery.data)
        .ok()
        .and_then(|s| Uuid::parse_str(s).ok());
    message
        .delivery
        .reject(BasicRejectOptions { requeue: true })
        .await
        .map_err(Error::broker("basic.reject"))?;
    Ok(Some(holder.unwrap_or_else(Uuid::nil)))
}

/// Releases `lock` if job `id` holds it: its message is taken off (acked); another job's is
/// put back. A lock queue that is gone (expired) is nothing to release.
pub(crate) async fn release(channel: &Channel, lock: &str, id: Uuid) -> Result<bool, Error> {
    if !lock.starts_with(LOCK_PREFIX) {
        return Ok(false);
    }
    let got = channel
        .basic_get(lock.into(), BasicGetOptions { no_ack: false })
        .await;
    let message = match got {
        Ok(Some(message)) => message,
        Ok(None) => return Ok(false),
        Err(e) => return Err(Error::broker("basic.get")(e)),
    };
    let ours = message.delivery.data == id.to_string().as_bytes();
    let settled = if ours {
        message.delivery.ack(BasicAckOptions::default()).await
    } else {
        message
            .delivery
            .reject(BasicRejectOptions { requeue: true })
            .await
    };
    settled.map_err(Error::broker("basic.ack"))?;
    Ok(ours)
}

/// Releases the lock a finished job carries (its [`HEADER`]), if any: called once the job
/// succeeded or its failure is in the failed queue. A release that fails is logged; the lock
/// then expires after its TTL.
pub(crate) async fn release_after(channel: &Channel, properties: &BasicProperties) {
    // Read on every finished job, and most carry no lock: one walk over the headers
    // (`wire::find`) rather than a lookup.
    let [lock] = crate::wire::find(crate::wire::headers(properties), [HEADER]);
    let Ok(Some(lock)) = crate::wire::str_value(HEADER, lock) else {
        return;
    };
    let Some(id) = properties
        .message_id()
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok())
    else {
        return;
    };
    match release(channel, lock, id).await {
        Ok(true) => tracing::debug!(job.id = %id, lock = %lock, "unique lock released"),
        Ok(false) => {
            tracing::info!(job.id = %id, lock = %lock, "unique lock already expired or taken by another job")
        }
        Err(e) => {
            tracing::warn!(job.id = %id, lock = %lock, error = %e, "could not release a unique lock; it expires after its TTL")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_are_stable_and_carry_the_ttl() {
        let key = default_key("send_email", br#"{"to":"a@b"}"#);
        let a = lock_name(&key, Duration::from_secs(60));
        assert_eq!(a, lock_name(&key, Duration::from_secs(60)));
        assert!(a.starts_with(LOCK_PREFIX) && a.ends_with(".60000"));
        assert_ne!(
            a,
            lock_name(&default_key("send_email", b"{}"), Duration::from_secs(60))
        );
        assert!(crate::broker::topology::validate_queue_name(&a).is_ok());
    }

    #[test]
    fn ttl_bounds() {
        assert!(validate_ttl(Duration::from_millis(10)).is_err());
        assert!(validate_ttl(Duration::from_secs(1800)).is_ok());
        assert!(validate_ttl(Duration::from_secs(60 * 86_400)).is_err());
    }
}
