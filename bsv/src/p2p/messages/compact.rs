//! Compact blocks (BIP152, version 1 short IDs over txids; docs/PROTOCOL.md §3.8): `sendcmpct`,
//! `cmpctblock`, `getblocktxn`, `blocktxn`.

use bytes::BufMut;
use serde::Serialize;

use crate::bitcoin::{
    list_len, write_list, write_var_int, BlockHeader, Decode, DecodeError, Encode, Hash, Reader,
    Transaction, VarInt, HEADER_SIZE,
};

/// The `sendcmpct` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SendCmpct {
    /// True asks for high-bandwidth announcements (`cmpctblock` without `inv`).
    pub announce: bool,
    /// Compact block version; the node understands only 1.
    pub version: u64,
}

impl Encode for SendCmpct {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u8(u8::from(self.announce));
        out.put_u64_le(self.version);
    }
    fn encoded_len(&self) -> usize {
        9
    }
}

impl Decode for SendCmpct {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SendCmpct {
            announce: r.read_bool()?,
            version: r.read_u64_le()?,
        })
    }
}

/// A transaction sent in full inside a compact block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefilledTx {
    /// Index, differentially encoded (relative to the previous prefilled index + 1).
    pub index_delta: u64,
    /// The transaction.
    pub tx: Transaction,
}

impl Encode for PrefilledTx {
    fn encode<B: BufMut>(&self, out: &mut B) {
        write_var_int(out, self.index_delta);
        self.tx.encode(out);
    }
    fn encoded_len(&self) -> usize {
        VarInt::size(self.index_delta) + self.tx.size()
    }
}

impl Decode for PrefilledTx {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PrefilledTx {
            index_delta: r.read_var_int()?,
            tx: r.read()?,
        })
    }
}

/// The `cmpctblock` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompactBlock {
    /// The block header.
    pub header: BlockHeader,
    /// Nonce keying the short IDs.
    pub nonce: u64,
    /// 48-bit short transaction IDs.
    pub short_ids: Vec<u64>,
    /// Transactions sent in full (always at least the coinbase from the node).
    pub prefilled: Vec<PrefilledTx>,
}

impl Encode for CompactBlock {
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.header.encode(out);
        out.put_u64_le(self.nonce);
        write_var_int(out, self.short_ids.len() as u64);
        for id in &self.short_ids {
            out.put_u32_le(*id as u32);
            out.put_u16_le((*id >> 32) as u16);
        }
        write_list(out, &self.prefilled);
    }
    fn encoded_len(&self) -> usize {
        HEADER_SIZE
            + 8
            + VarInt::size(self.short_ids.len() as u64)
            + 6 * self.short_ids.len()
            + list_len(&self.prefilled)
    }
}

impl Decode for CompactBlock {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = r.read()?;
        let nonce = r.read_u64_le()?;
        let n = r.read_count(6)?;
        let mut short_ids = Vec::with_capacity(n);
        for _ in 0..n {
            let low = u64::from(r.read_u32_le()?);
            let high = u64::from(r.read_u16_le()?);
            short_ids.push(low | (high << 32));
        }
        Ok(CompactBlock {
            header,
            nonce,
            short_ids,
            prefilled: r.read_list(11)?,
        })
    }
}

/// The `getblocktxn` message: which transactions of a compact block are missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GetBlockTxn {
    /// The block.
    pub block_hash: Hash,
    /// Differentially encoded transaction indexes.
    pub index_deltas: Vec<u64>,
}

impl Encode for GetBlockTxn {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_slice(&self.block_hash.0);
        write_var_int(out, self.index_deltas.len() as u64);
        for i in &self.index_deltas {
            write_var_int(out, *i);
        }
    }
    fn encoded_len(&self) -> usize {
        32 + VarInt::size(self.index_deltas.len() as u64)
            + self
                .index_deltas
                .iter()
                .map(|i| VarInt::size(*i))
                .sum::<usize>()
    }
}

impl Decode for GetBlockTxn {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let block_hash = r.read()?;
        let n = r.read_count(1)?;
        let mut index_deltas = Vec::with_capacity(n);
        for _ in 0..n {
            index_deltas.push(r.read_var_int()?);
        }
        Ok(GetBlockTxn {
            block_hash,
            index_deltas,
        })
    }
}

/// The `blocktxn` message: the transactions a `getblocktxn` asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockTxn {
    /// The block.
    pub block_hash: Hash,
    /// The requested transactions, in request order.
    pub transactions: Vec<Transaction>,
}

impl Encode for BlockTxn {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_slice(&self.block_hash.0);
        write_list(out, &self.transactions);
    }
    fn encoded_len(&self) -> usize {
        32 + list_len(&self.transactions)
    }
}

impl Decode for BlockTxn {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BlockTxn {
            block_hash: r.read()?,
            transactions: r.read_list(10)?,
        })
    }
}
