//! What a test created on the broker, deleted when the test ends, however it ends.
//!
//! A cleanup call written at the end of a test never runs when an assertion before it fails,
//! and every failed run used to leave its queues behind. [`Owned`] deletes its names in `Drop`,
//! which also runs while a panic unwinds. `Drop` is synchronous and usually runs inside the
//! test's tokio runtime (where blocking on a future panics), so the deletion runs on a thread
//! of its own, with a small runtime and a connection of its own, bounded by
//! [`CLEANUP_TIMEOUT`]; when the broker is gone it says so on stderr instead of panicking
//! again. The async [`Owned::delete_now`] does the same on a connection the test already has.

use std::{sync::Mutex, time::Duration};

use lapin::{
    options::{ExchangeDeclareOptions, QueueDeclareOptions},
    Connection, ExchangeKind,
};

/// How long dropping an [`Owned`] waits for the broker, all deletions together.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one broker operation of a cleanup may take.
const STEP: Duration = Duration::from_secs(5);

/// Queue and exchange names a test created: deleted by [`Owned::delete_now`] or on drop.
#[derive(Default)]
pub struct Owned(Mutex<Names>);

#[derive(Default, Clone, Debug)]
pub struct Names {
    pub queues: Vec<String>,
    pub exchanges: Vec<String>,
}

impl Names {
    fn is_empty(&self) -> bool {
        self.queues.is_empty() && self.exchanges.is_empty()
    }
}

impl Owned {
    fn names(&self) -> std::sync::MutexGuard<'_, Names> {
        // A panic while the lock was held must not stop the cleanup.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers a queue to delete.
    pub fn queue(&self, name: &str) {
        self.names().queues.push(name.to_string());
    }

    /// Remembers an exchange to delete.
    pub fn exchange(&self, name: &str) {
        self.names().exchanges.push(name.to_string());
    }

    /// What it will delete.
    pub fn list(&self) -> Names {
        self.names().clone()
    }

    /// Takes over what `other` owns.
    pub fn adopt(&self, other: &Owned) {
        let taken = std::mem::take(&mut *other.names());
        let mut names = self.names();
        names.queues.extend(taken.queues);
        names.exchanges.extend(taken.exchanges);
    }

    /// Deletes everything now over `connection`.
    pub async fn delete_now(&self, connection: &Connection) {
        let names = std::mem::take(&mut *self.names());
        if let Err(e) = delete(connection, &names).await {
            eprintln!("[test cleanup] {e}; left behind: {names:?}");
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names());
        if !names.is_empty() {
            delete_on_own_thread(names);
        }
    }
}

/// Deletes `names` from a synchronous context, possibly inside a runtime.
fn delete_on_own_thread(names: Names) {
    let what = names.clone();
    let deleted =
        palermo_testdb::finish_on_own_thread("test-cleanup", CLEANUP_TIMEOUT, async move {
            connect_and_delete(&names).await
        });
    if let Err(e) = deleted {
        eprintln!("[test cleanup] {e}; left behind: {what:?}");
    }
}

async fn connect_and_delete(names: &Names) -> Result<(), String> {
    let url = super::amqp_url();
    let connect = palermo::admin::broker::connect(&url, "test cleanup");
    let connection = tokio::time::timeout(STEP, connect)
        .await
        .map_err(|_| "the broker did not answer".to_string())?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let result = delete(&connection, names).await;
    let _ = connection.close(200, "test cleanup".into()).await;
    result
}

/// A kind of broker object a test owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Queue,
    Exchange,
}

/// Deletes the exchanges, then the queues. Deleting what is already gone succeeds; an error
/// closes the channel, so each deletion has a channel of its own.
async fn delete(connection: &Connection, names: &Names) -> Result<(), String> {
    let exchanges = names.exchanges.iter().map(|name| (Object::Exchange, name));
    let queues = names.queues.iter().map(|name| (Object::Queue, name));
    let mut failures = Vec::new();
    for (object, name) in exchanges.chain(queues) {
        let step = async {
            let channel = connection.create_channel().await?;
            match object {
                Object::Exchange => {
                    let options = Default::default();
                    channel
                        .exchange_delete(name.as_str().into(), options)
                        .await?
                }
                Object::Queue => {
                    let options = Default::default();
                    channel
                        .queue_delete(name.as_str().into(), options)
                        .await
                        .map(|_| ())?
                }
            }
            channel.close(200, "done".into()).await
        };
        if let Err(e) = bounded(step).await {
            failures.push(format!("{object:?} {name}: {e}"));
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(failures.join("; ")),
    }
}

async fn bounded<T>(
    step: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(STEP, step).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {STEP:?}")),
    }
}

/// Whether `object` named `name` exists: a passive declare on a channel of its own (which
/// the broker closes when it does not).
pub async fn exists(connection: &Connection, object: Object, name: &str) -> bool {
    let Ok(channel) = connection.create_channel().await else {
        return false;
    };
    let found = match object {
        Object::Queue => {
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let declared = channel.queue_declare(name.into(), passive, Default::default());
            declared.await.is_ok()
        }
        Object::Exchange => {
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let kind = ExchangeKind::Direct;
            let declared = channel.exchange_declare(name.into(), kind, passive, Default::default());
            declared.await.is_ok()
        }
    };
    let _ = channel.close(200, "done".into()).await;
    found
}
