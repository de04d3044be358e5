//! One test's world on the broker: its queue, failed queue and events exchange (unique
//! names), a client, the workers it starts, and a connection to look at queues. Dropping the
//! rig aborts its workers and deletes every name it made, also when the test panics, so a
//! failing test leaves nothing behind.
//!
//! ```ignore
//! let rig = Rig::new("billing").await;
//! rig.client().enqueue_with(Charge { order: 7 }, Options::new().queue(&rig.queue)).await?;
//! rig.start(Worker::builder(rig.config()).state(seen.clone()));
//! rig.wait_failed(1).await;
//! rig.stop().await;
//! let failures = rig.drain(&rig.failed).await;
//! ```

use std::{ops::Deref, path::PathBuf, sync::Mutex, time::Duration};

use palermo::{Client, Options, WorkerConfig};

use super::{broker::worker_config, eventually, unique, Broker, RunningWorker};

/// How long the rig's waits wait by default.
pub const WAIT: Duration = Duration::from_secs(20);

/// A test's queues, client and workers; see the module doc.
pub struct Rig {
    // Fields drop in order: the workers stop before the names are deleted, so none of them
    // declares a queue again after the cleanup.
    workers: Mutex<Vec<RunningWorker>>,
    client: Client,
    /// The test's job queue (`test.<prefix>.<uuid>`).
    pub queue: String,
    /// Its failed queue.
    pub failed: String,
    /// Its events exchange (and the queue of the same name).
    pub events: String,
    files: TempFiles,
    broker: Broker,
}

/// Files of a test in the temp dir (worker logs), removed on drop.
#[derive(Default)]
struct TempFiles(Mutex<Vec<PathBuf>>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        let files = self.0.get_mut().unwrap_or_else(|p| p.into_inner());
        for file in files.drain(..) {
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Deref for Rig {
    type Target = Broker;

    fn deref(&self) -> &Broker {
        &self.broker
    }
}

impl Rig {
    /// A rig whose queue is named after `prefix`.
    pub async fn new(prefix: &str) -> Rig {
        let broker = Broker::connect().await;
        let (queue, failed) = (unique(prefix), unique("failed"));
        broker.track(&[&queue, &failed]);
        let events = broker.events_exchange();
        Rig {
            workers: Mutex::default(),
            client: super::client().await,
            queue,
            failed,
            events,
            files: TempFiles::default(),
            broker,
        }
    }

    /// Another queue of this test, deleted with the others.
    pub fn another_queue(&self, prefix: &str) -> String {
        let queue = unique(prefix);
        self.broker.track(&[&queue]);
        queue
    }

    /// A client of the test broker (declaring queues of the test's queue type).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A worker configuration serving [`Rig::queue`], failing into [`Rig::failed`].
    pub fn config(&self) -> WorkerConfig {
        worker_config(&[&self.queue], &self.failed, &self.events)
    }

    /// The same for other queues of this test.
    pub fn config_for(&self, queues: &[&str]) -> WorkerConfig {
        self.broker.track(queues);
        worker_config(queues, &self.failed, &self.events)
    }

    /// Starts a worker, stopped by [`Rig::stop`] or aborted when the rig is dropped.
    pub fn start(&self, builder: palermo::WorkerBuilder) {
        let running = RunningWorker::start_with(builder);
        self.workers().push(running);
    }

    /// Stops every worker gracefully; panics if one ended with an error.
    pub async fn stop(&self) {
        let workers = std::mem::take(&mut *self.workers());
        for worker in workers {
            worker.stop().await;
        }
    }

    /// The arguments that point a worker process (tests/support/test_worker.rs) at the rig's
    /// queue, failed queue and events exchange, on the test's queue type.
    pub fn worker_args(&self) -> [&str; 8] {
        [
            "--queues",
            &self.queue,
            "--failed-queue",
            &self.failed,
            "--events-exchange",
            &self.events,
            "--queue-type",
            super::queue_type().name(),
        ]
    }

    /// A path in the temp dir named after the rig's queue and `name` (e.g. a worker's log),
    /// removed when the rig is dropped.
    pub fn temp_file(&self, name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("{}.{name}", self.queue));
        self.files
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path.clone());
        path
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, Vec<RunningWorker>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueues `job` on the rig's queue (confirmed); its id.
    pub async fn enqueue<J: palermo::Job>(&self, job: J) -> uuid::Uuid {
        self.client
            .enqueue_with(job, Options::new().queue(&self.queue))
            .await
            .expect("enqueue")
            .id()
    }

    /// Waits until no message is ready in the rig's queue (every job taken and acked, or
    /// waiting in a delay queue).
    pub async fn wait_queue_empty(&self) {
        eventually(WAIT, "the queue is empty", || async {
            self.ready(&self.queue).await == 0
        })
        .await;
    }

    /// Waits until `n` messages are ready in the failed queue.
    pub async fn wait_failed(&self, n: u32) {
        let what = format!("{n} message(s) in the failed queue");
        eventually(WAIT, &what, || async {
            self.ready(&self.failed).await == n
        })
        .await;
    }

    /// Waits until a worker consumes from the queue.
    pub async fn wait_consuming(&self) {
        eventually(WAIT, "the worker consumes", || async {
            self.consumers(&self.queue).await >= 1
        })
        .await;
    }

    /// A queue that receives a copy of every retry published for `queue` at the moment it is
    /// published (bound to the first delay exchange), so a test can count retries without
    /// waiting for their delay. Deleted with the others.
    pub async fn watch_retries(&self, queue: &str) -> String {
        let probe = self.another_queue("retries");
        super::delay::bind_retry_probe(&self.broker.channel, &probe, queue).await;
        probe
    }
}
