//! Synthetic blocks of any size, generated on the fly and never held in memory.
//!
//! A [`SyntheticBlock`] is described by a seed, a parent hash, a target payload size and a
//! transaction size. Every transaction is derived from `(seed, index)`, so the block's bytes can
//! be regenerated at will: [`SyntheticBlock::new`] walks the transactions once, hashing each
//! into a txid and feeding it to a streaming [`MerkleAccumulator`] (memory O(log n)), then solves
//! regtest proof of work; [`SyntheticBlock::chunks`] and [`SyntheticBlock::reader`] regenerate
//! the serialized `block` payload (80-byte header, var-int count, transactions) as bounded
//! chunks. A 5 GiB block therefore costs one chunk of memory plus a few hundred bytes of state,
//! which is what tests of "blocks of any size in bounded memory" need from their peer.
//!
//! Layout: the coinbase first (94 bytes), then filler transactions of exactly `tx_size` bytes
//! each (at least [`MIN_TX_SIZE`]) except the last, which absorbs the remainder (normally
//! between `tx_size` and `2 × tx_size` bytes, smaller when the whole block is). Each filler has
//! one input (a derived outpoint and a 33–35-byte derived input script) and one output whose
//! script is `OP_FALSE OP_RETURN` followed by deterministic padding. The payload length is
//! **exactly** the requested size whenever that size can be reached: 175 bytes (header, count
//! and coinbase alone) and every size from 175 + [`MIN_FILLER_SIZE`] up; otherwise it is the
//! smallest reachable size above it. [`SyntheticBlock::len`] always gives the real length.
//! Generating is CPU-bound (one SHA-256 pass over the bytes for the txids, a second one for the
//! checksum when it is needed): a multi-GiB block takes seconds to minutes in a debug build.
//!
//! The frame checksum of a basic 24-byte header covers the block header, which depends on the
//! merkle root of every transaction, so it cannot be computed in the same pass as the txids;
//! [`SyntheticBlock::checksum`] computes it in a second streaming pass on first use (and caches
//! it). Payloads over 4 GiB use the 44-byte `extmsg` header, which has no checksum, so that pass
//! is never needed for them.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bitcoinsv::bitcoin::{
    write_var_int, BlockHeader, Encode, Hash, Magic, MerkleAccumulator, VarInt, HEADER_SIZE,
};
use bitcoinsv::p2p::codec::FrameHeader;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use crate::chain::{derive, CHAIN_START_TIME, REGTEST_BITS};

/// Size of the coinbase of every synthetic block, in bytes.
pub const COINBASE_SIZE: u64 = 94;
/// The smallest filler transaction: fixed fields and a two-byte `OP_FALSE OP_RETURN` script.
pub const MIN_FILLER_SIZE: u64 = FILLER_BASE + 1 + 2;
/// The smallest transaction size [`SyntheticBlock::new`] accepts (smaller requests are raised
/// to it): a few bytes above [`MIN_FILLER_SIZE`], so that the count var int growing at a
/// boundary (252 → 253 transactions, …) can always be absorbed by the last filler.
pub const MIN_TX_SIZE: u64 = MIN_FILLER_SIZE + 8;
/// The default largest chunk [`SyntheticBlock::reader`] produces (256 KiB).
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;
/// The largest payload a basic 24-byte frame header can carry.
pub const MAX_BASIC_PAYLOAD: u64 = 0xFFFF_FFFF;

/// Bytes of a filler besides the output script's length and body and the input script's extra
/// bytes: version 4, input count 1, outpoint 36, script length 1, input script 33, sequence 4,
/// output count 1, value 8, lock time 4.
const FILLER_BASE: u64 = 92;
/// The serialized block header.
const HEADER_LEN: u64 = HEADER_SIZE as u64;
/// The smallest chunk size accepted (smaller requests are raised to it).
const MIN_CHUNK: usize = 128;
/// Scratch size of the hashing passes.
const PASS_CHUNK: usize = 64 * 1024;
/// Offset of the input-script length in every transaction of the layout (version 4, input
/// count 1, outpoint 36), where [`Corruption::Malformed`] strikes.
const INPUT_SCRIPT_LEN_AT: usize = 41;

