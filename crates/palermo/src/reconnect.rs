//! Coming back after the broker connection drops: what the worker, the [`crate::Client`] and
//! the admin recorder share.
//!
//! A broker restart, a failover or a network cut closes every connection, and the first
//! complaint about job queues is a worker that then stops consuming without a word
//! (celery#3201). Palermo reconnects in a plain loop: *connect → declare → consume until the
//! connection dies → back off → again*. Each round runs the same code as a start, so a
//! reconnected worker is set up exactly like a fresh one. lapin's own auto-recovery is not
//! used: it replays the topology of the old connection behind the caller's back, while a
//! worker must also re-open its delay queues, restart heartbeats and log what it lost.
//!
//! The delays between attempts are a [`Backoff`]: [`DEFAULT_BACKOFF`] tries after 250 ms,
//! then doubles up to 5 s, each plus 0–25 % jitter so that a fleet of workers does not
//! reconnect in lockstep. Once the broker is back, a worker is consuming again within the
//! cap (5 s) plus the time to connect.

use std::time::{Duration, Instant};

use lapin::{
    protocol::{AMQPErrorKind, AMQPSoftError},
    Connection, ErrorKind,
};

use tracing::{debug, warn};

use crate::{error::Error, retry::Backoff};

/// 250 ms, 500 ms, 1 s, 2 s, 4 s, then every 5 s, each plus 0–25 %.
pub const DEFAULT_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(250),
    max: Duration::from_secs(5),
    jitter: 0.25,
};

/// The longest one reconnect attempt (connect and declare) may take: a host that swallows
/// packets would otherwise hold an attempt for the system's TCP timeout (minutes).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// However close a bounded reconnect's deadline, its first attempt may take this long.
pub const FIRST_ATTEMPT: Duration = Duration::from_secs(2);

/// How often [`lost`] looks at a connection's state.
const POLL: Duration = Duration::from_millis(100);

/// Checks a reconnect backoff; the error says what to change.
pub fn validate(backoff: &Backoff) -> Result<(), Error> {
    if let Some(problem) = backoff.problem() {
        return Err(Error::Config(format!("reconnect backoff: {problem}")));
    }
    if backoff.max > Duration::from_secs(600) {
        return Err(Error::Config(format!(
            "the reconnect backoff max is {:?}; keep it at 10 minutes or less, or a worker stays idle that long after the broker is back",
            backoff.max
        )));
    }
    Ok(())
}

/// The attempts of one reconnect: their count and the delays between them.
#[derive(Debug)]
pub struct Schedule {
    backoff: Backoff,
    attempts: u32,
    since: Instant,
}

impl Schedule {
    /// A reconnect starting now.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            attempts: 0,
            since: Instant::now(),
        }
    }

    /// Counts an attempt and says how long to wait before it.
    pub fn next_delay(&mut self) -> Duration {
        self.attempts += 1;
        self.backoff.delay(self.attempts)
    }

    /// Attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Time since the reconnect started.
    pub fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }

    /// Whether a failed attempt is worth a warning: the first, then about once a minute,
    /// so that a long outage is visible in the log without flooding it.
    pub fn should_warn(&self) -> bool {
        let per_minute = (60.0 / self.backoff.max.as_secs_f64().max(0.001)).ceil() as u32;
        self.attempts <= 1 || self.attempts.checked_rem(per_minute) == Some(0)
    }
}

/// A reconnect that ran out of time: how many attempts it made and the last one's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error, or why no attempt was made.
    pub reason: String,
}

impl Schedule {
    /// The schedule for a reconnect after a connection made at `connected_at` died: the one
    /// in `slot`, continued, when that connection lived less than twice the backoff's cap (a
    /// broker that accepts connections and drops them is not hammered), else a new one.
    pub fn resume(
        slot: &mut Option<Schedule>,
        backoff: Backoff,
        connected_at: Instant,
    ) -> &mut Schedule {
        if connected_at.elapsed() > backoff.max * 2 {
            *slot = None;
        }
        slot.get_or_insert_with(|| Schedule::new(backoff))
    }
}

