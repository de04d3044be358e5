//! The text logger's field formatter when it writes no colours (a log file, a pipe, a
//! container's stdout): the same `name=value` text as `tracing-subscriber`'s default, for less
//! work per field.
//!
//! Every job runs in a `job` span with five fields, and the `fmt` layer formats a span's
//! fields when the span is created, whether or not a line is ever logged in it. The default
//! formatter writes each field through two `nu_ansi_term` styles, which are empty without
//! colours but still cost a formatting pass each; for a no-op job those passes were a sixth
//! of Palermo's own instructions (docs/performance.md). Here a plain field is written
//! directly; the message, `r#` names, `log.` metadata, strings and errors go to the default
//! formatter, so their escaping (ANSI sequences in a message are neutralised) and quoting
//! stay exactly the library's. With colours on, the default formatter is used as is.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::{MakeVisitor, VisitFmt, VisitOutput},
    fmt::format::{DefaultVisitor, Writer},
};

/// Formats fields as [`tracing_subscriber::fmt::format::DefaultFields`] does without colours.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> Self::Visitor {
        PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Writes `name=value` fields separated by one space.
pub(crate) struct PlainVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Lets the default formatter write one field, after the fields written so far.
    fn delegate(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut default);
        self.result = default.finish();
        // The default formatter skips `log.` metadata without writing anything.
        if !field.name().starts_with("log.") {
            self.is_empty = false;
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.delegate(field, |default| default.record_str(field, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.delegate(field, |default| default.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name == "message" || name.starts_with("r#") || name.starts_with("log.") {
            self.delegate(field, |default| default.record_debug(field, value));
            return;
        }
        if self.result.is_err() {
            return;
        }
        let writer = &mut self.writer;
        let pad = if std::mem::take(&mut self.is_empty) {
            ""
        } else {
            " "
        };
        // The names as plain strings, only the value through a formatting pass.
        self.result = writer
            .write_str(pad)
            .and_then(|()| writer.write_str(name))
            .and_then(|()| writer.write_char('='))
            .and_then(|()| write!(writer, "{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::PlainFields;

    /// A log written to memory.
    #[derive(Clone, Default)]
    pub(in crate::cli) struct Log(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Log {
        type Writer = Log;
        fn make_writer(&'a self) -> Log {
            self.clone()
        }
    }

    impl Log {
        pub(in crate::cli) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
        }
    }

    /// Spans and events with every kind of field, including hostile text.
    fn emit() {
        let error = std::io::Error::other("disk \x1b[31mfull");
        let span = tracing::info_span!(
            "job",
            job.id = %uuid::Uuid::nil(),
            job.name = %"send\x1b[2Jmail",
            attempt = 3u32,
            trace_id = tracing::field::Empty,
        );
        span.record("trace_id", tracing::field::display("4bf9"));
        let _entered = span.enter();
        tracing::info!(queue = %"mail", count = 7u64, ok = true, "job \x1b[31mdone\u{9b}");
        tracing::warn!(r#type = "str\n", error = &error as &dyn std::error::Error, list = ?[1, 2], "x");
        tracing::info!(text = "quoted \"str\"", ratio = 0.5, "");
    }

    #[test]
    fn writes_what_the_default_formatter_writes_without_colours() {
        let (default, plain) = (Log::default(), Log::default());
        let with_default = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(default.clone())
            .finish();
        tracing::subscriber::with_default(with_default, emit);
        let with_plain = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(plain.clone())
            .fmt_fields(PlainFields)
            .finish();
        tracing::subscriber::with_default(with_plain, emit);
        assert_eq!(plain.text(), default.text());
        assert!(default
            .text()
            .contains(r"job{job.id=00000000-0000-0000-0000-000000000000 job.name=send"));
        assert!(
            default.text().contains(r"\x1b[31mdone"),
            "{}",
            default.text()
        );
    }
}
