//! Per-enqueue options and the client's priority setting: [`Client::enqueue_with`] and
//! [`Client::with_max_priority`] ([`crate::priority`] says why the setting is one value per
//! deployment).

use uuid::Uuid;

use super::{Backend, Client, RawJob};
use crate::{error::Error, job::Job, priority::Options, topology::QueueType, wire::JobMeta};

impl Client {
    /// This client declaring `queue` as a priority queue with `x-max-priority = max` (1 to
    /// 255; RabbitMQ advises at most 10); call it once per priority queue. Give every client,
    /// worker (`WorkerConfig::priorities`) and CLI (`--max-priority QUEUE=N`) of a
    /// deployment the same list: RabbitMQ refuses to declare a queue with other arguments,
    /// and an enqueue then fails with an error naming this setting. On quorum queues only
    /// with RabbitMQ 4.0 or later, which orders them in two levels (`crate::priority`).
    /// Clones share it. Defaults to no priority queues.
    pub fn with_max_priority(self, queue: &str, max: u8) -> Result<Self, Error> {
        let priorities = crate::priority::Priorities::default().with(queue, max);
        match &self.backend {
            Backend::Broker(sessions) => {
                priorities.validate(sessions.queue_type)?;
                crate::priority::check_broker(sessions.queue_type, &priorities, &sessions.version)?;
                sessions.set_max_priority(queue, max);
            }
            Backend::Fake(_) => priorities.validate(QueueType::Classic)?,
        }
        Ok(self)
    }

    /// Enqueues `job` with per-call [`Options`]: another priority, queue or a delay
    /// (`Options { priority: Some(9), ..Default::default() }`). Unset fields keep the job's
    /// own settings. It does not take a `#[job(unique)]` lock
    /// ([`Client::enqueue_unique`] does).
    pub async fn enqueue_with<J: Job>(&self, job: J, options: Options) -> Result<Uuid, Error> {
        let queue = options.queue.as_deref().unwrap_or(J::QUEUE);
        let (meta, body) = self.encode(queue, &job)?;
        self.send_with(meta, &body, &options).await
    }

    /// [`Client::enqueue_raw`] with [`Options`] (`queue` replaces the raw job's).
    pub async fn enqueue_raw_with(&self, mut job: RawJob, options: Options) -> Result<Uuid, Error> {
        if let Some(queue) = &options.queue {
            job.queue.clone_from(queue);
        }
        let meta = self.raw_meta(&job)?;
        self.send_with(meta, &job.body, &options).await
    }

    async fn send_with(
        &self,
        mut meta: JobMeta,
        body: &[u8],
        options: &Options,
    ) -> Result<Uuid, Error> {
        if options.priority.is_some() {
            meta.priority = options.priority;
        }
        match options.delay {
            Some(delay) => self.publish_at(meta, body, super::due_after(delay)?).await,
            None => {
                self.send_confirmed(&meta.queue, None, body, meta.properties())
                    .await?;
                Ok(meta.id)
            }
        }
    }
}
