//! Times as the store keeps them (milliseconds since the Unix epoch, UTC) and as people read
//! and type them. Written out here rather than pulling in a date crate: the admin side needs
//! only UTC formatting and a few input forms.

use serde::Serializer;

const MS_PER_DAY: i64 = 86_400_000;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    palermo::wire::now_ms()
}

/// `2024-05-01T12:00:03.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let (date, rest) = split(ms);
    let (h, m, s, milli) = clock(rest);
    format!("{date}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// `2024-05-01 12:00:03`, for tables.
pub fn short(ms: i64) -> String {
    let (date, rest) = split(ms);
    let (h, m, s, _) = clock(rest);
    format!("{date} {h:02}:{m:02}:{s:02}")
}

/// How long ago `ms` was, roughly: `4s`, `12m`, `3h`, `2d`.
pub fn ago(ms: i64, now: i64) -> String {
    let secs = (now - ms).max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
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

/// Reads a `--since` value: a duration back from `now` (`30s`, `15m`, `2h`, `7d`, `1w`), a
/// date (`2024-05-01`, midnight UTC) or a date and time (`2024-05-01T12:00:00Z`, also with a
/// space instead of `T`, without seconds, without a zone meaning UTC, or with `+02:00`).
pub fn parse_since(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "cannot read the time {text:?}: use a duration such as 15m, 2h, 7d, or a date such as \
             2024-05-01 or 2024-05-01T12:00:00Z"
        )
    };
    if let Some(unit) = text.chars().last().filter(char::is_ascii_alphabetic) {
        if let Ok(n) = text[..text.len() - 1].parse::<i64>() {
            let ms = match unit {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => MS_PER_DAY,
                'w' => 7 * MS_PER_DAY,
                _ => return Err(bad()),
            };
            return n
                .checked_mul(ms)
                .filter(|d| *d >= 0)
                .map(|d| now - d)
                .ok_or_else(bad);
        }
    }
    parse_datetime(text).ok_or_else(bad)
}

fn parse_datetime(text: &str) -> Option<i64> {
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || date.len() != 10 {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * MS_PER_DAY;
    if let Some(time) = time {
        let (clock, offset_ms) = split_zone(time)?;
        let mut fields = clock.splitn(3, ':');
        let h: i64 = fields.next()?.parse().ok()?;
        let m: i64 = fields.next()?.parse().ok()?;
        let s: f64 = match fields.next() {
            Some(s) => s.parse().ok()?,
            None => 0.0,
        };
        if h > 23 || m > 59 || !(0.0..61.0).contains(&s) {
            return None;
        }
        ms += h * 3_600_000 + m * 60_000 + (s * 1000.0).round() as i64 - offset_ms;
    }
    Some(ms)
}

/// Splits `12:00:00+02:00` into the clock and the zone offset in ms (`Z` or none: 0).
fn split_zone(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    match time.rfind(['+', '-']) {
        Some(i) => {
            let (clock, zone) = (&time[..i], &time[i..]);
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
            let minutes = h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?;
            Some((clock, sign * minutes * 60_000))
        }
        None => Some((time, 0)),
    }
}

fn split(ms: i64) -> (String, i64) {
    let days = ms.div_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), ms.rem_euclid(MS_PER_DAY))
}

fn clock(ms_of_day: i64) -> (i64, i64, i64, i64) {
    let secs = ms_of_day / 1000;
    (secs / 3600, secs / 60 % 60, secs % 60, ms_of_day % 1000)
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_714_564_803_123), "2024-05-01T12:00:03.123Z");
        assert_eq!(short(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(ago(0, 125_000), "2m");
    }

    #[test]
    fn reads_since() {
        let now = 1_714_564_803_123;
        assert_eq!(parse_since("15m", now), Ok(now - 900_000));
        assert_eq!(parse_since("2d", now), Ok(now - 2 * MS_PER_DAY));
        assert_eq!(parse_since("2024-05-01", now), Ok(1_714_521_600_000));
        assert_eq!(parse_since("2024-05-01T12:00:03.123Z", now), Ok(now));
        assert_eq!(parse_since("2024-05-01 14:00:03.123+02:00", now), Ok(now));
        assert_eq!(parse_since("2024-05-01 12:00", now), Ok(now - 3_123));
        for bad in [
            "",
            "yesterday",
            "15x",
            "2024-13-01",
            "2024-05-01T25:00",
            "-5m",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad:?} accepted");
        }
    }
}
