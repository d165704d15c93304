//! Blocks of any size as streams (docs/GUIDE.md, "Blocks of any size"): [`BlockStream`], what
//! the application holds, and the connection's end of it.
//!
//! A `block` frame larger than `block_streaming.threshold` is never buffered whole. Its
//! connection reads the 80-byte header, offers the stream to the block service (which gives it
//! to the `get_block_stream` caller waiting for that hash, to a `get_block` caller, to a
//! `subscribe_block_streams` subscriber, or to nobody), then decodes the payload as it arrives
//! ([`BlockStreamDecoder`](crate::p2p::codec::BlockStreamDecoder)) and queues what the
//! receiver asked for: parsed transactions, transaction ids, or the raw bytes. The queue is
//! bounded in bytes twice: per stream (`window`) and across all streams (`budget`), with
//! permits that travel with each part and are released when the application takes it; while
//! the queue is full the connection stops reading and TCP slows the peer. The checksum (basic
//! frames) and the merkle root are computed as the bytes pass; the stream's end says whether
//! both matched. Blocks under the threshold can be had as streams too (built from the whole
//! block), so `get_block_stream` works for any block.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::bitcoin::{Block, BlockHeader, Encode, Hash, Transaction};
use crate::p2p::codec::{BlockEnd, BlockStreamError, ChecksumStatus, TxMode};
use crate::p2p::connection::DisconnectReason;
use crate::p2p::limits::{
    DEFAULT_BLOCK_STALLING_MIN_RATE, DEFAULT_BLOCK_STALLING_TIMEOUT, DEFAULT_BLOCK_STREAM_WINDOW,
    DEFAULT_STREAM_BUDGET, DEFAULT_STREAM_THRESHOLD, DEFAULT_STREAM_WINDOW,
};

/// Settings of block streaming (`[block_streaming]` in a configuration file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockStreamingConfig {
    /// `block` payloads above this many bytes are streamed, never buffered whole.
    pub threshold: u64,
    /// Bytes of one stream that may wait for the application before its connection stops
    /// reading.
    pub window: usize,
    /// Bytes all streams together may have waiting, so several peers cannot multiply `window`.
    pub budget: usize,
    /// The largest transaction delivered whole by a stream in `Transactions` mode (a larger one
    /// ends the stream with an error: read such blocks in `TxIds` or `Raw` mode).
    pub max_whole_tx: usize,
    /// A streamed block must arrive at `stall_min_rate` over every `stall_timeout` spent
    /// waiting for the peer, or the peer is disconnected (the node's `-blockstallingtimeout`).
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// The slowest acceptable block download, bytes per second (the node's
    /// `-blockstallingmindownloadspeed`).
    pub stall_min_rate: u64,
}

impl Default for BlockStreamingConfig {
    fn default() -> Self {
        BlockStreamingConfig {
            threshold: DEFAULT_STREAM_THRESHOLD,
            window: DEFAULT_STREAM_WINDOW,
            budget: DEFAULT_STREAM_BUDGET,
            max_whole_tx: DEFAULT_BLOCK_STREAM_WINDOW,
            stall_timeout: DEFAULT_BLOCK_STALLING_TIMEOUT,
            stall_min_rate: DEFAULT_BLOCK_STALLING_MIN_RATE,
        }
    }
}

impl BlockStreamingConfig {
    /// Checks the settings.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if self.window < 1024 {
            return Err("block_streaming.window must be at least 1024 bytes".into());
        }
        if self.budget < self.window {
            return Err("block_streaming.budget must be at least block_streaming.window".into());
        }
        if self.max_whole_tx < 1024 {
            return Err("block_streaming.max_whole_tx must be at least 1024 bytes".into());
        }
        if self.stall_timeout.is_zero() {
            return Err("block_streaming.stall_timeout must be above zero".into());
        }
        Ok(())
    }
}

/// What a [`BlockStream`] delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlockStreamMode {
    /// Each transaction parsed ([`BlockPart::Transaction`]); each must fit in
    /// `block_streaming.max_whole_tx`.
    Transactions,
    /// Each transaction's id, offset and length only ([`BlockPart::TxId`]): no transaction
    /// bytes are kept, whatever their size.
    TxIds,
    /// The raw payload ([`BlockPart::Bytes`], in order, from the header's first byte) and each
    /// transaction's id ([`BlockPart::TxId`]), for writing the block to a file while it is
    /// verified ([`BlockStream::write_to`]).
    Raw,
}

