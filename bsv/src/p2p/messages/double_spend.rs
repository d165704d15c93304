//! Double-spend notifications (`dsdetected`, docs/PROTOCOL.md §3.11) and miner-ID revocations
//! (`revokemid`, §3.12). Both are relayed by nodes; a library mostly logs them.

use bytes::{BufMut, Bytes};
use serde::Serialize;

use crate::bitcoin::{
    list_len, var_bytes_len, write_list, write_var_bytes, BlockHeader, Decode, DecodeError, Encode,
    MerkleProof, Reader, HEADER_SIZE,
};

/// One fork of a `dsdetected`: headers back to the fork point and the proof of the conflicting
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DsBlockDetails {
    /// Headers from the block holding the conflicting transaction back to the fork point.
    pub headers: Vec<BlockHeader>,
    /// Proof of the conflicting transaction (flags 5: full tx, merkle-root target).
    pub proof: MerkleProof,
}

impl Encode for DsBlockDetails {
    fn encode<B: BufMut>(&self, out: &mut B) {
        write_list(out, &self.headers);
        self.proof.encode(out);
    }
    fn encoded_len(&self) -> usize {
        list_len(&self.headers) + self.proof.encoded_len()
    }
}

impl Decode for DsBlockDetails {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DsBlockDetails {
            headers: r.read_list(HEADER_SIZE)?,
            proof: r.read()?,
        })
    }
}

/// The `dsdetected` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DsDetected {
    /// Message version (must be 1).
    pub version: u16,
    /// The competing forks (at least two).
    pub blocks: Vec<DsBlockDetails>,
}

impl Encode for DsDetected {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u16_le(self.version);
        write_list(out, &self.blocks);
    }
    fn encoded_len(&self) -> usize {
        2 + list_len(&self.blocks)
    }
}

impl Decode for DsDetected {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DsDetected {
            version: r.read_u16_le()?,
            // The smallest fork: a header count, then a proof carrying the smallest full
            // transaction (flags, index, var_bytes of a 10-byte tx, target, node count); a txid
            // proof is longer, so this bounds both forms.
            blocks: r.read_list(1 + (1 + 1 + (1 + 10) + 32 + 1))?,
        })
    }
}

/// The `revokemid` message: revocation of a compromised miner-ID key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokeMid {
    /// Message version (0).
    pub version: u32,
    /// The revocation key (compressed public key).
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub revocation_key: [u8; 33],
    /// The miner ID.
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub miner_id: [u8; 33],
    /// The compromised key.
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub revocation_message: [u8; 33],
    /// `len1 ‖ sig1 ‖ len2 ‖ sig2` (DER signatures), as one var_bytes.
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub signatures: Bytes,
}

impl Encode for RevokeMid {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u32_le(self.version);
        out.put_slice(&self.revocation_key);
        out.put_slice(&self.miner_id);
        out.put_slice(&self.revocation_message);
        write_var_bytes(out, &self.signatures);
    }
    fn encoded_len(&self) -> usize {
        4 + 3 * 33 + var_bytes_len(self.signatures.len())
    }
}

impl Decode for RevokeMid {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(RevokeMid {
            version: r.read_u32_le()?,
            revocation_key: r.read_array()?,
            miner_id: r.read_array()?,
            revocation_message: r.read_array()?,
            signatures: r.read_var_bytes()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitcoin::{Hash, MerkleProofTx, Transaction};

    /// Regression: the fork count was checked against a 68-byte minimum per fork (a proof with a
    /// txid), which refused forks whose proof carries a transaction shorter than 32 bytes.
    #[test]
    fn a_fork_whose_proof_carries_a_tiny_full_transaction_decodes() {
        let proof = MerkleProof {
            flags: 5,
            index: 1,
            tx: MerkleProofTx::Full(Transaction::new(1, vec![], vec![], 0)),
            target: Hash::ZERO,
            nodes: vec![],
        };
        let msg = DsDetected {
            version: 1,
            blocks: vec![
                DsBlockDetails {
                    headers: vec![],
                    proof: proof.clone(),
                };
                2
            ],
        };
        assert_eq!(DsDetected::decode_exact(&msg.to_vec()), Ok(msg));
    }
}
