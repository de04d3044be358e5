//! Delaying a job on plain RabbitMQ: retries after a backoff, snoozes, and jobs enqueued for
//! later (`Options::delay`, `Options::at`) all wait here, in the broker, never as an unacked
//! message in a worker.
//!
//! RabbitMQ without plugins delays a message in one way: a queue with a message TTL whose
//! dead-letter exchange sends expired messages on. A single queue with per-message TTLs blocks
//! at its head (a message due in an hour holds back one due in a second behind it), so the
//! delay is split into binary levels, as NServiceBus does:
//!
//! ```text
//! publish ─► palermo.delay.24 ─bit 24 = 1─► queue palermo.delay.{retry,scheduled}.24 (TTL 2^24 s)
//!              │ bit 24 = 0                      │ expired (dead-lettered)
//!              ▼                                 ▼
//!            palermo.delay.23 ◄──────────────────┘  ... down to level 0 (TTL 1 s) ...
//!              ▼
//!            palermo.delay.deliver ─(binding per job queue)─► the job's queue
//! ```
//!
//! The routing key spells the delay in binary, highest bit first, after a kind letter and
//! before the destination queue: `r.0.0.….1.0.1.mail` waits 4 + 1 s then lands in `mail`.
//! Each level exchange is a topic exchange that looks at its own bit: 1 → its queue, whose TTL
//! is 2^level seconds; 0 → straight on to the next level. Every message in one level queue has
//! the same TTL, so the queue expires in arrival order and nothing blocks.
//!
//! The layout is fixed: [`LEVELS`] (25) topic exchanges, one delivery exchange and two queues
//! per level (retries and scheduled jobs apart, so `palermo queues` can count them apart):
//! 26 exchanges and 50 queues whatever the number of job queues, plus one binding per job
//! queue on the delivery exchange. Delays are whole seconds, rounded up, from 0 to
//! [`MAX_DELAY`] (2^25 − 1 s, about 388 days). Everything is durable and messages persistent,
//! so delayed jobs survive a broker restart. It is all declared lazily, by the first client or
//! worker that delays a job. docs/retries.md tells the whole story.

use std::time::{Duration, SystemTime};

use futures_util::{stream, StreamExt};
use lapin::{
    options::{ExchangeBindOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, Connection, ExchangeKind,
};

use crate::{
    broker::topology::{self, QueueType},
    error::Error,
};

mod queues;
mod quorum;

pub use queues::DelayQueues;

/// Binary delay levels: level `n` holds a message for 2^n seconds.
pub const LEVELS: u32 = 25;
/// The longest delay: 2^25 − 1 seconds, about 388 days.
pub const MAX_DELAY: Duration = Duration::from_secs((1 << LEVELS) - 1);
/// The prefix of every delay exchange and queue of classic deployments; no job queue may
/// start with it.
pub const PREFIX: &str = "palermo.delay.";
/// The same for quorum deployments. Each queue type has its own layout, so that classic and
/// quorum deployments sharing one broker never deliver a delayed job twice. Version 2: its
/// level queues dead-letter at-least-once (`delay/quorum.rs`); the first quorum layout
/// (`palermo.qdelay.<n>`, at-most-once) keeps its own names, so that a broker holding it
/// refuses nothing and its waiting jobs still arrive (docs/reliability.md, "Upgrading").
pub const QUORUM_PREFIX: &str = "palermo.qdelay.v2.";
/// The prefix of the first quorum layout, still reserved: its queues may exist on a broker.
const LEGACY_QUORUM_PREFIX: &str = "palermo.qdelay.";

/// The delay layout of one queue type: the names of its exchanges and queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// The type of the level queues.
    pub queue_type: QueueType,
}

impl Layout {
    /// The layout of `queue_type` deployments.
    pub fn of(queue_type: QueueType) -> Self {
        Self { queue_type }
    }

    fn prefix(self) -> &'static str {
        match self.queue_type {
            QueueType::Quorum => QUORUM_PREFIX,
            _ => PREFIX,
        }
    }

    /// The exchange of a level.
    pub fn exchange(self, level: u32) -> String {
        format!("{}{level}", self.prefix())
    }

    /// The exchange that routes a due job to its queue.
    pub fn deliver_exchange(self) -> String {
        format!("{}deliver", self.prefix())
    }

    /// The queue of a level and kind, e.g. `palermo.delay.retry.3` (TTL 8 s).
    pub fn queue(self, kind: Kind, level: u32) -> String {
        format!("{}{}.{level}", self.prefix(), kind.name())
    }

    /// The exchange and queue that keep delayed jobs whose queue was deleted meanwhile
    /// (quorum layout only, `delay/quorum.rs`).
    pub fn orphans(self) -> String {
        format!("{}orphans", self.prefix())
    }

    /// `palermo.delay.retry.*` or `palermo.delay.scheduled.*`: all the level queues of a
    /// kind, as `palermo queues` names them.
    pub fn queues_of(self, kind: Kind) -> String {
        format!("{}{}.*", self.prefix(), kind.name())
    }
}

