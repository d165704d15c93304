//! A sans-I/O streaming decoder for one `block` payload, so that a block of any size is read in
//! bounded memory (docs/PROTOCOL.md §1.1–1.3, §3.8).
//!
//! [`MessageCodec`](super::MessageCodec) waits for a whole frame and parses it into a
//! [`Block`](crate::bitcoin::Block); that is fine for the blocks of today but not for a
//! multi-gigabyte one. [`BlockStreamDecoder`] is given the payload length declared by the frame
//! header (the u32 of a basic header or the u64 of an `extmsg` header) and then fed the payload
//! in chunks of any size, down to one byte, as they arrive. It performs no I/O: the caller reads
//! the socket, calls [`BlockStreamDecoder::feed`], and takes [`BlockEvent`]s out with
//! [`BlockStreamDecoder::next_event`]. Because `feed` only borrows the chunk, the caller can also
//! forward the same bytes to a sink (a file, another peer) while the decoder verifies them.
//!
//! Events, in order: the 80-byte [`BlockHeader`]; the transaction count; one event per
//! transaction; and [`BlockEvent::End`]. Per transaction the decoder either delivers the parsed
//! [`Transaction`] ([`TxMode::Whole`]) or only its txid, offset and length ([`TxMode::TxidOnly`]).
//!
//! **Memory bound.** The decoder never allocates from a length read off the wire: it holds a
//! fixed 80-byte scratch for the header and var ints, and in [`TxMode::Whole`] the bytes of the
//! transaction being read, which grow only as bytes arrive and may not exceed the configured
//! window ([`BlockStreamConfig::window`]). A transaction larger than the window is the typed error
//! [`BlockStreamError::TxExceedsWindow`] rather than being delivered in parts: a [`Transaction`]
//! is a parsed whole, and a caller that must accept transactions of any size up to the consensus
//! limit uses [`TxMode::TxidOnly`] (which keeps no transaction bytes at all) together with the
//! passthrough, and re-reads the transaction from its sink at the offset the event gives.
//! [`BlockStreamDecoder::buffered_bytes`] reports what the decoder holds at any moment. Events
//! wait in a queue until [`BlockStreamDecoder::next_event`] takes them, so a caller drains it after
//! each `feed`: what one feed queues is proportional to that chunk (in whole mode, the
//! transactions it completed, each in its own buffer handed over without a copy).
//!
//! **Copies.** In txid-only mode payload bytes are hashed where they lie in the caller's chunk
//! and never copied; in whole mode each transaction's bytes are copied once, into the buffer that
//! becomes its [`Transaction`] (a chunk's memory cannot be kept, since the caller reuses it).
//!
//! **What is verified.** The layout of every transaction, with the same rules as the whole-frame
//! decoder (canonical var ints no larger than 0xFFFFFFFF, as the node's `ReadCompactSize` in
//! `src/serialize.h`); no transaction larger than `MAX_TX_SIZE_CONSENSUS_AFTER_GENESIS`
//! (`src/consensus/consensus.h`); that the content ends exactly at the declared length and no
//! byte is fed past it. The end event reports, rather than fails on, the two checks a caller
//! may want to weigh itself: the frame checksum (first 4 bytes of sha256d of the payload, as
//! `ProcessMessages` checks in `src/net/net_processing.cpp`; `extmsg` frames carry none) and the
//! merkle root of the txids against the header's (`BlockMerkleRoot`, `src/consensus/merkle.cpp`),
//! computed by a [`MerkleAccumulator`] that holds one hash per tree level.

use std::collections::VecDeque;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{CodecError, FrameHeader};
use crate::bitcoin::{
    BlockHeader, Decode, DecodeError, Hash, MerkleAccumulator, Reader, Transaction, HEADER_SIZE,
    MAX_VAR_INT,
};
use crate::p2p::limits::{DEFAULT_BLOCK_STREAM_WINDOW, MAX_TX_SIZE};

/// Smallest serialized transaction: version, two empty counts, lock time (as in
/// `bitcoin::transaction`).
const MIN_TX_SIZE: u64 = 10;
/// Smallest serialized input: outpoint, empty script, sequence.
const MIN_TXIN_SIZE: u64 = 36 + 1 + 4;
/// Smallest serialized output: value and empty script.
const MIN_TXOUT_SIZE: u64 = 8 + 1;

/// What the decoder delivers per transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// Each transaction parsed into a [`Transaction`]; each must fit in the window.
    Whole,
    /// Only the txid, offset and length of each transaction; no transaction bytes are kept, so
    /// a transaction of any size up to the consensus limit costs no memory.
    TxidOnly,
}

/// Settings of a [`BlockStreamDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStreamConfig {
    /// What to deliver per transaction.
    pub mode: TxMode,
    /// The most payload bytes the decoder may hold at once. In [`TxMode::Whole`] this is the
    /// largest transaction accepted. Values below 80 are raised to 80 (the header scratch).
    pub window: usize,
    /// The largest transaction accepted, in bytes.
    pub max_tx_size: u64,
}

impl Default for BlockStreamConfig {
    fn default() -> Self {
        BlockStreamConfig {
            mode: TxMode::Whole,
            window: DEFAULT_BLOCK_STREAM_WINDOW,
            max_tx_size: MAX_TX_SIZE,
        }
    }
}

