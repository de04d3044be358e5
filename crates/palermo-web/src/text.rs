//! Untrusted message text made safe to look at in a page: the dashboard's one escaper.
//!
//! Templates escape HTML; what escaping leaves alone are control characters, which a
//! message may carry to confuse a reader (an ANSI escape, a carriage return that hides the
//! start of a line, a right-to-left override that reverses a file name). [`visible`] shows
//! each as a visible symbol or `\u{..}` instead, so what is on the screen is what is in the
//! message. Which characters those are is [`palermo_store::text::is_unsafe`], the same set
//! the `palermo` command escapes; times are formatted by [`palermo_store::time`], as there.

use palermo_store::text::{is_unsafe, push_code};

/// `text` with every unsafe character except newline and tab (and, with `one_line`, those
/// too) replaced: C0 controls and DEL by their Unicode control pictures (`␛`, `␍`), other
/// invisible or reordering characters by `\u{..}`.
pub(crate) fn visible_text(text: &str, one_line: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' if !one_line => out.push(c),
            '\u{0}'..='\u{1f}' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('?')),
            '\u{7f}' => out.push('\u{2421}'),
            c if is_unsafe(c) => push_code(&mut out, c),
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
        assert_eq!(visible("a\u{2028}b\u{9b}"), "a\\u{2028}b\\u{9b}");
    }
}
