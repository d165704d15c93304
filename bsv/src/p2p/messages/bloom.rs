//! BIP37 bloom-filter messages (`filterload`, `filteradd`, `merkleblock`) and the data-reference
//! transaction (`datareftx`). Nodes ban peers that send bloom filters by default (docs/PROTOCOL.md
//! §9.12); the types exist so such traffic decodes and can be recognised.

use bytes::{BufMut, Bytes};
use serde::Serialize;

use crate::bitcoin::{
    list_len, var_bytes_len, write_list, write_var_bytes, BlockHeader, Decode, DecodeError, Encode,
    Hash, MerkleProof, Reader, Transaction, HEADER_SIZE,
};

/// The `filterload` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterLoad {
    /// The bloom filter bits.
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub filter: Bytes,
    /// Number of hash functions.
    pub hash_funcs: u32,
    /// Random tweak.
    pub tweak: u32,
    /// Update flags.
    pub flags: u8,
}

impl Encode for FilterLoad {
    fn encode<B: BufMut>(&self, out: &mut B) {
        write_var_bytes(out, &self.filter);
        out.put_u32_le(self.hash_funcs);
        out.put_u32_le(self.tweak);
        out.put_u8(self.flags);
    }
    fn encoded_len(&self) -> usize {
        var_bytes_len(self.filter.len()) + 9
    }
}

impl Decode for FilterLoad {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FilterLoad {
            filter: r.read_var_bytes()?,
            hash_funcs: r.read_u32_le()?,
            tweak: r.read_u32_le()?,
            flags: r.read_u8()?,
        })
    }
}

/// The `merkleblock` message: a header with a partial merkle tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MerkleBlock {
    /// The block header.
    pub header: BlockHeader,
    /// Number of transactions in the block.
    pub total_transactions: u32,
    /// Hashes of the partial merkle tree.
    pub hashes: Vec<Hash>,
    /// Flag bits of the partial merkle tree.
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub flags: Bytes,
}

impl Encode for MerkleBlock {
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.header.encode(out);
        out.put_u32_le(self.total_transactions);
        write_list(out, &self.hashes);
        write_var_bytes(out, &self.flags);
    }
    fn encoded_len(&self) -> usize {
        HEADER_SIZE + 4 + list_len(&self.hashes) + var_bytes_len(self.flags.len())
    }
}

impl Decode for MerkleBlock {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MerkleBlock {
            header: r.read()?,
            total_transactions: r.read_u32_le()?,
            hashes: r.read_list(32)?,
            flags: r.read_var_bytes()?,
        })
    }
}

/// The `datareftx` message: a transaction with the proof that it is in a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataRefTx {
    /// The transaction.
    pub tx: Transaction,
    /// Its TSC proof (the node builds flags 0; parse by flags).
    pub proof: MerkleProof,
}

impl Encode for DataRefTx {
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.tx.encode(out);
        self.proof.encode(out);
    }
    fn encoded_len(&self) -> usize {
        self.tx.size() + self.proof.encoded_len()
    }
}

impl Decode for DataRefTx {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DataRefTx {
            tx: r.read()?,
            proof: r.read()?,
        })
    }
}
