//! The client's unique enqueues: take the key's lock in the broker ([`crate::unique`]), then
//! publish the job carrying the lock's name, or return the holder's id.
//!
//! Why here and not in `send`: the lock must be taken before the job exists, and a job whose
//! publish fails must give its lock back, or the key would stay locked for the whole TTL.

use std::time::Duration;

use tracing::{info, warn};

use super::{Backend, Client};
use crate::{
    error::Error,
    job::Job,
    unique::{self, Enqueued, Taken},
    wire::{self, JobMeta},
};

impl Client {
    /// Enqueues `job` on its default queue unless a job with the same `key` is queued,
    /// delayed or running; the lock lasts until that job succeeds or fails for good, or for
    /// `ttl` at most (at least 1 s). Returns [`Enqueued::Duplicate`] with the existing job's
    /// id when the key is taken: that is not an error. A fake client
    /// ([`crate::testing`]) does not check keys: every job is [`Enqueued::New`].
    pub async fn enqueue_unique<J: Job>(
        &self,
        job: J,
        key: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<Enqueued, Error> {
        self.enqueue_unique_to(J::QUEUE, job, key, ttl).await
    }

    /// [`Client::enqueue_unique`] on `queue` instead of the job's default one (the key alone
    /// decides what is a duplicate, whatever the queue).
    pub async fn enqueue_unique_to<J: Job>(
        &self,
        queue: &str,
        job: J,
        key: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<Enqueued, Error> {
        let (meta, body) = self.encode(queue, &job)?;
        self.enqueue_locked(meta, &body, key.as_ref(), ttl).await
    }

    /// Enqueues a `#[job(unique = "..")]` job with its default key (its name and serialized
    /// arguments) and TTL; a job without `unique` is an [`Error::Config`].
    /// [`Client::enqueue`] does the same but returns only the id.
    pub async fn enqueue_once<J: Job>(&self, job: J) -> Result<Enqueued, Error> {
        self.enqueue_once_to(J::QUEUE, job).await
    }

    /// [`Client::enqueue_once`] on `queue` instead of the job's default one.
    pub async fn enqueue_once_to<J: Job>(&self, queue: &str, job: J) -> Result<Enqueued, Error> {
        let ttl = J::UNIQUE
            .ok_or_else(|| Error::Config(format!("job {} is not declared unique", J::NAME)))?;
        let (meta, body) = self.encode(queue, &job)?;
        let key = unique::default_key(J::NAME, &body);
        self.enqueue_locked(meta, &body, &key, ttl).await
    }

    async fn enqueue_locked(
        &self,
        mut meta: JobMeta,
        body: &[u8],
        key: &[u8],
        ttl: Duration,
    ) -> Result<Enqueued, Error> {
        unique::validate_ttl(ttl)?;
        let lock = unique::lock_name(key, ttl);
        let queue = meta.queue.clone();
        let sessions = match &self.backend {
            Backend::Broker(sessions) => sessions,
            Backend::Fake(_) => {
                self.send_confirmed(&queue, None, body, meta.properties())
                    .await?;
                return Ok(Enqueued::New(meta.id));
            }
        };
        let session = sessions.get(&self.reconnect).await?;
        let taking = unique::acquire(&session.channel, &lock, ttl, meta.id);
        if let Taken::HeldBy(holder) = self.bounded(&lock, taking).await? {
            info!(job.name = %meta.name, queue = %queue, lock = %lock, holder = %holder, "unique job already enqueued; skipped");
            return Ok(Enqueued::Duplicate(holder));
        }
        let mut properties = meta.properties();
        let mut headers = properties.headers().clone().unwrap_or_default();
        wire::put_str(&mut headers, unique::HEADER, &lock);
        properties = properties.with_headers(headers);
        meta.id = match self.send_confirmed(&queue, None, body, properties).await {
            Ok(()) => meta.id,
            Err(e) => {
                if let Err(release) = unique::release(&session.channel, &lock, meta.id).await {
                    warn!(lock = %lock, error = %release, "could not give back a unique lock after a failed enqueue; it expires after its TTL");
                }
                return Err(e);
            }
        };
        Ok(Enqueued::New(meta.id))
    }
}
