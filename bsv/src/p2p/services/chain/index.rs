//! The header index: every header we accepted, on every branch, with its height and cumulative
//! work, and the best chain among them (the node's `mapBlockIndex` and `chainActive`, reduced
//! to headers; `src/validation.cpp`).
//!
//! A header is accepted when its parent is known and it has valid proof of work
//! ([`super::work::meets_pow_hashed`]); difficulty retargeting is **not** checked (the node's
//! `ContextualCheckBlockHeader` "bad-diffbits"), nor timestamps, so a peer could feed us a
//! branch at minimum difficulty — it still costs real hashes, and only more total work than the
//! honest chain would move our tip. The tip is the header with the most cumulative work; on a
//! tie the one seen first stays (`CBlockIndexWorkComparator` orders equal work by arrival).
//! No header is ever removed; the index starts from a base (genesis or a trusted checkpoint)
//! whose cumulative work counts as its own work alone.

use std::collections::HashMap;

use uuid::Uuid;

use super::work::{header_work, meets_pow_hashed};
use crate::bitcoin::{BlockHeader, Hash};

/// One accepted header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// The header.
    pub header: BlockHeader,
    /// Its height.
    pub height: u32,
    /// Work of the chain from the base up to and including this header.
    pub work: u128,
    /// Who gave it to us first: an index into the index's peer table, 0 for nobody (the base,
    /// or loaded from disk).
    pub source: u32,
}

/// Why a header was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its parent is unknown.
    Unconnected,
    /// Its hash does not meet its target, or the target is easier than the network allows.
    HighHash,
}

/// What [`ChainIndex::accept`] did with a header (at the height given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// Already known: nothing changed.
    Known(u32),
    /// New; the tip may have moved.
    New(u32),
}

/// A change of the best chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TipChange {
    /// The tip before.
    pub old_tip: Hash,
    /// The tip after.
    pub new_tip: Hash,
    /// Its height.
    pub new_height: u32,
    /// The height of the last header both chains share.
    pub fork_height: u32,
    /// Headers of the old chain that left the best chain (old height − fork height).
    pub depth: u32,
}

/// Every accepted header and the best chain.
#[derive(Debug)]
pub(crate) struct ChainIndex {
    entries: HashMap<Hash, Entry>,
    /// Hashes of the best chain, by height − `base_height`.
    best: Vec<Hash>,
    base_height: u32,
    tip: Hash,
    pow_limit: [u8; 32],
    peers: Vec<Uuid>,
    peer_slots: HashMap<Uuid, u32>,
}

impl ChainIndex {
    /// An index holding only `base` at `base_height` (genesis at 0, or a checkpoint), for a
    /// network whose proof-of-work limit is `pow_limit`.
    pub(crate) fn new(base: BlockHeader, base_height: u32, pow_limit: [u8; 32]) -> Self {
        let hash = base.hash();
        let mut entries = HashMap::new();
        entries.insert(
            hash,
            Entry {
                header: base,
                height: base_height,
                work: header_work(&base),
                source: 0,
            },
        );
        ChainIndex {
            entries,
            best: vec![hash],
            base_height,
            tip: hash,
            pow_limit,
            peers: vec![Uuid::nil()],
            peer_slots: HashMap::new(),
        }
    }

