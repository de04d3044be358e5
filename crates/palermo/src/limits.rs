//! Limits on a job across the whole fleet: at most N runs at once (`concurrency`), at most R
//! starts in any window W (`rate`), for the job as a whole or per value of one of its
//! arguments (`key`). This file holds what a limit *is* (set by `#[job]` or at run time, its
//! checks and the broker names it uses); `worker/limit_gate.rs` takes and gives back a
//! worker's permits on the broker. docs/limits.md explains the mechanism and its guarantees.

use std::{borrow::Cow, fmt, time::Duration};

use sha2::{Digest, Sha256};

use crate::{error::Error, serializer::Format};

/// The prefix of every broker object of a limit.
pub const PREFIX: &str = "palermo.limit.";
/// The highest concurrency limit.
pub const MAX_CONCURRENCY: u32 = 1000;
/// The highest number of starts per window.
pub const MAX_RATE: u32 = 100_000;
/// How long a per-key rate queue outlives its window once unused.
pub const KEY_EXPIRY_EXTRA: Duration = Duration::from_secs(10);
/// How much longer than its window a rate's start stays recorded. The broker counts a start
/// from when it stored the record; the job starts after the confirm, which comes after the
/// record is written to disk, a delay that varies by a few to tens of milliseconds on a busy
/// host. Without this slack two starts W apart at the broker could be a little less than W
/// apart in the jobs' own clocks (measured: 20 ms at 20/s on a loaded 2-core machine).
pub const RATE_SLACK: Duration = Duration::from_millis(50);
/// How long a job that finds its limit reached waits before it tries again.
pub const WAIT: Duration = Duration::from_secs(1);

/// A job's limits (`#[job(concurrency = 3, key = "account_id", rate = "10/s")]`, or
/// [`crate::WorkerConfig::limits`]). Every worker that runs the job must be given the same.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Limit {
    /// At most this many runs at once, fleet-wide (per key with `key`). Defaults to none.
    pub concurrency: Option<u32>,
    /// At most `count` starts in any window of `per`, fleet-wide (per key with `key`).
    /// Defaults to none.
    pub rate: Option<Rate>,
    /// The argument (a top-level field of the job's body) whose value the limits apply per;
    /// `None` limits the job as a whole. Defaults to `None`.
    pub key: Option<Cow<'static, str>>,
    /// A function of the job's arguments whose result the limits apply per
    /// (`#[job(key_fn = path)]`), instead of `key`. Defaults to `None`.
    pub key_fn: Option<KeyFn>,
    /// The limit's name on the broker; jobs that give the same name share one limit.
    /// Defaults to the job's name.
    pub name: Option<Cow<'static, str>>,
}

/// A key computed from a job's arguments: `#[job(concurrency = 1, key_fn = region_of)]`
/// with `fn region_of(job: &SyncAccount) -> String`, the job's arguments struct by
/// reference. `#[job]` writes it; the worker calls it on each delivery of the job.
#[derive(Clone, Copy)]
pub struct KeyFn {
    /// The function's path as written, which `palermo limits` shows as the key.
    pub name: &'static str,
    /// Decodes a job's body and computes its key; `None` when the body does not decode
    /// (the job then counts under the key `null`).
    pub compute: fn(Format, &[u8]) -> Option<String>,
}

impl fmt::Debug for KeyFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFn({})", self.name)
    }
}

/// Two key functions are the same when they have the same path (a function pointer's
/// address is no identity: one function may have several).
impl PartialEq for KeyFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for KeyFn {}

/// `count` starts per `per`: `"10/s"`, `"600/min"`, `"5/h"`, `"3/10s"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Starts allowed in any window.
    pub count: u32,
    /// The window's length.
    pub per: Duration,
}

impl Limit {
    /// No limit: what a job has unless it sets one.
    pub const NONE: Limit = Limit {
        concurrency: None,
        rate: None,
        key: None,
        key_fn: None,
        name: None,
    };

    /// Whether it limits nothing.
    pub fn is_none(&self) -> bool {
        self.concurrency.is_none() && self.rate.is_none()
    }

