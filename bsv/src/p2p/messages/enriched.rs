//! Enriched headers (docs/PROTOCOL.md §3.9): the entries of `hdrsen`, each a header with its real
//! transaction count and, optionally, the coinbase and miner-info transactions with TSC proofs.

use bytes::BufMut;
use serde::Serialize;

use crate::bitcoin::{
    write_var_int, BlockHeader, Decode, DecodeError, Encode, MerkleProof, Reader, Transaction,
    VarInt, HEADER_SIZE,
};

/// A transaction with the TSC proof that places it in the block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvenTx {
    /// The transaction.
    pub tx: Transaction,
    /// Its proof.
    pub proof: MerkleProof,
}

/// One entry of an `hdrsen` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrichedHeader {
    /// The block header.
    pub header: BlockHeader,
    /// The block's real transaction count.
    pub tx_count: u64,
    /// True only for the current tip.
    pub no_more_headers: bool,
    /// The coinbase and its proof, if sent.
    pub coinbase: Option<ProvenTx>,
    /// The miner-info transaction and its proof, if sent. The flag byte is always present.
    pub miner_info: Option<ProvenTx>,
}

fn encode_opt<B: BufMut>(out: &mut B, p: &Option<ProvenTx>) {
    match p {
        Some(p) => {
            out.put_u8(1);
            p.tx.encode(out);
            p.proof.encode(out);
        }
        None => out.put_u8(0),
    }
}

fn opt_len(p: &Option<ProvenTx>) -> usize {
    1 + p
        .as_ref()
        .map_or(0, |p| p.tx.size() + p.proof.encoded_len())
}

fn decode_opt(r: &mut Reader<'_>) -> Result<Option<ProvenTx>, DecodeError> {
    if r.read_bool()? {
        Ok(Some(ProvenTx {
            tx: r.read()?,
            proof: r.read()?,
        }))
    } else {
        Ok(None)
    }
}

impl Encode for EnrichedHeader {
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.header.encode(out);
        write_var_int(out, self.tx_count);
        out.put_u8(u8::from(self.no_more_headers));
        encode_opt(out, &self.coinbase);
        encode_opt(out, &self.miner_info);
    }
    fn encoded_len(&self) -> usize {
        HEADER_SIZE
            + VarInt::size(self.tx_count)
            + 1
            + opt_len(&self.coinbase)
            + opt_len(&self.miner_info)
    }
}

impl Decode for EnrichedHeader {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(EnrichedHeader {
            header: r.read()?,
            tx_count: r.read_var_int()?,
            no_more_headers: r.read_bool()?,
            coinbase: decode_opt(r)?,
            miner_info: decode_opt(r)?,
        })
    }
}