/// A deterministic block of any size that is generated as it is read.
#[derive(Debug, PartialEq, Eq)]
pub struct SyntheticBlock {
    seed: u64,
    prev_hash: Hash,
    /// Filler transactions (the coinbase not counted).
    fillers: u64,
    /// Size of every filler but the last.
    tx_size: u64,
    /// Size of the last filler (when there is one).
    last_size: u64,
    len: u64,
    header: BlockHeader,
    hash: Hash,
    corruption: Option<Corruption>,
    checksum: OnceLock<[u8; 4]>,
}

/// A deliberate defect of a [`SyntheticBlock`], for tests of a receiver's checks. Each is
/// applied where the payload is generated, so [`SyntheticBlock::chunks`],
/// [`SyntheticBlock::reader`] and [`SyntheticBlock::checksum`] all see the same (corrupted)
/// bytes and [`SyntheticBlock::len`] stays exact. A corrupted block never shares its hash with
/// the intact block of the same parameters (the corruption is mixed into the coinbase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// One byte of transaction `tx_index`'s output script is changed after the merkle root was
    /// computed: the layout stays valid, but the txids no longer hash to the header's merkle
    /// root (the node's `bad-txnmrklroot`, +100, `ProcessNewBlock` → `CheckBlock`). The index
    /// is clamped to the block's transactions.
    MerkleMismatch {
        /// The transaction to alter (0 = coinbase).
        tx_index: u64,
    },
    /// Transaction `tx_index`'s input-script length is written as a non-canonical var int
    /// (`0xFD` and a two-byte value below 253, taking two bytes of the script so the length is
    /// unchanged): a decoder fails in the middle of the block (the node's
    /// `ReadCompactSize`: "non-canonical ReadCompactSize()"). The index is clamped to the
    /// block's transactions.
    Malformed {
        /// The transaction to break (0 = coinbase).
        tx_index: u64,
    },
    /// The header's merkle root is a placeholder derived from the seed instead of computed
    /// from the transactions. Construction then skips the pass over the payload, so a block of
    /// any size is described at once; for tests that read only the header and part of a huge
    /// block (in a debug build the txid pass over 5 GiB takes minutes). A receiver that reads
    /// it all sees a merkle mismatch.
    PlaceholderMerkleRoot,
    /// The payload is intact but [`SyntheticBlock::checksum`] (the basic frame header's
    /// checksum) has one bit flipped: the node drops such a frame (`ProcessMessages`), so a
    /// streaming receiver must find it once the last byte has passed. No effect on an `extmsg`
    /// block, whose frame carries no checksum.
    WrongChecksum,
}

impl Corruption {
    /// A distinct tag per corruption, mixed into the coinbase.
    fn tag(&self) -> [u8; 9] {
        let (kind, index) = match *self {
            Corruption::MerkleMismatch { tx_index } => (1u8, tx_index),
            Corruption::Malformed { tx_index } => (2, tx_index),
            Corruption::PlaceholderMerkleRoot => (3, 0),
            Corruption::WrongChecksum => (4, 0),
        };
        let mut t = [0u8; 9];
        t[0] = kind;
        t[1..].copy_from_slice(&index.to_le_bytes());
        t
    }
}

/// One transaction's bytes, described without its padding: `prefix`, then `pad_len` bytes of
/// `pattern` repeated, then `suffix`.
struct TxBytes {
    prefix: Vec<u8>,
    pad_len: u64,
    pattern: [u8; 32],
    suffix: [u8; 4],
    suffix_len: u64,
}

impl TxBytes {
    fn len(&self) -> u64 {
        self.prefix.len() as u64 + self.pad_len + self.suffix_len
    }

    /// Appends up to `n` bytes starting at `from`; returns how many were appended.
    fn write(&self, from: u64, n: usize, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        let mut pos = from;
        let end = from.saturating_add(n as u64).min(self.len());
        let plen = self.prefix.len() as u64;
        if pos < plen && pos < end {
            let stop = end.min(plen);
            out.extend_from_slice(self.prefix.get(pos as usize..stop as usize).unwrap_or(&[]));
            pos = stop;
        }
        let pad_end = plen + self.pad_len;
        while pos < pad_end && pos < end {
            let k = ((pos - plen) % 32) as usize;
            let take = (32 - k).min((end.min(pad_end) - pos) as usize);
            out.extend_from_slice(self.pattern.get(k..k + take).unwrap_or(&[]));
            pos += take as u64;
        }
        if pos < end {
            let k = (pos - pad_end) as usize;
            let stop = (end - pad_end) as usize;
            out.extend_from_slice(self.suffix.get(k..stop).unwrap_or(&[]));
        }
        out.len() - start
    }
}

