//! Application state shared with jobs: a database pool, an HTTP client, settings.
//!
//! The idiom (as in axum's `State`): give the worker a value with
//! `Worker::builder(config).state(pool)`, and take it in a job with an argument of type
//! `palermo::State<T>`. The macro fills such arguments from the worker, they never travel in
//! the message. A job asking for a type the worker was not given fails for good with an
//! error naming the type.

use std::{
    any::{type_name, Any, TypeId},
    collections::HashMap,
    fmt,
    ops::Deref,
    sync::Arc,
};

/// A shared value of type `T` from the worker, cheap to clone.
///
/// ```
/// use palermo::{testing::Fake, State};
///
/// struct Mailer {
///     from: String,
/// }
///
/// #[palermo::job(queue = "mail")]
/// async fn send_email(to: String, mailer: State<Mailer>) -> Result<(), palermo::JobError> {
///     println!("{} -> {to}", mailer.from); // State<T> derefs to T
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palermo::Error> {
/// // A worker is given it with `Worker::builder(config).state(..)`; the fake the same way.
/// let fake = Fake::new().with_state(Mailer { from: "noreply@example.com".into() });
/// fake.client().enqueue(SendEmail { to: "ada@example.com".into() }).await?;
/// assert!(fake.drain().await[0].outcome.is_ok());
/// # Ok(()) }
/// ```
pub struct State<T>(pub Arc<T>);

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The values given to a worker, one per type.
#[derive(Clone, Default)]
pub struct StateMap(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl StateMap {
    /// Adds a value, replacing one of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// Gets the value of type `T`.
    pub fn get<T: Send + Sync + 'static>(&self) -> Result<State<T>, MissingState> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
            .map(State)
            .ok_or(MissingState(type_name::<T>()))
    }
}

impl fmt::Debug for StateMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateMap({} values)", self.0.len())
    }
}

/// A job asked for state the worker was not given.
#[derive(Debug, thiserror::Error)]
#[error("the job needs state of type {0}, but the worker was not given one: call .state(value) on the worker builder")]
pub struct MissingState(pub &'static str);
