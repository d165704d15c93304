//! Inventory vectors: (type, hash) pairs used by `inv`, `getdata` and `notfound`.

use std::fmt;

use bytes::BufMut;
use serde::{Serialize, Serializer};

use super::{Decode, DecodeError, Encode, Hash, Reader};

/// Size of one inventory vector on the wire.
pub const INV_VECT_SIZE: usize = 36;

/// The type of an inventory entry (`GetDataMsg`, `src/protocol.h`).
///
/// The node compares the raw value, so flagged types (such as BTC's witness flag) are
/// [`InvType::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvType {
    /// 0: `UNDEFINED`.
    Error,
    /// 1: a transaction.
    Tx,
    /// 2: a block.
    Block,
    /// 3: a filtered (BIP37) block.
    FilteredBlock,
    /// 4: a compact (BIP152) block.
    CompactBlock,
    /// 5: a data-reference transaction (`datareftx`).
    DataRefTx,
    /// Any other value.
    Unknown(u32),
}

impl InvType {
    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            InvType::Error => 0,
            InvType::Tx => 1,
            InvType::Block => 2,
            InvType::FilteredBlock => 3,
            InvType::CompactBlock => 4,
            InvType::DataRefTx => 5,
            InvType::Unknown(v) => v,
        }
    }

    /// The type for a wire value.
    pub fn from_u32(v: u32) -> Self {
        match v {
            0 => InvType::Error,
            1 => InvType::Tx,
            2 => InvType::Block,
            3 => InvType::FilteredBlock,
            4 => InvType::CompactBlock,
            5 => InvType::DataRefTx,
            v => InvType::Unknown(v),
        }
    }
}

impl fmt::Display for InvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvType::Error => f.write_str("error"),
            InvType::Tx => f.write_str("tx"),
            InvType::Block => f.write_str("block"),
            InvType::FilteredBlock => f.write_str("filtered_block"),
            InvType::CompactBlock => f.write_str("compact_block"),
            InvType::DataRefTx => f.write_str("dataref_tx"),
            InvType::Unknown(v) => write!(f, "unknown({v})"),
        }
    }
}

impl Serialize for InvType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One inventory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct InvVect {
    /// What kind of object.
    #[serde(rename = "type")]
    pub inv_type: InvType,
    /// Its hash (txid or block hash).
    pub hash: Hash,
}

impl InvVect {
    /// An entry for a transaction.
    pub fn tx(txid: Hash) -> Self {
        InvVect {
            inv_type: InvType::Tx,
            hash: txid,
        }
    }

    /// An entry for a block.
    pub fn block(hash: Hash) -> Self {
        InvVect {
            inv_type: InvType::Block,
            hash,
        }
    }
}

impl Encode for InvVect {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u32_le(self.inv_type.to_u32());
        out.put_slice(&self.hash.0);
    }
    fn encoded_len(&self) -> usize {
        INV_VECT_SIZE
    }
}

impl Decode for InvVect {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(InvVect {
            inv_type: InvType::from_u32(r.read_u32_le()?),
            hash: Hash(r.read_array()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_maps_to_its_wire_value_and_back() {
        for v in 0..8u32 {
            assert_eq!(InvType::from_u32(v).to_u32(), v);
        }
        assert_eq!(
            InvType::from_u32(0x4000_0001),
            InvType::Unknown(0x4000_0001)
        );
    }
}
