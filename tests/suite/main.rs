//! The end-to-end suites against the shared broker, one module per concern (the old
//! `tests/<name>.rs` files), in one test binary: each binary links the whole workspace, so
//! one binary instead of eighteen is most of a CI build's link time saved.
//! `cargo test --test suite -- core::` runs one suite.
//!
//! The binary is one process, so the modules share what is process-wide: the `#[job]`
//! registry (every job's wire name is unique across the modules) and the tracing
//! subscriber (`trace_propagation.rs` installs its own, so it stays a binary of its own, as
//! does `duplicate_names.rs`, whose two jobs with one name stop every worker of its binary).

#[path = "../admin_support/mod.rs"]
mod admin_support;
#[path = "../browser_support/mod.rs"]
mod browser_support;
#[path = "../support/mod.rs"]
mod support;
#[path = "../web_support/mod.rs"]
mod web_support;

mod addresses;
mod cancel;
mod chains;
mod control;
mod core;
mod dashboard_browser;
mod examples;
mod least_privilege;
mod limits;
mod limits_seen;
mod log_format;
mod malformed;
mod metrics_browser;
mod middleware;
mod periodic;
mod priority;
mod python_list_failures;
mod python_producer;
mod quorum;
mod retries;
mod rig;
mod unique;
mod web_command;
mod worker_process;
