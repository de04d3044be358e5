//! The tests on a three-node RabbitMQ cluster (the old `tests/cluster_*.rs`): each brings up
//! `scripts/cluster.sh`'s nodes itself (`support::cluster::Cluster`), so all are `#[ignore]`d
//! in the normal run and run one at a time:
//! `cargo test --test cluster -- cluster_failover:: --ignored --test-threads=1`.

#[path = "../support/mod.rs"]
mod support;

mod cluster_broker_chaos;
mod cluster_chaos;
mod cluster_control;
mod cluster_failover;
mod cluster_limits;
