//! How job arguments become a message body, and back.
//!
//! The serializer is named in the `x-palermo-serializer` header, so a worker decodes each
//! message with the serializer that encoded it, whatever its own defaults are. JSON is the
//! default because any language can produce it; MessagePack is smaller and faster.

use serde::{de::DeserializeOwned, Serialize};

pub use crate::error::SerializeError;

/// A way to turn job arguments into bytes and back.
pub trait Serializer {
    /// The name written in the `x-palermo-serializer` header.
    const NAME: &'static str;
    /// The AMQP `content_type` property of messages it encodes.
    const CONTENT_TYPE: &'static str;
    /// Encodes a value.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, SerializeError>;
    /// Decodes a value.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SerializeError>;
}

/// JSON through serde_json: the default, readable in the failed-jobs views.
pub struct Json;

impl Serializer for Json {
    const NAME: &'static str = "json";
    const CONTENT_TYPE: &'static str = "application/json";
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, SerializeError> {
        serde_json::to_vec(value).map_err(|e| SerializeError::new(Self::NAME, e))
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SerializeError> {
        serde_json::from_slice(bytes).map_err(|e| SerializeError::new(Self::NAME, e))
    }
}

/// MessagePack through rmp-serde, with named fields (a map), so it stays self-describing.
pub struct MessagePack;

impl Serializer for MessagePack {
    const NAME: &'static str = "msgpack";
    const CONTENT_TYPE: &'static str = "application/msgpack";
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, SerializeError> {
        rmp_serde::to_vec_named(value).map_err(|e| SerializeError::new(Self::NAME, e))
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SerializeError> {
        rmp_serde::from_slice(bytes).map_err(|e| SerializeError::new(Self::NAME, e))
    }
}

/// The serializers a worker can decode, chosen per job (`#[job(serializer = "msgpack")]`)
/// or per client ([`crate::ClientConfig::format`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// JSON through serde_json. The default.
    #[default]
    Json,
    /// MessagePack through rmp-serde, with named fields.
    MessagePack,
}

impl Format {
    /// Every format, for looking one up by name.
    pub const ALL: [Format; 2] = [Format::Json, Format::MessagePack];

    /// Finds the format named in a header.
    pub fn from_name(name: &str) -> Option<Format> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The header name of this format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => Json::NAME,
            Format::MessagePack => MessagePack::NAME,
        }
    }

    /// The AMQP content type of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => Json::CONTENT_TYPE,
            Format::MessagePack => MessagePack::CONTENT_TYPE,
        }
    }

    /// Encodes with this format.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, SerializeError> {
        match self {
            Format::Json => Json::encode(value),
            Format::MessagePack => MessagePack::encode(value),
        }
    }

    /// Decodes with this format.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, SerializeError> {
        match self {
            Format::Json => Json::decode(bytes),
            Format::MessagePack => MessagePack::decode(bytes),
        }
    }

    /// A short human-readable rendering of a body in this format, for previews and the CLI.
    pub fn to_json_value(self, bytes: &[u8]) -> Result<serde_json::Value, SerializeError> {
        self.decode::<serde_json::Value>(bytes)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Args {
        to: String,
        n: u64,
    }

    #[test]
    fn both_formats_round_trip_and_are_found_by_name() {
        let args = Args {
            to: "ada".into(),
            n: 7,
        };
        for format in Format::ALL {
            let bytes = format.encode(&args).expect("encode");
            assert_eq!(format.decode::<Args>(&bytes).expect("decode"), args);
            assert_eq!(Format::from_name(format.name()), Some(format));
            let value = format.to_json_value(&bytes).expect("as json");
            assert_eq!(value["to"], "ada");
        }
        assert_eq!(Format::from_name("yaml"), None);
    }
}