    /// Parses a worker flag's value, `JOB:concurrency=3,key=account_id,rate=10/s,name=x`,
    /// into the job's name and its limit.
    pub fn parse_flag(text: &str) -> Result<(String, Limit), Error> {
        let bad = |why: String| {
            Error::Config(format!(
                "--limit {text:?}: {why} (expected JOB:concurrency=N,rate=N/s,key=ARG,name=NAME)"
            ))
        };
        let (job, settings) = text
            .split_once(':')
            .ok_or_else(|| bad("no ':' after the job's name".into()))?;
        let mut limit = Limit::NONE;
        for setting in settings.split(',').map(str::trim) {
            let (what, value) = setting
                .split_once('=')
                .ok_or_else(|| bad(format!("{setting:?} is not name=value")))?;
            match what.trim() {
                "concurrency" => {
                    let n = value
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("concurrency {value:?} is not a whole number")))?;
                    limit.concurrency = Some(n);
                }
                "rate" => limit.rate = Some(Rate::parse(value).map_err(bad)?),
                "key" => limit.key = Some(value.trim().to_string().into()),
                "name" => limit.name = Some(value.trim().to_string().into()),
                other => return Err(bad(format!("unknown setting {other:?}"))),
            }
        }
        let job = job.trim().to_string();
        limit.validate(&job)?;
        Ok((job, limit))
    }

    /// Checks the limit of job `job`; the error says what to change.
    pub fn validate(&self, job: &str) -> Result<(), Error> {
        let bad = |why: String| Err(Error::Config(format!("the limit of job {job:?}: {why}")));
        if self.is_none() {
            return bad("it sets neither a concurrency nor a rate; give one or remove it".into());
        }
        if let Some(n) = self.concurrency {
            if !(1..=MAX_CONCURRENCY).contains(&n) {
                return bad(format!(
                    "concurrency is {n}; it must be from 1 to {MAX_CONCURRENCY}"
                ));
            }
        }
        if let Some(rate) = self.rate {
            rate.validate().or_else(bad)?;
        }
        if self.key.is_some() && self.key_fn.is_some() {
            return bad("it has both a key and a key_fn; give one".into());
        }
        if self.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return bad("its key is empty; name one of the job's arguments".into());
        }
        let name = self.name_for(job);
        if name.is_empty() || name.len() > 150 {
            return bad(format!(
                "its name {name:?} must be 1 to 150 bytes long (it names broker queues)"
            ));
        }
        Ok(())
    }

    /// What the limit holds per, as people read it: the key's argument, or `path()` for a
    /// key function; `None` for a limit of the whole job.
    pub fn per(&self) -> Option<String> {
        match (&self.key, &self.key_fn) {
            (Some(key), _) => Some(key.to_string()),
            (None, Some(f)) => Some(format!("{}()", f.name)),
            (None, None) => None,
        }
    }

    /// The key value of a job's body (format `format`): the key function's result, or the
    /// key argument's text; `None` for a limit of the whole job. A body that does not
    /// decode counts under the key `null`.
    pub(crate) fn key_of(&self, format: Format, body: &[u8]) -> Option<String> {
        let value = match (&self.key, &self.key_fn) {
            (Some(arg), _) => key_value(format, body, arg),
            (None, Some(f)) => (f.compute)(format, body),
            (None, None) => return None,
        };
        Some(value.unwrap_or_else(|| "null".into()))
    }

    /// The limit's name: its own, else the job's.
    pub fn name_for<'a>(&'a self, job: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(job)
    }
}

