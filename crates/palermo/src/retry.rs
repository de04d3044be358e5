//! The retry policy: how many times a job runs and how long it waits between runs.
//!
//! A failed run (an error, a panic, a timeout) is retried while attempts remain, after a delay
//! that doubles with each attempt, capped, plus random jitter so that jobs which failed
//! together (a database restart) do not all come back in the same second:
//!
//! ```text
//! delay(n) = min(max, base × 2^(n−1)) × (1 + jitter × r)     r uniform in [0, 1)
//! ```
//!
//! where `n` is the attempt that just failed (1 for the first run). With `jitter < 1` each
//! delay is longer than the one before it until the cap. The delay queues count in whole
//! seconds, so a delay is rounded up to the next second (see [`crate::broker::delay`]).
//!
//! The defaults ([`DEFAULT_MAX_ATTEMPTS`] runs, [`Backoff::DEFAULT`]) spread the retries over
//! about a day: enough to ride out a night-time outage of a dependency, short enough that a
//! job broken for good reaches the failed queue while its cause is still fresh. Sidekiq's 25
//! retries span three weeks; Celery retries 3 times, 3 minutes apart, which gives up within
//! ten minutes of an outage. docs/retries.md compares them.
//!
//! Whether a failed run is retried at all is decided in `worker/decide.rs`.

use std::time::Duration;

use crate::error::Error;

use uuid::Uuid;

/// How many times a job runs when neither the job nor its message says: the first run and
/// 14 retries, about 26 hours in all with [`Backoff::DEFAULT`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 15;

/// Exponential backoff with a cap and jitter:
///
/// ```text
/// delay(n) = min(max, base × 2^(n−1)) × (1 + jitter × r)     r uniform in [0, 1)
/// ```
///
/// where `n` is the attempt that just failed (1 for the first run); the delay queues round
/// it up to whole seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The delay after the first failed run (before jitter). Defaults to 15 s.
    pub base: Duration,
    /// The longest delay between two runs (before jitter). Defaults to 6 hours.
    pub max: Duration,
    /// Random extra time, as a fraction of the delay: 0.25 adds 0 to 25 %. From 0 to 1.
    /// Defaults to 0.25.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Backoff {
    /// 15 s, 30 s, 1 min, 2 min ... doubling up to 6 hours, each plus 0–25 %.
    pub const DEFAULT: Backoff = Backoff {
        base: Duration::from_secs(15),
        max: Duration::from_secs(6 * 3600),
        jitter: 0.25,
    };

    /// Exponential backoff from `base` up to `max`, with the default jitter.
    pub const fn exponential(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            jitter: Self::DEFAULT.jitter,
        }
    }

    /// This backoff with another jitter (0 makes the delays exact, for tests).
    pub const fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Checks the numbers; the error says what to change.
    pub fn validate(&self) -> Result<(), Error> {
        match self.problem() {
            Some(problem) => Err(Error::Config(problem)),
            None => Ok(()),
        }
    }

    /// What is wrong with the numbers, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.base.is_zero() {
            return Some("the backoff base must be more than zero".into());
        }
        if self.max < self.base {
            return Some(format!(
                "the backoff max ({:?}) is shorter than its base ({:?})",
                self.max, self.base
            ));
        }
        if self.max > crate::broker::delay::MAX_DELAY {
            return Some(format!(
                "the backoff max ({:?}) is longer than the longest delay the delay queues hold ({:?})",
                self.max,
                crate::broker::delay::MAX_DELAY
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Some(format!(
                "the backoff jitter is {}; it must be from 0 to 1",
                self.jitter
            ));
        }
        None
    }

    /// The delay before the run after failed attempt `attempt` (1 for the first run).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, random_unit())
    }

    /// [`Backoff::delay`] with the random number `r` (in [0, 1)) given.
    pub fn delay_with(&self, attempt: u32, r: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(64) as i32;
        let capped = (self.base.as_secs_f64() * 2f64.powi(doublings)).min(self.max.as_secs_f64());
        let factor = 1.0 + self.jitter.clamp(0.0, 1.0) * r.clamp(0.0, 1.0);
        Duration::try_from_secs_f64(capped * factor)
            .unwrap_or(crate::broker::delay::MAX_DELAY)
            .min(crate::broker::delay::MAX_DELAY)
    }
}

/// A number in [0, 1) from the OS's random source (through a v4 UUID, which needs no other
/// dependency).
fn random_unit() -> f64 {
    let bits = (Uuid::new_v4().as_u128() >> 75) as u64; // 53 random bits
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::exponential(Duration::from_secs(1), Duration::from_secs(10));
        let exact: Vec<u64> = (1..=6).map(|n| b.delay_with(n, 0.0).as_secs()).collect();
        assert_eq!(exact, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay_with(1, 0.999).as_millis(), 1249);
        assert_eq!(b.delay_with(u32::MAX, 0.5), Duration::from_millis(11250));
    }

    #[test]
    fn jitter_keeps_delays_growing() {
        let b = Backoff::DEFAULT;
        for n in 1..10 {
            assert!(
                b.delay_with(n, 0.9999) < b.delay_with(n + 1, 0.0),
                "attempt {n}"
            );
            let d = b.delay(n);
            assert!(d >= b.delay_with(n, 0.0) && d <= b.delay_with(n, 0.9999));
        }
    }

    #[test]
    fn the_defaults_span_about_a_day() {
        let total: Duration = (1..DEFAULT_MAX_ATTEMPTS)
            .map(|n| Backoff::DEFAULT.delay_with(n, 0.0))
            .sum();
        assert_eq!(total.as_secs(), 95_505, "{total:?}");
    }

    #[test]
    fn validate_says_what_to_change() {
        assert!(Backoff::DEFAULT.validate().is_ok());
        let mut b = Backoff::DEFAULT;
        b.jitter = 2.0;
        assert!(b.validate().unwrap_err().to_string().contains("jitter"));
        b = Backoff::exponential(Duration::from_secs(10), Duration::from_secs(1));
        assert!(b.validate().unwrap_err().to_string().contains("shorter"));
        b = Backoff::exponential(Duration::ZERO, Duration::from_secs(1));
        assert!(b.validate().is_err());
    }
}