    /// Room for `n` more headers (before loading a file).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
        self.best.reserve(n);
    }

    /// The height of the base.
    pub(crate) fn base_height(&self) -> u32 {
        self.base_height
    }

    /// The hash of the base.
    pub(crate) fn base_hash(&self) -> Hash {
        self.best.first().copied().unwrap_or(self.tip)
    }

    /// The best chain's tip.
    pub(crate) fn tip(&self) -> Hash {
        self.tip
    }

    /// The tip's entry.
    pub(crate) fn tip_entry(&self) -> Option<&Entry> {
        self.entries.get(&self.tip)
    }

    /// The tip's height.
    pub(crate) fn tip_height(&self) -> u32 {
        self.tip_entry().map_or(self.base_height, |e| e.height)
    }

    /// Headers held (all branches).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// One header's entry.
    pub(crate) fn get(&self, hash: &Hash) -> Option<&Entry> {
        self.entries.get(hash)
    }

    /// Whether `hash` is known.
    pub(crate) fn contains(&self, hash: &Hash) -> bool {
        self.entries.contains_key(hash)
    }

    /// The best chain's hash at `height`.
    pub(crate) fn hash_at(&self, height: u32) -> Option<Hash> {
        let offset = height.checked_sub(self.base_height)?;
        self.best.get(offset as usize).copied()
    }

    /// Whether `hash` is on the best chain.
    pub(crate) fn is_best(&self, hash: &Hash) -> bool {
        self.entries
            .get(hash)
            .is_some_and(|e| self.hash_at(e.height) == Some(*hash))
    }

    /// The peer that gave us `hash` first.
    pub(crate) fn source_of(&self, hash: &Hash) -> Option<Uuid> {
        let e = self.entries.get(hash)?;
        match e.source {
            0 => None,
            s => self.peers.get(s as usize).copied(),
        }
    }

    fn slot(&mut self, peer: Option<Uuid>) -> u32 {
        let Some(peer) = peer else { return 0 };
        if let Some(s) = self.peer_slots.get(&peer) {
            return *s;
        }
        let s = self.peers.len() as u32;
        self.peers.push(peer);
        self.peer_slots.insert(peer, s);
        s
    }

    /// Accepts one header from `peer` (None: from disk), checking linkage and proof of work.
    /// Moves the tip when the header's chain has strictly more work; the caller reads the tip
    /// before and after a batch to learn of reorganisations ([`ChainIndex::change`]).
    pub(crate) fn accept(
        &mut self,
        header: &BlockHeader,
        peer: Option<Uuid>,
    ) -> Result<Accepted, Refusal> {
        let hash = header.hash();
        if let Some(known) = self.entries.get(&hash) {
            return Ok(Accepted::Known(known.height));
        }
        let Some(parent) = self.entries.get(&header.prev_hash).copied() else {
            return Err(Refusal::Unconnected);
        };
        if !meets_pow_hashed(header, &hash, &self.pow_limit) {
            return Err(Refusal::HighHash);
        }
        let source = self.slot(peer);
        let entry = Entry {
            header: *header,
            height: parent.height.saturating_add(1),
            work: parent.work.saturating_add(header_work(header)),
            source,
        };
        self.entries.insert(hash, entry);
        let tip_work = self.tip_entry().map_or(0, |e| e.work);
        if entry.work > tip_work {
            self.set_tip(hash, &entry);
        }
        Ok(Accepted::New(entry.height))
    }

    /// Makes `hash` the tip and rewrites the best chain above the fork.
    fn set_tip(&mut self, hash: Hash, entry: &Entry) {
        if header_extends(&self.tip, entry) {
            self.best.push(hash);
        } else {
            // Walk back from the new tip to the best chain, then swap the branch in.
            let mut branch = vec![hash];
            let mut cursor = entry.header.prev_hash;
            while let Some(e) = self.entries.get(&cursor) {
                if self.hash_at(e.height) == Some(cursor) {
                    break;
                }
                branch.push(cursor);
                cursor = e.header.prev_hash;
            }
            let fork_offset = self
                .entries
                .get(&cursor)
                .map_or(0, |e| e.height.saturating_sub(self.base_height) as usize);
            self.best.truncate(fork_offset + 1);
            self.best.extend(branch.into_iter().rev());
        }
        self.tip = hash;
    }

    /// How the tip moved from `old_tip` to the current one, or `None` if it did not.
    pub(crate) fn change(&self, old_tip: Hash, old_height: u32) -> Option<TipChange> {
        if old_tip == self.tip {
            return None;
        }
        let fork_height = if self.is_best(&old_tip) {
            old_height
        } else {
            self.fork_height_of(old_tip)
        };
        Some(TipChange {
            old_tip,
            new_tip: self.tip,
            new_height: self.tip_height(),
            fork_height,
            depth: old_height.saturating_sub(fork_height),
        })
    }

    /// The height where the branch of `hash` leaves the best chain.
    fn fork_height_of(&self, mut hash: Hash) -> u32 {
        while let Some(e) = self.entries.get(&hash) {
            if self.hash_at(e.height) == Some(hash) {
                return e.height;
            }
            hash = e.header.prev_hash;
        }
        self.base_height
    }

    /// A locator for the best chain ([`ChainIndex::locator_from`] of the tip).
    pub(crate) fn locator(&self) -> Vec<Hash> {
        self.locator_from(self.tip)
    }

    /// A locator from `hash` back (`CChain::GetLocator`, `src/chain.cpp`): hashes one by one
    /// until eleven are listed, then doubling the step, always ending with the base (genesis or
    /// the checkpoint). For a header off the best chain, its own ancestors.
    pub(crate) fn locator_from(&self, hash: Hash) -> Vec<Hash> {
        let mut out = Vec::with_capacity(32);
        let mut cursor = Some(hash);
        let mut step = 1u32;
        while let Some(h) = cursor {
            let Some(e) = self.entries.get(&h) else { break };
            out.push(h);
            if e.height <= self.base_height {
                return out;
            }
            let next = e.height.saturating_sub(step).max(self.base_height);
            cursor = self.ancestor(h, next);
            if out.len() > 10 {
                step = step.saturating_mul(2);
            }
        }
        out.push(self.base_hash());
        out
    }

    /// The ancestor of `hash` at `height` (`CBlockIndex::GetAncestor`).
    fn ancestor(&self, mut hash: Hash, height: u32) -> Option<Hash> {
        loop {
            let e = self.entries.get(&hash)?;
            if e.height < height {
                return None;
            }
            if e.height == height {
                return Some(hash);
            }
            if self.hash_at(e.height) == Some(hash) {
                return self.hash_at(height);
            }
            hash = e.header.prev_hash;
        }
    }
}

