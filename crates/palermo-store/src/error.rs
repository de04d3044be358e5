//! The errors of the store, the recorder and the admin actions. The CLI turns them into
//! one-line messages; their text says what failed and, where it can, what to change.

/// Everything that can go wrong in `palermo-store`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL names no supported database.
    #[error("unsupported database URL {url:?}: use sqlite:PATH (the default is sqlite:palermo.db) or postgres://user@host/db")]
    UnsupportedUrl { url: String },
    /// The database could not be opened or reached.
    #[error("cannot open the database {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// Applying the migrations failed.
    #[error("cannot migrate the database {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("database error while {doing}: {source}")]
    Query {
        doing: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A setting is invalid; the message says what to change.
    #[error("invalid recorder configuration: {0}")]
    InvalidConfig(String),
    /// A broker operation failed.
    #[error(transparent)]
    Broker(#[from] palermo::Error),
    /// Some of the failures asked for cannot be acted on; nothing was done.
    #[error("{}", rejected_message(.0))]
    Rejected(Vec<Rejection>),
    /// A worker id that no alive worker has; `known` lists the ids that would do.
    #[error("no alive worker has the id {id:?}; alive workers: {}", known_list(.known))]
    UnknownWorker { id: String, known: Vec<String> },
    /// A schedule name the active scheduler's table does not hold; `known` lists those it does.
    #[error("no schedule is named {name:?}; known schedules: {}", known_list(.known))]
    UnknownSchedule { name: String, known: Vec<String> },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none".into()
    } else {
        known.join(", ")
    }
}

/// Why one failure id cannot be retried or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The id as given.
    pub id: String,
    /// Why, for people.
    pub reason: String,
}

fn rejected_message(rejections: &[Rejection]) -> String {
    let list: Vec<String> = rejections
        .iter()
        .map(|r| format!("{}: {}", r.id, r.reason))
        .collect();
    format!("nothing was changed; {}", list.join("; "))
}

impl StoreError {
    pub(crate) fn query(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { doing, source }
    }
}

/// The result type of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