impl BlockStreamMode {
    pub(crate) fn tx_mode(self) -> TxMode {
        match self {
            BlockStreamMode::Transactions => TxMode::Whole,
            BlockStreamMode::TxIds | BlockStreamMode::Raw => TxMode::TxidOnly,
        }
    }
}

/// One part of a streamed block, in payload order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockPart {
    /// A whole transaction ([`BlockStreamMode::Transactions`]).
    Transaction {
        /// Its position in the block (0 = coinbase).
        index: u64,
        /// Where it starts in the payload.
        offset: u64,
        /// Its txid.
        txid: Hash,
        /// The transaction.
        tx: Transaction,
    },
    /// A transaction's id and place ([`BlockStreamMode::TxIds`], [`BlockStreamMode::Raw`]).
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
    /// The next raw bytes of the payload ([`BlockStreamMode::Raw`]).
    Bytes(Bytes),
}

/// Why a [`BlockStream`] ended without a verified block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockStreamFailure {
    /// The payload does not parse as a block (the peer is judged as for a buffered block).
    #[error("malformed block: {0}")]
    Malformed(BlockStreamError),
    /// In [`BlockStreamMode::Transactions`], a transaction is larger than
    /// `block_streaming.max_whole_tx`: our own limit, not the peer's fault (the block may well be
    /// valid, and the peer pays nothing). Read such a block in [`BlockStreamMode::TxIds`] or
    /// [`BlockStreamMode::Raw`], which keep no transaction whole.
    #[error("transaction {index} is at least {size} bytes, above max_whole_tx ({limit}): read this block in TxIds or Raw mode")]
    TransactionTooLarge {
        /// Its position in the block.
        index: u64,
        /// Its size as far as known when it passed the limit (a lower bound).
        size: u64,
        /// `block_streaming.max_whole_tx`.
        limit: u64,
    },
    /// The transactions do not hash to the header's merkle root (`bad-txnmrklroot`, +100).
    #[error("merkle root mismatch: header has {expected}, transactions hash to {computed}")]
    MerkleMismatch {
        /// The header's merkle root.
        expected: Hash,
        /// The root of the txids received.
        computed: Hash,
    },
    /// The payload does not match the frame's checksum (the node drops such a frame).
    #[error("checksum mismatch: frame says {expected:02x?}, payload hashes to {actual:02x?}")]
    ChecksumMismatch {
        /// The frame header's checksum.
        expected: [u8; 4],
        /// The payload's.
        actual: [u8; 4],
    },
    /// The block arrived slower than `block_streaming.stall_min_rate`; the peer was
    /// disconnected.
    #[error("stalled: {received} bytes in {within:?}")]
    Stalled {
        /// Bytes received in the period.
        received: u64,
        /// The period.
        within: Duration,
    },
    /// The connection ended before the block did.
    #[error("connection ended mid-block: {0}")]
    Disconnected(DisconnectReason),
    /// Writing the block out failed ([`BlockStream::write_to`]).
    #[error("writing the block failed: {0}")]
    Write(String),
    /// The stream is in a mode that cannot give what was asked (e.g. `write_to` without
    /// [`BlockStreamMode::Raw`]).
    #[error("the stream is in {0:?} mode")]
    WrongMode(BlockStreamMode),
}

/// What the connection queues for the application.
#[derive(Debug)]
pub(crate) enum Queued {
    /// The parts one chunk of payload completed, in order: queued together so that a block of
    /// a million small transactions costs a million channel operations per 1,000, not one each
    /// (docs/BENCHMARKS.md, "Blocks of any size").
    Parts(Vec<BlockPart>),
    End(BlockEnd),
    Failed(BlockStreamFailure),
}

/// A queued batch of parts (or the end) and the window and budget it holds until the
/// application has taken its last part.
#[derive(Debug)]
pub(crate) struct Item {
    queued: Queued,
    permits: Option<Permits>,
}

/// What a queued batch holds: its share of the stream's window, of the manager's budget (none
/// when it was queued alone: see [`StreamSender::send`]), and the stream's count of batches
/// waiting, decremented (with a wake-up for the sender) when its last part is taken.
#[derive(Debug)]
struct Permits {
    _window: OwnedSemaphorePermit,
    _budget: Option<OwnedSemaphorePermit>,
    waiting: Arc<Waiting>,
}

impl Drop for Permits {
    fn drop(&mut self) {
        self.waiting
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.waiting.taken.notify_one();
    }
}

