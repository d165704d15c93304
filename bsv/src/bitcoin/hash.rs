//! 32-byte hashes (block hashes, txids, merkle nodes) and double SHA-256.
//!
//! Hashes travel on the wire in internal byte order; humans and block explorers show them
//! byte-reversed. [`Hash`] stores the internal order and displays/parses the reversed form, so a
//! block hash prints the way every explorer prints it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A 32-byte hash in internal (wire) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, used as "no hash" (e.g. the stop hash of a `getheaders`).
    pub const ZERO: Hash = Hash([0u8; 32]);

    /// The hash bytes in internal (wire) order.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether every byte is zero.
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 32]
    }

    /// The bytes in display order (reversed), as explorers show them.
    pub fn to_display_bytes(&self) -> [u8; 32] {
        let mut b = self.0;
        b.reverse();
        b
    }
}

/// Double SHA-256 of `data`: the hash behind block hashes, txids, merkle nodes and frame
/// checksums.
pub fn sha256d(data: &[u8]) -> Hash {
    let first = Sha256::digest(data);
    Hash(Sha256::digest(first).into())
}

/// Double SHA-256 of the concatenation of two slices, without copying them together
/// (merkle nodes hash `left ‖ right`).
pub fn sha256d_pair(left: &[u8], right: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    let first = h.finalize();
    Hash(Sha256::digest(first).into())
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_display_bytes()))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// The error returned when a string is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hash {input:?}: expected 64 hexadecimal digits")]
pub struct ParseHashError {
    /// The text that failed to parse.
    pub input: String,
}

impl FromStr for Hash {
    type Err = ParseHashError;

    /// Parses the display (byte-reversed) hex form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut b).map_err(|_| ParseHashError {
            input: s.to_string(),
        })?;
        b.reverse();
        Ok(Hash(b))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_payload_checksum_is_the_known_constant() {
        assert_eq!(&sha256d(&[]).0[..4], &[0x5d, 0xf6, 0xe0, 0xe2]);
    }

    #[test]
    fn display_is_byte_reversed_and_parses_back() {
        let mut raw = [0u8; 32];
        raw[0] = 0x6f;
        raw[31] = 0x00;
        raw[30] = 0x01;
        let h = Hash(raw);
        let s = h.to_string();
        assert!(s.starts_with("0001"));
        assert!(s.ends_with("6f"));
        assert_eq!(s.parse::<Hash>(), Ok(h));
    }

    #[test]
    fn bad_hex_is_refused() {
        assert!("zz".parse::<Hash>().is_err());
        assert!("00".repeat(31).parse::<Hash>().is_err());
    }

    #[test]
    fn pair_hash_equals_hash_of_concatenation() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        assert_eq!(sha256d_pair(&a, &b), sha256d(&both));
    }
}
