//! The shared in-memory regtest chain every simulated node serves.
//!
//! The chain starts with the real regtest genesis block (docs/PROTOCOL.md §4, hash
//! `0f9188f1…2206`) and continues with generated blocks: a coinbase carrying the height (BIP34
//! style, as the node's miner writes it), optional extra transactions, a real merkle root,
//! timestamps increasing by ten minutes from [`CHAIN_START_TIME`], and valid regtest proof of
//! work (`bits` 0x207fffff, which about half of all nonces meet). Every byte is derived from the
//! seed with SHA-256, never from a random generator, so a given seed gives the same hashes on
//! every machine and in every version, and tests can assert them.
//!
//! The chain is generated once and shared by every node behind an `Arc<RwLock<_>>`
//! ([`ChainHandle`]); mining appends to it and readers see the new tip at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bitcoinsv::bitcoin::{
    merkle_root, sha256d, Block, BlockHeader, BlockLocator, Hash, OutPoint, Transaction, TxIn,
    TxOut,
};
use bytes::Bytes;

/// `bits` of every regtest block: the easiest target (`powLimit` of regtest).
pub const REGTEST_BITS: u32 = 0x207f_ffff;
/// Time of the regtest genesis block.
pub const REGTEST_GENESIS_TIME: u32 = 1_296_688_602;
/// Time of the first generated block; each later block is [`BLOCK_INTERVAL`] seconds later.
pub const CHAIN_START_TIME: u32 = 1_600_000_000;
/// Seconds between generated blocks.
pub const BLOCK_INTERVAL: u32 = 600;
/// Blocks between subsidy halvings on regtest (`nSubsidyHalvingInterval`).
const REGTEST_HALVING_INTERVAL: u32 = 150;
/// The first block subsidy: 50 coins in satoshis.
const INITIAL_SUBSIDY: i64 = 50 * 100_000_000;

/// The genesis coinbase's input script: the famous newspaper headline.
const GENESIS_SCRIPT_SIG: &str = "04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73";
/// The genesis coinbase's output script (pay to Satoshi's public key).
const GENESIS_SCRIPT_PUBKEY: &str = "4104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac";

/// The real regtest genesis block (`CreateGenesisBlock(1296688602, 2, 0x207fffff, 1, 50 BSV)`
/// in `src/chainparams.cpp`).
pub fn regtest_genesis() -> Block {
    let coinbase = Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint::NULL,
            script_sig: Bytes::from(decode_hex(GENESIS_SCRIPT_SIG)),
            sequence: u32::MAX,
        }],
        vec![TxOut {
            value: INITIAL_SUBSIDY,
            script_pubkey: Bytes::from(decode_hex(GENESIS_SCRIPT_PUBKEY)),
        }],
        0,
    );
    let header = BlockHeader {
        version: 1,
        prev_hash: Hash::ZERO,
        merkle_root: coinbase.txid(),
        time: REGTEST_GENESIS_TIME,
        bits: REGTEST_BITS,
        nonce: 2,
    };
    Block {
        header,
        transactions: vec![coinbase],
    }
}

/// Decodes a hex constant of this file (they are all well formed; see the genesis test).
fn decode_hex(s: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| match p {
            [h, l] => (digit(*h) << 4) | digit(*l),
            _ => 0,
        })
        .collect()
}

/// 32 deterministic bytes for `(seed, tag, a, b)`.
pub(crate) fn derive(seed: u64, tag: &[u8], a: u64, b: u64) -> Hash {
    let mut input = Vec::with_capacity(tag.len() + 24);
    input.extend_from_slice(tag);
    input.extend_from_slice(&seed.to_le_bytes());
    input.extend_from_slice(&a.to_le_bytes());
    input.extend_from_slice(&b.to_le_bytes());
    sha256d(&input)
}

/// Appends `n` to a script the way the node's `CScript << int64` does: `OP_0`, `OP_1`…`OP_16`,
/// or a minimal little-endian sign-magnitude push.
fn push_int(script: &mut Vec<u8>, n: i64) {
    if n == 0 {
        script.push(0x00);
        return;
    }
    if (1..=16).contains(&n) {
        script.push(0x50 + n as u8);
        return;
    }
    let neg = n < 0;
    let mut abs = n.unsigned_abs();
    let mut bytes = Vec::new();
    while abs > 0 {
        bytes.push((abs & 0xff) as u8);
        abs >>= 8;
    }
    if bytes.last().is_some_and(|b| b & 0x80 != 0) {
        bytes.push(if neg { 0x80 } else { 0x00 });
    } else if neg {
        if let Some(last) = bytes.last_mut() {
            *last |= 0x80;
        }
    }
    script.push(bytes.len() as u8);
    script.extend_from_slice(&bytes);
}