/// Parts of one stream waiting for the application.
#[derive(Debug, Default)]
struct Waiting {
    count: std::sync::atomic::AtomicUsize,
    taken: tokio::sync::Notify,
}

/// The global budget shared by every stream of a manager.
#[derive(Debug, Clone)]
pub(crate) struct StreamBudget {
    permits: Arc<Semaphore>,
    size: usize,
}

impl StreamBudget {
    /// A budget of `size` bytes.
    pub(crate) fn new(size: usize) -> Self {
        let size = size.clamp(1, Semaphore::MAX_PERMITS);
        StreamBudget {
            permits: Arc::new(Semaphore::new(size)),
            size,
        }
    }
}

/// The connection's end of a stream.
#[derive(Debug)]
pub(crate) struct StreamSender {
    tx: mpsc::UnboundedSender<Item>,
    window: Arc<Semaphore>,
    window_size: usize,
    budget: StreamBudget,
    waiting: Arc<Waiting>,
}

/// The receiver went away (nobody wants the rest of the block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReceiverGone;

impl StreamSender {
    /// Queues parts costing `cost` bytes as one batch, waiting for room in the stream's window
    /// and in the manager's budget. A batch queued while none of the stream's is waiting goes
    /// without the budget: an application reading its streams one after another must be able to
    /// finish the one it reads while the others hold the whole budget (they would otherwise wait
    /// for each other forever). So what all streams hold is at most the budget plus one batch
    /// (at most one chunk's parts, or the window) each.
    pub(crate) async fn send(
        &self,
        parts: Vec<BlockPart>,
        cost: usize,
    ) -> Result<(), ReceiverGone> {
        use std::sync::atomic::Ordering;
        let cost = cost.max(1);
        let own = u32::try_from(cost.min(self.window_size)).unwrap_or(u32::MAX);
        let shared = u32::try_from(cost.min(self.budget.size)).unwrap_or(u32::MAX);
        let window = tokio::select! {
            _ = self.tx.closed() => return Err(ReceiverGone),
            p = self.window.clone().acquire_many_owned(own) => p.map_err(|_| ReceiverGone)?,
        };
        let budget = loop {
            let taken = self.waiting.taken.notified();
            if self.waiting.count.load(Ordering::Acquire) == 0 {
                break None;
            }
            tokio::select! {
                _ = self.tx.closed() => return Err(ReceiverGone),
                p = self.budget.permits.clone().acquire_many_owned(shared) => {
                    break Some(p.map_err(|_| ReceiverGone)?);
                }
                _ = taken => {}
            }
        };
        self.waiting.count.fetch_add(1, Ordering::AcqRel);
        let permits = Permits {
            _window: window,
            _budget: budget,
            waiting: self.waiting.clone(),
        };
        self.tx
            .send(Item {
                queued: Queued::Parts(parts),
                permits: Some(permits),
            })
            .map_err(|_| ReceiverGone)
    }

    /// Ends the stream with `end` (verified or not) or a failure; never waits.
    pub(crate) fn finish(&self, last: Queued) {
        let _ = self.tx.send(Item {
            queued: last,
            permits: None,
        });
    }
}

/// What every stream knows from the start.
#[derive(Debug, Clone)]
pub(crate) struct StreamInfo {
    pub hash: Hash,
    pub header: BlockHeader,
    pub peer_id: Uuid,
    pub address: SocketAddr,
    pub len: u64,
}

/// A stream and its sender, in `mode` (the connection decodes accordingly).
pub(crate) fn channel(
    info: StreamInfo,
    window: usize,
    budget: &StreamBudget,
) -> (StreamSender, BlockStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    let window = window.clamp(1, Semaphore::MAX_PERMITS);
    (
        StreamSender {
            tx,
            window: Arc::new(Semaphore::new(window)),
            window_size: window,
            budget: budget.clone(),
            waiting: Arc::default(),
        },
        BlockStream {
            info,
            mode: BlockStreamMode::Transactions,
            rx,
            batch: Vec::new().into_iter(),
            held: None,
            end: None,
            finished: false,
            transactions: 0,
            bytes: 0,
        },
    )
}