/// Why a job waits, which decides the queues it waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A retry after a failed run.
    Retry,
    /// A job enqueued for later, or snoozed by its job.
    Scheduled,
}

impl Kind {
    const ALL: [Kind; 2] = [Kind::Retry, Kind::Scheduled];

    fn letter(self) -> &'static str {
        match self {
            Kind::Retry => "r",
            Kind::Scheduled => "s",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Retry => "retry",
            Kind::Scheduled => "scheduled",
        }
    }
}

/// Whether `name` belongs to a delay layout (job queues may not).
pub fn is_reserved(name: &str) -> bool {
    [PREFIX, QUORUM_PREFIX, LEGACY_QUORUM_PREFIX]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// A delay in whole seconds, rounded up so that a job never runs early; `None` when it is
/// longer than [`MAX_DELAY`].
pub fn whole_seconds(delay: Duration) -> Option<u64> {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    (secs <= MAX_DELAY.as_secs()).then_some(secs)
}

/// How long from now until `at` (zero when `at` has passed).
pub fn until(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::now()).unwrap_or_default()
}

/// The routing key that delays a job for `secs` seconds, then routes it to `queue`.
pub fn routing_key(kind: Kind, secs: u64, queue: &str) -> String {
    let mut key = String::with_capacity(2 + 2 * LEVELS as usize + queue.len());
    key.push_str(kind.letter());
    for level in (0..LEVELS).rev() {
        key.push_str(if (secs >> level) & 1 == 1 { ".1" } else { ".0" });
    }
    key.push('.');
    key.push_str(queue);
    key
}

/// The job queue a delay routing key leads to (a delivered job keeps the key it was
/// published with); `None` for an ordinary routing key.
pub fn destination(routing_key: &str) -> Option<&str> {
    let mut parts = routing_key.splitn(LEVELS as usize + 2, '.');
    if !matches!(parts.next(), Some("r" | "s")) {
        return None;
    }
    for _ in 0..LEVELS {
        if !matches!(parts.next(), Some("0" | "1")) {
            return None;
        }
    }
    parts.next().filter(|q| !q.is_empty())
}

/// Declares every delay exchange and queue and their bindings (harmless when they exist).
pub async fn declare(channel: &Channel, layout: Layout) -> Result<(), Error> {
    let deliver = layout.deliver_exchange();
    let deliver_args = match layout.queue_type {
        QueueType::Quorum => quorum::orphans(channel, layout).await?,
        _ => FieldTable::default(),
    };
    topology::declare_durable_exchange(channel, &deliver, ExchangeKind::Topic, deliver_args)
        .await?;
    // Bottom up, so that a level's dead-letter exchange exists before its queue fills.
    for level in 0..LEVELS {
        let this = layout.exchange(level);
        let next = match level {
            0 => deliver.clone(),
            _ => layout.exchange(level - 1),
        };
        declare_topic(channel, &this).await?;
        for kind in Kind::ALL {
            let name = layout.queue(kind, level);
            let mut args = layout.queue_type.arguments();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(1000_i64 << level),
            );
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(LongString::from(next.as_str())),
            );
            if layout.queue_type == QueueType::Quorum {
                quorum::at_least_once(&mut args);
            }
            channel
                .queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), args)
                .await
                .map_err(Error::broker("queue.declare (delay)"))
                .map_err(|e| topology::inequivalent(&name, layout.queue_type, e))?;
            channel
                .queue_bind(
                    name.as_str().into(),
                    this.as_str().into(),
                    short(&bit_pattern(kind.letter(), level, "1"))?,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(Error::broker("queue.bind (delay)"))?;
        }
        channel
            .exchange_bind(
                next.as_str().into(),
                this.as_str().into(),
                short(&bit_pattern("*", level, "0"))?,
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(Error::broker("exchange.bind (delay)"))?;
    }
    Ok(())
}

/// Binds a job queue to the delivery exchange, so that delayed jobs for it arrive.
pub async fn bind_queue(channel: &Channel, queue: &str, layout: Layout) -> Result<(), Error> {
    topology::validate_queue_name(queue)?;
    let pattern = format!("{}{queue}", "*.".repeat(LEVELS as usize + 1));
    channel
        .queue_bind(
            queue.into(),
            layout.deliver_exchange().as_str().into(),
            short(&pattern)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("queue.bind (delay delivery)"))
}

/// `kind.*.….*.bit.#` with `bit` at the word of `level`.
fn bit_pattern(kind: &str, level: u32, bit: &str) -> String {
    format!(
        "{kind}.{}{bit}.#",
        "*.".repeat((LEVELS - 1 - level) as usize)
    )
}

