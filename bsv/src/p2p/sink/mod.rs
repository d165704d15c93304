//! A bus-neutral sink for what the manager's services see, and the pump that feeds one.
//!
//! A fleet of listeners feeds indexers and broadcasters through a message bus (ARC runs on
//! NATS). This module knows nothing of any bus: it defines the records a listener publishes
//! ([`BusRecord`]: new tips, reorganisations, blocks, transactions, control events), the trait a
//! bus implements ([`BusSink`]), and the [`Pump`] that follows a [`Manager`](crate::p2p::Manager)'s
//! services and publishes into a sink. The NATS JetStream implementation lives in its own crate
//! (`bitcoinsv-nats`), so this library gains no dependency.
//!
//! Every record that several listeners may see carries a deduplication id
//! ([`BusRecord::dedup_id`]): the block hash for a block, the txid for a transaction. A bus that
//! deduplicates by id (JetStream's `Nats-Msg-Id`) then stores each block and transaction once
//! however many listeners publish it. A retried publish carries the same id, so retrying is safe.
//!
//! The pump is lossless for what it takes in: it waits for each publish to be acknowledged, and
//! while the bus is slow or unreachable it buffers within a byte budget
//! ([`PumpOptions::buffer_bytes`]), then stops reading the transaction stream, whose own
//! back-pressure then stops requesting transactions from peers (`Manager::subscribe_transactions`):
//! peers are slowed, nothing is dropped. docs/FLEET.md describes a deployment.

mod pump;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncRead;
use uuid::Uuid;

use crate::bitcoin::Hash;

pub use pump::{Pump, PumpOptions, SinkStats};

/// A block too large to hold in memory whole: anything that can produce its serialized bytes,
/// as many times as asked (a failed upload is retried from the start).
///
/// The big-blocks stream (issue 12) and the simnet's `SyntheticBlock` fit here; a sink uploads
/// the body in chunks (the NATS sink to a JetStream Object Store) without holding it.
pub trait BlockSource: Send + Sync + fmt::Debug {
    /// The block's hash.
    fn hash(&self) -> Hash;
    /// The serialized block's length in bytes.
    fn len(&self) -> u64;
    /// Whether the block has no bytes (never, for a real block).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A fresh reader of the serialized block, from its first byte.
    fn open(&self) -> Pin<Box<dyn AsyncRead + Send + '_>>;
}

/// A block's body: whole in memory, or a source to stream it from.
#[derive(Clone, Debug)]
pub enum BlockPayload {
    /// The serialized block.
    Whole(Bytes),
    /// A block read from a source as it is published.
    Stream(Arc<dyn BlockSource>),
}

impl BlockPayload {
    /// The serialized block's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            BlockPayload::Whole(b) => b.len() as u64,
            BlockPayload::Stream(s) => s.len(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One thing to publish.
#[derive(Clone, Debug)]
pub enum BusRecord {
    /// The best chain has a new tip.
    Tip {
        /// Its height.
        height: u32,
        /// Its hash.
        hash: Hash,
    },
    /// Another branch took over (followed by a [`BusRecord::Tip`] of `new_tip`).
    Reorg {
        /// The tip before.
        old_tip: Hash,
        /// The tip after.
        new_tip: Hash,
        /// The height of the last block both branches share.
        fork_height: u32,
        /// How many blocks left the best chain.
        depth: u32,
    },
    /// A block of the best chain.
    Block {
        /// Its hash.
        hash: Hash,
        /// Its height on the best chain when it was fetched.
        height: u32,
        /// Its body.
        payload: BlockPayload,
    },
    /// A transaction from the transaction stream.
    Tx {
        /// Its id.
        txid: Hash,
        /// The connection that delivered it.
        peer_id: Option<Uuid>,
        /// The serialized transaction.
        raw: Bytes,
    },
    /// A control event of this listener (connections, bans, configuration).
    Event {
        /// The event's kind in snake case, e.g. `connection_lost`.
        kind: String,
        /// What happened, printable (peer-supplied text escaped).
        detail: String,
    },
}

/// The kind of a record: the last part of its subject on a bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// [`BusRecord::Tip`].
    Tip,
    /// [`BusRecord::Reorg`].
    Reorg,
    /// [`BusRecord::Block`].
    Block,
    /// [`BusRecord::Tx`].
    Tx,
    /// [`BusRecord::Event`].
    Event,
}

impl BusRecord {
    /// The record's topic.
    pub fn topic(&self) -> Topic {
        match self {
            BusRecord::Tip { .. } => Topic::Tip,
            BusRecord::Reorg { .. } => Topic::Reorg,
            BusRecord::Block { .. } => Topic::Block,
            BusRecord::Tx { .. } => Topic::Tx,
            BusRecord::Event { .. } => Topic::Event,
        }
    }

    /// The id under which a bus stores the record once, whoever publishes it: the block hash,
    /// the txid, `tip.<hash>` and `reorg.<old>.<new>` (prefixed so they never collide with the
    /// block's own id in one deduplication window). Control events are this listener's own and
    /// have none.
    pub fn dedup_id(&self) -> Option<String> {
        match self {
            BusRecord::Tip { hash, .. } => Some(format!("tip.{hash}")),
            BusRecord::Reorg {
                old_tip, new_tip, ..
            } => Some(format!("reorg.{old_tip}.{new_tip}")),
            BusRecord::Block { hash, .. } => Some(hash.to_string()),
            BusRecord::Tx { txid, .. } => Some(txid.to_string()),
            BusRecord::Event { .. } => None,
        }
    }

    /// The bytes the record holds in memory while buffered (a streamed block holds none of
    /// its body).
    pub fn buffered_bytes(&self) -> usize {
        // A fixed allowance for the record itself, so empty records still count.
        const OVERHEAD: usize = 128;
        OVERHEAD
            + match self {
                BusRecord::Block {
                    payload: BlockPayload::Whole(b),
                    ..
                } => b.len(),
                BusRecord::Tx { raw, .. } => raw.len(),
                BusRecord::Event { kind, detail } => kind.len() + detail.len(),
                _ => 0,
            }
    }
}

/// A publish the bus acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// The bus already held a record with the same id (another listener, or an earlier try,
    /// published it): stored once, not again.
    pub duplicate: bool,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The bus cannot be reached or did not acknowledge in time; the same record may be
    /// published again (its id makes a repeat harmless).
    #[error("bus unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// The bus refused the record; publishing it again would fail the same way.
    #[error("bus refused record {id}: {reason}")]
    Refused {
        /// The record's id (or its topic when it has none).
        id: String,
        /// What the bus said.
        reason: String,
    },
}

impl SinkError {
    /// Whether publishing the record again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Unavailable { .. })
    }
}

/// A message bus a [`Pump`] publishes into.
///
/// `publish` returns once the bus has acknowledged the record (stored it durably, for a bus
/// that stores); the pump calls it concurrently, up to [`PumpOptions::max_in_flight`] at once.
#[async_trait]
pub trait BusSink: Send + Sync {
    /// Publishes `record` and waits for the acknowledgement.
    async fn publish(&self, record: BusRecord) -> Result<Ack, SinkError>;
}
