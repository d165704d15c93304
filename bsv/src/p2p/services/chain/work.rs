//! Proof of work as numbers: the work a header's target stands for, and the checks of a
//! header's hash against its target and the network's proof-of-work limit
//! (`GetBlockProof` in `src/chain.cpp`, `CheckProofOfWork` in `src/pow.cpp`).
//!
//! Work is kept in a `u128`. A header's work is ⌊2²⁵⁶ / (target + 1)⌋: for any target the
//! networks allow (mainnet's limit is 2²²⁴) that is below 2¹²⁸ unless the hash had 128 leading
//! zero bits, and mainnet's whole chain holds about 2⁹⁴ hashes of work (0x…15e7 × 10²⁷ in
//! `getblockchaininfo`'s `chainwork`), so the sum stays some 2³⁴ times below `u128::MAX` for
//! centuries of hash-rate growth. A header whose work would not fit saturates (and additions
//! saturate too), which could only matter for a chain nobody can mine.

use crate::bitcoin::{BlockHeader, Hash, Network};

/// The largest target (easiest difficulty) a network accepts, big-endian (`powLimit` in
/// `src/chainparams.cpp`).
pub(crate) fn pow_limit(network: Network) -> [u8; 32] {
    let mut limit = [0xffu8; 32];
    match network {
        // uint256S("00000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffff")
        Network::Mainnet | Network::Testnet | Network::Stn => {
            limit[..4].copy_from_slice(&[0, 0, 0, 0]);
        }
        // uint256S("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")
        Network::Regtest => limit[0] = 0x7f,
    }
    limit
}

/// Whether `header` has valid proof of work on a network with `limit`: its target decodes, is
/// no easier than the limit, and its hash meets it (`CheckProofOfWork`: "high-hash").
#[cfg(test)]
pub(crate) fn meets_pow(header: &BlockHeader, limit: &[u8; 32]) -> bool {
    meets_pow_hashed(header, &header.hash(), limit)
}

/// `meets_pow` for a header whose `hash` the caller has computed already (one SHA-256d per
/// header instead of two).
pub(crate) fn meets_pow_hashed(header: &BlockHeader, hash: &Hash, limit: &[u8; 32]) -> bool {
    match header.target() {
        Some(target) => target <= *limit && hash.to_display_bytes() <= target,
        None => false,
    }
}

/// The work a header with these `bits` proves: ⌊2²⁵⁶ / (target + 1)⌋ (`GetBlockProof`), or 0
/// when the bits encode no target.
pub(crate) fn header_work(header: &BlockHeader) -> u128 {
    let Some(target) = header.target() else {
        return 0;
    };
    let exponent = header.bits >> 24;
    let mantissa = u128::from(header.bits & 0x007f_ffff);
    // Fast path, every real network: target = m · 2^s with s ≥ 136, so 2^(256−s) fits a u128.
    // ⌊2²⁵⁶/(m·2^s + 1)⌋ equals ⌊2^(256−s)/m⌋ unless m divides 2^(256−s) exactly (m a power
    // of two), where the +1 takes one off.
    if (20..=34).contains(&exponent) {
        let s = 8 * (exponent - 3);
        let numerator = 1u128 << (256 - s);
        let q = numerator / mantissa;
        return if mantissa.is_power_of_two() {
            q.saturating_sub(1)
        } else {
            q
        };
    }
    slow_work(&target)
}

/// ⌊2²⁵⁶ / (target + 1)⌋ by long division, saturating at `u128::MAX`.
fn slow_work(target: &[u8; 32]) -> u128 {
    // The divisor as four little-endian u64 limbs, plus one.
    let mut d = [0u64; 4];
    for (i, limb) in d.iter_mut().enumerate() {
        let start = 32 - 8 * (i + 1);
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&target[start..start + 8]);
        *limb = u64::from_be_bytes(bytes);
    }
    let mut carry = true;
    for limb in d.iter_mut() {
        if !carry {
            break;
        }
        let (v, c) = limb.overflowing_add(1);
        *limb = v;
        carry = c;
    }
    if carry {
        // target + 1 = 2²⁵⁶: the quotient is 1.
        return 1;
    }
    // Quotients of 2¹²⁸ or more (divisor ≤ 2¹²⁸) saturate.
    if d[2] == 0 && d[3] == 0 {
        return u128::MAX;
    }
    // Restoring division of 2²⁵⁶ (a one followed by 256 zero bits) by d.
    let mut rem = [0u64; 4];
    let mut rem_top = false; // bit 256 of the remainder
    let mut quotient: u128 = 0;
    for bit in (0..=256u32).rev() {
        // rem = rem * 2 + numerator bit
        rem_top = rem[3] >> 63 == 1;
        for i in (1..4).rev() {
            rem[i] = (rem[i] << 1) | (rem[i - 1] >> 63);
        }
        rem[0] = (rem[0] << 1) | u64::from(bit == 256);
        let ge = rem_top || cmp_ge(&rem, &d);
        if ge {
            sub_in_place(&mut rem, &d);
            rem_top = false;
            if bit < 128 {
                quotient |= 1u128 << bit;
            } else {
                return u128::MAX;
            }
        }
    }
    let _ = rem_top;
    quotient
}

fn cmp_ge(a: &[u64; 4], b: &[u64; 4]) -> bool {
    for i in (0..4).rev() {
        if a[i] != b[i] {
            return a[i] > b[i];
        }
    }
    true
}

fn sub_in_place(a: &mut [u64; 4], b: &[u64; 4]) {
    let mut borrow = false;
    for i in 0..4 {
        let (v1, b1) = a[i].overflowing_sub(b[i]);
        let (v2, b2) = v1.overflowing_sub(u64::from(borrow));
        a[i] = v2;
        borrow = b1 || b2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_bits(bits: u32) -> BlockHeader {
        BlockHeader {
            bits,
            ..Network::Mainnet.genesis_header()
        }
    }

    #[test]
    fn difficulty_one_is_worth_two_to_the_32_plus_change() {
        // GetBlockProof of the mainnet genesis: 0x100010001 (chainwork of block 0).
        assert_eq!(header_work(&with_bits(0x1d00ffff)), 0x1_0001_0001);
    }

    #[test]
    fn regtest_blocks_are_worth_two() {
        // chainwork of regtest block 1 is 4 (2 for genesis + 2).
        assert_eq!(header_work(&with_bits(0x207fffff)), 2);
    }

    #[test]
    fn fast_and_slow_paths_agree() {
        for bits in [
            0x1d00ffff, 0x207fffff, 0x1800ffff, 0x18012345, 0x1b04864c, 0x14008000,
        ] {
            let h = with_bits(bits);
            let target = h.target().unwrap();
            assert_eq!(header_work(&h), slow_work(&target), "{bits:#x}");
        }
    }

    #[test]
    fn tiny_targets_saturate() {
        assert_eq!(header_work(&with_bits(0x0300ffff)), u128::MAX);
    }

    #[test]
    fn pow_limit_refuses_easier_targets_than_the_network_allows() {
        let g = Network::Regtest.genesis_header();
        assert!(meets_pow(&g, &pow_limit(Network::Regtest)));
        // A regtest-difficulty header is far easier than mainnet's limit.
        assert!(!meets_pow(&g, &pow_limit(Network::Mainnet)));
        let main = Network::Mainnet.genesis_header();
        assert!(meets_pow(&main, &pow_limit(Network::Mainnet)));
    }
}
