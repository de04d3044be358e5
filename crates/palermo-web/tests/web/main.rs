//! The dashboard end to end, one module per concern, in one test binary (each binary links
//! the crate and its dependencies): `cargo test -p palermo-web --test web -- pages::`.

#[path = "../support/mod.rs"]
mod support;

mod actions;
mod control;
mod failed_list;
mod metrics;
mod pages;
mod schedules;
mod security;