impl BlockStreamConfig {
    /// The default settings in [`TxMode::TxidOnly`].
    pub fn txid_only() -> Self {
        BlockStreamConfig {
            mode: TxMode::TxidOnly,
            ..Self::default()
        }
    }
}

/// What the decoder found, in payload order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockEvent {
    /// The block header (the first 80 bytes).
    Header(BlockHeader),
    /// The number of transactions announced.
    TxCount(u64),
    /// A whole transaction ([`TxMode::Whole`]).
    Transaction {
        /// Its position in the block (0 = coinbase).
        index: u64,
        /// Where it starts in the payload.
        offset: u64,
        /// Its txid (computed while the bytes passed).
        txid: Hash,
        /// The transaction.
        tx: Transaction,
    },
    /// A transaction's id and place ([`TxMode::TxidOnly`]); its bytes were not kept.
    TxId {
        /// Its position in the block (0 = coinbase).
        index: u64,
        /// Its txid.
        txid: Hash,
        /// Where it starts in the payload.
        offset: u64,
        /// Its serialized length.
        length: u64,
    },
    /// The payload is complete; the last event.
    End(BlockEnd),
}

/// The outcome of the frame checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumStatus {
    /// The payload hashes to the header's checksum.
    Matched,
    /// The payload does not hash to the header's checksum (the node drops such a frame).
    Mismatched {
        /// The checksum in the frame header.
        expected: [u8; 4],
        /// The checksum of the payload received.
        actual: [u8; 4],
    },
    /// An `extmsg` frame: there is no checksum to verify.
    NotApplicable,
}

impl ChecksumStatus {
    /// Compares the checksum a frame header declared with the payload's sha256d (the first four
    /// bytes are the checksum, as `ProcessMessages` compares them).
    pub(crate) fn judge(expected: [u8; 4], sha256d: &[u8]) -> ChecksumStatus {
        let mut actual = [0u8; 4];
        if let Some(head) = sha256d.get(..4) {
            actual.copy_from_slice(head);
        }
        if actual == expected {
            ChecksumStatus::Matched
        } else {
            ChecksumStatus::Mismatched { expected, actual }
        }
    }
}

/// What the decoder verified once the payload was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEnd {
    /// The frame checksum.
    pub checksum: ChecksumStatus,
    /// The merkle root in the header.
    pub header_merkle_root: Hash,
    /// The merkle root of the txids (the zero hash for no transactions, as
    /// [`merkle_root`](crate::bitcoin::merkle_root) gives).
    pub computed_merkle_root: Hash,
    /// The number of transactions.
    pub tx_count: u64,
    /// The payload length.
    pub length: u64,
}

impl BlockEnd {
    /// Whether the txids hash to the header's merkle root. A block without transactions never
    /// matches, as [`Block::check_merkle_root`](crate::bitcoin::Block::check_merkle_root) refuses
    /// it (the node's `CheckBlock` requires a coinbase).
    pub fn merkle_matches(&self) -> bool {
        self.tx_count > 0 && self.header_merkle_root == self.computed_merkle_root
    }

    /// Whether the checksum matched or there was none to check.
    pub fn checksum_ok(&self) -> bool {
        !matches!(self.checksum, ChecksumStatus::Mismatched { .. })
    }
}

