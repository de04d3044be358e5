//! Times as the store keeps them (milliseconds since the Unix epoch, UTC) and as people read
//! and type them, through chrono (dates) and humantime (durations).
//!
//! This is the admin side's one time grammar: the CLI's `--since`, `--in` and `--at` and the
//! dashboard's filters read times here, and the `#[job]` macro reads durations with the same
//! humantime rules. A duration is one or more `<number><unit>` parts: `500ms`, `90s`, `10m`,
//! `1h30m`, `2d`, `1w`. A date that does not exist (`2024-02-31`) is refused, never moved to
//! the next month.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::Serializer;

/// A time or duration that does not read; the message shows the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// Not a duration.
    #[error("{text:?} is not a duration like 500ms, 90s, 10m, 1h30m, 2d or 1w ({reason})")]
    Duration { text: String, reason: String },
    /// Not a time, or a date that does not exist.
    #[error("{text:?} is not a valid time: {reason}; use e.g. 2030-01-01T08:00:00Z, 2030-01-01T09:00:00+01:00 or @1893484800")]
    Time { text: String, reason: String },
    /// Neither a duration nor a date.
    #[error("cannot read the time {text:?}: {reason}; use a duration such as 15m, 2h, 7d, 1w, or a date such as 2024-05-01 or 2024-05-01T12:00:00Z")]
    Since { text: String, reason: String },
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `2024-05-01T12:00:03.123Z`.
pub fn rfc3339(ms: i64) -> String {
    utc(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `2024-05-01 12:00:03`, for tables.
pub fn short(ms: i64) -> String {
    utc(ms).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `2030-01-01T08:00:00Z`: a time to the second, for messages.
pub fn format_time(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// How long ago `ms` was, roughly: `4s`, `12m`, `3h`, `2d` (the largest unit of
/// [`duration`]: "failed 12m ago" is read at a glance, the seconds would only flicker).
pub fn ago(ms: i64, now: i64) -> String {
    let secs = (now - ms).max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// A duration in ms, to two units: `4s`, `12m 3s`, `3h 5m`, `2d 4h` (how long a job has
/// run).
pub fn duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d {}h", secs / 86_400, secs / 3600 % 24),
    }
}

/// Serializes ms since the epoch as an RFC 3339 string (serde `serialize_with`).
pub fn serialize<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*ms))
}

/// [`serialize`] for an optional time (`null` when absent).
pub fn serialize_opt<S: Serializer>(ms: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => serializer.serialize_str(&rfc3339(*ms)),
        None => serializer.serialize_none(),
    }
}

/// A duration in the largest unit that holds it exactly, as [`parse_duration`] reads it
/// back: `90d`, `36h`, `90m`, `45s`, `500ms`.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    let units = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    for (size, unit) in units {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Reads a duration: `500ms`, `90s`, `10m`, `1h30m`, `2d`, `1w`.
pub fn parse_duration(text: &str) -> Result<Duration, TimeError> {
    let bad = |reason: String| TimeError::Duration {
        text: text.into(),
        reason,
    };
    let trimmed = text.trim();
    // humantime reads a bare number as an error already; a sign is refused here so that
    // `-5m` does not read as a date or a flag.
    if trimmed.starts_with(['-', '+']) {
        return Err(bad("a duration cannot be negative".into()));
    }
    humantime::parse_duration(trimmed).map_err(|e| bad(e.to_string()))
}

/// Reads a time: RFC 3339 (`2030-01-01T08:00:00Z`, offsets and fractions allowed, a space
/// for the `T`) or `@<seconds since the Unix epoch>`.
pub fn parse_time(text: &str) -> Result<SystemTime, TimeError> {
    let bad = |reason: String| TimeError::Time {
        text: text.into(),
        reason,
    };
    let trimmed = text.trim();
    if let Some(secs) = trimmed.strip_prefix('@') {
        let secs: i64 = secs
            .parse()
            .map_err(|_| bad("@ must be followed by whole seconds".into()))?;
        return Utc
            .timestamp_opt(secs, 0)
            .single()
            .map(SystemTime::from)
            .ok_or_else(|| bad("out of range".into()));
    }
    let time = DateTime::parse_from_rfc3339(trimmed).map_err(|e| bad(reason(e)))?;
    if time.timestamp() < 0 {
        return Err(bad("it is before 1970".into()));
    }
    Ok(SystemTime::from(time))
}

/// Reads a `--since` value into ms since the epoch: a duration back from `now` (`30s`, `15m`,
/// `2h`, `7d`, `1w`), a date (`2024-05-01`, midnight UTC) or a date and time
/// (`2024-05-01T12:00:00Z`, also with a space instead of `T`, without seconds, without a
/// zone meaning UTC, or with `+02:00`).
pub fn parse_since(text: &str, now: i64) -> Result<i64, TimeError> {
    let trimmed = text.trim();
    let bad = |reason: String| TimeError::Since {
        text: text.into(),
        reason,
    };
    if trimmed.starts_with(|c: char| c.is_ascii_digit()) && !looks_like_date(trimmed) {
        let ago = parse_duration(trimmed).map_err(|e| match e {
            TimeError::Duration { reason, .. } => bad(reason),
            other => other,
        })?;
        let ago = i64::try_from(ago.as_millis()).map_err(|_| bad("too long ago".into()))?;
        return Ok(now.saturating_sub(ago));
    }
    if !looks_like_date(trimmed) {
        return Err(bad("not a duration or a date".into()));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(time.timestamp_millis());
    }
    if let Ok(date) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        return Ok(date
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis());
    }
    naive_or_offset(trimmed).ok_or_else(|| {
        // Say why a well-formed date is refused (31 February), not only that it is.
        let date = trimmed.get(..10).unwrap_or(trimmed);
        match NaiveDate::parse_from_str(date, "%Y-%m-%d") {
            Err(e) => bad(format!("{date} is not a date: {}", reason(e))),
            Ok(_) => bad("not a date and time".into()),
        }
    })
}

