//! Enqueueing a batch (docs/workflows.md, "Batches"): jobs whose callbacks run once when
//! every member finished.
//!
//! The order is what makes a batch safe: first the *opened* events (the members' ids and the
//! callbacks, confirmed, to the batches queue), then the members with the batch header. A
//! member can thus never finish before its batch is known to the recorder, and a client that
//! dies half-way leaves a batch whose missing members show as pending, never a member whose
//! batch nobody knows. The recorder (palermo-store) keeps the batch and fires the callbacks;
//! the client and the workers never touch SQL.

use std::time::Duration;

use uuid::Uuid;

use super::{enqueue::Message, Backend, Client, RawJob};
use crate::{
    error::Error,
    job::Job,
    unique::{self, Taken},
    wire::{
        self,
        batch::{self as wire_batch, Callback, Event, Opened, Outcome},
    },
    Options,
};

/// A batch being built: [`Client::batch`].
#[must_use = "a batch is enqueued by .enqueue(..)"]
pub struct BatchBuilder<'a> {
    client: &'a Client,
    description: String,
    on_success: Option<RawJob>,
    on_complete: Option<RawJob>,
    members: Vec<Message>,
    error: Option<Error>,
}

impl Client {
    /// Starts a batch: jobs (of any types and queues) with callbacks that run once, when
    /// every member succeeded ([`BatchBuilder::on_success`]) or finished
    /// ([`BatchBuilder::on_complete`]). The callbacks need a recorder running
    /// (docs/workflows.md).
    ///
    /// ```no_run
    /// #[palermo::job(queue = "imports")]
    /// async fn import_row(row: u64) -> Result<(), palermo::JobError> { Ok(()) }
    /// #[palermo::job]
    /// async fn notify(what: String) -> Result<(), palermo::JobError> { Ok(()) }
    ///
    /// # async fn app(client: palermo::Client) -> Result<(), palermo::Error> {
    /// let batch = client
    ///     .batch()
    ///     .description("nightly import")
    ///     .on_success(Notify { what: "imported".into() })
    ///     .on_complete(Notify { what: "import over".into() })
    ///     .enqueue((1..=1000).map(|row| ImportRow { row }))
    ///     .await?;
    /// println!("batch {batch}");
    /// # Ok(()) }
    /// ```
    pub fn batch(&self) -> BatchBuilder<'_> {
        BatchBuilder {
            client: self,
            description: String::new(),
            on_success: None,
            on_complete: None,
            members: Vec::new(),
            error: None,
        }
    }

    /// Publishes a batch's callback (the recorder's part, docs/workflows.md): under its
    /// fixed id, with the batch's outcome in [`wire_batch::OUTCOME_HEADER`], after taking
    /// the lock `batch:<id>:<kind>` for `lock_ttl`. The lock is not released when the
    /// callback runs, so a second publish within `lock_ttl` (a recorder that died between
    /// the publish and its mark) is dropped: `Ok(false)`.
    #[doc(hidden)]
    pub async fn fire_batch_callback(
        &self,
        kind: &str,
        callback: &Callback,
        outcome: &Outcome,
        lock_ttl: Duration,
    ) -> Result<bool, Error> {
        let format = crate::Format::from_name(&callback.serializer).ok_or_else(|| {
            Error::Config(format!(
                "batch {} callback {kind}: unknown serializer {:?}",
                outcome.id, callback.serializer
            ))
        })?;
        let job = RawJob {
            name: callback.name.clone(),
            queue: callback.queue.clone(),
            format,
            body: callback.body.clone(),
            max_attempts: callback.max_attempts,
        };
        let mut meta = self.raw_meta(&job)?;
        meta.id = callback.id;
        let mut message = self.message(meta, job.body, &Options::new(), None)?;
        let mut headers = wire::headers(&message.properties).clone();
        let outcome_json = serde_json::to_string(outcome).unwrap_or_default();
        wire::put_str(&mut headers, wire_batch::OUTCOME_HEADER, &outcome_json);
        message.properties = message.properties.with_headers(headers);
        if let Backend::Broker(sessions) = &self.backend {
            unique::validate_ttl(lock_ttl)?;
            let key = format!("batch:{}:{kind}", outcome.id);
            let lock = unique::lock_name(key.as_bytes(), lock_ttl);
            let session = sessions.get(&self.reconnect).await?;
            let taking = unique::acquire(&session.channel, &lock, lock_ttl, callback.id);
            if let Taken::HeldBy(_) = self.bounded(&lock, taking).await? {
                return Ok(false);
            }
        }
        let Message {
            meta,
            body,
            properties,
            delayed,
            ..
        } = message;
        self.send_confirmed(&meta.queue, delayed, &body, properties)
            .await?;
        Ok(true)
    }
}

