//! Durations and times as people type them, for `palermo enqueue --in 10m` / `--at
//! 2030-01-01T08:00:00Z` and other command lines: no calendar dependency for two formats.
//!
//! A duration is one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`
//! (`90s`, `1h30m`, `2d`). A time is RFC 3339 (`2030-01-01T08:00:00Z`,
//! `2030-01-01 09:00:00.5+01:00`) or `@<seconds since the Unix epoch>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a duration like `90s`, `1h30m` or `2d`; the error says what is expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let usage = || format!("{text:?} is not a duration like 90s, 10m, 1h30m or 2d");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(usage());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().map_err(|_| usage())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(usage()),
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(number)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(usage)?;
        total = total.checked_add(part).ok_or_else(usage)?;
    }
    Ok(total)
}

/// Parses an RFC 3339 time (`2030-01-01T08:00:00Z`, offsets and fractions allowed) or
/// `@<unix seconds>`; the error says what is expected.
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let usage = || {
        format!("{text:?} is not a time like 2030-01-01T08:00:00Z, 2030-01-01T09:00:00+01:00 or @1893484800")
    };
    let text = text.trim();
    if let Some(secs) = text.strip_prefix('@') {
        let secs: u64 = secs.parse().map_err(|_| usage())?;
        return UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(usage);
    }
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return Err(usage());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = text.get(range).ok_or_else(usage)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(usage());
        }
        part.parse().map_err(|_| usage())
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| bytes[i] != c) {
        return Err(usage());
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(format!("{text:?} is not a valid date and time"));
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if digits == 0 {
            return Err(usage());
        }
        let padded = format!("{:0<9}", &fraction[..digits.min(9)]);
        nanos = padded.parse().map_err(|_| usage())?;
        rest = &fraction[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let hours = number_in(rest, 1..3).ok_or_else(usage)?;
            let minutes = number_in(rest, 4..6).ok_or_else(usage)?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return Err(usage()),
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    let secs = u64::try_from(secs).map_err(|_| format!("{text:?} is before 1970"))?;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// `time` as RFC 3339 in UTC, to the second (`2030-01-01T08:00:00Z`).
pub fn format_time(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn number_in(text: &str, range: std::ops::Range<usize>) -> Option<i64> {
    let part = text.get(range)?;
    part.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| part.parse().ok())
        .flatten()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["", "10", "s", "5 min", "-3s", "1w"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("1h30m"), "{err}");
        }
    }

    #[test]
    fn times() {
        let at = |s| parse_time(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(at("1970-01-01T00:00:00Z"), Ok(Duration::ZERO));
        assert_eq!(
            at("2030-01-01T08:00:00Z"),
            Ok(Duration::from_secs(1_893_484_800))
        );
        assert_eq!(at("2030-01-01 09:00:00+01:00"), at("2030-01-01T08:00:00Z"));
        assert_eq!(at("2029-12-31T23:30:00-08:30"), at("2030-01-01T08:00:00Z"));
        assert_eq!(at("@1893484800"), at("2030-01-01T08:00:00Z"));
        assert_eq!(
            at("2024-02-29T12:00:00.25Z"),
            Ok(Duration::new(1_709_208_000, 250_000_000))
        );
        for bad in [
            "2030-01-01",
            "2030-01-01T08:00:00",
            "2023-02-29T00:00:00Z",
            "2030-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "tomorrow",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T12:34:56Z",
            "2030-01-01T08:00:00Z",
            "2100-03-01T00:00:00Z",
        ] {
            assert_eq!(format_time(parse_time(text).unwrap()), text);
        }
    }
}
