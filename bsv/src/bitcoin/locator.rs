//! Block locators: the body of `getheaders`, `getblocks` and `gethdrsen`.

use bytes::BufMut;
use serde::Serialize;

use super::{list_len, write_list, Decode, DecodeError, Encode, Hash, Reader};

impl Encode for Hash {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_slice(&self.0);
    }
    fn encoded_len(&self) -> usize {
        32
    }
}

impl Decode for Hash {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Hash(r.read_array()?))
    }
}

/// A block locator with its stop hash (`CBlockLocator` plus `hashStop`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockLocator {
    /// The sender's protocol version (ignored by the receiver).
    pub version: u32,
    /// Known block hashes, newest first, thinning out towards genesis.
    pub hashes: Vec<Hash>,
    /// Stop after this hash; zero for "as many as allowed".
    pub stop_hash: Hash,
}

impl Encode for BlockLocator {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u32_le(self.version);
        write_list(out, &self.hashes);
        out.put_slice(&self.stop_hash.0);
    }
    fn encoded_len(&self) -> usize {
        4 + list_len(&self.hashes) + 32
    }
}

impl Decode for BlockLocator {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BlockLocator {
            version: r.read_u32_le()?,
            hashes: r.read_list(32)?,
            stop_hash: r.read()?,
        })
    }
}