/// The output-script length and extra input-script bytes of a filler of `size` bytes
/// (`size >= MIN_FILLER_SIZE`): every such size is reachable with 0–2 extra bytes.
fn filler_layout(size: u64) -> (u64, u64) {
    let rest = size.saturating_sub(FILLER_BASE);
    for extra in 0..=2u64 {
        for vs in [1u64, 3, 5, 9] {
            let Some(script) = rest.checked_sub(extra + vs) else {
                continue;
            };
            if script >= 2 && VarInt::size(script) as u64 == vs {
                return (script, extra);
            }
        }
    }
    (2, 0)
}

/// `(fillers, last_size)` for `rest` bytes of fillers with a count var int of `vs` bytes.
fn split_fillers(rest: u64, tx_size: u64, vs: u64) -> Option<(u64, u64)> {
    let (lo, hi) = match vs {
        1 => (0u64, 0xFCu64 - 1),
        3 => (0xFD - 1, 0xFFFF - 1),
        5 => (0x1_0000 - 1, 0xFFFF_FFFF - 1),
        _ => (0x1_0000_0000 - 1, u64::MAX - 1),
    };
    if rest == 0 {
        return (lo == 0).then_some((0, 0));
    }
    // As many full fillers as fit, the last absorbing the remainder; never fewer (the last
    // would grow past twice the size), more only to reach the var int's range.
    let n = (rest / tx_size).max(1).max(lo);
    if n > hi {
        return None;
    }
    let last = rest.checked_sub((n - 1).checked_mul(tx_size)?)?;
    (last >= MIN_FILLER_SIZE).then_some((n, last))
}

/// `(fillers, last_size, len)` of the smallest reachable payload of at least `size` bytes.
fn plan(size: u64, tx_size: u64) -> (u64, u64, u64) {
    let fixed = HEADER_LEN + COINBASE_SIZE;
    let mut target = size.max(fixed + 1);
    // Unreachable sizes are rare and short runs (below one minimum filler), so this ends fast.
    loop {
        for vs in [1u64, 3, 5, 9] {
            if let Some(rest) = target.checked_sub(fixed + vs) {
                if let Some((n, last)) = split_fillers(rest, tx_size, vs) {
                    if VarInt::size(n + 1) as u64 == vs {
                        return (n, last, target);
                    }
                }
            }
        }
        target = target.saturating_add(1);
        if target == u64::MAX {
            return (0, 0, fixed + 1);
        }
    }
}

impl SyntheticBlock {
    /// Describes and hashes a block on `prev_hash` of (at least, and normally exactly) `size`
    /// payload bytes made of `tx_size`-byte transactions (raised to [`MIN_TX_SIZE`]), all
    /// derived from `seed`. Walks every transaction once (time linear in `size`, memory
    /// O(log n)) and solves regtest proof of work.
    pub fn new(seed: u64, prev_hash: Hash, size: u64, tx_size: u64) -> SyntheticBlock {
        Self::with_corruption(seed, prev_hash, size, tx_size, None)
    }

