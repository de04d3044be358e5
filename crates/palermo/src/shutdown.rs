//! Telling every task of a worker to stop: a broadcast "stop" that long-running loops select
//! on next to their work, as in mini-redis.

use tokio::sync::watch;

/// Requests a shutdown. Dropping it without calling [`Trigger::stop`] requests nothing.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for a shutdown request; clone one per task.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its first listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Asks every listener to stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when a stop is requested. If the trigger is dropped without a stop, this
    /// never completes.
    pub async fn requested(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