/// A block arriving as it arrives: its header at once, then its parts in order
/// (`while let Some(part) = stream.next().await`), each verified as it passes, the whole
/// verified at the end ([`BlockStream::verified`]). Memory is bounded by
/// `block_streaming.window` whatever the block's size; while the application does not take
/// parts the connection stops reading the peer. Dropping the stream abandons the block (the
/// connection reads and checks the rest, then carries on).
#[derive(Debug)]
pub struct BlockStream {
    info: StreamInfo,
    mode: BlockStreamMode,
    rx: mpsc::UnboundedReceiver<Item>,
    /// The rest of the batch being taken, and the window and budget it holds until its last
    /// part is taken.
    batch: std::vec::IntoIter<BlockPart>,
    held: Option<Permits>,
    end: Option<BlockEnd>,
    finished: bool,
    transactions: u64,
    bytes: u64,
}

impl BlockStream {
    /// The block's hash.
    pub fn hash(&self) -> Hash {
        self.info.hash
    }

    /// The block's header.
    pub fn header(&self) -> &BlockHeader {
        &self.info.header
    }

    /// The connection the block comes from.
    pub fn peer_id(&self) -> Uuid {
        self.info.peer_id
    }

    /// Its address.
    pub fn address(&self) -> SocketAddr {
        self.info.address
    }

    /// The payload length the frame declared (the serialized block's size).
    pub fn len(&self) -> u64 {
        self.info.len
    }

    /// Whether the declared payload is empty (it never is for a valid block).
    pub fn is_empty(&self) -> bool {
        self.info.len == 0
    }

    /// What the stream delivers.
    pub fn mode(&self) -> BlockStreamMode {
        self.mode
    }

    /// Transactions (or transaction ids) delivered so far.
    pub fn transactions_seen(&self) -> u64 {
        self.transactions
    }

    /// Raw bytes delivered so far ([`BlockStreamMode::Raw`]).
    pub fn bytes_seen(&self) -> u64 {
        self.bytes
    }

    /// What was verified at the end (checksum and merkle root both matched), once the stream
    /// has ended well: `next` returned `None` without an error before.
    pub fn verified(&self) -> Option<&BlockEnd> {
        self.end.as_ref()
    }

    pub(crate) fn set_mode(&mut self, mode: BlockStreamMode) {
        self.mode = mode;
    }

    /// The next part; `None` once the block has ended (verified: see
    /// [`BlockStream::verified`]). A failure is returned once, then `None`.
    pub async fn next(&mut self) -> Option<Result<BlockPart, BlockStreamFailure>> {
        loop {
            if let Some(part) = self.batch.next() {
                if self.batch.len() == 0 {
                    // The batch is all taken: its room goes back to the connection now.
                    self.held = None;
                }
                match &part {
                    BlockPart::Transaction { .. } | BlockPart::TxId { .. } => {
                        self.transactions += 1
                    }
                    BlockPart::Bytes(b) => self.bytes += b.len() as u64,
                }
                return Some(Ok(part));
            }
            self.held = None;
            if self.finished {
                return None;
            }
            let Some(item) = self.rx.recv().await else {
                self.finished = true;
                return Some(Err(BlockStreamFailure::Disconnected(
                    DisconnectReason::Requested,
                )));
            };
            return match item.queued {
                Queued::Parts(parts) => {
                    self.batch = parts.into_iter();
                    self.held = item.permits;
                    continue;
                }
                Queued::End(end) => {
                    self.finished = true;
                    match verdict(&end) {
                        Ok(()) => {
                            self.end = Some(end);
                            None
                        }
                        Err(e) => Some(Err(e)),
                    }
                }
                Queued::Failed(e) => {
                    self.finished = true;
                    Some(Err(e))
                }
            };
        }
    }

