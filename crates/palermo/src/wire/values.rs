//! Reading and writing header values. Reading is strict about meaning and lenient about AMQP
//! integer widths, because other clients (pika, amqplib) pick their own; every error names
//! the header and what is wrong with it.

use lapin::{
    types::{AMQPValue, FieldTable, LongString},
    BasicProperties,
};

/// Why a message is not a valid Palermo job: the text names the header or property and what
/// is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

impl From<String> for Malformed {
    fn from(reason: String) -> Self {
        Malformed(reason)
    }
}

impl From<&str> for Malformed {
    fn from(reason: &str) -> Self {
        Malformed(reason.into())
    }
}

/// The headers of `properties` (an empty table when there are none), without copying them.
pub fn headers(properties: &BasicProperties) -> &FieldTable {
    static EMPTY: std::sync::OnceLock<FieldTable> = std::sync::OnceLock::new();
    properties
        .headers()
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(FieldTable::default))
}

/// The values of the headers `names`, in their order, from one walk over the table.
///
/// Cheaper than a lookup per name: the table is a `BTreeMap` whose lookups compare the name
/// with the keys in order, and Palermo's header names share their first ten bytes
/// (`x-palermo-`), so each lookup calls `memcmp` for most keys; here a key is compared only
/// with the names of its length (docs/performance.md). Inlined, so that the names are
/// constants there and their lengths immediate values.
#[inline(always)]
pub(crate) fn find<'a, const N: usize>(
    headers: &'a FieldTable,
    names: [&str; N],
) -> [Option<&'a AMQPValue>; N] {
    let mut found = [None; N];
    for (key, value) in headers.inner() {
        if let Some(at) = names.iter().position(|name| *name == key.as_str()) {
            found[at] = Some(value);
        }
    }
    found
}

/// Sets a string header.
pub fn put_str(headers: &mut FieldTable, name: &str, value: &str) {
    headers.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
}

/// Sets an integer header.
pub fn put_int(headers: &mut FieldTable, name: &str, value: i64) {
    headers.insert(name.into(), AMQPValue::LongLongInt(value));
}

/// Reads a string header; `Err` when it has a non-string AMQP type or is not UTF-8.
pub fn get_str(headers: &FieldTable, name: &str) -> Result<Option<String>, Malformed> {
    str_ref(headers, name).map(|s| s.map(str::to_string))
}

/// [`get_str`] without the copy.
pub(crate) fn str_ref<'a>(
    headers: &'a FieldTable,
    name: &str,
) -> Result<Option<&'a str>, Malformed> {
    str_value(name, headers.inner().get(name))
}

/// Reads the string value of header `name`, already looked up.
pub(crate) fn str_value<'a>(
    name: &str,
    value: Option<&'a AMQPValue>,
) -> Result<Option<&'a str>, Malformed> {
    match value {
        None => Ok(None),
        Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes())
            .map(Some)
            .map_err(|_| Malformed(format!("header {name} is not valid UTF-8"))),
        Some(AMQPValue::ShortString(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(Malformed(format!(
            "header {name} has AMQP type {}, expected a string",
            type_name(other)
        ))),
    }
}

/// Reads an integer header of any AMQP integer width; `Err` for other types.
pub fn get_int(headers: &FieldTable, name: &str) -> Result<Option<i64>, Malformed> {
    int_value(name, headers.inner().get(name))
}

/// Reads the integer value of header `name`, already looked up.
pub(crate) fn int_value(name: &str, value: Option<&AMQPValue>) -> Result<Option<i64>, Malformed> {
    let Some(value) = value else {
        return Ok(None);
    };
    let n = match value {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::Timestamp(n) => i64::try_from(*n).unwrap_or(i64::MAX),
        other => {
            return Err(Malformed(format!(
                "header {name} has AMQP type {}, expected an integer",
                type_name(other)
            )))
        }
    };
    Ok(Some(n))
}

fn type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::Boolean(_) => "boolean",
        AMQPValue::Float(_) | AMQPValue::Double(_) => "float",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => "string",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "byte array",
        AMQPValue::Void => "void",
        _ => "integer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_returns_the_values_in_the_order_asked() {
        let mut headers = FieldTable::default();
        put_int(&mut headers, "x-palermo-attempt", 2);
        put_str(&mut headers, "x-palermo-version", "v");
        put_int(&mut headers, "traceparent", 7);
        let [absent, version, attempt] = find(
            &headers,
            [
                "x-palermo-snoozes",
                "x-palermo-version",
                "x-palermo-attempt",
            ],
        );
        assert_eq!(absent, None);
        assert_eq!(str_value("v", version), Ok(Some("v")));
        assert_eq!(int_value("a", attempt), Ok(Some(2)));
    }
}
