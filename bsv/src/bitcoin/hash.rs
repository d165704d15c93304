//! 32-byte hashes (block hashes, txids, merkle nodes) and double SHA-256.
//!
//! Hashes travel on the wire in internal byte order; humans and block explorers show them
//! byte-reversed. [`Hash`] stores the internal order and displays/parses the reversed form, so a
//! block hash prints the way every explorer prints it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::digest::generic_array::GenericArray;
use sha2::{compress256, Digest, Sha256};

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

/// SHA-256's initial hash value (FIPS 180-4, §5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The padding block that follows a 64-byte message: the 0x80 marker, zeros, and the message
/// length (512 bits) as a big-endian u64.
const PAD_AFTER_64_BYTES: [u8; 64] = {
    let mut block = [0u8; 64];
    block[0] = 0x80;
    block[62] = 0x02;
    block
};

/// Double SHA-256 of exactly 64 bytes: a merkle node, `left ‖ right`.
///
/// Both inputs have fixed lengths (64 bytes, then the 32-byte first digest), so their padding is
/// known in advance and the hash is three calls of the compression function with no buffering.
/// The general hasher pays its block bookkeeping and finalisation twice per node, which is a
/// visible share of a merkle root's cost once the txids are known.
pub fn sha256d_64(data: &[u8; 64]) -> Hash {
    let mut state = SHA256_IV;
    compress256(
        &mut state,
        &[
            GenericArray::from(*data),
            GenericArray::from(PAD_AFTER_64_BYTES),
        ],
    );
    // The second message is the 32-byte digest, then 0x80, zeros, and its length: 256 bits.
    let mut second = [0u8; 64];
    for (bytes, word) in second.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    second[32] = 0x80;
    second[62] = 0x01;
    let mut state = SHA256_IV;
    compress256(&mut state, &[GenericArray::from(second)]);
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    Hash(out)
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
    fn sha256d_of_64_bytes_equals_the_general_sha256d() {
        for seed in 0..=255u8 {
            let mut data = [0u8; 64];
            for (i, b) in data.iter_mut().enumerate() {
                *b = seed.wrapping_mul(31).wrapping_add(i as u8);
            }
            assert_eq!(sha256d_64(&data), sha256d(&data), "seed {seed}");
        }
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