impl Rate {
    /// `"10/s"`, `"600/min"`, `"5/h"`, or a count per duration: `"3/10s"`, `"100/1m30s"`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| format!("rate {text:?} is not like \"10/s\" or \"600/min\""))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("rate {text:?}: {count:?} is not a whole number"))?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => humantime::parse_duration(other).map_err(|e| {
                format!("rate {text:?}: {other:?} is not s, min, h or a duration ({e})")
            })?,
        };
        let rate = Rate { count, per };
        rate.validate()?;
        Ok(rate)
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_RATE).contains(&self.count) {
            return Err(format!(
                "a rate allows 1 to {MAX_RATE} starts per window, not {}",
                self.count
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&self.per) {
            return Err(format!(
                "a rate's window is {:?}; it must be from 1 s to 1 day",
                self.per
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

/// The broker names of one limit, for one key value (or none).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Names {
    base: String,
}

impl Names {
    /// The names of limit `name` for the key value `key` (its text), if the limit has a key.
    pub fn of(name: &str, key: Option<&str>) -> Self {
        let mut base = format!("{PREFIX}{name}");
        if let Some(key) = key {
            let digest = Sha256::digest(key.as_bytes());
            base.push_str(".k");
            for byte in &digest[..8] {
                base.push_str(&format!("{byte:02x}"));
            }
        }
        Self { base }
    }

    /// The exclusive queue that is concurrency slot `index`.
    pub fn slot(&self, index: u32) -> String {
        format!("{}.c{index}", self.base)
    }

    /// The queue recording the starts of the rate's window.
    pub fn rate(&self) -> String {
        format!("{}.rate", self.base)
    }
}

/// The text of argument `key` in a job's body: a string as it is, anything else as JSON
/// (`null` when the body has no such field). `None` when the body does not decode.
fn key_value(format: Format, body: &[u8], key: &str) -> Option<String> {
    let value = format.to_json_value(body).ok()?;
    Some(match value.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "null".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_units() {
        let rate = |count, secs| Rate {
            count,
            per: Duration::from_secs(secs),
        };
        assert_eq!(Rate::parse("10/s"), Ok(rate(10, 1)));
        assert_eq!(Rate::parse("600/min"), Ok(rate(600, 60)));
        assert_eq!(Rate::parse(" 5 / h "), Ok(rate(5, 3600)));
        assert_eq!(Rate::parse("3/10s"), Ok(rate(3, 10)));
        assert!(Rate::parse("10").unwrap_err().contains("10/s"));
        assert!(Rate::parse("x/s").unwrap_err().contains("whole number"));
        assert!(Rate::parse("0/s").unwrap_err().contains("1 to"));
        assert!(Rate::parse("5/100ms").unwrap_err().contains("1 s to 1 day"));
        assert!(Rate::parse("5/parsec").is_err());
    }

    #[test]
    fn flags_say_what_is_wrong() {
        let (job, limit) =
            Limit::parse_flag("charge:concurrency=2,key=account,rate=10/s,name=pay").expect("ok");
        assert_eq!(job, "charge");
        assert_eq!(limit.concurrency, Some(2));
        assert_eq!(limit.key.as_deref(), Some("account"));
        assert_eq!(limit.name_for(&job), "pay");
        assert_eq!(limit.rate.map(|r| r.count), Some(10));
        for (flag, says) in [
            ("charge", "no ':'"),
            ("charge:concurrency", "name=value"),
            ("charge:concurrency=x", "whole number"),
            ("charge:concurrency=0", "from 1 to 1000"),
            ("charge:speed=3", "unknown setting"),
            ("charge:key=account", "neither"),
            ("charge:rate=1/ms", "rate"),
        ] {
            let err = Limit::parse_flag(flag).expect_err(flag).to_string();
            assert!(err.contains(says), "{flag}: {err}");
        }
    }

    #[test]
    fn names_hash_the_key() {
        let whole = Names::of("sync", None);
        assert_eq!(whole.slot(2), "palermo.limit.sync.c2");
        assert_eq!(whole.rate(), "palermo.limit.sync.rate");
        let a = Names::of("sync", Some("42"));
        assert!(a.slot(0).starts_with("palermo.limit.sync.k"), "{a:?}");
        assert_eq!(a.slot(0).len(), "palermo.limit.sync.k".len() + 16 + 3);
        assert_ne!(a, Names::of("sync", Some("43")));
        assert_eq!(a, Names::of("sync", Some("42")));
    }

    #[test]
    fn the_key_is_an_arguments_text() {
        let body = br#"{"account":"a-1","n":7}"#;
        assert_eq!(
            key_value(Format::Json, body, "account").as_deref(),
            Some("a-1")
        );
        assert_eq!(key_value(Format::Json, body, "n").as_deref(), Some("7"));
        assert_eq!(key_value(Format::Json, body, "x").as_deref(), Some("null"));
        assert_eq!(key_value(Format::Json, b"not json", "n"), None);
    }
}