/// Why a block payload could not be streamed. Offsets are from the start of the payload. After
/// any error the decoder refuses further input ([`BlockStreamError::Failed`]); events emitted
/// before it stay available from [`BlockStreamDecoder::next_event`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockStreamError {
    /// Bytes were fed past the declared end of the payload.
    #[error("{extra} byte(s) fed past the declared payload length {declared}")]
    BeyondDeclaredLength {
        /// The declared payload length.
        declared: u64,
        /// How many bytes of the last chunk were past it.
        extra: u64,
    },
    /// The declared length ends inside the block: its content is longer than the frame says.
    #[error("declared payload length {declared} ends inside the block (a value starting at offset {offset} needs {needed} more byte(s))")]
    ContentLongerThanDeclared {
        /// The declared payload length.
        declared: u64,
        /// Where the value that does not fit starts.
        offset: u64,
        /// How many bytes it needs past the declared end.
        needed: u64,
    },
    /// The last transaction ended before the declared length: trailing bytes.
    #[error("block content ends at offset {end}, before the declared payload length {declared}")]
    ContentShorterThanDeclared {
        /// The declared payload length.
        declared: u64,
        /// Where the content ended.
        end: u64,
    },
    /// The input ended ([`BlockStreamDecoder::finish`]) before the declared length arrived.
    #[error("payload incomplete: {received} of {declared} declared byte(s) received")]
    Incomplete {
        /// The declared payload length.
        declared: u64,
        /// How many bytes arrived.
        received: u64,
    },
    /// A count announces more elements than the rest of the payload can hold.
    #[error("{what} count {count} at offset {offset} cannot fit in the {remaining} byte(s) left")]
    CountTooLarge {
        /// Which count.
        what: &'static str,
        /// Where the count starts.
        offset: u64,
        /// The count read.
        count: u64,
        /// The payload bytes left after it.
        remaining: u64,
    },
    /// A var int was not in its shortest form.
    #[error("non-canonical var int at offset {offset}")]
    NonCanonicalVarInt {
        /// Where the var int starts.
        offset: u64,
    },
    /// A var int exceeded 0xFFFFFFFF (`MAX_SIZE`; misbehaviour +1 at the node).
    #[error("var int {value} at offset {offset} exceeds 0xFFFFFFFF")]
    VarIntTooLarge {
        /// Where the var int starts.
        offset: u64,
        /// The value read.
        value: u64,
    },
    /// The 80-byte block header failed to parse.
    #[error("malformed block header: {source}")]
    MalformedHeader {
        /// What was wrong.
        source: DecodeError,
    },
    /// A transaction failed to parse.
    #[error("malformed transaction {index} at offset {offset}: {source}")]
    MalformedTx {
        /// Its position in the block.
        index: u64,
        /// Where it starts in the payload.
        offset: u64,
        /// What was wrong (offsets within the transaction).
        source: DecodeError,
    },
    /// A transaction is larger than the consensus maximum.
    #[error(
        "transaction {index} at offset {offset} is at least {size} bytes, above the limit {limit}"
    )]
    TxTooLarge {
        /// Its position in the block.
        index: u64,
        /// Where it starts in the payload.
        offset: u64,
        /// Its size as far as known (a lower bound).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// In [`TxMode::Whole`], a transaction is larger than the window.
    #[error("transaction {index} at offset {offset} is at least {size} bytes, above the window of {window}; use txid-only mode")]
    TxExceedsWindow {
        /// Its position in the block.
        index: u64,
        /// Where it starts in the payload.
        offset: u64,
        /// Its size as far as known (a lower bound).
        size: u64,
        /// The window.
        window: u64,
    },
    /// Input was fed after an earlier error.
    #[error("the block stream already failed")]
    Failed,
}

impl BlockStreamError {
    /// The same fault as the whole-frame decoder reports it, so that a streamed block is judged
    /// by the rules that judge a buffered one (`PeerProtocol::on_codec_error`). `None` for what
    /// is not the peer's fault: our own window ([`BlockStreamError::TxExceedsWindow`]) and the
    /// caller's misuse of the decoder.
    pub fn to_codec_error(&self) -> Option<CodecError> {
        let at = |offset: u64| usize::try_from(offset).unwrap_or(usize::MAX);
        let command = crate::p2p::messages::commands::BLOCK.to_string();
        let invalid = |field: &'static str, offset: u64| CodecError::Malformed {
            command: command.clone(),
            offset: at(offset),
            source: DecodeError::Invalid {
                field,
                offset: at(offset),
                detail: self.to_string(),
            },
        };
        Some(match self {
            BlockStreamError::NonCanonicalVarInt { offset } => CodecError::NonCanonicalVarInt {
                command,
                offset: at(*offset),
            },
            BlockStreamError::VarIntTooLarge { offset, value } => CodecError::VarIntTooLarge {
                command,
                offset: at(*offset),
                value: *value,
            },
            BlockStreamError::MalformedHeader { source } => CodecError::Malformed {
                command,
                offset: source.offset(),
                source: source.clone(),
            },
            BlockStreamError::MalformedTx { offset, source, .. } => CodecError::Malformed {
                command,
                offset: at(*offset),
                source: source.clone(),
            },
            BlockStreamError::CountTooLarge { offset, .. } => invalid("count", *offset),
            BlockStreamError::ContentLongerThanDeclared { offset, .. } => {
                invalid("length", *offset)
            }
            BlockStreamError::ContentShorterThanDeclared { end, .. } => invalid("length", *end),
            BlockStreamError::TxTooLarge { offset, .. } => invalid("transaction", *offset),
            BlockStreamError::TxExceedsWindow { .. }
            | BlockStreamError::BeyondDeclaredLength { .. }
            | BlockStreamError::Incomplete { .. }
            | BlockStreamError::Failed => return None,
        })
    }
}

/// Where the decoder is in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Collecting the 80-byte header in the scratch.
    Header,
    /// Reading the transaction count.
    TxCount,
    /// Reading a transaction.
    Tx(Field),
    /// The payload is complete.
    Done,
    /// An error was returned.
    Failed,
}

/// The field of a transaction being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Version,
    InCount,
    Outpoint,
    ScriptSigLen,
    ScriptSig,
    Sequence,
    OutCount,
    Value,
    ScriptPubKeyLen,
    ScriptPubKey,
    LockTime,
}

/// The transaction being read.
#[derive(Debug, Clone)]
struct TxState {
    index: u64,
    offset: u64,
    inputs_left: u64,
    outputs_left: u64,
    /// Bytes left in the current fixed-size field or script.
    skip: u64,
    sha: Sha256,
    /// The transaction's bytes so far ([`TxMode::Whole`] only).
    bytes: Vec<u8>,
}

