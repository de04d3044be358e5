//! Enqueueing jobs. `enqueue` returns only once the broker has confirmed the message is
//! stored: a returned id is a job that exists.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use lapin::{Channel, Connection};
use uuid::Uuid;

use crate::{
    broker::{self, Pending},
    error::Error,
    job::Job,
    serializer::Format,
    topology,
    wire::{self, JobMeta},
};

/// A handle for enqueueing jobs; cheap to clone, safe to share between tasks. It holds one
/// connection and one confirm-mode channel.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    format: Format,
}

struct Inner {
    connection: Connection,
    channel: Channel,
    /// Queues declared and bound on this connection (declare before the first publish).
    declared: Mutex<HashSet<String>>,
}

/// A job given by name with already-serialized arguments, for tools that do not link the
/// job's code (`palermo enqueue`) and for other languages' conventions.
#[derive(Clone, Debug)]
pub struct RawJob {
    /// The wire name.
    pub name: String,
    /// The queue to publish to.
    pub queue: String,
    /// The serializer of `body`.
    pub format: Format,
    /// The serialized arguments.
    pub body: Vec<u8>,
    /// Max attempts, when known.
    pub max_attempts: Option<u32>,
}

impl Client {
    /// Connects to the broker at `url` (`amqp://user:pass@host:port/vhost`).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let connection = broker::connect(url, "palermo client").await?;
        let channel = broker::confirm_channel(&connection).await?;
        topology::declare_exchange(&channel).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                channel,
                declared: Mutex::new(HashSet::new()),
            }),
            format: Format::default(),
        })
    }

    /// This client with another serializer for jobs that do not choose their own.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Enqueues a job on its default queue; returns its id once the broker confirmed it.
    pub async fn enqueue<J: Job>(&self, job: J) -> Result<Uuid, Error> {
        self.enqueue_to(J::QUEUE, job).await
    }

    /// Enqueues a job on `queue` instead of its default one.
    pub async fn enqueue_to<J: Job>(&self, queue: &str, job: J) -> Result<Uuid, Error> {
        let (id, pending) = self.publish(queue, &job).await?;
        pending.confirmed().await?;
        Ok(id)
    }

    /// Enqueues many jobs, publishing them all before waiting for the confirms. On `Err`,
    /// some of the jobs may have been stored; on `Ok`, all were, and the ids are in order.
    pub async fn enqueue_many<J: Job>(
        &self,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Uuid>, Error> {
        let mut ids = Vec::new();
        let mut pending = Vec::new();
        for job in jobs {
            let (id, p) = self.publish(J::QUEUE, &job).await?;
            ids.push(id);
            pending.push(p);
        }
        for p in pending {
            p.confirmed().await?;
        }
        Ok(ids)
    }

    /// Enqueues a job given by name and serialized arguments.
    pub async fn enqueue_raw(&self, job: RawJob) -> Result<Uuid, Error> {
        let preview = match job.format.to_json_value(&job.body) {
            Ok(value) => wire::preview(&value.to_string()),
            Err(reason) => {
                return Err(Error::Serialize {
                    job: job.name,
                    format: job.format.name(),
                    reason,
                })
            }
        };
        let meta = self.meta(&job.name, &job.queue, job.format, preview, job.max_attempts);
        self.ensure_declared(&job.queue).await?;
        broker::publish_confirmed(
            &self.inner.channel,
            &job.queue,
            &job.body,
            meta.properties(),
        )
        .await?;
        Ok(meta.id)
    }

    /// Closes the connection, waiting for nothing: every enqueue has already been confirmed.
    pub async fn close(&self) -> Result<(), Error> {
        self.inner
            .connection
            .close(200, "client closed".into())
            .await
            .map_err(Error::broker("connection.close"))
    }

    async fn publish<J: Job>(&self, queue: &str, job: &J) -> Result<(Uuid, Pending), Error> {
        let format = J::FORMAT.unwrap_or(self.format);
        let body = format.encode(job).map_err(|reason| Error::Serialize {
            job: J::NAME.to_string(),
            format: format.name(),
            reason,
        })?;
        let meta = self.meta(J::NAME, queue, format, job.preview(), J::MAX_ATTEMPTS);
        self.ensure_declared(queue).await?;
        let pending = broker::publish(&self.inner.channel, queue, &body, meta.properties()).await?;
        Ok((meta.id, pending))
    }

    fn meta(
        &self,
        name: &str,
        queue: &str,
        format: Format,
        preview: String,
        max_attempts: Option<u32>,
    ) -> JobMeta {
        JobMeta {
            id: Uuid::new_v4(),
            name: name.to_string(),
            queue: queue.to_string(),
            format,
            preview,
            attempt: 1,
            max_attempts,
            enqueued_at_ms: wire::now_ms(),
        }
    }

    async fn ensure_declared(&self, queue: &str) -> Result<(), Error> {
        if self.is_declared(queue) {
            return Ok(());
        }
        topology::declare_queue(&self.inner.channel, queue).await?;
        self.lock_declared().insert(queue.to_string());
        Ok(())
    }

    fn is_declared(&self, queue: &str) -> bool {
        self.lock_declared().contains(queue)
    }

    fn lock_declared(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.inner
            .declared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
