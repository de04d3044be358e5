//! The enqueue calls: [`Client::enqueue`], [`Client::enqueue_with`], [`Client::enqueue_many`]
//! and [`Client::enqueue_raw`], and what each returns ([`Enqueued`]).
//!
//! Every call goes through the same two steps, so that they all follow the same rules: a
//! job and its [`Options`] become a [`Message`] (queue, priority, headers, due time, lock),
//! then the message is published, taking its unique lock first when it has one
//! (`unique.rs`). A `#[job(unique = ..)]` job, or options with [`Options::unique`], take the
//! lock on every call: now or later, one job or many, typed or raw.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use uuid::Uuid;

use super::{
    options::{Options, Unique, When},
    Backend, Client, RawJob,
};
use crate::{
    broker::delay,
    error::Error,
    job::Job,
    serializer::Format,
    unique,
    wire::{self, header, JobMeta},
};

/// What an enqueue did: enqueued the job, or found its unique key taken.
///
/// ```
/// # use palermo::Enqueued;
/// # fn report(enqueued: Enqueued) {
/// match enqueued {
///     Enqueued::New(id) => println!("enqueued {id}"),
///     Enqueued::Duplicate(id) => println!("job {id} holds the key: nothing enqueued"),
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// The job was enqueued with this id (confirmed by the broker).
    New(Uuid),
    /// A job with the same unique key is queued, delayed or running: nothing was enqueued;
    /// this is the id of that job. Only a unique enqueue returns it.
    Duplicate(Uuid),
}

impl Enqueued {
    /// The new job's id, or the existing one's.
    pub fn id(&self) -> Uuid {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => *id,
        }
    }

    /// Whether this enqueue created the job (`false`: a job already held the unique key).
    pub fn is_new(&self) -> bool {
        matches!(self, Enqueued::New(_))
    }
}

/// A job ready to publish: what its [`Options`] made of it.
pub(super) struct Message {
    pub(super) meta: JobMeta,
    pub(super) body: Vec<u8>,
    pub(super) properties: BasicProperties,
    /// Through the delay queues, for this long, when it runs later.
    pub(super) delayed: Option<(delay::Kind, Duration)>,
    /// The lock queue it takes first, and the lock's TTL.
    pub(super) lock: Option<(String, Duration)>,
    /// When it runs, as the options said (a chain's later step counts a delay again).
    pub(super) when: When,
}

impl Client {
    /// Enqueues a job on its queue, to run now; returns once the broker confirmed it
    /// ([`Enqueued::New`] with its id). A `#[job(unique = ..)]` job whose key is taken is not
    /// enqueued ([`Enqueued::Duplicate`] with the holder's id). The same as
    /// [`Client::enqueue_with`] with [`Options::new`].
    ///
    /// ```
    /// #[palermo::job(queue = "mail")]
    /// async fn send_email(to: String) -> Result<(), palermo::JobError> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
    /// # let client = palermo::testing::Fake::new().client();
    /// let id = client.enqueue(SendEmail { to: "ada@example.com".into() }).await?.id();
    /// # let _ = id; Ok(()) }
    /// ```
    pub async fn enqueue<J: Job>(&self, job: J) -> Result<Enqueued, Error> {
        self.enqueue_with(job, Options::new()).await
    }

