//! The client's side of unique jobs: take the key's lock in the broker ([`crate::unique`]),
//! then publish the job carrying the lock's name, or return the holder's id.
//!
//! Why here and not in `send`: the lock must be taken before the job exists, and a job whose
//! publish fails must give its lock back, or the key would stay locked for the whole TTL.

use tracing::{info, warn};

use super::{
    enqueue::{Enqueued, Message},
    Backend, Client,
};
use crate::{
    error::Error,
    unique::{self, Taken},
};

impl Client {
    /// Publishes `message` if its lock is free, or returns the holder's id. A fake client
    /// ([`crate::testing`]) does not check keys: every job is [`Enqueued::New`].
    pub(super) async fn enqueue_locked(&self, message: Message) -> Result<Enqueued, Error> {
        let Message {
            meta,
            body,
            properties,
            delayed,
            lock,
            ..
        } = message;
        let (Backend::Broker(sessions), Some((lock, ttl))) = (&self.backend, lock) else {
            self.send_confirmed(&meta.queue, delayed, &body, properties)
                .await?;
            return Ok(Enqueued::New(meta.id));
        };
        let session = sessions.get(&self.reconnect).await?;
        let taking = unique::acquire(&session.channel, &lock, ttl, meta.id);
        if let Taken::HeldBy(holder) = self.bounded(&lock, taking).await? {
            info!(job.name = %meta.name, queue = %meta.queue, lock = %lock, holder = %holder, "unique job already enqueued; skipped");
            return Ok(Enqueued::Duplicate(holder));
        }
        let sent = self
            .send_confirmed(&meta.queue, delayed, &body, properties)
            .await;
        if let Err(e) = sent {
            if let Err(release) = unique::release(&session.channel, &lock, meta.id).await {
                warn!(lock = %lock, error = %release, "could not give back a unique lock after a failed enqueue; it expires after its TTL");
            }
            return Err(e);
        }
        Ok(Enqueued::New(meta.id))
    }
}
