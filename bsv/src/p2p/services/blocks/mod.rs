//! Block fetching (`Manager::get_block`): asks a peer that has the block, moves on to the next
//! peer when one stays silent, answers `notfound` or is too busy, verifies what arrives, and
//! shares one fetch between concurrent callers of the same hash.
//!
//! The node sends nothing for a block it does not have (`ProcessGetData`,
//! `src/net/net_processing.cpp`; docs/PROTOCOL.md §3.4), so each attempt has a timeout. Peers
//! are asked in this order: the caller's preferred peer, peers that announced the hash (by
//! `inv` or `headers`, remembered per peer up to `ANNOUNCED_BLOCKS_PER_PEER`), then every other
//! peer that serves blocks (`NODE_NETWORK`); at most `MAX_BLOCKS_IN_TRANSIT_PER_PEER` blocks are
//! requested from one peer at once, as the node limits itself. A block whose transactions do not
//! hash to its merkle root costs the peer 100, as `CheckBlock` charges `bad-txnmrklroot`, and
//! the next peer is asked.

mod error;
mod fetches;
pub(crate) mod stream;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

pub use error::{Attempt, AttemptOutcome, BlockFetchError};
pub use stream::{
    BlockPart, BlockStream, BlockStreamFailure, BlockStreamMode, BlockStreamingConfig,
};

use super::{PeerView, Peers, Service};
use crate::bitcoin::{Block, Hash};
use crate::p2p::config::ManagerConfig;
use crate::p2p::error::Result;
use crate::p2p::limits::{
    ANNOUNCED_BLOCKS_PER_PEER, BLOCK_ATTEMPT_TIMEOUT, BLOCK_FETCH_TIMEOUT,
    MAX_BLOCKS_IN_TRANSIT_PER_PEER,
};
use crate::p2p::metrics::Metrics;
use crate::p2p::{Manager, Message};
use fetches::{Caller, Fetches, Waiter};
use stream::{StreamOffer, StreamOutcome};

/// Settings of block fetching (`[block_fetch]` in a configuration file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockFetchConfig {
    /// How long one peer has to deliver a requested block before the next peer is asked.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// How long `get_block` waits in all, over every attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Blocks requested from one peer at once (the node's `MAX_BLOCKS_IN_TRANSIT_PER_PEER`).
    pub max_in_flight_per_peer: usize,
    /// Block hashes remembered per peer from its announcements.
    pub announcements_per_peer: usize,
}

impl Default for BlockFetchConfig {
    fn default() -> Self {
        BlockFetchConfig {
            attempt_timeout: BLOCK_ATTEMPT_TIMEOUT,
            timeout: BLOCK_FETCH_TIMEOUT,
            max_in_flight_per_peer: MAX_BLOCKS_IN_TRANSIT_PER_PEER,
            announcements_per_peer: ANNOUNCED_BLOCKS_PER_PEER,
        }
    }
}

impl BlockFetchConfig {
    /// Checks the settings.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if self.attempt_timeout.is_zero() {
            return Err("block_fetch.attempt_timeout must be above zero".into());
        }
        if self.timeout.is_zero() {
            return Err("block_fetch.timeout must be above zero".into());
        }
        if self.max_in_flight_per_peer == 0 {
            return Err("block_fetch.max_in_flight_per_peer must be at least 1".into());
        }
        if self.announcements_per_peer == 0 {
            return Err("block_fetch.announcements_per_peer must be at least 1".into());
        }
        Ok(())
    }
}

/// Options of one [`Manager::get_block_with`] call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockFetchOptions {
    /// The overall timeout (default: `block_fetch.timeout`).
    pub timeout: Option<Duration>,
    /// Each peer's timeout (default: `block_fetch.attempt_timeout`).
    pub attempt_timeout: Option<Duration>,
    /// A peer to ask first, by connection id.
    pub preferred_peer: Option<Uuid>,
}

/// A fetched, verified block and how it was obtained.
#[derive(Debug, Clone)]
pub struct FetchedBlock {
    /// The block (shared by every caller that asked for it at the same time).
    pub block: Arc<Block>,
    /// The peer that delivered it.
    pub peer_id: Uuid,
    /// Its address.
    pub address: SocketAddr,
    /// The peers asked before it and what each did.
    pub failed_attempts: Vec<Attempt>,
}

/// The service behind the manager's block fetching.
#[derive(Debug)]
pub(crate) struct BlockService {
    peers: Peers,
    config: BlockFetchConfig,
    metrics: Metrics,
    state: Mutex<Fetches>,
    /// `subscribe_block_streams` subscribers, in subscription order.
    subscribers: Mutex<Vec<(BlockStreamMode, tokio::sync::mpsc::Sender<BlockStream>)>>,
}