    /// As [`SyntheticBlock::new`], with a deliberate defect (see [`Corruption`]). The merkle
    /// root is computed from the intact transactions (except for
    /// [`Corruption::PlaceholderMerkleRoot`], which skips that pass), so the header is what the
    /// intact block's would be apart from its coinbase.
    pub fn with_corruption(
        seed: u64,
        prev_hash: Hash,
        size: u64,
        tx_size: u64,
        corruption: Option<Corruption>,
    ) -> SyntheticBlock {
        let tx_size = tx_size.max(MIN_TX_SIZE);
        let (fillers, last_size, len) = plan(size, tx_size);
        let mut block = SyntheticBlock {
            seed,
            prev_hash,
            fillers,
            tx_size,
            last_size,
            len,
            header: BlockHeader {
                version: 0x2000_0000,
                prev_hash,
                merkle_root: Hash::ZERO,
                time: CHAIN_START_TIME,
                bits: REGTEST_BITS,
                nonce: 0,
            },
            hash: Hash::ZERO,
            corruption,
            checksum: OnceLock::new(),
        };
        block.header.merkle_root = if corruption == Some(Corruption::PlaceholderMerkleRoot) {
            derive(
                seed,
                b"synthetic-placeholder-root",
                block.len,
                block.fillers,
            )
        } else {
            block.merkle_root()
        };
        for nonce in 0..=u32::MAX {
            block.header.nonce = nonce;
            if block.header.check_proof_of_work() {
                break;
            }
        }
        block.hash = block.header.hash();
        block
    }

    /// The merkle root of the intact transactions, in one streaming pass.
    fn merkle_root(&self) -> Hash {
        let mut merkle = MerkleAccumulator::new();
        let mut scratch = Vec::with_capacity(PASS_CHUNK);
        for index in 0..self.tx_count() {
            let tx = self.intact_tx_bytes(index);
            let mut hasher = Sha256::new();
            let mut pos = 0u64;
            while pos < tx.len() {
                scratch.clear();
                let n = tx.write(pos, PASS_CHUNK, &mut scratch);
                if n == 0 {
                    break;
                }
                hasher.update(&scratch);
                pos += n as u64;
            }
            merkle.push(Hash(Sha256::digest(hasher.finalize()).into()));
        }
        merkle.root()
    }

    /// The defect this block was built with, if any.
    pub fn corruption(&self) -> Option<Corruption> {
        self.corruption
    }

    /// The exact serialized payload length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a block holds at least its header and coinbase.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The number of transactions, the coinbase included.
    pub fn tx_count(&self) -> u64 {
        self.fillers + 1
    }

    /// The block hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The block header.
    pub fn header(&self) -> &BlockHeader {
        &self.header
    }

    /// The seed the transactions derive from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The parent block's hash.
    pub fn prev_hash(&self) -> Hash {
        self.prev_hash
    }

    /// The serialized length of transaction `index` (0 = coinbase), if it exists.
    pub fn tx_len(&self, index: u64) -> Option<u64> {
        (index < self.tx_count()).then(|| self.tx_size_of(index))
    }

    fn tx_size_of(&self, index: u64) -> u64 {
        if index == 0 {
            COINBASE_SIZE
        } else if index == self.fillers {
            self.last_size
        } else {
            self.tx_size
        }
    }