/// A pay-to-public-key-hash output script for a derived key hash.
fn p2pkh(key_hash: &Hash) -> Bytes {
    let mut s = Vec::with_capacity(25);
    s.extend_from_slice(&[0x76, 0xa9, 0x14]);
    s.extend_from_slice(&key_hash.0[..20]);
    s.extend_from_slice(&[0x88, 0xac]);
    Bytes::from(s)
}

/// The coinbase of the block at `height`: height and an 8-byte extra nonce from the seed in
/// the input script (so different seeds give different chains), the regtest subsidy paid to a
/// key hash derived from the seed.
fn coinbase(seed: u64, height: u32, branch: u64) -> Transaction {
    let mut script_sig = Vec::with_capacity(16);
    push_int(&mut script_sig, i64::from(height));
    // Branch 0 is the original chain; each reorganisation mines on a new branch number so its
    // blocks differ from the ones they replace.
    let extra = derive(seed, b"simnet-extranonce", u64::from(height), branch);
    script_sig.push(8);
    script_sig.extend_from_slice(&extra.0[..8]);
    let halvings = height / REGTEST_HALVING_INTERVAL;
    let value = if halvings >= 64 {
        0
    } else {
        INITIAL_SUBSIDY >> halvings
    };
    Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint::NULL,
            script_sig: Bytes::from(script_sig),
            sequence: u32::MAX,
        }],
        vec![TxOut {
            value,
            script_pubkey: p2pkh(&derive(seed, b"simnet-miner", 0, 0)),
        }],
        0,
    )
}

/// The `index`-th filler transaction of the block at `height`: one input spending a derived
/// outpoint with a 72-byte derived script, one output. The simnet does not validate scripts or
/// spends, so these only need to be well formed and unique.
/// A made-up transaction for examples and tests to inject or broadcast: deterministic from
/// `tag`, distinct from every block's transactions, accepted by the simnet's nodes (which check
/// neither inputs nor scripts). A real node would reject it.
pub fn sample_transaction(tag: u32) -> Transaction {
    filler_tx(u64::MAX, u32::MAX, tag)
}

pub(crate) fn filler_tx(seed: u64, height: u32, index: u32) -> Transaction {
    let prev = derive(seed, b"simnet-prevout", u64::from(height), u64::from(index));
    let sig_a = derive(seed, b"simnet-sig-a", u64::from(height), u64::from(index));
    let sig_b = derive(seed, b"simnet-sig-b", u64::from(height), u64::from(index));
    let mut script_sig = Vec::with_capacity(72);
    script_sig.push(71);
    script_sig.extend_from_slice(&sig_a.0);
    script_sig.extend_from_slice(&sig_b.0);
    script_sig.extend_from_slice(&[0x30, 0x44, 0x02, 0x20, 0x01, 0x02, 0x41]);
    Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint {
                txid: prev,
                vout: index % 4,
            },
            script_sig: Bytes::from(script_sig),
            sequence: u32::MAX,
        }],
        vec![TxOut {
            value: 1_000 + i64::from(index),
            script_pubkey: p2pkh(&derive(seed, b"simnet-payee", u64::from(height), 0)),
        }],
        0,
    )
}

/// Finds the first nonce (from 0) meeting the header's target. With regtest bits about half of
/// all nonces qualify, so this takes two hashes on average.
fn solve(mut header: BlockHeader) -> BlockHeader {
    for nonce in 0..=u32::MAX {
        header.nonce = nonce;
        if header.check_proof_of_work() {
            break;
        }
    }
    header
}

/// A linear chain of blocks from the regtest genesis.
#[derive(Debug, Clone)]
pub struct Chain {
    seed: u64,
    branch: u64,
    blocks: Vec<Arc<Block>>,
    hashes: Vec<Hash>,
    index: HashMap<Hash, u32>,
}

impl Chain {
    /// The genesis block plus `blocks` generated blocks, each with `txs_per_block` filler
    /// transactions after its coinbase, all derived from `seed`.
    pub fn generate(seed: u64, blocks: u32, txs_per_block: u32) -> Chain {
        let mut chain = Chain {
            seed,
            branch: 0,
            blocks: Vec::with_capacity(blocks as usize + 1),
            hashes: Vec::with_capacity(blocks as usize + 1),
            index: HashMap::with_capacity(blocks as usize + 1),
        };
        chain.push(regtest_genesis());
        for height in 1..=blocks {
            let txs = (0..txs_per_block)
                .map(|i| filler_tx(seed, height, i))
                .collect();
            chain.extend(txs);
        }
        chain
    }

    fn push(&mut self, block: Block) {
        let hash = block.hash();
        self.index.insert(hash, self.blocks.len() as u32);
        self.hashes.push(hash);
        self.blocks.push(Arc::new(block));
    }