    /// Enqueues a job with [`Options`]: another queue, a delay or a time, a priority, a
    /// unique key, headers. Unset options keep the job's own settings, and a
    /// `#[job(unique = ..)]` job takes its lock here too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palermo::{Enqueued, Options};
    ///
    /// #[palermo::job(queue = "reports")]
    /// async fn send_digest(user_id: u64) -> Result<(), palermo::JobError> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
    /// # let client = palermo::testing::Fake::new().client();
    /// let options = Options::new()
    ///     .delay(Duration::from_secs(3600))
    ///     .unique("digest:42", Duration::from_secs(7200));
    /// match client.enqueue_with(SendDigest { user_id: 42 }, options).await? {
    ///     Enqueued::New(id) => println!("digest {id} runs in an hour"),
    ///     Enqueued::Duplicate(id) => println!("digest {id} is already on its way"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_with<J: Job>(&self, job: J, options: Options) -> Result<Enqueued, Error> {
        let queue = options.queue.as_deref().unwrap_or(J::QUEUE);
        let message = self.job_message(queue, &job, &options)?;
        self.publish(message).await
    }

    /// Enqueues many jobs with the same [`Options`], publishing them all before waiting for
    /// the confirms (one round trip for the lot), and returns one [`Enqueued`] per job, in
    /// order. Unique jobs (the job's or the options' key) are enqueued one at a time instead,
    /// each taking its lock; a key given in the options is one key for all of them, so only
    /// the first is enqueued. On `Err`, some of the jobs may have been stored.
    ///
    /// ```
    /// use palermo::Options;
    ///
    /// #[palermo::job]
    /// async fn charge_card(order_id: u64) -> Result<(), palermo::JobError> {
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
    /// # let client = palermo::testing::Fake::new().client();
    /// let jobs = (1..=100).map(|order_id| ChargeCard { order_id });
    /// let enqueued = client.enqueue_many(jobs, Options::new().queue("billing")).await?;
    /// assert_eq!(enqueued.len(), 100);
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_many<J: Job>(
        &self,
        jobs: impl IntoIterator<Item = J>,
        options: Options,
    ) -> Result<Vec<Enqueued>, Error> {
        let queue = options.queue.as_deref().unwrap_or(J::QUEUE);
        let locking = J::UNIQUE.is_some() || options.unique.is_some();
        let mut enqueued = Vec::new();
        let mut pending = Vec::new();
        for job in jobs {
            let message = self.job_message(queue, &job, &options)?;
            if locking {
                enqueued.push(self.publish(message).await?);
                continue;
            }
            let Message {
                meta,
                body,
                properties,
                delayed,
                ..
            } = message;
            let sent = self.send(queue, delayed, &body, properties);
            pending.push(self.bounded(queue, sent).await?);
            enqueued.push(Enqueued::New(meta.id));
        }
        for p in pending {
            if let Err(e) = self.bounded(queue, p.confirmed()).await {
                if let Some(sessions) = self.sessions().filter(|_| e.is_missing_object()) {
                    sessions.forget(queue);
                }
                return Err(e);
            }
        }
        Ok(enqueued)
    }

    /// Enqueues a job given by name and serialized arguments (for tools that do not link
    /// the job's code, like `palermo enqueue`), with [`Options`]; [`Options::queue`]
    /// replaces the raw job's queue. Only the options can make it unique.
    ///
    /// ```
    /// use palermo::{admin::RawJob, Format, Options};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
    /// # let client = palermo::testing::Fake::new().client();
    /// let job = RawJob {
    ///     name: "send_email".into(),
    ///     queue: "mail".into(),
    ///     format: Format::Json,
    ///     body: br#"{"to":"ada@example.com"}"#.to_vec(),
    ///     max_attempts: None,
    /// };
    /// client.enqueue_raw(job, Options::new().priority(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_raw(&self, job: RawJob, options: Options) -> Result<Enqueued, Error> {
        self.enqueue_raw_as(job, &options, Uuid::new_v4()).await
    }

    /// [`Client::enqueue_raw`] under the id `id` (a periodic tick's deterministic id).
    pub(crate) async fn enqueue_raw_as(
        &self,
        mut job: RawJob,
        options: &Options,
        id: Uuid,
    ) -> Result<Enqueued, Error> {
        if let Some(queue) = &options.queue {
            job.queue.clone_from(queue);
        }
        let mut meta = self.raw_meta(&job)?;
        meta.id = id;
        let message = self.message(meta, job.body, options, options.unique.clone())?;
        self.publish(message).await
    }

    /// Publishes `message`, taking its lock first when it has one.
    pub(super) async fn publish(&self, message: Message) -> Result<Enqueued, Error> {
        if message.lock.is_some() {
            return self.enqueue_locked(message).await;
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
        Ok(Enqueued::New(meta.id))
    }

    /// `job` serialized for `queue`, with `options` and its own unique lock unless the
    /// options give one.
    pub(super) fn job_message<J: Job>(
        &self,
        queue: &str,
        job: &J,
        options: &Options,
    ) -> Result<Message, Error> {
        let (meta, body) = self.encode(queue, job)?;
        let lock = options.unique.clone().or_else(|| {
            J::UNIQUE.map(|ttl| Unique {
                key: unique::default_key(J::NAME, &body),
                ttl,
            })
        });
        self.message(meta, body, options, lock)
    }

    /// The message of a job with `options` applied: its priority, headers, due time and
    /// lock.
    pub(super) fn message(
        &self,
        mut meta: JobMeta,
        body: Vec<u8>,
        options: &Options,
        lock: Option<Unique>,
    ) -> Result<Message, Error> {
        options.validate()?;
        if options.priority.is_some() {
            meta.priority = options.priority;
        }
        let mut properties = meta.properties();
        let mut headers = wire::headers(&properties).clone();
        for (name, value) in &options.headers {
            wire::put_str(&mut headers, name, value);
        }
        let due = match options.when {
            When::Now => None,
            When::In(delay) => Some(due_after(delay)?),
            When::At(at) => Some(at),
        };
        let delayed = due.map(|at| {
            let due_ms = at
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            wire::put_int(&mut headers, header::SCHEDULED_FOR, due_ms);
            wire::put_int(&mut headers, header::NEXT_RUN_AT, due_ms);
            (delay::Kind::Scheduled, delay::until(at))
        });
        let lock = match lock {
            Some(Unique { key, ttl }) => {
                unique::validate_ttl(ttl)?;
                let name = unique::lock_name(&key, ttl);
                wire::put_str(&mut headers, unique::HEADER, &name);
                Some((name, ttl))
            }
            None => None,
        };
        properties = properties.with_headers(headers);
        Ok(Message {
            meta,
            body,
            properties,
            delayed,
            lock,
            when: options.when,
        })
    }

    /// Serializes `job` in its format, with its metadata for `queue`. A fake client also
    /// decodes it back, as a worker would: an argument that does not round-trip fails here,
    /// in the test.
    pub(super) fn encode<J: Job>(&self, queue: &str, job: &J) -> Result<(JobMeta, Vec<u8>), Error> {
        let format = J::FORMAT.unwrap_or(self.format);
        let error = |source| Error::Serialize {
            job: J::NAME.to_string(),
            source,
        };
        let body = format.encode(job).map_err(error)?;
        if let Backend::Fake(_) = self.backend {
            format.decode::<J>(&body).map_err(error)?;
        }
        let mut meta = meta(J::NAME, queue, format, job.preview(), J::MAX_ATTEMPTS);
        meta.priority = J::PRIORITY;
        Ok((meta, body))
    }

    /// The metadata of a raw job; its body must decode in its format (for the preview).
    pub(super) fn raw_meta(&self, job: &RawJob) -> Result<JobMeta, Error> {
        let preview = job
            .format
            .to_json_value(&job.body)
            .map(|value| wire::preview(&value.to_string()))
            .map_err(|source| Error::Serialize {
                job: job.name.clone(),
                source,
            })?;
        Ok(meta(
            &job.name,
            &job.queue,
            job.format,
            preview,
            job.max_attempts,
        ))
    }
}

/// The metadata of a new job's first attempt.
fn meta(
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
        priority: None,
    }
}

/// The time `delay` from now; a delay past what a `SystemTime` holds is too long.
fn due_after(delay: Duration) -> Result<SystemTime, Error> {
    SystemTime::now()
        .checked_add(delay)
        .ok_or(Error::DelayTooLong {
            requested: delay,
            max: delay::MAX_DELAY,
        })
}