fn header_extends(tip: &Hash, entry: &Entry) -> bool {
    entry.header.prev_hash == *tip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitcoin::Network;
    use crate::p2p::services::chain::work::pow_limit;

    /// Mines a regtest header on `prev` (about two tries per header).
    pub(crate) fn mine(prev: &BlockHeader, tag: u32) -> BlockHeader {
        let mut h = BlockHeader {
            version: 0x2000_0000,
            prev_hash: prev.hash(),
            merkle_root: Hash([tag as u8; 32]),
            time: prev.time.wrapping_add(600).wrapping_add(tag),
            bits: 0x207f_ffff,
            nonce: 0,
        };
        while !h.check_proof_of_work() {
            h.nonce += 1;
        }
        h
    }

    fn chain_from(prev: &BlockHeader, n: usize, tag: u32) -> Vec<BlockHeader> {
        let mut out: Vec<BlockHeader> = Vec::new();
        let mut last = *prev;
        for _ in 0..n {
            let h = mine(&last, tag);
            out.push(h);
            last = h;
        }
        out
    }

    fn index() -> (ChainIndex, BlockHeader) {
        let g = Network::Regtest.genesis_header();
        (ChainIndex::new(g, 0, pow_limit(Network::Regtest)), g)
    }

    #[test]
    fn cumulative_work_adds_each_headers_work() {
        let (mut idx, g) = index();
        for h in chain_from(&g, 5, 1) {
            idx.accept(&h, None).unwrap();
        }
        assert_eq!(idx.tip_height(), 5);
        // Regtest headers are worth 2 each, genesis included.
        assert_eq!(idx.tip_entry().unwrap().work, 12);
    }

    #[test]
    fn equal_work_keeps_the_first_seen_tip() {
        let (mut idx, g) = index();
        let a = chain_from(&g, 3, 1);
        let b = chain_from(&g, 3, 2);
        for h in a.iter().chain(&b) {
            idx.accept(h, None).unwrap();
        }
        assert_eq!(idx.tip(), a[2].hash());
        assert!(idx.is_best(&a[1].hash()));
        assert!(!idx.is_best(&b[1].hash()));
        assert!(idx.contains(&b[2].hash()));
    }

    #[test]
    fn more_work_on_another_branch_reorganises_with_depth_from_the_fork() {
        let (mut idx, g) = index();
        let main = chain_from(&g, 10, 1);
        for h in &main {
            idx.accept(h, None).unwrap();
        }
        let (old_tip, old_height) = (idx.tip(), idx.tip_height());
        let side = chain_from(&main[6], 5, 2); // heights 8..=12, fork at 7
        for h in &side {
            idx.accept(h, None).unwrap();
        }
        let c = idx.change(old_tip, old_height).unwrap();
        assert_eq!(c.fork_height, 7);
        assert_eq!(c.depth, 3);
        assert_eq!(c.new_height, 12);
        assert_eq!(idx.hash_at(8), Some(side[0].hash()));
        assert_eq!(idx.hash_at(7), Some(main[6].hash()));
        assert!(!idx.is_best(&main[9].hash()));
    }

    #[test]
    fn plain_extension_is_a_change_with_depth_zero() {
        let (mut idx, g) = index();
        let main = chain_from(&g, 3, 1);
        idx.accept(&main[0], None).unwrap();
        let (t, h) = (idx.tip(), idx.tip_height());
        idx.accept(&main[1], None).unwrap();
        idx.accept(&main[2], None).unwrap();
        let c = idx.change(t, h).unwrap();
        assert_eq!((c.fork_height, c.depth, c.new_height), (1, 0, 3));
        assert_eq!(idx.change(idx.tip(), 3), None);
    }

    #[test]
    fn unconnected_and_high_hash_headers_are_refused() {
        let (mut idx, g) = index();
        let main = chain_from(&g, 2, 1);
        assert_eq!(idx.accept(&main[1], None), Err(Refusal::Unconnected));
        let mut bad = main[0];
        while bad.check_proof_of_work() {
            bad.nonce += 1;
        }
        assert_eq!(idx.accept(&bad, None), Err(Refusal::HighHash));
        assert_eq!(idx.accept(&main[0], None), Ok(Accepted::New(1)));
        assert_eq!(idx.accept(&main[0], None), Ok(Accepted::Known(1)));
    }

    #[test]
    fn locator_lists_eleven_then_doubles_back_to_genesis_as_the_node_does() {
        let (mut idx, g) = index();
        for h in chain_from(&g, 100, 1) {
            idx.accept(&h, None).unwrap();
        }
        let loc = idx.locator();
        let heights: Vec<u32> = loc.iter().map(|h| idx.get(h).unwrap().height).collect();
        assert_eq!(
            heights,
            [100, 99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 89, 87, 83, 75, 59, 27, 0]
        );
    }

    #[test]
    fn first_peer_is_remembered() {
        let (mut idx, g) = index();
        let h = chain_from(&g, 1, 1)[0];
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        idx.accept(&h, Some(a)).unwrap();
        idx.accept(&h, Some(b)).unwrap();
        assert_eq!(idx.source_of(&h.hash()), Some(a));
        assert_eq!(idx.source_of(&g.hash()), None);
    }
}
