//! Text for people: untrusted message text made safe to look at, and times.
//!
//! Templates escape HTML; what escaping leaves alone are control characters, which a
//! message may carry to confuse a reader (an ANSI escape, a carriage return that hides the
//! start of a line, a right-to-left override that reverses a file name). [`visible`] shows
//! each as a visible symbol or `\u{..}` instead, so what is on the screen is what is in the
//! message.

use chrono::{DateTime, SecondsFormat, Utc};

/// `text` with every control character except newline and tab (and, with `one_line`, those
/// too) replaced: C0 controls and DEL by their Unicode control pictures (`␛`, `␍`), other
/// invisible or reordering characters by `\u{..}`.
pub(crate) fn visible_text(text: &str, one_line: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' if !one_line => out.push(c),
            '\u{0}'..='\u{1f}' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('?')),
            '\u{7f}' => out.push('\u{2421}'),
            '\u{80}'..='\u{9f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// [`visible_text`] keeping line breaks and tabs (for `<pre>` blocks).
pub(crate) fn visible(text: &str) -> String {
    visible_text(text, false)
}

/// [`visible_text`] on one line, cut to `max` characters with `…` (for table cells).
pub(crate) fn cell(text: &str, max: usize) -> String {
    let line = visible_text(text, true);
    if line.chars().count() <= max {
        return line;
    }
    let cut: String = line.chars().take(max).collect();
    format!("{}…", cut.trim_end())
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2024-05-01 12:00:03` (UTC), for tables.
pub(crate) fn short(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// `2024-05-01T12:00:03.123Z`, for `datetime` attributes and details.
pub(crate) fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// How long `ms` ago was (`4s`, `12m 3s`, `3h 5m`, `2d 4h`).
pub(crate) fn ago(ms: i64, now: i64) -> String {
    duration((now - ms).max(0))
}

/// A duration in ms for people: `4s`, `12m 3s`, `3h 5m`, `2d 4h`.
pub(crate) fn duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, secs / 60 % 60),
        _ => format!("{}d {}h", secs / 86_400, secs / 3600 % 24),
    }
}

/// Reads a time filter: a duration back from `now` (`30s`, `15m`, `2h`, `7d`, `1w`), a date
/// (`2024-05-01`, midnight UTC) or an RFC 3339 time (`2024-05-01T12:00:00Z`).
pub(crate) fn parse_time(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    let bad = || {
        format!("cannot read the time {text:?}: use a duration such as 15m, 2h, 7d, or a date such as 2024-05-01 or 2024-05-01T12:00:00Z")
    };
    if let Some((number, unit)) = text.char_indices().last().map(|(i, c)| (&text[..i], c)) {
        if let (Ok(n), Some(unit_ms)) = (number.parse::<i64>(), unit_ms(unit)) {
            return n
                .checked_mul(unit_ms)
                .filter(|d| *d >= 0)
                .map(|d| now - d)
                .ok_or_else(bad);
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(bad)
}

fn unit_ms(unit: char) -> Option<i64> {
    Some(match unit {
        's' => 1000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(
            visible("a\u{1b}[31mb\r\nc\td"),
            "a\u{241b}[31mb\u{240d}\nc\td"
        );
        assert_eq!(cell("x\ny\u{202e}z", 40), "x\u{240a}y\\u{202e}z");
        assert_eq!(cell("abcdef", 3), "abc…");
        assert_eq!(visible("\u{7f}\u{0}"), "\u{2421}\u{2400}");
    }

    #[test]
    fn times() {
        assert_eq!(short(1_714_564_803_123), "2024-05-01 12:00:03");
        assert_eq!(rfc3339(1_714_564_803_123), "2024-05-01T12:00:03.123Z");
        assert_eq!(duration(3_723_000), "1h 2m");
        let now = 1_714_564_803_123;
        assert_eq!(parse_time("15m", now), Ok(now - 900_000));
        assert_eq!(parse_time("2024-05-01", now), Ok(1_714_521_600_000));
        assert_eq!(parse_time("2024-05-01T12:00:03.123Z", now), Ok(now));
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("-5m", now).is_err());
    }
}