impl BlockService {
    /// The service for a manager configured by `config`.
    pub(crate) fn new(config: &ManagerConfig, peers: Peers) -> Self {
        BlockService {
            peers,
            config: config.block_fetch.clone(),
            metrics: Metrics::from_global(),
            state: Mutex::new(Fetches::new(&config.block_fetch)),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut Fetches) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    /// Starts (or joins) the fetch of `hash`; the receiver gets its end.
    ///
    /// The request path hands the caller a [`Waiter`] that resolves to a whole block. When
    /// big blocks are streamed (issue: big blocks), the waiter is where a stream of the block's
    /// parts would be delivered instead: the peer selection, attempts and verification stay.
    fn start(&self, hash: Hash, options: &BlockFetchOptions) -> Waiter {
        let (tx, rx) = oneshot::channel();
        self.join(hash, Caller::Whole(tx), options);
        rx
    }

    fn join(&self, hash: Hash, caller: Caller, options: &BlockFetchOptions) {
        let attempt_timeout = options
            .attempt_timeout
            .unwrap_or(self.config.attempt_timeout);
        let now = Instant::now();
        self.with_state(|s| {
            s.join(hash, caller, options.preferred_peer, attempt_timeout, now);
            s.pump(&self.peers, &self.metrics, now);
        });
    }

    /// Fetches `hash` as a stream (see [`Manager::get_block_stream_with`]).
    pub(crate) async fn fetch_stream(
        &self,
        hash: Hash,
        mode: BlockStreamMode,
        options: BlockFetchOptions,
    ) -> std::result::Result<BlockStream, BlockFetchError> {
        let (tx, rx) = oneshot::channel();
        self.join(hash, Caller::Stream(mode, tx), &options);
        self.wait(hash, &options, rx).await
    }

    /// Waits for the end of a fetch within the caller's overall timeout.
    async fn wait<T>(
        &self,
        hash: Hash,
        options: &BlockFetchOptions,
        rx: oneshot::Receiver<std::result::Result<T, BlockFetchError>>,
    ) -> std::result::Result<T, BlockFetchError> {
        let timeout = options.timeout.unwrap_or(self.config.timeout);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(BlockFetchError::Stopped { hash }),
            Err(_) => Err(BlockFetchError::Timeout {
                hash,
                after: timeout,
                tried: self.with_state(|s| s.tried(&hash, &self.peers, Instant::now())),
            }),
        }
    }

    /// A new subscriber to the streamed blocks nobody asked for.
    pub(crate) fn subscribe(
        &self,
        mode: BlockStreamMode,
        capacity: usize,
    ) -> tokio::sync::mpsc::Receiver<BlockStream> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push((mode, tx));
        }
        rx
    }

    /// Fetches `hash` with `options` (see [`Manager::get_block_with`]).
    pub(crate) async fn fetch(
        &self,
        hash: Hash,
        options: BlockFetchOptions,
    ) -> std::result::Result<FetchedBlock, BlockFetchError> {
        let rx = self.start(hash, &options);
        self.wait(hash, &options, rx).await
    }
}

impl Service for BlockService {
    fn on_peer_up(&self, _peers: &Peers, _peer: &PeerView) {
        // A new peer may be the one a waiting fetch needs.
        self.with_state(|s| s.pump(&self.peers, &self.metrics, Instant::now()));
    }

    fn on_message(&self, peers: &Peers, peer_id: Uuid, message: &Message) {
        let now = Instant::now();
        self.with_state(|s| match message {
            Message::Inv(items) => s.announced(
                peer_id,
                items
                    .iter()
                    .filter(|i| i.inv_type == crate::bitcoin::InvType::Block)
                    .map(|i| i.hash),
                peers,
                &self.metrics,
                now,
            ),
            Message::Headers(headers) => s.announced(
                peer_id,
                headers.iter().map(|h| h.hash()),
                peers,
                &self.metrics,
                now,
            ),
            Message::Block(block) => s.on_block(peer_id, block, peers, &self.metrics, now),
            Message::NotFound(items) => {
                for i in items
                    .iter()
                    .filter(|i| i.inv_type == crate::bitcoin::InvType::Block)
                {
                    s.on_notfound(peer_id, &i.hash, peers, &self.metrics, now);
                }
            }
            Message::Reject(r)
                if r.message == "getdata" && r.code == crate::p2p::RejectCode::TooBusy =>
            {
                s.on_too_busy(peer_id, peers, &self.metrics, now)
            }
            _ => {}
        });
    }

