//! Keeping republished headers inside one AMQP frame.
//!
//! A retry or a failure carries the original headers plus Palermo's own. AMQP sends all
//! properties in a single frame, and a frame over the negotiated `frame_max` makes the broker
//! close the whole connection: one message with huge headers would take its worker down.

use lapin::types::{AMQPValue, FieldTable, ShortString};

use super::{header, put_str, truncate_bytes};

/// Most bytes of headers Palermo puts on a message it republishes (a retry, a failure). AMQP
/// sends all properties in one frame, and a frame over the negotiated `frame_max` (64 KiB or
/// more) makes the broker close the whole connection; a message that arrived with huge
/// headers must not take the worker down when it is handed on.
pub const HEADERS_BUDGET: usize = 32 * 1024;
/// Headers never cut: the error history trims itself, and a chain's header is bounded at
/// enqueue and would not read once cut (the chain would stop).
const KEPT_WHOLE: [&str; 2] = [header::ERROR_HISTORY, header::CHAIN];
/// What a header value is cut to when the headers are over [`HEADERS_BUDGET`].
const CUT_VALUE_BYTES: usize = 1024;

/// Cuts the largest string values (then drops the largest tables and arrays) until
/// `headers` encode to at most `budget` bytes; names what it cut in
/// `x-palermo-headers-cut`. The error history and a chain's header are kept whole.
pub fn fit_headers(headers: &mut FieldTable, budget: usize) {
    if encoded_len(headers) <= budget {
        return;
    }
    let mut map = headers.inner().clone();
    let mut by_size: Vec<(ShortString, usize)> = map
        .iter()
        .filter(|(name, _)| !KEPT_WHOLE.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value_len(value)))
        .collect();
    by_size.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    let mut cut = Vec::new();
    for (name, _) in by_size {
        if table_len(&map) <= budget {
            break;
        }
        let Some(value) = map.get_mut(&name) else {
            continue;
        };
        match value {
            AMQPValue::LongString(s) if s.len() > CUT_VALUE_BYTES => {
                let text = String::from_utf8_lossy(s.as_bytes());
                *value = AMQPValue::LongString(
                    format!("{}…[cut]", truncate_bytes(&text, CUT_VALUE_BYTES))
                        .as_str()
                        .into(),
                );
            }
            AMQPValue::FieldTable(_) | AMQPValue::FieldArray(_) | AMQPValue::ByteArray(_) => {
                map.remove(&name);
            }
            _ => continue,
        }
        cut.push(name.to_string());
    }
    let mut fitted = FieldTable::from(map);
    if !cut.is_empty() {
        put_str(&mut fitted, header::HEADERS_CUT, &cut.join(","));
    }
    *headers = fitted;
}

fn table_len(map: &std::collections::BTreeMap<ShortString, AMQPValue>) -> usize {
    4 + map
        .iter()
        .map(|(k, v)| 1 + k.as_str().len() + value_len(v))
        .sum::<usize>()
}

/// Roughly how many bytes `headers` take on the wire (exact for strings and tables).
pub fn encoded_len(headers: &FieldTable) -> usize {
    table_len(headers.inner())
}

fn value_len(value: &AMQPValue) -> usize {
    1 + match value {
        AMQPValue::LongString(s) => 4 + s.len(),
        AMQPValue::ShortString(s) => 1 + s.as_str().len(),
        AMQPValue::ByteArray(b) => 4 + b.as_slice().len(),
        AMQPValue::FieldTable(t) => encoded_len(t),
        AMQPValue::FieldArray(a) => 4 + a.as_slice().iter().map(value_len).sum::<usize>(),
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::get_str;

    #[test]
    fn oversized_headers_are_cut_to_the_budget() {
        let mut headers = {
            let mut h = FieldTable::default();
            put_str(&mut h, header::JOB, "send_email");
            h
        };
        put_str(&mut headers, "x-custom", &"y".repeat(70_000));
        put_str(&mut headers, header::ERROR, &"e".repeat(9_000));
        fit_headers(&mut headers, HEADERS_BUDGET);
        assert!(encoded_len(&headers) <= HEADERS_BUDGET);
        assert_eq!(
            get_str(&headers, header::JOB).ok().flatten().as_deref(),
            Some("send_email")
        );
        let cut = get_str(&headers, header::HEADERS_CUT)
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(cut, "x-custom");
        let before = headers.clone();
        fit_headers(&mut headers, HEADERS_BUDGET);
        assert_eq!(headers, before, "headers within the budget are left alone");
    }
}