/// Incremental decoder of one `block` payload; see the module documentation.
#[derive(Debug, Clone)]
pub struct BlockStreamDecoder {
    config: BlockStreamConfig,
    declared: u64,
    expected_checksum: Option<[u8; 4]>,
    /// Whether `feed` hashes the payload for the checksum (false when the caller hashes it
    /// elsewhere: [`BlockStreamDecoder::checksum_elsewhere`]).
    hash_checksum: bool,
    /// Payload bytes consumed so far (the offset of the next byte).
    pos: u64,
    stage: Stage,
    /// Header bytes or the var int being read.
    scratch: [u8; HEADER_SIZE],
    scratch_len: usize,
    /// Where the var int in the scratch starts.
    var_int_offset: u64,
    header: Option<BlockHeader>,
    tx_count: u64,
    tx: Option<TxState>,
    checksum: Sha256,
    merkle: MerkleAccumulator,
    events: VecDeque<BlockEvent>,
    peak_buffered: usize,
}

impl BlockStreamDecoder {
    /// A decoder for a payload of `declared` bytes. `checksum` is the frame header's checksum
    /// for a basic frame, `None` for an `extmsg` frame (which carries none).
    pub fn new(declared: u64, checksum: Option<[u8; 4]>, config: BlockStreamConfig) -> Self {
        BlockStreamDecoder {
            config: BlockStreamConfig {
                window: config.window.max(HEADER_SIZE),
                ..config
            },
            declared,
            expected_checksum: checksum,
            hash_checksum: true,
            pos: 0,
            stage: Stage::Header,
            scratch: [0; HEADER_SIZE],
            scratch_len: 0,
            var_int_offset: 0,
            header: None,
            tx_count: 0,
            tx: None,
            checksum: Sha256::new(),
            merkle: MerkleAccumulator::new(),
            events: VecDeque::new(),
            peak_buffered: 0,
        }
    }

    /// A decoder for the payload of the frame whose (already checked) header is `header`.
    pub fn for_frame(header: &FrameHeader, config: BlockStreamConfig) -> Self {
        let checksum = (!header.extended).then_some(header.checksum);
        Self::new(header.length, checksum, config)
    }

    /// Leaves the frame checksum to the caller, who hashes the same bytes elsewhere (on another
    /// core: the connection's checksum worker, `connection/checksum.rs`) and overwrites
    /// [`BlockEnd::checksum`] with [`ChecksumStatus::judge`]; until then the end event says
    /// [`ChecksumStatus::NotApplicable`]. Hashing every byte twice (the checksum and the txids)
    /// on one core is most of a streamed block's cost (docs/BENCHMARKS.md, "Blocks of any size").
    pub(crate) fn checksum_elsewhere(&mut self) {
        self.hash_checksum = false;
    }

    /// The checksum the frame header declared (`None` for an `extmsg` frame).
    pub(crate) fn expected_checksum(&self) -> Option<[u8; 4]> {
        self.expected_checksum
    }

    /// The declared payload length.
    pub fn declared_len(&self) -> u64 {
        self.declared
    }

    /// Payload bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Whether the whole payload has been read and [`BlockEvent::End`] queued.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Payload bytes the decoder holds right now: the part of the header or var int in its
    /// fixed 80-byte scratch, or in [`TxMode::Whole`] the bytes of the transaction being read
    /// (a var int inside it is in both, and counted once). Never more than the window. Events
    /// waiting in the queue are not counted: they belong to the caller.
    pub fn buffered_bytes(&self) -> usize {
        match &self.tx {
            Some(t) if self.config.mode == TxMode::Whole => t.bytes.len().max(self.scratch_len),
            _ => self.scratch_len,
        }
    }

    /// The most [`BlockStreamDecoder::buffered_bytes`] has been since the decoder was made.
    pub fn peak_buffered_bytes(&self) -> usize {
        self.peak_buffered
    }

    /// The next event, in payload order.
    pub fn next_event(&mut self) -> Option<BlockEvent> {
        self.events.pop_front()
    }

    /// Signals that no more input will come: fails with [`BlockStreamError::Incomplete`] unless
    /// the whole declared payload arrived.
    pub fn finish(&self) -> Result<(), BlockStreamError> {
        match self.stage {
            Stage::Done => Ok(()),
            Stage::Failed => Err(BlockStreamError::Failed),
            _ => Err(BlockStreamError::Incomplete {
                declared: self.declared,
                received: self.pos,
            }),
        }
    }