    /// The 80-byte header and the transaction count var int.
    fn head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_SIZE + 9);
        self.header.encode(&mut out);
        write_var_int(&mut out, self.tx_count());
        out
    }

    /// Transaction `index` as sent: the intact bytes with the corruption, if it targets it.
    fn tx_bytes(&self, index: u64) -> TxBytes {
        let mut tx = self.intact_tx_bytes(index);
        let target = |i: u64| i.min(self.fillers) == index;
        match self.corruption {
            Some(Corruption::MerkleMismatch { tx_index }) if target(tx_index) => {
                // The last byte of the output script's fixed part: `OP_RETURN` of a filler,
                // the final `OP_CHECKSIG` of the coinbase (which ends with its lock time).
                let at = if index == 0 {
                    tx.prefix.len().checked_sub(5)
                } else {
                    tx.prefix.len().checked_sub(1)
                };
                if let Some(b) = at.and_then(|at| tx.prefix.get_mut(at)) {
                    *b ^= 0x01;
                }
            }
            Some(Corruption::Malformed { tx_index }) if target(tx_index) => {
                // The input-script length var int (one byte at offset 41 in both layouts:
                // version 4, input count 1, outpoint 36) becomes `FD vv 00`, vv = the old
                // length − 2: non-canonical, and three bytes where there were one plus two of
                // the script, so the length is unchanged.
                if let Some(field) = tx
                    .prefix
                    .get_mut(INPUT_SCRIPT_LEN_AT..INPUT_SCRIPT_LEN_AT + 3)
                {
                    let old = field[0];
                    field.copy_from_slice(&[0xFD, old.saturating_sub(2), 0x00]);
                }
            }
            _ => {}
        }
        tx
    }

    /// Transaction `index` as the merkle root was computed from.
    fn intact_tx_bytes(&self, index: u64) -> TxBytes {
        if index == 0 {
            return self.coinbase_bytes();
        }
        let (script_len, extra) = filler_layout(self.tx_size_of(index));
        let prev = derive(self.seed, b"synthetic-prevout", index, 0);
        let sig = derive(self.seed, b"synthetic-sig", index, 0);
        let pattern = derive(self.seed, b"synthetic-pad", index, 0).0;
        let mut p = Vec::with_capacity(FILLER_BASE as usize + 11);
        p.extend_from_slice(&1i32.to_le_bytes());
        p.push(1);
        p.extend_from_slice(&prev.0);
        p.extend_from_slice(&((index % 4) as u32).to_le_bytes());
        p.push(33 + extra as u8);
        p.push(32);
        p.extend_from_slice(&sig.0);
        p.resize(p.len() + extra as usize, 0x61); // OP_NOP
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        p.push(1);
        p.extend_from_slice(&(1_000 + (index % 1_000_000) as i64).to_le_bytes());
        write_var_int(&mut p, script_len);
        p.extend_from_slice(&[0x00, 0x6a]); // OP_FALSE OP_RETURN
        TxBytes {
            prefix: p,
            pad_len: script_len - 2,
            pattern,
            suffix: [0; 4],
            suffix_len: 4,
        }
    }

    fn coinbase_bytes(&self) -> TxBytes {
        let mut key = Vec::with_capacity(49);
        key.extend_from_slice(&self.prev_hash.0);
        key.extend_from_slice(&self.len.to_le_bytes());
        if let Some(c) = self.corruption {
            key.extend_from_slice(&c.tag());
        }
        let extra = derive(self.seed, &key, self.fillers, self.tx_size);
        let payee = derive(self.seed, b"synthetic-miner", 0, 0);
        let mut p = Vec::with_capacity(COINBASE_SIZE as usize);
        p.extend_from_slice(&1i32.to_le_bytes());
        p.push(1);
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        p.push(9);
        p.push(8);
        p.extend_from_slice(&extra.0[..8]);
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        p.push(1);
        p.extend_from_slice(&(50i64 * 100_000_000).to_le_bytes());
        p.push(25);
        p.extend_from_slice(&[0x76, 0xa9, 0x14]);
        p.extend_from_slice(&payee.0[..20]);
        p.extend_from_slice(&[0x88, 0xac]);
        p.extend_from_slice(&0u32.to_le_bytes());
        TxBytes {
            prefix: p,
            pad_len: 0,
            pattern: [0; 32],
            suffix: [0; 4],
            suffix_len: 0,
        }
    }

    /// The payload as chunks of at most `max` bytes (raised to 128), every chunk but the last
    /// exactly `max` bytes, regenerated as they are taken.
    pub fn chunks(&self, max: usize) -> SyntheticChunks<'_> {
        SyntheticChunks {
            block: self,
            cursor: self.cursor(max),
        }
    }

    /// As [`SyntheticBlock::chunks`], holding the block by [`Arc`] rather than by reference,
    /// so the iterator can live in a task or a struct (the simnet's connections stream from
    /// it).
    pub fn shared_chunks(self: &Arc<Self>, max: usize) -> SharedSyntheticChunks {
        SharedSyntheticChunks {
            block: Arc::clone(self),
            cursor: self.cursor(max),
        }
    }

    fn cursor(&self, max: usize) -> ChunkCursor {
        ChunkCursor {
            max: max.max(MIN_CHUNK),
            head: Some(self.head()),
            index: 0,
            tx: None,
            offset: 0,
            emitted: 0,
        }
    }

    /// An [`AsyncRead`] of the payload, generating [`DEFAULT_CHUNK_SIZE`] bytes at a time.
    pub fn reader(&self) -> SyntheticReader<'_> {
        self.reader_with_chunk(DEFAULT_CHUNK_SIZE)
    }

    /// An [`AsyncRead`] of the payload, generating `max` bytes at a time.
    pub fn reader_with_chunk(&self, max: usize) -> SyntheticReader<'_> {
        SyntheticReader {
            chunks: self.chunks(max),
            current: Bytes::new(),
        }
    }

    /// The frame checksum (first four bytes of sha256d of the payload). Computed by a
    /// streaming pass over the payload on first use, then cached.
    pub fn checksum(&self) -> [u8; 4] {
        *self.checksum.get_or_init(|| {
            let mut hasher = Sha256::new();
            for chunk in self.chunks(PASS_CHUNK) {
                hasher.update(&chunk);
            }
            let d = Sha256::digest(hasher.finalize());
            let flip = u8::from(self.corruption == Some(Corruption::WrongChecksum));
            [d[0] ^ flip, d[1], d[2], d[3]]
        })
    }

    /// Whether sending the payload needs the 44-byte `extmsg` header (over 0xFFFFFFFF bytes).
    pub fn needs_extended_header(&self) -> bool {
        self.len > MAX_BASIC_PAYLOAD
    }

    /// The frame header for sending the payload as a `block` message on `magic`: a basic
    /// header with the checksum (see [`SyntheticBlock::checksum`] for its cost), or for
    /// payloads over 0xFFFFFFFF bytes the `extmsg` header without one.
    pub fn frame_header(&self, magic: Magic) -> FrameHeader {
        let extended = self.needs_extended_header();
        FrameHeader {
            magic,
            command: "block".to_string(),
            length: self.len,
            checksum: if extended { [0; 4] } else { self.checksum() },
            extended,
        }
    }

    /// The encoded frame header (24 or 44 bytes) of [`SyntheticBlock::frame_header`].
    pub fn frame_header_bytes(&self, magic: Magic) -> Bytes {
        let mut out = BytesMut::with_capacity(44);
        self.frame_header(magic).encode(&mut out);
        out.freeze()
    }
}