    fn on_block_stream(
        &self,
        peers: &Peers,
        peer_id: Uuid,
        offer: StreamOffer,
    ) -> Option<StreamOffer> {
        let offer = self.with_state(|s| {
            s.on_stream_offer(peer_id, offer, peers, &self.metrics, Instant::now())
        })?;
        // Nobody fetched it: the first subscriber with room takes it.
        let StreamOffer { mut stream, reply } = offer;
        let Ok(mut subs) = self.subscribers.lock() else {
            return None;
        };
        subs.retain(|(_, tx)| !tx.is_closed());
        for (mode, tx) in subs.iter() {
            stream.set_mode(*mode);
            match tx.try_send(stream) {
                Ok(()) => {
                    let _ = reply.send(*mode);
                    return None;
                }
                Err(tokio::sync::mpsc::error::TrySendError::Full(s))
                | Err(tokio::sync::mpsc::error::TrySendError::Closed(s)) => stream = s,
            }
        }
        tracing::debug!(hash = %stream.hash(), %peer_id, "streamed block nobody asked for: checked and dropped");
        None
    }

    fn on_block_stream_end(
        &self,
        peers: &Peers,
        peer_id: Uuid,
        hash: &Hash,
        outcome: &StreamOutcome,
    ) {
        match outcome {
            StreamOutcome::Verified { len } => self.metrics.block_fetched(*len as usize),
            // As for a whole block (`CheckBlock`, `bad-txnmrklroot`): the peer pays 100.
            StreamOutcome::Failed(BlockStreamFailure::MerkleMismatch { expected, computed }) => {
                tracing::debug!(%hash, %peer_id, %expected, %computed, "streamed block is corrupt");
                peers.penalize(
                    peer_id,
                    crate::p2p::connection::link::Offence::Rule(
                        crate::p2p::connection::Misbehavior::BadTxnMerkleRoot,
                    ),
                );
            }
            StreamOutcome::Failed(_) => {}
        }
    }

    fn on_peer_down(&self, peers: &Peers, peer_id: Uuid) {
        self.with_state(|s| s.on_peer_down(peer_id, peers, &self.metrics, Instant::now()));
    }

    fn on_tick(&self, peers: &Peers, now: Instant) {
        self.with_state(|s| s.on_tick(peers, &self.metrics, now));
    }
}

impl Manager {
    /// Fetches the block `hash` from a peer that has it, verified (its hash and merkle root),
    /// with the configured timeouts (`[block_fetch]`). Moves to the next peer when one stays
    /// silent, answers `notfound` or `reject` 0x44, or sends a corrupt block; concurrent calls
    /// for the same hash share one fetch. See [`Manager::get_block_with`].
    pub async fn get_block(&self, hash: Hash) -> Result<Block> {
        let fetched = self
            .get_block_with(hash, BlockFetchOptions::default())
            .await?;
        Ok(Arc::try_unwrap(fetched.block).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// [`Manager::get_block`] with `options` (overall and per-peer timeouts, a preferred
    /// peer); also says which peer delivered the block and what the peers asked before it did.
    pub async fn get_block_with(
        &self,
        hash: Hash,
        options: BlockFetchOptions,
    ) -> Result<FetchedBlock> {
        Ok(self.services().blocks.fetch(hash, options).await?)
    }

    /// Fetches the block `hash` as a [`BlockStream`] in `mode`, in memory bounded by
    /// `[block_streaming]` whatever its size: the stream is returned as soon as the peer starts
    /// sending, and verifies the block as it passes. Peers are chosen and retried as for
    /// [`Manager::get_block`] until one starts sending; a failure after that ends the stream
    /// (call again to try another peer). Works for blocks of any size (a small block is
    /// streamed from memory).
    pub async fn get_block_stream(&self, hash: Hash, mode: BlockStreamMode) -> Result<BlockStream> {
        self.get_block_stream_with(hash, mode, BlockFetchOptions::default())
            .await
    }

    /// [`Manager::get_block_stream`] with `options`.
    pub async fn get_block_stream_with(
        &self,
        hash: Hash,
        mode: BlockStreamMode,
        options: BlockFetchOptions,
    ) -> Result<BlockStream> {
        Ok(self
            .services()
            .blocks
            .fetch_stream(hash, mode, options)
            .await?)
    }

    /// Streams of the large blocks (above `block_streaming.threshold`) that arrive without a
    /// `get_block`/`get_block_stream` asking for them (a peer pushing its new block, or a
    /// `getdata` the application sent itself), in `mode`. Each stream goes to one subscriber:
    /// the first, in subscription order, with room among its `capacity` pending streams; with
    /// none, the connection checks the block and drops it. Smaller blocks arrive as
    /// `Message::Block` on the message channels, as ever.
    pub fn subscribe_block_streams(
        &self,
        mode: BlockStreamMode,
        capacity: usize,
    ) -> tokio::sync::mpsc::Receiver<BlockStream> {
        self.services().blocks.subscribe(mode, capacity)
    }
}