    /// Feeds the next bytes of the payload, of any length. Events become available from
    /// [`BlockStreamDecoder::next_event`]; the chunk is only borrowed, so the caller may forward
    /// it elsewhere too. Bytes past the declared length are an error, after the bytes up to it
    /// have been processed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), BlockStreamError> {
        let result = self.feed_inner(chunk);
        if result.is_err() {
            self.stage = Stage::Failed;
            self.tx = None;
            self.scratch_len = 0;
        }
        result
    }

    fn feed_inner(&mut self, chunk: &[u8]) -> Result<(), BlockStreamError> {
        if self.stage == Stage::Failed {
            return Err(BlockStreamError::Failed);
        }
        let left = self.declared - self.pos;
        let take = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
        let (mut rest, extra) = chunk.split_at(take);
        if self.hash_checksum && self.expected_checksum.is_some() {
            self.checksum.update(rest);
        }
        while !rest.is_empty() {
            rest = self.step(rest)?;
            self.peak_buffered = self.peak_buffered.max(self.buffered_bytes());
        }
        if self.pos == self.declared {
            self.at_declared_end()?;
        }
        if !extra.is_empty() {
            return Err(BlockStreamError::BeyondDeclaredLength {
                declared: self.declared,
                extra: extra.len() as u64,
            });
        }
        Ok(())
    }

    /// The declared length has been reached: either the block just ended, or it is cut short.
    fn at_declared_end(&mut self) -> Result<(), BlockStreamError> {
        match self.stage {
            Stage::Done | Stage::Failed => Ok(()),
            _ => {
                let offset = self.current_value_offset();
                Err(BlockStreamError::ContentLongerThanDeclared {
                    declared: self.declared,
                    offset,
                    needed: self.min_needed(),
                })
            }
        }
    }

    /// Where the value being read starts (for errors).
    fn current_value_offset(&self) -> u64 {
        match self.stage {
            Stage::Header => 0,
            Stage::TxCount => self.var_int_offset,
            Stage::Tx(_) => self.tx.as_ref().map_or(self.pos, |t| t.offset),
            Stage::Done | Stage::Failed => self.pos,
        }
    }

    /// A lower bound on the bytes still needed to finish the current value.
    fn min_needed(&self) -> u64 {
        match self.stage {
            Stage::Header => (HEADER_SIZE - self.scratch_len) as u64,
            Stage::TxCount => 1,
            Stage::Tx(_) => self.tx.as_ref().map_or(1, |t| t.skip.max(1)),
            Stage::Done | Stage::Failed => 0,
        }
    }

    /// Consumes a prefix of `input`, returning what is left.
    fn step<'a>(&mut self, input: &'a [u8]) -> Result<&'a [u8], BlockStreamError> {
        match self.stage {
            Stage::Header => {
                let n = (HEADER_SIZE - self.scratch_len).min(input.len());
                let (head, rest) = input.split_at(n);
                self.fill_scratch(head);
                self.pos += n as u64;
                if self.scratch_len == HEADER_SIZE {
                    // Any 80 bytes decode as a header; the error is kept rather than unwrapped.
                    let header = BlockHeader::decode_exact(&self.scratch)
                        .map_err(|source| BlockStreamError::MalformedHeader { source })?;
                    self.scratch_len = 0;
                    self.header = Some(header);
                    self.events.push_back(BlockEvent::Header(header));
                    self.var_int_offset = self.pos;
                    self.stage = Stage::TxCount;
                }
                Ok(rest)
            }
            Stage::TxCount => {
                let (value, rest) = match self.read_var_int(input, false)? {
                    (Some(v), rest) => (v, rest),
                    (None, rest) => return Ok(rest),
                };
                let remaining = self.declared - self.pos;
                if value.saturating_mul(MIN_TX_SIZE) > remaining {
                    return Err(BlockStreamError::CountTooLarge {
                        what: "transaction",
                        offset: self.var_int_offset,
                        count: value,
                        remaining,
                    });
                }
                self.tx_count = value;
                self.events.push_back(BlockEvent::TxCount(value));
                self.next_tx();
                if self.stage == Stage::Done {
                    self.end_block()?;
                }
                Ok(rest)
            }
            Stage::Tx(field) => self.step_tx(field, input),
            Stage::Done | Stage::Failed => Ok(&[]),
        }
    }

    fn fill_scratch(&mut self, bytes: &[u8]) {
        let end = self.scratch_len + bytes.len();
        if let Some(dst) = self.scratch.get_mut(self.scratch_len..end) {
            dst.copy_from_slice(bytes);
            self.scratch_len = end;
        }
    }

    /// Starts the next transaction, or ends the block after the last one.
    fn next_tx(&mut self) {
        let index = self.merkle.count();
        if index < self.tx_count {
            self.tx = Some(TxState {
                index,
                offset: self.pos,
                inputs_left: 0,
                outputs_left: 0,
                skip: 4,
                sha: Sha256::new(),
                bytes: Vec::new(),
            });
            self.stage = Stage::Tx(Field::Version);
        } else {
            self.tx = None;
            self.stage = Stage::Done;
        }
    }

    /// Reads (part of) a var int into the scratch. In a transaction the bytes are also hashed.
    fn read_var_int<'a>(
        &mut self,
        input: &'a [u8],
        in_tx: bool,
    ) -> Result<(Option<u64>, &'a [u8]), BlockStreamError> {
        if self.scratch_len == 0 {
            self.var_int_offset = self.pos;
        }
        let want = match self.scratch.first() {
            _ if self.scratch_len == 0 => 1,
            Some(0xFD) => 3,
            Some(0xFE) => 5,
            Some(0xFF) => 9,
            _ => 1,
        };
        let n = (want - self.scratch_len).min(input.len());
        let (head, rest) = input.split_at(n);
        self.fill_scratch(head);
        self.pos += n as u64;
        if in_tx {
            self.tx_bytes(head)?;
        }
        let want = match self.scratch.first() {
            Some(0xFD) => 3,
            Some(0xFE) => 5,
            Some(0xFF) => 9,
            _ => 1,
        };
        if self.scratch_len < want {
            return Ok((None, rest));
        }
        let offset = self.var_int_offset;
        let mut r = Reader::new(self.scratch.get(..want).unwrap_or_default());
        let value = r.read_var_int().map_err(|e| match e {
            DecodeError::NonCanonicalVarInt { .. } => {
                BlockStreamError::NonCanonicalVarInt { offset }
            }
            DecodeError::VarIntTooLarge { value, .. } => {
                BlockStreamError::VarIntTooLarge { offset, value }
            }
            source => BlockStreamError::MalformedTx {
                index: self.merkle.count(),
                offset,
                source,
            },
        })?;
        self.scratch_len = 0;
        debug_assert!(value <= MAX_VAR_INT);
        Ok((Some(value), rest))
    }

    /// Accounts for bytes of the current transaction: hashes them and, in whole mode, keeps
    /// them, enforcing the size limit and the window first.
    fn tx_bytes(&mut self, bytes: &[u8]) -> Result<(), BlockStreamError> {
        let mode = self.config.mode;
        let window = self.config.window;
        let max_tx = self.config.max_tx_size;
        let pos = self.pos;
        let Some(tx) = self.tx.as_mut() else {
            return Ok(());
        };
        let size = pos - tx.offset;
        check_tx_size(tx, size, mode, window, max_tx)?;
        tx.sha.update(bytes);
        if mode == TxMode::Whole {
            let need = tx.bytes.len() + bytes.len();
            if need > tx.bytes.capacity() {
                // Grow as bytes arrive, doubling but never past the window, so the capacity
                // stays within it too.
                let target = need.max(tx.bytes.capacity().saturating_mul(2)).min(window);
                tx.bytes.reserve_exact(target.max(need) - tx.bytes.len());
            }
            tx.bytes.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn step_tx<'a>(&mut self, field: Field, input: &'a [u8]) -> Result<&'a [u8], BlockStreamError> {
        match field {
            Field::InCount | Field::OutCount | Field::ScriptSigLen | Field::ScriptPubKeyLen => {
                let (value, rest) = match self.read_var_int(input, true)? {
                    (Some(v), rest) => (v, rest),
                    (None, rest) => return Ok(rest),
                };
                self.after_var_int(field, value)?;
                Ok(rest)
            }
            _ => {
                let skip = self.tx.as_ref().map_or(0, |t| t.skip);
                let n = usize::try_from(skip).map_or(input.len(), |s| s.min(input.len()));
                let (head, rest) = input.split_at(n);
                self.pos += n as u64;
                self.tx_bytes(head)?;
                let done = match self.tx.as_mut() {
                    Some(tx) => {
                        tx.skip -= n as u64;
                        tx.skip == 0
                    }
                    None => false,
                };
                if done {
                    self.after_fixed(field)?;
                }
                Ok(rest)
            }
        }
    }

    /// Sets the next field to skip `len` bytes, refusing lengths that cannot fit the payload or
    /// the transaction limits before any byte of them arrives.
    fn expect(&mut self, field: Field, len: u64) -> Result<(), BlockStreamError> {
        let (mode, window, max_tx) = (
            self.config.mode,
            self.config.window,
            self.config.max_tx_size,
        );
        let pos = self.pos;
        if let Some(tx) = self.tx.as_mut() {
            let end = pos.saturating_add(len);
            if end > self.declared {
                return Err(BlockStreamError::ContentLongerThanDeclared {
                    declared: self.declared,
                    offset: tx.offset,
                    needed: end - self.declared,
                });
            }
            check_tx_size(tx, end - tx.offset, mode, window, max_tx)?;
            tx.skip = len;
        }
        self.stage = Stage::Tx(field);
        Ok(())
    }

    fn check_count(
        &self,
        what: &'static str,
        count: u64,
        min: u64,
    ) -> Result<(), BlockStreamError> {
        let remaining = self.declared - self.pos;
        if count.saturating_mul(min) > remaining {
            return Err(BlockStreamError::CountTooLarge {
                what,
                offset: self.var_int_offset,
                count,
                remaining,
            });
        }
        Ok(())
    }

    fn after_var_int(&mut self, field: Field, value: u64) -> Result<(), BlockStreamError> {
        match field {
            Field::InCount => {
                self.check_count("input", value, MIN_TXIN_SIZE)?;
                if let Some(tx) = self.tx.as_mut() {
                    tx.inputs_left = value;
                }
                self.next_input()
            }
            Field::OutCount => {
                self.check_count("output", value, MIN_TXOUT_SIZE)?;
                if let Some(tx) = self.tx.as_mut() {
                    tx.outputs_left = value;
                }
                self.next_output()
            }
            // A script of `value` bytes comes next; an empty one moves straight on.
            Field::ScriptSigLen if value > 0 => self.expect(Field::ScriptSig, value),
            Field::ScriptSigLen => self.expect(Field::Sequence, 4),
            _ if value > 0 => self.expect(Field::ScriptPubKey, value),
            _ => self.next_output(),
        }
    }

    fn next_input(&mut self) -> Result<(), BlockStreamError> {
        let more = match self.tx.as_mut() {
            Some(tx) if tx.inputs_left > 0 => {
                tx.inputs_left -= 1;
                true
            }
            _ => false,
        };
        if more {
            self.expect(Field::Outpoint, 36)
        } else {
            self.stage = Stage::Tx(Field::OutCount);
            Ok(())
        }
    }

    fn next_output(&mut self) -> Result<(), BlockStreamError> {
        let more = match self.tx.as_mut() {
            Some(tx) if tx.outputs_left > 0 => {
                tx.outputs_left -= 1;
                true
            }
            _ => false,
        };
        if more {
            self.expect(Field::Value, 8)
        } else {
            self.expect(Field::LockTime, 4)
        }
    }

    /// A fixed-size field or a script has been read in full.
    fn after_fixed(&mut self, field: Field) -> Result<(), BlockStreamError> {
        match field {
            Field::Version => {
                self.stage = Stage::Tx(Field::InCount);
                Ok(())
            }
            Field::Outpoint => {
                self.stage = Stage::Tx(Field::ScriptSigLen);
                Ok(())
            }
            Field::ScriptSig => self.expect(Field::Sequence, 4),
            Field::Sequence => self.next_input(),
            Field::Value => {
                self.stage = Stage::Tx(Field::ScriptPubKeyLen);
                Ok(())
            }
            Field::ScriptPubKey => self.next_output(),
            Field::LockTime => self.end_tx(),
            Field::InCount | Field::OutCount | Field::ScriptSigLen | Field::ScriptPubKeyLen => {
                Ok(())
            }
        }
    }

    /// The current transaction is complete: emit it, add its txid to the merkle root, and move
    /// on (or end the block).
    fn end_tx(&mut self) -> Result<(), BlockStreamError> {
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        let txid = Hash(Sha256::digest(tx.sha.finalize()).into());
        let length = self.pos - tx.offset;
        let event = match self.config.mode {
            TxMode::TxidOnly => BlockEvent::TxId {
                index: tx.index,
                txid,
                offset: tx.offset,
                length,
            },
            TxMode::Whole => {
                // The layout was checked field by field as it arrived; parsing the kept bytes
                // (sharing them, no copy) builds the `Transaction`.
                let raw = Bytes::from(tx.bytes);
                let parsed = Transaction::decode_bytes(&raw).map_err(|source| {
                    BlockStreamError::MalformedTx {
                        index: tx.index,
                        offset: tx.offset,
                        source,
                    }
                })?;
                BlockEvent::Transaction {
                    index: tx.index,
                    offset: tx.offset,
                    txid,
                    tx: parsed,
                }
            }
        };
        self.events.push_back(event);
        self.merkle.push(txid);
        self.next_tx();
        if self.stage == Stage::Done {
            self.end_block()?;
        }
        Ok(())
    }

    /// The last transaction has ended: the payload must end here too.
    fn end_block(&mut self) -> Result<(), BlockStreamError> {
        if self.pos != self.declared {
            return Err(BlockStreamError::ContentShorterThanDeclared {
                declared: self.declared,
                end: self.pos,
            });
        }
        let checksum = match self.expected_checksum {
            Some(expected) if self.hash_checksum => {
                let first = std::mem::take(&mut self.checksum).finalize();
                ChecksumStatus::judge(expected, &Sha256::digest(first))
            }
            _ => ChecksumStatus::NotApplicable,
        };
        let header_merkle_root = self.header.map_or(Hash::ZERO, |h| h.merkle_root);
        self.events.push_back(BlockEvent::End(BlockEnd {
            checksum,
            header_merkle_root,
            computed_merkle_root: self.merkle.root(),
            tx_count: self.tx_count,
            length: self.declared,
        }));
        Ok(())
    }
}