    /// Writes the raw block to `out` as it arrives ([`BlockStreamMode::Raw`]), flushes it,
    /// and returns what was verified; a failure leaves a partial file for the caller to remove.
    pub async fn write_to<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut W,
    ) -> Result<BlockEnd, BlockStreamFailure> {
        if self.mode != BlockStreamMode::Raw {
            return Err(BlockStreamFailure::WrongMode(self.mode));
        }
        while let Some(part) = self.next().await {
            if let BlockPart::Bytes(b) = part? {
                out.write_all(&b)
                    .await
                    .map_err(|e| BlockStreamFailure::Write(e.to_string()))?;
            }
        }
        out.flush()
            .await
            .map_err(|e| BlockStreamFailure::Write(e.to_string()))?;
        self.end.ok_or(BlockStreamFailure::Disconnected(
            DisconnectReason::Requested,
        ))
    }

    /// Collects the whole block ([`BlockStreamMode::Transactions`]): its size in memory, so
    /// meant for blocks that fit.
    pub async fn into_block(mut self) -> Result<Block, BlockStreamFailure> {
        if self.mode != BlockStreamMode::Transactions {
            return Err(BlockStreamFailure::WrongMode(self.mode));
        }
        let mut transactions = Vec::new();
        while let Some(part) = self.next().await {
            if let BlockPart::Transaction { tx, .. } = part? {
                transactions.push(tx);
            }
        }
        Ok(Block {
            header: self.info.header,
            transactions,
        })
    }

    /// A stream of a block already in memory (one that arrived under the threshold), so that
    /// `get_block_stream` answers alike for every size.
    pub(crate) fn from_block(
        block: &Block,
        mode: BlockStreamMode,
        peer_id: Uuid,
        address: SocketAddr,
    ) -> BlockStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let raw = block.to_vec();
        let len = raw.len() as u64;
        let push = |queued| {
            let _ = tx.send(Item {
                queued,
                permits: None,
            });
        };
        let mut parts = Vec::with_capacity(block.transactions.len() + 1);
        if mode == BlockStreamMode::Raw {
            parts.push(BlockPart::Bytes(Bytes::from(raw)));
        }
        let mut offset = 80 + var_int_len(block.transactions.len() as u64);
        for (index, t) in block.transactions.iter().enumerate() {
            let length = t.encoded_len() as u64;
            let txid = t.txid();
            let index = index as u64;
            parts.push(match mode {
                BlockStreamMode::Transactions => BlockPart::Transaction {
                    index,
                    offset,
                    txid,
                    tx: t.clone(),
                },
                _ => BlockPart::TxId {
                    index,
                    txid,
                    offset,
                    length,
                },
            });
            offset += length;
        }
        push(Queued::Parts(parts));
        let root = block.compute_merkle_root();
        push(Queued::End(BlockEnd {
            checksum: ChecksumStatus::NotApplicable,
            header_merkle_root: block.header.merkle_root,
            computed_merkle_root: root,
            tx_count: block.transactions.len() as u64,
            length: len,
        }));
        BlockStream {
            info: StreamInfo {
                hash: block.hash(),
                header: block.header,
                peer_id,
                address,
                len,
            },
            mode,
            rx,
            batch: Vec::new().into_iter(),
            held: None,
            end: None,
            finished: false,
            transactions: 0,
            bytes: 0,
        }
    }
}

/// Whether a complete payload is a good block: checksum (basic frames), then merkle root.
pub(crate) fn verdict(end: &BlockEnd) -> Result<(), BlockStreamFailure> {
    if let ChecksumStatus::Mismatched { expected, actual } = end.checksum {
        return Err(BlockStreamFailure::ChecksumMismatch { expected, actual });
    }
    if !end.merkle_matches() {
        return Err(BlockStreamFailure::MerkleMismatch {
            expected: end.header_merkle_root,
            computed: end.computed_merkle_root,
        });
    }
    Ok(())
}

/// What a queued part costs against the window and the budget: its bytes plus its slot in the
/// batch that carries it, so the window bounds the count of queued parts as well as their bytes.
pub(crate) fn cost(part: &BlockPart, tx_len: u64) -> usize {
    let entry = std::mem::size_of::<BlockPart>();
    match part {
        BlockPart::Bytes(b) => b.len().saturating_add(entry),
        BlockPart::Transaction { .. } => usize::try_from(tx_len)
            .unwrap_or(usize::MAX)
            .saturating_add(entry),
        BlockPart::TxId { .. } => entry,
    }
}

/// The size of a var int encoding `n`.
fn var_int_len(n: u64) -> u64 {
    match n {
        0..0xFD => 1,
        0xFD..=0xFFFF => 3,
        0x1_0000..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

/// A stream offered by a connection once a streamed block's header is in: the block service
/// gives `stream` to whoever wants it and answers with the mode to decode in, or drops the
/// offer (nobody wants the block: the connection reads and checks it, then carries on).
#[derive(Debug)]
pub(crate) struct StreamOffer {
    pub stream: BlockStream,
    pub reply: tokio::sync::oneshot::Sender<BlockStreamMode>,
}

/// How a streamed block ended, reported by its connection to the block service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamOutcome {
    /// Complete and verified.
    Verified {
        /// Payload length.
        len: u64,
    },
    /// Complete, but not the block (bad merkle root or checksum).
    Failed(BlockStreamFailure),
}