fn short(text: &str) -> Result<ShortString, Error> {
    Ok(topology::short_name("routing key", text)?)
}

async fn declare_topic(channel: &Channel, name: &str) -> Result<(), Error> {
    topology::declare_durable_exchange(channel, name, ExchangeKind::Topic, FieldTable::default())
        .await
}

/// How many jobs wait in the delay queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Failed jobs waiting for their next attempt.
    pub retrying: u64,
    /// Jobs enqueued for later (`Options::delay`, `Options::at`) or snoozed.
    pub scheduled: u64,
    /// Delayed jobs whose queue was deleted while they waited, kept in the quorum layout's
    /// orphans queue (always 0 on classic queues, which drop them).
    pub orphaned: u64,
    /// Whether the delay queues exist (they are declared at the first delayed job).
    pub declared: bool,
}

/// Counts the jobs waiting in the delay queues, and the orphans of the quorum layout, by
/// passive declares (nothing is created; missing queues count as empty).
pub async fn waiting(connection: &Connection, layout: Layout) -> Result<Waiting, Error> {
    let levels =
        (0..LEVELS).flat_map(|level| Kind::ALL.map(|kind| (Some(kind), layout.queue(kind, level))));
    let orphans = (layout.queue_type == QueueType::Quorum).then(|| (None, layout.orphans()));
    let depths = stream::iter(levels.chain(orphans))
        .map(|(kind, queue)| async move { (kind, topology::inspect(connection, &queue).await) })
        .buffered(PARALLEL_INSPECTIONS)
        .collect::<Vec<_>>()
        .await;
    let mut waiting = Waiting::default();
    for (kind, depth) in depths {
        let depth = depth?;
        waiting.declared |= depth.is_some();
        let ready = depth.map_or(0, |depth| u64::from(depth.ready));
        match kind {
            Some(Kind::Retry) => waiting.retrying += ready,
            Some(Kind::Scheduled) => waiting.scheduled += ready,
            None => waiting.orphaned += ready,
        }
    }
    Ok(waiting)
}

/// Passive declares [`waiting`] keeps in flight at once: the layout has 50 queues, and one
/// after another they made the dashboard's overview twice as slow.
const PARALLEL_INSPECTIONS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_spell_the_delay_in_binary() {
        let key = routing_key(Kind::Retry, 5, "mail.hd");
        assert!(key.starts_with("r.0.0."), "{key}");
        assert!(key.ends_with(".0.1.0.1.mail.hd"), "{key}");
        assert_eq!(key.split('.').count(), 1 + LEVELS as usize + 2);
        assert_eq!(destination(&key), Some("mail.hd"));
        assert_eq!(destination("mail"), None);
        assert_eq!(destination("r.1.mail"), None);
        let longest = routing_key(Kind::Scheduled, MAX_DELAY.as_secs(), &"q".repeat(200));
        assert!(longest.len() <= 255, "{}", longest.len());
        assert!(!longest.contains(".0."));
    }

    #[test]
    fn bit_patterns_look_at_their_own_word() {
        assert_eq!(bit_pattern("r", LEVELS - 1, "1"), "r.1.#");
        let low = bit_pattern("*", 0, "0");
        assert_eq!(low.split('.').count(), 1 + LEVELS as usize + 1);
        assert!(low.ends_with(".0.#"));
    }

    #[test]
    fn delays_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), Some(0));
        assert_eq!(whole_seconds(Duration::from_millis(1)), Some(1));
        assert_eq!(whole_seconds(Duration::from_millis(2000)), Some(2));
        assert_eq!(whole_seconds(Duration::from_millis(2001)), Some(3));
        assert_eq!(whole_seconds(MAX_DELAY), Some((1 << 25) - 1));
        assert_eq!(whole_seconds(MAX_DELAY + Duration::from_millis(1)), None);
        assert!(MAX_DELAY > Duration::from_secs(30 * 24 * 3600));
    }

    #[test]
    fn names() {
        let classic = Layout::default();
        assert_eq!(classic.queue(Kind::Retry, 3), "palermo.delay.retry.3");
        assert_eq!(classic.exchange(24), "palermo.delay.24");
        assert!(is_reserved(&classic.queue(Kind::Scheduled, 0)));
        let quorum = Layout::of(QueueType::Quorum);
        assert_eq!(quorum.deliver_exchange(), "palermo.qdelay.v2.deliver");
        assert_eq!(quorum.queue(Kind::Retry, 3), "palermo.qdelay.v2.retry.3");
        assert!(is_reserved(&quorum.queue(Kind::Retry, 0)));
        assert!(
            is_reserved("palermo.qdelay.retry.0"),
            "the first quorum layout"
        );
        assert!(!is_reserved("palermo.failed"));
    }
}