/// chrono's reason, in words for an impossible date.
fn reason(error: chrono::ParseError) -> String {
    match error.kind() {
        chrono::format::ParseErrorKind::OutOfRange => {
            "no such day in that month, or a field out of range".into()
        }
        _ => error.to_string(),
    }
}

/// `YYYY-` at the start.
fn looks_like_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 5 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-'
}

/// `2024-05-01 12:00`, `2024-05-01T12:00:03.5`, optionally ending in `Z` or `+02:00`.
fn naive_or_offset(text: &str) -> Option<i64> {
    let text = text.replacen(['T', 't'], " ", 1);
    const NAIVE: [&str; 2] = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"];
    const ZONED: [&str; 2] = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M%#z"];
    let naive = text.strip_suffix(['Z', 'z']).unwrap_or(&text);
    for format in NAIVE {
        if let Ok(time) = NaiveDateTime::parse_from_str(naive, format) {
            return Some(time.and_utc().timestamp_millis());
        }
    }
    ZONED
        .iter()
        .find_map(|format| DateTime::parse_from_str(&text, format).ok())
        .map(|time| time.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_714_564_803_123), "2024-05-01T12:00:03.123Z");
        assert_eq!(short(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(ago(0, 125_000), "2m");
        assert_eq!(short(1_714_564_803_123), "2024-05-01 12:00:03");
        assert_eq!(duration(3_723_000), "1h 2m");
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(2 * DAY_MS + 4 * 3_600_000 + 1), "2d 4h");
    }

    #[test]
    fn a_rule_duration_reads_back_as_itself() {
        for text in ["90d", "36h", "90m", "45s", "500ms"] {
            let parsed = parse_duration(text).expect(text);
            assert_eq!(format_duration(parsed), text);
        }
        assert_eq!(format_duration(Duration::from_secs(7 * 86_400)), "7d");
    }

    #[test]
    fn durations_share_one_grammar() {
        let d = |s| parse_duration(s);
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(d("1w"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "10", "s", "-3s", "1x", "tomorrow"] {
            let err = d(bad).expect_err(bad).to_string();
            assert!(err.contains("1h30m"), "{err}");
        }
    }

    #[test]
    fn times_refuse_dates_that_do_not_exist() {
        let at = |s| parse_time(s).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap());
        assert_eq!(at("1970-01-01T00:00:00Z"), Ok(Duration::ZERO));
        assert_eq!(
            at("2030-01-01T08:00:00Z"),
            Ok(Duration::from_secs(1_893_484_800))
        );
        assert_eq!(at("2030-01-01 09:00:00+01:00"), at("2030-01-01T08:00:00Z"));
        assert_eq!(at("2029-12-31T23:30:00-08:30"), at("2030-01-01T08:00:00Z"));
        assert_eq!(at("@1893484800"), at("2030-01-01T08:00:00Z"));
        // A leap day exists in 2024, not in 2023.
        assert_eq!(
            at("2024-02-29T12:00:00.25Z"),
            Ok(Duration::new(1_709_208_000, 250_000_000))
        );
        for bad in [
            "2030-01-01",
            "2030-01-01T08:00:00",
            "2023-02-29T00:00:00Z",
            "2024-02-31T00:00:00Z",
            "2030-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "tomorrow",
        ] {
            let err = parse_time(bad).expect_err(bad).to_string();
            assert!(err.contains("2030-01-01T08:00:00Z"), "{err}");
        }
        let t = parse_time("2030-01-01T08:00:00.7Z").expect("time");
        assert_eq!(format_time(t), "2030-01-01T08:00:00Z");
    }

    #[test]
    fn reads_since() {
        let now = 1_714_564_803_123;
        assert_eq!(parse_since("15m", now), Ok(now - 900_000));
        assert_eq!(parse_since("2d", now), Ok(now - 2 * DAY_MS));
        assert_eq!(parse_since("1w", now), Ok(now - 7 * DAY_MS));
        assert_eq!(parse_since("1h30m", now), Ok(now - 5_400_000));
        assert_eq!(parse_since("2024-05-01", now), Ok(1_714_521_600_000));
        assert_eq!(parse_since("2024-02-29", now), Ok(1_709_164_800_000));
        assert_eq!(parse_since("2024-05-01T12:00:03.123Z", now), Ok(now));
        assert_eq!(parse_since("2024-05-01 14:00:03.123+02:00", now), Ok(now));
        assert_eq!(parse_since("2024-05-01 12:00", now), Ok(now - 3_123));
        assert_eq!(parse_since("2024-05-01T12:00:03.123", now), Ok(now));
        for bad in [
            "",
            "yesterday",
            "15x",
            "2024-13-01",
            "2024-02-31",
            "2023-02-29",
            "2024-02-31T10:00:00Z",
            "2024-05-01T25:00",
            "-5m",
        ] {
            let err = parse_since(bad, now).expect_err(bad).to_string();
            assert!(err.contains("2024-05-01"), "{bad:?}: {err}");
        }
        let err = parse_since("2024-02-31", now)
            .expect_err("31 February")
            .to_string();
        assert!(err.contains("2024-02-31 is not a date"), "{err}");
    }
}
