//! Untrusted text for people: which characters of a message must never reach a reader as
//! they are.
//!
//! Job names, queue names, errors, arguments and backtraces come from messages, and so from
//! anyone who can publish. Control characters (C0, DEL, C1) drive a terminal (an ANSI escape
//! colours, moves or clears it; a carriage return hides the start of a line) and invisible
//! format characters hide or reorder text (a zero-width space, a right-to-left override that
//! reverses a file name, a line or paragraph separator that breaks a line where none shows).
//! The admin side has one escaper per medium, the `palermo` command's for the terminal and
//! the dashboard's for HTML (where the template escapes markup first); both ask
//! [`is_unsafe`] which characters to show escaped, so they never disagree on the set.

use std::fmt::Write as _;

/// Whether `c` must be shown escaped: a control character (C0, DEL, C1) or a format
/// character that hides or reorders text (zero-width spaces and joiners, the line and
/// paragraph separators U+2028/2029, bidirectional embeddings and overrides, invisible
/// operators and isolates, the byte order mark).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// Writes `c` as Rust writes it in a string: `\u{1b}`, `\u{202e}`.
pub fn push_code(out: &mut String, c: char) {
    // Writing to a String cannot fail.
    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_hiding_format_characters_are_unsafe() {
        for c in [
            '\u{0}', '\n', '\u{1b}', '\u{7f}', '\u{9b}', '\u{200b}', '\u{200f}', '\u{2028}',
            '\u{2029}', '\u{202e}', '\u{2066}', '\u{feff}',
        ] {
            assert!(is_unsafe(c), "{:x}", u32::from(c));
        }
        for c in ['a', ' ', 'é', '\u{2027}', '\u{2030}', '␛'] {
            assert!(!is_unsafe(c), "{:x}", u32::from(c));
        }
        let mut out = String::new();
        push_code(&mut out, '\u{2028}');
        assert_eq!(out, "\\u{2028}");
    }
}
