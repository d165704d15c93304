//! Blocks and merkle roots.

use bytes::BufMut;
use serde::Serialize;

use super::transaction::MIN_TX_SIZE;
use super::{
    sha256d_64, sha256d_pair, write_var_int, BlockHeader, Decode, DecodeError, Encode, Hash,
    Reader, Transaction, VarInt, HEADER_SIZE,
};

/// A block: header and transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The transactions, coinbase first.
    pub transactions: Vec<Transaction>,
}

/// Why a decoded block is not self-consistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The transactions do not hash to the header's merkle root.
    #[error("merkle root mismatch: header says {expected}, transactions give {computed}")]
    MerkleMismatch {
        /// The root in the header.
        expected: Hash,
        /// The root of the transactions.
        computed: Hash,
    },
    /// The block has no transactions.
    #[error("block has no transactions")]
    Empty,
    /// The header does not meet its own proof-of-work target.
    #[error("block {hash} does not meet its proof-of-work target (bits {bits:#010x})")]
    ProofOfWork {
        /// The block hash.
        hash: Hash,
        /// The header's bits.
        bits: u32,
    },
}

impl Block {
    /// The block hash (the header's hash).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// The merkle root of the transactions.
    pub fn compute_merkle_root(&self) -> Hash {
        merkle_root(self.transactions.iter().map(Transaction::txid).collect())
    }

    /// Checks that the transactions hash to the header's merkle root.
    pub fn check_merkle_root(&self) -> Result<(), BlockError> {
        if self.transactions.is_empty() {
            return Err(BlockError::Empty);
        }
        let computed = self.compute_merkle_root();
        if computed != self.header.merkle_root {
            return Err(BlockError::MerkleMismatch {
                expected: self.header.merkle_root,
                computed,
            });
        }
        Ok(())
    }

    /// Checks proof of work and the merkle root.
    pub fn validate(&self) -> Result<(), BlockError> {
        if !self.header.check_proof_of_work() {
            return Err(BlockError::ProofOfWork {
                hash: self.hash(),
                bits: self.header.bits,
            });
        }
        self.check_merkle_root()
    }
}

/// The merkle root of a list of txids (Bitcoin's tree: an odd last node pairs with itself).
/// An empty list gives the zero hash.
pub fn merkle_root(mut level: Vec<Hash>) -> Hash {
    if level.is_empty() {
        return Hash::ZERO;
    }
    let mut buf = [0u8; 64];
    while level.len() > 1 {
        let n = level.len();
        let mut out = 0;
        let mut i = 0;
        while i < n {
            let left = level[i];
            let right = if i + 1 < n { level[i + 1] } else { left };
            buf[..32].copy_from_slice(&left.0);
            buf[32..].copy_from_slice(&right.0);
            level[out] = sha256d_64(&buf);
            out += 1;
            i += 2;
        }
        level.truncate(out);
    }
    level[0]
}

/// A merkle root computed from txids as they arrive, holding at most one pending hash per tree
/// level (O(log n) memory), with the node's rule that an odd last node pairs with itself
/// (`ComputeMerkleRoot`, `src/consensus/merkle.cpp`).
#[derive(Debug, Clone, Default)]
pub struct MerkleAccumulator {
    /// `levels[i]`: a left node at height `i` still waiting for its right sibling.
    levels: Vec<Option<Hash>>,
    count: u64,
}

impl MerkleAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next txid.
    pub fn push(&mut self, txid: Hash) {
        self.count += 1;
        let mut node = txid;
        for slot in self.levels.iter_mut() {
            match slot.take() {
                Some(left) => node = sha256d_pair(&left.0, &node.0),
                None => {
                    *slot = Some(node);
                    return;
                }
            }
        }
        self.levels.push(Some(node));
    }

    /// How many txids were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The root of the txids added so far (the zero hash for none, as
    /// [`merkle_root`]).
    pub fn root(&self) -> Hash {
        let top = match self.levels.iter().rposition(Option::is_some) {
            Some(t) => t,
            None => return Hash::ZERO,
        };
        // `carry` is the last node of the current level when that level has an odd number of
        // nodes left over from the lower levels; at each level below the top, a lone node pairs
        // with itself.
        let mut carry: Option<Hash> = None;
        for (height, slot) in self.levels.iter().enumerate() {
            let node = match (*slot, carry) {
                (None, None) => None,
                (Some(left), None) if height == top => return left,
                (Some(left), None) => Some(sha256d_pair(&left.0, &left.0)),
                (None, Some(c)) => Some(sha256d_pair(&c.0, &c.0)),
                (Some(left), Some(c)) => Some(sha256d_pair(&left.0, &c.0)),
            };
            if height == top {
                return node.unwrap_or(Hash::ZERO);
            }
            carry = node;
        }
        Hash::ZERO
    }
}

impl Encode for Block {
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.header.encode(out);
        write_var_int(out, self.transactions.len() as u64);
        for tx in &self.transactions {
            tx.encode(out);
        }
    }
    fn encoded_len(&self) -> usize {
        HEADER_SIZE
            + VarInt::size(self.transactions.len() as u64)
            + self
                .transactions
                .iter()
                .map(Transaction::size)
                .sum::<usize>()
    }
}

impl Decode for Block {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = r.read()?;
        let n = r.read_count(MIN_TX_SIZE)?;
        let mut transactions = Vec::with_capacity(n);
        for _ in 0..n {
            transactions.push(r.read()?);
        }
        Ok(Block {
            header,
            transactions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u32) -> Hash {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&i.to_le_bytes());
        Hash(h)
    }

    #[test]
    fn the_accumulator_matches_merkle_root_for_every_count_up_to_70() {
        for n in 0..70u32 {
            let leaves: Vec<Hash> = (0..n).map(leaf).collect();
            let mut acc = MerkleAccumulator::new();
            for l in &leaves {
                acc.push(*l);
            }
            assert_eq!(acc.root(), merkle_root(leaves.clone()), "n = {n}");
            assert!(acc.levels.len() <= 8);
        }
    }

    #[test]
    fn merkle_root_of_one_is_the_txid() {
        let h = Hash([7; 32]);
        assert_eq!(merkle_root(vec![h]), h);
    }

    #[test]
    fn merkle_root_of_three_duplicates_the_last() {
        let (a, b, c) = (Hash([1; 32]), Hash([2; 32]), Hash([3; 32]));
        let ab = sha256d_pair(&a.0, &b.0);
        let cc = sha256d_pair(&c.0, &c.0);
        assert_eq!(merkle_root(vec![a, b, c]), sha256d_pair(&ab.0, &cc.0));
    }
}