/// The payload of a [`SyntheticBlock`] as bounded chunks ([`SyntheticBlock::chunks`]).
#[derive(Debug)]
pub struct SyntheticChunks<'a> {
    block: &'a SyntheticBlock,
    cursor: ChunkCursor,
}

/// The payload of a [`SyntheticBlock`] held by [`Arc`], as bounded chunks
/// ([`SyntheticBlock::shared_chunks`]).
#[derive(Debug)]
pub struct SharedSyntheticChunks {
    block: Arc<SyntheticBlock>,
    cursor: ChunkCursor,
}

/// Where the generation of a payload stands.
#[derive(Debug)]
struct ChunkCursor {
    max: usize,
    head: Option<Vec<u8>>,
    index: u64,
    tx: Option<TxCursor>,
    offset: u64,
    emitted: u64,
}

/// The transaction being emitted.
struct TxCursor(TxBytes);

impl std::fmt::Debug for TxCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxCursor")
            .field("len", &self.0.len())
            .finish()
    }
}

impl ChunkCursor {
    fn state_bytes(&self) -> usize {
        self.head.as_ref().map_or(0, Vec::capacity)
            + self.tx.as_ref().map_or(0, |t| t.0.prefix.capacity())
    }

    fn next(&mut self, block: &SyntheticBlock) -> Option<Bytes> {
        if self.emitted >= block.len {
            return None;
        }
        let mut out = Vec::with_capacity(self.max);
        if let Some(head) = self.head.take() {
            out.extend_from_slice(&head);
        }
        while out.len() < self.max && self.index < block.tx_count() {
            let tx = match &self.tx {
                Some(t) => t,
                None => {
                    self.offset = 0;
                    self.tx.insert(TxCursor(block.tx_bytes(self.index)))
                }
            };
            let want = self.max - out.len();
            let n = tx.0.write(self.offset, want, &mut out);
            self.offset += n as u64;
            if self.offset >= tx.0.len() {
                self.tx = None;
                self.index += 1;
            }
        }
        if out.is_empty() {
            return None;
        }
        self.emitted += out.len() as u64;
        Some(Bytes::from(out))
    }
}

