//! One module per subcommand.

pub mod enqueue;
pub mod failed;
pub mod jobs;
pub mod limits;
pub mod migrate;
pub mod queues;
pub mod schedules;
pub mod stats;
pub mod web;
pub mod workers;
