//! Plain-text tables for people; every command also has `--json` for scripts.
//!
//! Everything printed here may come from a message (job names, queue names, errors,
//! arguments, backtraces) and so from anyone who can publish. Control characters are shown
//! escaped (`\u{1b}`), never sent to the terminal: an escape sequence in a job name must not
//! colour, move or clear the operator's terminal, and a newline or tab must not break a
//! table's columns. Invisible format characters (bidirectional overrides, zero-width
//! spaces, line separators) are escaped too, so what is shown is what is stored; which
//! characters those are is decided once for the CLI and the dashboard, by
//! [`palermo_store::text::is_unsafe`].

use std::fmt;

use palermo_store::text::{is_unsafe, push_code};

/// `text` on one line, with every control and invisible format character escaped.
pub fn escape(text: &str) -> String {
    escape_with(text, false)
}

/// [`escape`], keeping line breaks (for multi-line sections: errors, backtraces).
pub fn escape_lines(text: &str) -> String {
    escape_with(text, true)
}

fn escape_with(text: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) => push_code(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// Left-aligned columns separated by two spaces; every cell is [`escape`]d.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<const N: usize>(header: [&str; N]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| escape(h)).collect()],
        }
    }

    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows
            .push(cells.iter().map(|cell| escape(cell)).collect());
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(escape("two\nlines\ttab"), "two\\nlines\\ttab");
        assert_eq!(escape_lines("two\nlines\u{7}"), "two\nlines\\u{7}");
        assert_eq!(escape("\u{202e}evil\u{9b}"), "\\u{202e}evil\\u{9b}");
        assert_eq!(escape("plain é ü"), "plain é ü");
        assert_eq!(escape("a\u{2028}b\u{2029}"), "a\\u{2028}b\\u{2029}");
    }

    #[test]
    fn columns_stay_aligned_around_escaped_cells() {
        let mut table = Table::new(["A", "B"]);
        table.row(["x\u{1b}[2J\ny".to_string(), "end".to_string()]);
        table.row(["short".to_string(), "end".to_string()]);
        let text = table.to_string();
        let columns: Vec<usize> = text.lines().map(|l| l.find("end").unwrap_or(0)).collect();
        assert_eq!(columns[1], columns[2], "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
