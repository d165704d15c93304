//! The 80-byte block header, its hash, and the proof-of-work check against `bits`.

use bytes::BufMut;
use serde::Serialize;

use super::{sha256d, Decode, DecodeError, Encode, Hash, Reader};

/// Size of a serialized block header.
pub const HEADER_SIZE: usize = 80;

/// A block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BlockHeader {
    /// Block version.
    pub version: i32,
    /// Hash of the previous block.
    pub prev_hash: Hash,
    /// Merkle root of the block's transactions.
    pub merkle_root: Hash,
    /// Block time, Unix seconds.
    pub time: u32,
    /// Difficulty target in compact form.
    pub bits: u32,
    /// Proof-of-work nonce.
    pub nonce: u32,
}

impl BlockHeader {
    /// The block hash: double SHA-256 of the 80 serialized bytes.
    pub fn hash(&self) -> Hash {
        let mut b = [0u8; HEADER_SIZE];
        self.encode(&mut &mut b[..]);
        sha256d(&b)
    }

    /// The 256-bit target encoded by `bits`, as a big-endian byte array, or `None` when `bits`
    /// is negative, zero, or overflows 256 bits (such a header can never be valid).
    pub fn target(&self) -> Option<[u8; 32]> {
        let exponent = (self.bits >> 24) as usize;
        let mantissa = self.bits & 0x007f_ffff;
        if self.bits & 0x0080_0000 != 0 || mantissa == 0 {
            return None;
        }
        let m = mantissa.to_be_bytes(); // m[1..4] are the three mantissa bytes
        let mut target = [0u8; 32];
        // The value is mantissa * 256^(exponent-3): place the 3 mantissa bytes so that the
        // least significant one sits at byte (exponent - 3) from the right.
        for (i, byte) in m[1..4].iter().enumerate() {
            // position from the right (0 = least significant) of this mantissa byte
            let pos_from_right = exponent as isize - 1 - i as isize;
            if *byte == 0 {
                continue;
            }
            if !(0..32).contains(&pos_from_right) {
                if pos_from_right >= 32 {
                    return None; // overflow
                }
                continue; // shifted out to the right
            }
            target[31 - pos_from_right as usize] = *byte;
        }
        if target == [0u8; 32] {
            return None;
        }
        Some(target)
    }

    /// Whether the header's hash meets the target in its own `bits`.
    pub fn check_proof_of_work(&self) -> bool {
        match self.target() {
            Some(target) => self.hash().to_display_bytes() <= target,
            None => false,
        }
    }
}

impl Encode for BlockHeader {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_i32_le(self.version);
        out.put_slice(&self.prev_hash.0);
        out.put_slice(&self.merkle_root.0);
        out.put_u32_le(self.time);
        out.put_u32_le(self.bits);
        out.put_u32_le(self.nonce);
    }
    fn encoded_len(&self) -> usize {
        HEADER_SIZE
    }
}

impl Decode for BlockHeader {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BlockHeader {
            version: r.read_i32_le()?,
            prev_hash: Hash(r.read_array()?),
            merkle_root: Hash(r.read_array()?),
            time: r.read_u32_le()?,
            bits: r.read_u32_le()?,
            nonce: r.read_u32_le()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mainnet genesis header.
    fn genesis() -> BlockHeader {
        BlockHeader {
            version: 1,
            prev_hash: Hash::ZERO,
            merkle_root: "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
                .parse()
                .unwrap(),
            time: 1231006505,
            bits: 0x1d00ffff,
            nonce: 2083236893,
        }
    }

    #[test]
    fn genesis_header_hashes_to_the_mainnet_genesis_and_meets_its_target() {
        let g = genesis();
        assert_eq!(g.hash(), super::super::Network::Mainnet.genesis_hash());
        assert!(g.check_proof_of_work());
    }

    #[test]
    fn target_of_difficulty_one() {
        let t = genesis().target().unwrap();
        let mut expected = [0u8; 32];
        expected[4] = 0xff;
        expected[5] = 0xff;
        assert_eq!(t, expected);
    }

    #[test]
    fn a_header_with_a_changed_nonce_fails_proof_of_work() {
        let mut g = genesis();
        g.nonce += 1;
        assert!(!g.check_proof_of_work());
    }

    #[test]
    fn negative_zero_and_overflowing_bits_have_no_target() {
        for bits in [0x1d80ffff, 0x1d000000, 0x23010000, 0] {
            let h = BlockHeader { bits, ..genesis() };
            assert_eq!(h.target(), None, "{bits:#x}");
            assert!(!h.check_proof_of_work());
        }
    }

    #[test]
    fn regtest_bits_give_an_easy_target() {
        let h = BlockHeader {
            bits: 0x207fffff,
            ..genesis()
        };
        let t = h.target().unwrap();
        assert_eq!(&t[..3], &[0x7f, 0xff, 0xff]);
    }
}