    /// Mines the next block: its coinbase, then `txs` in order. Returns it.
    pub(crate) fn extend(&mut self, txs: Vec<Transaction>) -> Arc<Block> {
        let height = self.blocks.len() as u32;
        let mut transactions = Vec::with_capacity(txs.len() + 1);
        transactions.push(coinbase(self.seed, height, self.branch));
        transactions.extend(txs);
        let prev = self.tip_hash();
        let header = solve(BlockHeader {
            version: 0x2000_0000,
            prev_hash: prev,
            merkle_root: merkle_root(transactions.iter().map(Transaction::txid).collect()),
            time: CHAIN_START_TIME.saturating_add(height.saturating_sub(1) * BLOCK_INTERVAL),
            bits: REGTEST_BITS,
            nonce: 0,
        });
        self.push(Block {
            header,
            transactions,
        });
        self.blocks
            .last()
            .cloned()
            .unwrap_or_else(|| Arc::new(regtest_genesis()))
    }

    /// Replaces every block above `fork_height` with `blocks` new empty blocks on a new branch
    /// (their hashes differ from the old ones'), and returns the new blocks. Nothing changes
    /// when `fork_height` is above the tip.
    pub(crate) fn reorg(&mut self, fork_height: u32, blocks: u32) -> Vec<Arc<Block>> {
        if fork_height > self.tip_height() {
            return Vec::new();
        }
        let keep = fork_height as usize + 1;
        for hash in self.hashes.drain(keep..) {
            self.index.remove(&hash);
        }
        self.blocks.truncate(keep);
        self.branch = self.branch.wrapping_add(1);
        (0..blocks).map(|_| self.extend(Vec::new())).collect()
    }

    /// The height of the tip (genesis is height 0).
    pub fn tip_height(&self) -> u32 {
        self.blocks.len().saturating_sub(1) as u32
    }

    /// The hash of the tip.
    pub fn tip_hash(&self) -> Hash {
        self.hashes.last().copied().unwrap_or(Hash::ZERO)
    }

    /// The hash of the block at `height`.
    pub fn hash_at(&self, height: u32) -> Option<Hash> {
        self.hashes.get(height as usize).copied()
    }

    /// The height of the block with `hash`, if it is on the chain.
    pub fn height_of(&self, hash: &Hash) -> Option<u32> {
        self.index.get(hash).copied()
    }

    /// The header at `height`.
    pub fn header_at(&self, height: u32) -> Option<BlockHeader> {
        self.blocks.get(height as usize).map(|b| b.header)
    }

    /// The block at `height`.
    pub fn block_at(&self, height: u32) -> Option<Arc<Block>> {
        self.blocks.get(height as usize).cloned()
    }

    /// The block with `hash`.
    pub fn block(&self, hash: &Hash) -> Option<Arc<Block>> {
        self.height_of(hash).and_then(|h| self.block_at(h))
    }

    /// Up to `max` headers starting at height `from`.
    pub fn headers_from(&self, from: u32, max: usize) -> Vec<BlockHeader> {
        self.blocks
            .iter()
            .skip(from as usize)
            .take(max)
            .map(|b| b.header)
            .collect()
    }

    /// Every header, genesis first.
    pub fn headers(&self) -> Vec<BlockHeader> {
        self.headers_from(0, self.blocks.len())
    }

    /// The height of the fork point of a locator: the first of its hashes (newest first) that
    /// is on the chain, or genesis when none is (`FindForkInGlobalIndex`).
    pub fn fork_height(&self, locator: &BlockLocator) -> u32 {
        locator
            .hashes
            .iter()
            .find_map(|h| self.height_of(h))
            .unwrap_or(0)
    }

    /// A locator for the tip: the last ten blocks, then exponentially sparser, then genesis.
    pub fn locator(&self) -> Vec<Hash> {
        let mut out = Vec::new();
        let mut height = i64::from(self.tip_height());
        let mut step = 1i64;
        while height > 0 {
            if let Some(h) = self.hash_at(height as u32) {
                out.push(h);
            }
            if out.len() >= 10 {
                step *= 2;
            }
            height -= step;
        }
        if let Some(g) = self.hash_at(0) {
            out.push(g);
        }
        out
    }
}

/// Shared, read-mostly access to the simnet's chain. Cloning is cheap (an `Arc`).
#[derive(Debug, Clone)]
pub struct ChainHandle {
    inner: Arc<RwLock<Chain>>,
}

impl ChainHandle {
    /// Wraps a chain for sharing.
    pub fn new(chain: Chain) -> Self {
        ChainHandle {
            inner: Arc::new(RwLock::new(chain)),
        }
    }

