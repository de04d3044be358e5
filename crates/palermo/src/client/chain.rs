//! Enqueueing a chain: [`Client::chain`], then a step per [`Chain::then`], then
//! [`Chain::enqueue`]. Each step runs after the one before it succeeded (docs/workflows.md).
//!
//! Only the first step is published; the others travel in its `x-palermo-chain` header
//! (`wire/chain.rs`) and the worker that finishes a step publishes the next. Each step is
//! made by the same code as a single enqueue (`enqueue.rs`: the job, its [`Options`]), so
//! a step's queue, priority, delay and headers mean what they mean there; the header is
//! checked for size here, so a chain too large is refused before anything is published.

use std::time::UNIX_EPOCH;

use uuid::Uuid;

use super::{enqueue::Message, Client, Options, RawJob};
use crate::{
    broker::topology,
    error::Error,
    job::Job,
    wire::{
        self,
        chain::{ChainHeader, Step, MAX_BYTES, VERSION},
    },
};

/// A chain's id: what [`Chain::enqueue`] returns, and what every step's `x-palermo-chain`
/// header (and a failed step's record) names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChainId(pub Uuid);

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A chain being built: jobs that run one after the other, each once the one before it
/// succeeded. A step that fails for good stops the chain in the failed queue, with the steps
/// after it in its record; retrying it (dashboard, `palermo failed retry`) resumes the chain.
///
/// ```
/// use palermo::Options;
///
/// #[palermo::job(queue = "media")]
/// async fn transcode(video: u64) -> Result<(), palermo::JobError> { Ok(()) }
/// #[palermo::job(queue = "media")]
/// async fn thumbnail(video: u64) -> Result<(), palermo::JobError> { Ok(()) }
/// #[palermo::job(queue = "mail")]
/// async fn notify(video: u64) -> Result<(), palermo::JobError> { Ok(()) }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
/// let fake = palermo::testing::Fake::new();
/// let client = fake.client();
/// let chain = client
///     .chain()
///     .then(Transcode { video: 7 })
///     .then(Thumbnail { video: 7 })
///     .then_with(Notify { video: 7 }, Options::new().priority(5))
///     .enqueue()
///     .await?;
/// let runs = fake.drain().await;
/// let names: Vec<_> = runs.iter().map(|run| run.name.as_str()).collect();
/// assert_eq!(names, ["transcode", "thumbnail", "notify"]);
/// # let _ = chain; Ok(()) }
/// ```
#[must_use = "a chain does nothing until it is enqueued"]
pub struct Chain {
    client: Client,
    /// Each step's message, or the first error in making one (returned by `enqueue`).
    steps: Result<Vec<Message>, Error>,
}

impl Client {
    /// Starts a chain of jobs enqueued by this client (see [`Chain`]).
    pub fn chain(&self) -> Chain {
        Chain {
            client: self.clone(),
            steps: Ok(Vec::new()),
        }
    }
}

impl Chain {
    /// Adds `job` as the next step, on its own queue, as [`Client::enqueue`] would.
    pub fn then<J: Job>(self, job: J) -> Self {
        self.then_with(job, Options::new())
    }

    /// Adds `job` as the next step with `options`: another queue, a priority, headers, a
    /// delay (counted from when the step before it succeeded) or a time. A unique key is
    /// refused: a chain step takes no lock.
    pub fn then_with<J: Job>(self, job: J, options: Options) -> Self {
        let queue = options
            .queue
            .clone()
            .unwrap_or_else(|| J::QUEUE.to_string());
        self.add(
            |client| {
                if J::UNIQUE.is_some() {
                    return Err(no_lock(J::NAME));
                }
                client.job_message(&queue, &job, &options)
            },
            &options,
        )
    }

    /// Adds a job given by name and serialized arguments as the next step (for tools and
    /// other languages' conventions), as [`Client::enqueue_raw`] would.
    pub fn then_raw(self, mut job: RawJob, options: Options) -> Self {
        self.add(
            |client| {
                if let Some(queue) = &options.queue {
                    job.queue.clone_from(queue);
                }
                let meta = client.raw_meta(&job)?;
                client.message(meta, job.body, &options, None)
            },
            &options,
        )
    }

    fn add(
        mut self,
        make: impl FnOnce(&Client) -> Result<Message, Error>,
        options: &Options,
    ) -> Self {
        if let Ok(steps) = &mut self.steps {
            let made = match &options.unique {
                Some(_) => Err(Error::Config(
                    "a chain step cannot take a unique lock (docs/workflows.md)".into(),
                )),
                None => make(&self.client).and_then(|message| {
                    topology::validate_queue_name(&message.meta.queue)?;
                    Ok(message)
                }),
            };
            match made {
                Ok(message) => steps.push(message),
                Err(e) => self.steps = Err(e),
            }
        }
        self
    }

    /// Publishes the first step with the others in its header, and returns once the broker
    /// confirmed it. Refused before anything is published when the chain is empty, a step
    /// could not be made (its arguments do not serialize, its options are invalid) or the
    /// header is over [`crate::admin::wire::chain::MAX_BYTES`] ([`Error::ChainTooLarge`]).
    pub async fn enqueue(self) -> Result<ChainId, Error> {
        let mut steps = self.steps?.into_iter();
        let Some(mut first) = steps.next() else {
            return Err(Error::Config("a chain needs at least one step".into()));
        };
        let next = steps
            .map(|message| step(&message))
            .collect::<Result<Vec<_>, _>>()?;
        let id = ChainId(Uuid::new_v4());
        let header = ChainHeader {
            v: VERSION,
            id: id.0,
            step: 1,
            steps: u32::try_from(next.len() + 1).unwrap_or(u32::MAX),
            next,
        };
        let mut headers = wire::headers(&first.properties).clone();
        header
            .write(&mut headers)
            .map_err(|bytes| Error::ChainTooLarge {
                bytes,
                max: MAX_BYTES,
            })?;
        first.properties = first.properties.with_headers(headers);
        self.client.publish(first).await?;
        Ok(id)
    }
}

/// A later step as the header carries it: its job, its options, and the due time its
/// message was given (a delay is counted again from the step before it).
fn step(message: &Message) -> Result<Step, Error> {
    let invalid = |e: wire::Malformed| Error::Config(e.0);
    let mut step = Step::of(&message.meta, &message.body).map_err(invalid)?;
    let headers = wire::headers(&message.properties);
    // The options' string headers (the first step's also pass the enqueue middleware,
    // which runs when a message is sent; later steps are sent by workers).
    for name in headers.inner().keys().map(|name| name.as_str()) {
        if name.starts_with("x-palermo-") {
            continue;
        }
        if let Ok(Some(value)) = wire::str_ref(headers, name) {
            step.headers.insert(name.to_string(), value.to_string());
        }
    }
    match message.when {
        super::options::When::Now => {}
        super::options::When::In(delay) => {
            step.delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        }
        super::options::When::At(at) => {
            let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            step.at_ms = Some(i64::try_from(ms).unwrap_or(i64::MAX));
        }
    }
    Ok(step)
}

fn no_lock(job: &str) -> Error {
    Error::Config(format!(
        "job {job:?} is #[job(unique)]: a chain step cannot take a unique lock (docs/workflows.md)"
    ))
}