/// Refuses a transaction that has grown (or is about to grow) to `size` bytes when that is over
/// the consensus limit or, in whole mode, over the window.
fn check_tx_size(
    tx: &TxState,
    size: u64,
    mode: TxMode,
    window: usize,
    max_tx: u64,
) -> Result<(), BlockStreamError> {
    if size > max_tx {
        return Err(BlockStreamError::TxTooLarge {
            index: tx.index,
            offset: tx.offset,
            size,
            limit: max_tx,
        });
    }
    if mode == TxMode::Whole && size > window as u64 {
        return Err(BlockStreamError::TxExceedsWindow {
            index: tx.index,
            offset: tx.offset,
            size,
            window: window as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitcoin::{merkle_root, Encode, OutPoint, TxIn, TxOut};

    fn tx(script_len: usize, tag: u8) -> Transaction {
        Transaction::new(
            1,
            vec![TxIn {
                prevout: OutPoint::NULL,
                script_sig: Bytes::from(vec![tag; script_len]),
                sequence: u32::MAX,
            }],
            vec![TxOut {
                value: 1,
                script_pubkey: Bytes::from_static(&[0x51]),
            }],
            0,
        )
    }

    fn payload(txs: &[Transaction]) -> Vec<u8> {
        let mut header = BlockHeader::decode_exact(&[0u8; 80]).unwrap();
        header.merkle_root = merkle_root(txs.iter().map(Transaction::txid).collect());
        crate::bitcoin::Block {
            header,
            transactions: txs.to_vec(),
        }
        .to_vec()
    }

    #[test]
    fn a_transaction_over_the_window_is_refused_before_its_script_arrives() {
        let p = payload(&[tx(10, 1), tx(5000, 2)]);
        let config = BlockStreamConfig {
            window: 1000,
            ..BlockStreamConfig::default()
        };
        let mut d = BlockStreamDecoder::new(p.len() as u64, None, config);
        // The header, the count, the first transaction and the second one up to its script
        // length: the length alone is enough to refuse it.
        let first_end = 80 + 1 + tx(10, 1).size();
        let script_len_end = first_end + 4 + 1 + 36 + 3;
        let err = d.feed(&p[..script_len_end]).unwrap_err();
        assert!(
            matches!(err, BlockStreamError::TxExceedsWindow { index: 1, .. }),
            "{err:?}"
        );
        assert!(d.buffered_bytes() == 0);
        assert!(d.peak_buffered_bytes() <= 1000);
        assert_eq!(d.feed(&[0]), Err(BlockStreamError::Failed));
    }

    #[test]
    fn the_same_transaction_passes_in_txid_only_mode_with_a_small_window() {
        let txs = [tx(10, 1), tx(5000, 2)];
        let p = payload(&txs);
        let config = BlockStreamConfig {
            window: 100,
            ..BlockStreamConfig::txid_only()
        };
        let mut d = BlockStreamDecoder::new(p.len() as u64, None, config);
        for b in p.chunks(3) {
            d.feed(b).unwrap();
        }
        assert!(d.peak_buffered_bytes() <= HEADER_SIZE);
        let events: Vec<_> = std::iter::from_fn(|| d.next_event()).collect();
        assert_eq!(events.len(), 5);
        match events.get(3) {
            Some(BlockEvent::TxId { txid, length, .. }) => {
                assert_eq!(*txid, txs[1].txid());
                assert_eq!(*length, txs[1].size() as u64);
            }
            other => panic!("{other:?}"),
        }
        match events.get(4) {
            Some(BlockEvent::End(end)) => {
                assert!(end.merkle_matches());
                assert_eq!(end.checksum, ChecksumStatus::NotApplicable);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_transaction_the_size_of_the_window_is_delivered_and_one_byte_larger_is_not() {
        let t = tx(500, 3);
        let p = payload(std::slice::from_ref(&t));
        for (window, ok) in [(t.size(), true), (t.size() - 1, false)] {
            let config = BlockStreamConfig {
                window,
                ..BlockStreamConfig::default()
            };
            let mut d = BlockStreamDecoder::new(p.len() as u64, None, config);
            let r = p.chunks(1).try_for_each(|b| d.feed(b));
            assert_eq!(r.is_ok(), ok, "window {window}: {r:?}");
            assert!(d.peak_buffered_bytes() <= window);
            if ok {
                let events: Vec<_> = std::iter::from_fn(|| d.next_event()).collect();
                assert!(events.contains(&BlockEvent::Transaction {
                    index: 0,
                    offset: 81,
                    txid: t.txid(),
                    tx: t.clone(),
                }));
            }
        }
    }

    #[test]
    fn a_transaction_over_the_consensus_limit_is_refused() {
        let p = payload(&[tx(300, 1)]);
        let config = BlockStreamConfig {
            max_tx_size: 200,
            ..BlockStreamConfig::txid_only()
        };
        let mut d = BlockStreamDecoder::new(p.len() as u64, None, config);
        assert!(matches!(
            d.feed(&p),
            Err(BlockStreamError::TxTooLarge {
                index: 0,
                limit: 200,
                ..
            })
        ));
    }

    #[test]
    fn non_canonical_and_oversized_var_ints_are_typed_errors() {
        let mut p = payload(&[tx(1, 1)]);
        // Transaction count 1 written as 0xFD 0x01 0x00.
        p.splice(80..81, [0xFD, 0x01, 0x00]);
        let mut d = BlockStreamDecoder::new(p.len() as u64, None, BlockStreamConfig::default());
        assert_eq!(
            d.feed(&p),
            Err(BlockStreamError::NonCanonicalVarInt { offset: 80 })
        );
        let mut q = payload(&[tx(1, 1)]);
        q.splice(80..81, [0xFF, 0, 0, 0, 0, 1, 0, 0, 0]);
        let mut d = BlockStreamDecoder::new(q.len() as u64, None, BlockStreamConfig::default());
        assert!(matches!(
            d.feed(&q),
            Err(BlockStreamError::VarIntTooLarge { offset: 80, .. })
        ));
    }

    #[test]
    fn an_empty_block_ends_after_its_count() {
        let p = payload(&[]);
        let mut d = BlockStreamDecoder::new(p.len() as u64, None, BlockStreamConfig::default());
        d.feed(&p).unwrap();
        assert!(d.is_done());
        assert_eq!(d.finish(), Ok(()));
        assert!(matches!(d.next_event(), Some(BlockEvent::Header(_))));
        assert_eq!(d.next_event(), Some(BlockEvent::TxCount(0)));
        match d.next_event() {
            Some(BlockEvent::End(end)) => {
                assert_eq!(end.computed_merkle_root, Hash::ZERO);
                assert_eq!(end.tx_count, 0);
            }
            other => panic!("{other:?}"),
        }
    }
}