impl SyntheticChunks<'_> {
    /// The largest chunk this iterator yields.
    pub fn max_chunk(&self) -> usize {
        self.cursor.max
    }

    /// Payload bytes yielded so far.
    pub fn position(&self) -> u64 {
        self.cursor.emitted
    }

    /// Bytes of generator state besides the chunk being built: the current transaction's
    /// fixed part (a few hundred bytes at most, whatever the block or transaction size).
    pub fn state_bytes(&self) -> usize {
        self.cursor.state_bytes()
    }
}

impl Iterator for SyntheticChunks<'_> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        self.cursor.next(self.block)
    }
}

impl SharedSyntheticChunks {
    /// The block being generated.
    pub fn block(&self) -> &Arc<SyntheticBlock> {
        &self.block
    }

    /// The largest chunk this iterator yields.
    pub fn max_chunk(&self) -> usize {
        self.cursor.max
    }

    /// Payload bytes yielded so far.
    pub fn position(&self) -> u64 {
        self.cursor.emitted
    }
}

impl Iterator for SharedSyntheticChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        self.cursor.next(&self.block)
    }
}

/// An [`AsyncRead`] over a [`SyntheticBlock`]'s payload ([`SyntheticBlock::reader`]).
#[derive(Debug)]
pub struct SyntheticReader<'a> {
    chunks: SyntheticChunks<'a>,
    current: Bytes,
}

impl AsyncRead for SyntheticReader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.current.is_empty() {
            match this.chunks.next() {
                Some(c) => this.current = c,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.current.len().min(buf.remaining());
        buf.put_slice(&this.current.split_to(n));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoinsv::bitcoin::Network;

    #[test]
    fn plan_of_five_gib_is_exact_and_gets_the_extended_header() {
        let (fillers, last, len) = plan(5 << 30, 1_000_000);
        assert_eq!(len, 5 << 30);
        assert!((1_000_000..2_000_000).contains(&last));
        // Describe the block without walking its 5 GiB (that is `new`'s job).
        let block = SyntheticBlock {
            seed: 1,
            prev_hash: Hash::ZERO,
            fillers,
            tx_size: 1_000_000,
            last_size: last,
            len,
            header: BlockHeader {
                version: 0x2000_0000,
                prev_hash: Hash::ZERO,
                merkle_root: Hash::ZERO,
                time: CHAIN_START_TIME,
                bits: REGTEST_BITS,
                nonce: 0,
            },
            hash: Hash::ZERO,
            corruption: None,
            checksum: OnceLock::new(),
        };
        assert!(block.needs_extended_header());
        let bytes = block.frame_header_bytes(Network::Regtest.magic());
        assert_eq!(bytes.len(), 44);
        let frame = FrameHeader::parse(&bytes).ok().flatten();
        assert_eq!(frame.map(|f| (f.extended, f.length)), Some((true, 5 << 30)));
        // Every filler size is reachable.
        for size in MIN_FILLER_SIZE..70_000 {
            let (script, extra) = filler_layout(size);
            assert_eq!(
                FILLER_BASE + extra + VarInt::size(script) as u64 + script,
                size
            );
        }
    }

    /// The layout's length for a whole plan, from its parts.
    fn planned_len(fillers: u64, tx_size: u64, last: u64) -> u64 {
        let body = match fillers {
            0 => 0,
            n => (n - 1) * tx_size + last,
        };
        HEADER_LEN + VarInt::size(fillers + 1) as u64 + COINBASE_SIZE + body
    }

    #[test]
    fn every_size_from_the_smallest_filler_up_is_exact() {
        let fixed = HEADER_LEN + 1 + COINBASE_SIZE;
        assert_eq!(plan(0, MIN_TX_SIZE).2, fixed);
        for tx_size in [MIN_TX_SIZE, 250, 346, 1_000] {
            let ranges = [
                fixed + MIN_FILLER_SIZE..fixed + 60_000,
                252 * tx_size - 2_000..252 * tx_size + 2_000,
                65_535 * tx_size - 2_000..65_535 * tx_size + 2_000,
            ];
            for size in ranges.into_iter().flatten() {
                let (fillers, last, len) = plan(size, tx_size);
                assert_eq!(len, size, "tx_size {tx_size}");
                assert!(fillers == 0 || last >= MIN_FILLER_SIZE);
                assert!(last < 2 * tx_size);
                assert_eq!(planned_len(fillers, tx_size, last), len);
            }
        }
    }
}