impl BatchBuilder<'_> {
    /// For people: shown by `palermo batches` and given to the callbacks.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The job that runs once, when every member succeeded (a member retried from the
    /// failed list and then succeeding counts: the callback runs then).
    pub fn on_success<J: Job>(self, job: J) -> Self {
        self.on_success_in(job, J::QUEUE)
    }

    /// [`BatchBuilder::on_success`] on another queue than the job's.
    pub fn on_success_in<J: Job>(mut self, job: J, queue: &str) -> Self {
        self.on_success = self.callback(job, queue);
        self
    }

    /// The job that runs once, when every member finished: succeeded or failed for good.
    pub fn on_complete<J: Job>(self, job: J) -> Self {
        self.on_complete_in(job, J::QUEUE)
    }

    /// [`BatchBuilder::on_complete`] on another queue than the job's.
    pub fn on_complete_in<J: Job>(mut self, job: J, queue: &str) -> Self {
        self.on_complete = self.callback(job, queue);
        self
    }

    /// Adds one member (of any job type); [`BatchBuilder::enqueue`] adds more.
    pub fn member<J: Job>(self, job: J) -> Self {
        self.member_with(job, Options::new())
    }

    /// Adds one member with [`Options`] (another queue, a delay, a priority). A unique key
    /// is not taken for a member: a member is always enqueued.
    pub fn member_with<J: Job>(mut self, job: J, options: Options) -> Self {
        match self.encode_member(&job, &options) {
            Ok(message) => self.members.push(message),
            Err(e) => self.error = self.error.or(Some(e)),
        }
        self
    }

    /// Enqueues the batch: the members added so far and `jobs`. Returns the batch id once
    /// the broker confirmed the batch and every member.
    pub async fn enqueue<J: Job>(
        mut self,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Uuid, Error> {
        for job in jobs {
            self = self.member(job);
        }
        self.enqueue_added().await
    }

    /// Enqueues the batch of the members added with [`BatchBuilder::member`] and
    /// [`BatchBuilder::member_with`] (of several job types).
    pub async fn enqueue_added(self) -> Result<Uuid, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let client = self.client;
        let batch = Uuid::new_v4();
        let ids: Vec<Uuid> = self.members.iter().map(|m| m.meta.id).collect();
        if let Backend::Broker(_) = client.backend {
            let callback = |job: &Option<RawJob>| job.as_ref().map(callback_of);
            let (on_success, on_complete) =
                (callback(&self.on_success), callback(&self.on_complete));
            let chunks: Vec<&[Uuid]> = if ids.is_empty() {
                vec![&[]]
            } else {
                ids.chunks(wire_batch::CHUNK).collect()
            };
            for chunk in chunks {
                let event = Event::Opened(Box::new(Opened {
                    version: wire_batch::EVENT_VERSION,
                    batch,
                    description: self.description.clone(),
                    created_at: wire::now_ms(),
                    total: ids.len() as u64,
                    members: chunk.to_vec(),
                    on_success: on_success.clone(),
                    on_complete: on_complete.clone(),
                }));
                let (body, properties) = event.message();
                client
                    .send_confirmed(&client.batches_queue, None, &body, properties)
                    .await?;
            }
        }
        let mut pending = Vec::new();
        for message in self.members {
            let Message {
                mut meta,
                body,
                mut properties,
                delayed,
                ..
            } = message;
            let mut headers = wire::headers(&properties).clone();
            wire::put_str(&mut headers, wire_batch::HEADER, &batch.to_string());
            properties = properties.with_headers(headers);
            let queue = std::mem::take(&mut meta.queue);
            let sent = client.send(&queue, delayed, &body, properties);
            pending.push((client.bounded(&queue, sent).await?, queue));
        }
        for (p, queue) in pending {
            client.bounded(&queue, p.confirmed()).await?;
        }
        Ok(batch)
    }

    fn encode_member<J: Job>(&self, job: &J, options: &Options) -> Result<Message, Error> {
        let queue = options.queue.as_deref().unwrap_or(J::QUEUE);
        let (meta, body) = self.client.encode(queue, job)?;
        self.client.message(meta, body, options, None)
    }

    fn callback<J: Job>(&mut self, job: J, queue: &str) -> Option<RawJob> {
        match self.client.encode(queue, &job) {
            Ok((meta, body)) => Some(RawJob {
                name: meta.name,
                queue: meta.queue,
                format: meta.format,
                body,
                max_attempts: meta.max_attempts,
            }),
            Err(e) => {
                self.error = self.error.take().or(Some(e));
                None
            }
        }
    }
}

/// A callback as the batch opened event carries it, under an id fixed now.
fn callback_of(job: &RawJob) -> Callback {
    Callback {
        id: Uuid::new_v4(),
        name: job.name.clone(),
        queue: job.queue.clone(),
        serializer: job.format.name().to_string(),
        body: job.body.clone(),
        max_attempts: job.max_attempts,
    }
}
