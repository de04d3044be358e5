//! The disruptive tests (the old `tests/disruptive_*.rs`): they restart the broker, raise
//! resource alarms, delete the shared delay layout and kill processes, so every test is
//! `#[ignore]`d in the normal run and this binary runs afterwards, one test at a time:
//! `cargo test --test disruptive -- --ignored --test-threads=1` (one module:
//! `-- disruptive_alarm:: --ignored --test-threads=1`). One binary: each links the whole
//! workspace.

#[path = "../admin_support/mod.rs"]
mod admin_support;
#[path = "../support/mod.rs"]
mod support;

mod disruptive_admin;
mod disruptive_alarm;
mod disruptive_chains;
mod disruptive_chaos;
mod disruptive_consumer_timeout;
mod disruptive_control;
mod disruptive_healing;
mod disruptive_limits;
mod disruptive_poison;
mod disruptive_reconnect;
mod disruptive_retries;
mod disruptive_scheduler;
mod disruptive_unique;
