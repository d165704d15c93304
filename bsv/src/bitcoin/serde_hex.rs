//! Serde helpers that show byte strings as lowercase hex, so decoded messages print as
//! readable JSON.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serializer};

/// Serializes bytes as a hex string.
pub fn serialize<S: Serializer>(b: impl AsRef<[u8]>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b.as_ref()))
}

/// Deserializes a hex string into [`Bytes`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    let s = String::deserialize(d)?;
    hex::decode(s)
        .map(Bytes::from)
        .map_err(serde::de::Error::custom)
}
