//! TSC merkle proofs (`MerkleProof`, `src/merkleproof.h`), carried by `datareftx`, `hdrsen` and
//! `dsdetected`.

use bytes::{BufMut, Bytes};
use serde::Serialize;

use super::{
    var_bytes_len, write_var_bytes, write_var_int, Decode, DecodeError, Encode, Hash, Reader,
    Transaction, VarInt,
};

/// Size of one proof node on the wire: type byte and 32-byte value.
const NODE_SIZE: usize = 33;

/// The transaction a proof is about: its txid, or the whole transaction (`flags & 1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MerkleProofTx {
    /// Only the txid.
    Txid(Hash),
    /// The full transaction.
    Full(Transaction),
}

/// What a proof's target is, from `flags & 6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MerkleProofTarget {
    /// A block hash (`flags & 6 == 0`).
    BlockHash,
    /// A merkle root (`flags & 6 == 4`).
    MerkleRoot,
    /// Any other combination (a header target in the TSC spec; the node does not use it).
    Other,
}

/// A TSC merkle proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MerkleProof {
    /// Flags byte: bit 0 full transaction, bits 1–2 target type.
    pub flags: u8,
    /// Index of the transaction in the block.
    pub index: u64,
    /// The transaction or its txid (bit 0 of `flags` is derived from this on encoding).
    pub tx: MerkleProofTx,
    /// The target (block hash or merkle root).
    pub target: Hash,
    /// Branch nodes as (type, value); the node only uses type 0.
    pub nodes: Vec<(u8, Hash)>,
}

impl MerkleProof {
    /// What the target is.
    pub fn target_type(&self) -> MerkleProofTarget {
        match self.flags & 6 {
            0 => MerkleProofTarget::BlockHash,
            4 => MerkleProofTarget::MerkleRoot,
            _ => MerkleProofTarget::Other,
        }
    }

    fn wire_flags(&self) -> u8 {
        match self.tx {
            MerkleProofTx::Full(_) => self.flags | 1,
            MerkleProofTx::Txid(_) => self.flags & !1,
        }
    }
}

impl Encode for MerkleProof {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u8(self.wire_flags());
        write_var_int(out, self.index);
        match &self.tx {
            MerkleProofTx::Full(tx) => write_var_bytes(out, tx.raw()),
            MerkleProofTx::Txid(h) => out.put_slice(&h.0),
        }
        out.put_slice(&self.target.0);
        write_var_int(out, self.nodes.len() as u64);
        for (t, h) in &self.nodes {
            out.put_u8(*t);
            out.put_slice(&h.0);
        }
    }
    fn encoded_len(&self) -> usize {
        1 + VarInt::size(self.index)
            + match &self.tx {
                MerkleProofTx::Full(tx) => var_bytes_len(tx.size()),
                MerkleProofTx::Txid(_) => 32,
            }
            + 32
            + VarInt::size(self.nodes.len() as u64)
            + NODE_SIZE * self.nodes.len()
    }
}

impl Decode for MerkleProof {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = r.read_u8()?;
        let index = r.read_var_int()?;
        let tx = if flags & 1 != 0 {
            let raw: Bytes = r.read_var_bytes()?;
            let tx = Transaction::decode_bytes(&raw).map_err(|e| DecodeError::Invalid {
                field: "merkle proof transaction",
                offset: r.position(),
                detail: e.to_string(),
            })?;
            MerkleProofTx::Full(tx)
        } else {
            MerkleProofTx::Txid(r.read()?)
        };
        let target = r.read()?;
        let n = r.read_count(NODE_SIZE)?;
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push((r.read_u8()?, r.read()?));
        }
        Ok(MerkleProof {
            flags,
            index,
            tx,
            target,
            nodes,
        })
    }
}
