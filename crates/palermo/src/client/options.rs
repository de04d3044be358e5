//! Per-enqueue options: [`Client::enqueue_with`]. Which queues are priority queues is the
//! deployment's setting ([`crate::Deployment::priorities`]), not the client's.

use uuid::Uuid;

use super::{Client, RawJob};
use crate::{error::Error, job::Job, priority::Options, wire::JobMeta};

impl Client {
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
