//! Where the bench connects: one broker, or the nodes of a cluster given as a comma-separated
//! `--amqp-url` list (`scripts/cluster.sh urls`), and the queue type it declares. The harness
//! talks to the first node; worker processes take the nodes in turn, as the worker hosts of a
//! deployment spread over a cluster do, so that the scale rows measure consumers on every
//! node, not only on the one that leads the queue (docs/scaling.md).

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context};
use palermo::admin::topology::QueueType;

/// The broker nodes of a run and its queue type.
pub struct Nodes {
    urls: Vec<String>,
    next: AtomicUsize,
    pub queue_type: QueueType,
}

impl Nodes {
    /// Reads a URL or a comma-separated list of them; every entry must parse.
    pub fn parse(list: &str, queue_type: QueueType) -> anyhow::Result<Self> {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(String::from)
            .collect();
        if urls.is_empty() {
            bail!("--amqp-url names no broker");
        }
        for (number, url) in urls.iter().enumerate() {
            url.parse::<lapin::uri::AMQPUri>()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--amqp-url entry {} is not an AMQP URL", number + 1))?;
        }
        Ok(Self {
            urls,
            next: AtomicUsize::new(0),
            queue_type,
        })
    }

    /// The node the harness itself uses.
    pub fn first(&self) -> &str {
        &self.urls[0]
    }

    /// The arguments that point the next worker process at its node (the nodes in turn) and
    /// give it the run's queue type.
    pub fn worker_args(&self) -> Vec<String> {
        let next = self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len();
        vec!["--amqp-url".into(), self.urls[next].clone()]
    }

    /// `--queue-type quorum` for a Palermo worker of a quorum run; nothing for classic (the
    /// default), so that the harness still drives workers older than the flag.
    pub fn queue_type_args(&self) -> Vec<String> {
        match self.queue_type {
            QueueType::Classic => Vec::new(),
            other => vec!["--queue-type".into(), other.name().into()],
        }
    }
}