/// The one reconnect loop: waits the `schedule`'s next delay, makes an `attempt` (cut off
/// after [`ATTEMPT_TIMEOUT`], or at the `deadline`), and goes again until one succeeds.
///
/// Without a `deadline` (a worker, the recorder) it tries for as long as it takes and warns
/// about failed attempts the first time and then about once a minute. With one (the client,
/// inside an enqueue) the first attempt goes at once, may take [`FIRST_ATTEMPT`] however
/// close the deadline is, and the loop gives up with [`Exhausted`] when the next attempt
/// could not start before the deadline. Callers keep only their own concern: what an attempt
/// opens and what to do with it. Cancel-safe: dropping it drops the attempt in progress.
pub async fn retry_until<T, E, Fut>(
    schedule: &mut Schedule,
    deadline: Option<tokio::time::Instant>,
    who: &'static str,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, Exhausted>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    use tokio::time::Instant;
    let started = Instant::now();
    let (mut tries, mut reason) = (0, String::new());
    loop {
        if deadline.is_none() || tries > 0 {
            let delay = schedule.next_delay();
            if deadline.is_some_and(|deadline| Instant::now() + delay >= deadline) {
                return Err(Exhausted {
                    attempts: tries,
                    reason,
                });
            }
            tokio::time::sleep(delay).await;
        }
        tries += 1;
        let limit = match deadline {
            None => ATTEMPT_TIMEOUT,
            Some(deadline) if tries == 1 => deadline
                .max(started + FIRST_ATTEMPT)
                .saturating_duration_since(Instant::now()),
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
        };
        reason = match tokio::time::timeout(limit, attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("the broker did not answer within {limit:?}"),
        };
        if deadline.is_none() && schedule.should_warn() {
            warn!(who, error = %reason, attempts = tries, down_for = ?schedule.elapsed(), "cannot reconnect to the broker yet; still trying");
        } else {
            debug!(who, error = %reason, attempts = tries, "reconnect attempt failed");
        }
    }
}

/// Completes once `connection` is no longer usable (closed by the broker, reset, heartbeats
/// missed), within [`POLL`]. Cancel-safe.
///
/// It polls the state rather than listening to lapin's events: those are a queue, not a
/// broadcast, so every event reaches only one of a connection's listeners, and
/// `blocked::Blocked` listens to this one (a second listener made it miss blocked and
/// unblocked notices at random).
pub async fn lost(connection: &Connection) {
    let mut poll = tokio::time::interval(POLL);
    while connection.status().connected() {
        poll.tick().await;
    }
}

/// Whether the broker closed a channel because a delivery stayed unacked longer than its
/// `consumer_timeout` (30 minutes by default): `406 PRECONDITION_FAILED - delivery
/// acknowledgement on channel N timed out`.
pub fn is_consumer_timeout(error: &lapin::Error) -> bool {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => {
            matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
            ) && amqp
                .get_message()
                .as_str()
                .contains("delivery acknowledgement")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_backoff_doubles_up_to_its_cap() {
        let exact = DEFAULT_BACKOFF.with_jitter(0.0);
        assert_eq!(exact.delay(1), Duration::from_millis(250));
        assert_eq!(exact.delay(3), Duration::from_secs(1));
        assert_eq!(exact.delay(10), Duration::from_secs(5));
        assert!(validate(&DEFAULT_BACKOFF).is_ok());
        let slow = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(3600));
        assert!(validate(&slow)
            .unwrap_err()
            .to_string()
            .contains("10 minutes"));
        let mut config = crate::WorkerConfig::new(["mail"]);
        config.reconnect.base = Duration::ZERO;
        let err = config.validate().expect_err("zero base");
        assert!(err.to_string().contains("reconnect backoff"), "{err}");
    }

    #[test]
    fn a_long_outage_warns_about_once_a_minute() {
        let mut schedule = Schedule::new(DEFAULT_BACKOFF);
        let mut warned = Vec::new();
        for _ in 0..30 {
            schedule.next_delay();
            if schedule.should_warn() {
                warned.push(schedule.attempts());
            }
        }
        assert_eq!(warned, vec![1, 12, 24]);
    }

    fn quick() -> Backoff {
        Backoff::exponential(Duration::from_millis(1), Duration::from_millis(2)).with_jitter(0.0)
    }

    #[tokio::test]
    async fn an_unbounded_reconnect_tries_until_an_attempt_succeeds() {
        let mut schedule = Schedule::new(quick());
        let mut calls = 0;
        let result: Result<u32, Exhausted> = retry_until(&mut schedule, None, "test", || {
            calls += 1;
            let outcome = if calls < 4 { Err("refused") } else { Ok(calls) };
            std::future::ready(outcome)
        })
        .await;
        assert_eq!(result, Ok(4));
        assert_eq!(schedule.attempts(), 4, "a delay before every attempt");
    }

    #[tokio::test]
    async fn a_bounded_reconnect_tries_at_once_then_gives_up_at_its_deadline() {
        let mut schedule = Schedule::new(quick());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let mut calls = 0;
        let result: Result<(), Exhausted> =
            retry_until(&mut schedule, Some(deadline), "test", || {
                calls += 1;
                std::future::ready(Err(format!("refused {calls}")))
            })
            .await;
        let gave_up = result.expect_err("never connects");
        assert!(gave_up.attempts >= 2, "{gave_up:?}");
        assert_eq!(gave_up.reason, format!("refused {}", gave_up.attempts));
        assert!(tokio::time::Instant::now() >= deadline - Duration::from_millis(2));
    }
}