    /// Read access to the whole chain (hold it briefly: mining waits for it).
    pub fn read(&self) -> RwLockReadGuard<'_, Chain> {
        // A panic while holding the lock cannot leave the chain half-written (pushes are the
        // only writes), so a poisoned lock is still safe to read.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Chain> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The height of the tip (genesis is 0).
    pub fn tip_height(&self) -> u32 {
        self.read().tip_height()
    }

    /// The hash of the tip.
    pub fn tip_hash(&self) -> Hash {
        self.read().tip_hash()
    }

    /// The hash of the block at `height`.
    pub fn hash_at(&self, height: u32) -> Option<Hash> {
        self.read().hash_at(height)
    }

    /// The height of the block with `hash`.
    pub fn height_of(&self, hash: &Hash) -> Option<u32> {
        self.read().height_of(hash)
    }

    /// The header at `height`.
    pub fn header_at(&self, height: u32) -> Option<BlockHeader> {
        self.read().header_at(height)
    }

    /// Every header, genesis first.
    pub fn headers(&self) -> Vec<BlockHeader> {
        self.read().headers()
    }

    /// The block with `hash`.
    pub fn block(&self, hash: &Hash) -> Option<Arc<Block>> {
        self.read().block(hash)
    }

    /// The block at `height`.
    pub fn block_at(&self, height: u32) -> Option<Arc<Block>> {
        self.read().block_at(height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoinsv::p2p::Network;

    #[test]
    fn genesis_is_the_real_regtest_genesis() {
        let g = regtest_genesis();
        assert_eq!(g.hash(), Network::Regtest.genesis_hash());
        assert_eq!(
            g.header.merkle_root.to_string(),
            "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
        );
        assert!(g.header.check_proof_of_work());
    }

    #[test]
    fn generated_blocks_link_meet_pow_and_have_real_merkle_roots() {
        let chain = Chain::generate(7, 50, 3);
        assert_eq!(chain.tip_height(), 50);
        for h in 1..=50 {
            let b = chain.block_at(h).unwrap();
            assert_eq!(b.header.prev_hash, chain.hash_at(h - 1).unwrap());
            assert!(b.header.check_proof_of_work(), "height {h}");
            b.validate().unwrap();
            assert_eq!(b.transactions.len(), 4);
            assert!(b.transactions[0].is_coinbase());
            assert!(b.header.time > chain.header_at(h - 1).unwrap().time);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_chain_and_another_seed_another() {
        let a = Chain::generate(1, 20, 1);
        let b = Chain::generate(1, 20, 1);
        let c = Chain::generate(2, 20, 1);
        assert_eq!(a.tip_hash(), b.tip_hash());
        assert_ne!(a.tip_hash(), c.tip_hash());
        assert_eq!(a.hash_at(0), c.hash_at(0));
    }

    #[test]
    fn a_reorg_replaces_the_blocks_above_the_fork_with_new_ones() {
        let mut chain = Chain::generate(3, 10, 0);
        let old: Vec<Hash> = (0..=10).map(|h| chain.hash_at(h).unwrap()).collect();
        let new = chain.reorg(7, 4);
        assert_eq!(new.len(), 4);
        assert_eq!(chain.tip_height(), 11);
        assert_eq!(chain.hash_at(7), Some(old[7]));
        for h in 8..=10 {
            assert_ne!(chain.hash_at(h), Some(old[h as usize]));
            assert_eq!(chain.height_of(&old[h as usize]), None);
        }
        assert_eq!(chain.header_at(8).unwrap().prev_hash, old[7]);
        assert!(chain.header_at(11).unwrap().check_proof_of_work());
    }

    #[test]
    fn coinbase_height_push_follows_cscript_rules() {
        let mut s = Vec::new();
        push_int(&mut s, 5);
        assert_eq!(s, [0x55]);
        s.clear();
        push_int(&mut s, 17);
        assert_eq!(s, [0x01, 0x11]);
        s.clear();
        push_int(&mut s, 128);
        assert_eq!(s, [0x02, 0x80, 0x00]);
        s.clear();
        push_int(&mut s, 300);
        assert_eq!(s, [0x02, 0x2c, 0x01]);
    }

    #[test]
    fn fork_height_is_the_first_known_locator_hash() {
        let chain = Chain::generate(0, 30, 0);
        let locator = BlockLocator {
            version: 70016,
            hashes: vec![
                Hash([9; 32]),
                chain.hash_at(12).unwrap(),
                chain.hash_at(3).unwrap(),
            ],
            stop_hash: Hash::ZERO,
        };
        assert_eq!(chain.fork_height(&locator), 12);
        let unknown = BlockLocator {
            hashes: vec![Hash([9; 32])],
            ..locator
        };
        assert_eq!(chain.fork_height(&unknown), 0);
        let loc = chain.locator();
        assert_eq!(loc.first(), chain.hash_at(30).as_ref());
        assert_eq!(loc.last(), chain.hash_at(0).as_ref());
    }
}
