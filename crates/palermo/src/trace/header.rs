//! The W3C `traceparent` header: the [`TraceContext`] it carries, read and written, and the
//! trace context of the running task ([`TraceContext::scope`], [`TraceContext::current`]).

use std::{fmt, future::Future};

use uuid::Uuid;

/// The header the trace context travels in.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A W3C trace context: the trace id, the id of the span that enqueued (the parent) and the
/// sampled flag.
///
/// ```
/// use palermo::trace::TraceContext;
///
/// let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(parent.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// let child = parent.child();
/// assert_eq!(child.trace_id(), parent.trace_id());
/// assert_ne!(child.to_string(), parent.to_string());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub(super) trace_id: u128,
    pub(super) span_id: u64,
    pub(super) sampled: bool,
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_u128(),
            span_id: nonzero_u64(),
            sampled: true,
        }
    }

    /// The same trace with a new span id: the context a message enqueued from here carries.
    pub fn child(&self) -> Self {
        Self {
            span_id: nonzero_u64(),
            ..*self
        }
    }

    /// Parses a `traceparent` value (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`);
    /// `None` when it is not one. Versions above 00 are read as 00, as the spec asks.
    pub fn parse(header: &str) -> Option<Self> {
        // Read by byte offset: every job's message carries one, and splitting and
        // `from_str_radix` cost several times more per job (docs/performance.md).
        let b = header.trim().as_bytes();
        let dash = |at: usize| b.get(at) == Some(&b'-');
        if b.len() < 55 || !dash(2) || !dash(35) || !dash(52) {
            return None;
        }
        let version = hex(&b[..2])?;
        // Version 00 has exactly four fields; later versions may append more after a `-`.
        let extended = b.len() > 55;
        if version == 0xff || (extended && (version == 0 || !dash(55))) {
            return None;
        }
        let trace_id = u128::from(hex(&b[3..19])?) << 64 | u128::from(hex(&b[19..35])?);
        let span_id = hex(&b[36..52])?;
        let flags = hex(&b[53..55])?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        TraceId(self.trace_id).to_string()
    }

    /// The span id, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// Whether the trace is sampled (flag 01).
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// The trace context of the running code: the current span's (with the `opentelemetry`
    /// feature), else the running job's or the one given to [`TraceContext::scope`].
    pub fn current() -> Option<Self> {
        #[cfg(feature = "opentelemetry")]
        if let Some(context) = super::otel::current() {
            return Some(context);
        }
        CURRENT.try_with(|c| *c).ok()
    }

    /// Runs `future` with this as the current trace context: the jobs it enqueues carry
    /// this trace id.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// The context a message enqueued now carries: a child of [`TraceContext::current`], or
    /// a new trace.
    pub(crate) fn for_enqueue() -> Self {
        Self::current()
            .map(|c| c.child())
            .unwrap_or_else(Self::new_root)
    }
}

/// The `traceparent` header value.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// The value of at most 16 hex digits (either case); `None` if one is not a hex digit.
///
/// By table and without a branch per digit: every job's `traceparent` has 52 of them, and
/// `char::to_digit` cost about 15 instructions each (docs/performance.md).
#[inline(always)]
fn hex(digits: &[u8]) -> Option<u64> {
    let (mut value, mut invalid) = (0u64, 0u8);
    for &digit in digits {
        let nibble = HEX_DIGITS[usize::from(digit)];
        invalid |= nibble;
        value = value << 4 | u64::from(nibble & 0xf);
    }
    (invalid & NOT_HEX == 0).then_some(value)
}

/// Marks a byte that is not a hex digit in [`HEX_DIGITS`].
const NOT_HEX: u8 = 0x80;

/// The value of each byte as a hex digit, or [`NOT_HEX`].
static HEX_DIGITS: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

fn nonzero_u128() -> u128 {
    Uuid::new_v4().as_u128() | 1
}

fn nonzero_u64() -> u64 {
    (Uuid::new_v4().as_u128() as u64) | 1
}

/// A trace id written as 32 lowercase hex digits, without building a `String`.
pub(super) struct TraceId(pub(super) u128);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_bad_ones_are_refused() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceContext::parse(header).expect("valid");
        assert_eq!(parsed.to_string(), header);
        assert!(parsed.sampled());
        let fresh = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&fresh.to_string()), Some(fresh));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e47z6-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6\u{10}3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9:2b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // A later version may append fields; upper-case hex is read too.
        let later =
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more");
        assert_eq!(
            later.map(|c| c.trace_id()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".into())
        );
        assert_eq!(later.map(|c| c.sampled()), Some(false));
        let upper =
            TraceContext::parse(" 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01 ");
        assert_eq!(upper, Some(parsed));
    }

    #[tokio::test]
    async fn enqueues_inside_a_scope_keep_its_trace() {
        let outer = TraceContext::new_root();
        let inner = outer.scope(async { TraceContext::for_enqueue() }).await;
        assert_eq!(inner.trace_id(), outer.trace_id());
        assert_ne!(inner.span_id(), outer.span_id());
        assert_ne!(TraceContext::for_enqueue().trace_id(), outer.trace_id());
    }
}
