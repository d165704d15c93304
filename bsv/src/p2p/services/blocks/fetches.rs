//! The state of block fetching: the fetches under way (one per hash, however many callers wait
//! for it), which peer each is asked of, how many blocks each peer has in flight, and the
//! block hashes each peer announced. Driven by the hub (messages, peers going down, ticks) and
//! by `get_block` (new fetches); every method runs under the service's lock and never waits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::debug;
use uuid::Uuid;

use super::stream::{BlockStream, BlockStreamMode, StreamOffer};
use super::{Attempt, AttemptOutcome, BlockFetchConfig, BlockFetchError, FetchedBlock};
use crate::bitcoin::{Block, BlockError, Encode, Hash, InvVect};
use crate::p2p::connection::link::Offence;
use crate::p2p::connection::Misbehavior;
use crate::p2p::limits::{MAX_PENDING_BLOCK_FETCHES, NODE_NETWORK, NODE_NETWORK_LIMITED};
use crate::p2p::metrics::Metrics;
use crate::p2p::services::Peers;
use crate::p2p::Message;

/// What a waiting caller receives.
pub(crate) type FetchResult = Result<FetchedBlock, BlockFetchError>;
/// A caller's end of a fetch.
pub(crate) type Waiter = oneshot::Receiver<FetchResult>;
/// What a caller of `get_block_stream` receives.
pub(crate) type StreamResult = Result<BlockStream, BlockFetchError>;

/// The peer a fetch is currently asking.
#[derive(Debug)]
struct Asked {
    peer_id: Uuid,
    address: SocketAddr,
    sent: Instant,
    /// `block` messages received from the peer when it was asked, if it had no other block
    /// in flight: a `block` counted after that, but never delivered to us, is one that did
    /// not parse (the connection answered it with `reject` 0x01 and dropped it).
    blocks_before: Option<u64>,
}

/// One block being fetched.
#[derive(Debug)]
struct Fetch {
    waiters: Vec<oneshot::Sender<FetchResult>>,
    /// Callers of `get_block_stream`, each with the mode it asked for.
    streams: Vec<(BlockStreamMode, oneshot::Sender<StreamResult>)>,
    tried: Vec<Attempt>,
    asked: Option<Asked>,
    preferred: Option<Uuid>,
    attempt_timeout: Duration,
}

/// Hashes a peer announced, oldest first, bounded.
#[derive(Debug, Default)]
struct Announced {
    order: VecDeque<Hash>,
    set: HashSet<Hash>,
}

/// Every fetch and what we know of the peers.
#[derive(Debug)]
pub(crate) struct Fetches {
    fetches: HashMap<Hash, Fetch>,
    in_flight: HashMap<Uuid, usize>,
    announced: HashMap<Uuid, Announced>,
    max_in_flight: usize,
    announcements_per_peer: usize,
}

impl Fetches {
    /// No fetch under way.
    pub(crate) fn new(config: &BlockFetchConfig) -> Self {
        Fetches {
            fetches: HashMap::new(),
            in_flight: HashMap::new(),
            announced: HashMap::new(),
            max_in_flight: config.max_in_flight_per_peer,
            announcements_per_peer: config.announcements_per_peer,
        }
    }

    /// Adds a caller to the fetch of `hash`, starting it if it is new.
    pub(crate) fn join(
        &mut self,
        hash: Hash,
        waiter: Caller,
        preferred: Option<Uuid>,
        attempt_timeout: Duration,
        _now: Instant,
    ) {
        if let Some(f) = self.fetches.get_mut(&hash) {
            match waiter {
                Caller::Whole(w) => f.waiters.push(w),
                Caller::Stream(mode, w) => f.streams.push((mode, w)),
            }
            return;
        }
        if self.fetches.len() >= MAX_PENDING_BLOCK_FETCHES {
            let err = BlockFetchError::TooManyFetches { hash };
            match waiter {
                Caller::Whole(w) => {
                    let _ = w.send(Err(err));
                }
                Caller::Stream(_, w) => {
                    let _ = w.send(Err(err));
                }
            }
            return;
        }
        let (waiters, streams) = match waiter {
            Caller::Whole(w) => (vec![w], Vec::new()),
            Caller::Stream(mode, w) => (Vec::new(), vec![(mode, w)]),
        };
        self.fetches.insert(
            hash,
            Fetch {
                waiters,
                streams,
                tried: Vec::new(),
                asked: None,
                preferred,
                attempt_timeout,
            },
        );
    }

    /// The attempts of the fetch of `hash` so far, the one under way included (as what it
    /// looks like now: silent so far, or a malformed block received).
    pub(crate) fn tried(&self, hash: &Hash, peers: &Peers, now: Instant) -> Vec<Attempt> {
        let Some(f) = self.fetches.get(hash) else {
            return Vec::new();
        };
        let mut tried = f.tried.clone();
        if let Some(a) = &f.asked {
            let outcome = match a.blocks_before {
                Some(n) if blocks_received(peers, a.peer_id) > n => AttemptOutcome::Malformed,
                _ => AttemptOutcome::Silent {
                    after: now.duration_since(a.sent),
                },
            };
            tried.push(Attempt {
                peer_id: a.peer_id,
                address: a.address,
                outcome,
            });
        }
        tried
    }

    /// `peer_id` announced `hashes`: remember them, and ask it for any that a fetch waits for.
    pub(crate) fn announced(
        &mut self,
        peer_id: Uuid,
        hashes: impl Iterator<Item = Hash>,
        peers: &Peers,
        metrics: &Metrics,
        now: Instant,
    ) {
        let cap = self.announcements_per_peer;
        let a = self.announced.entry(peer_id).or_default();
        let mut any = false;
        for h in hashes {
            if a.set.insert(h) {
                a.order.push_back(h);
                any = true;
            }
            while a.order.len() > cap {
                if let Some(old) = a.order.pop_front() {
                    a.set.remove(&old);
                }
            }
        }
        if any {
            self.pump(peers, metrics, now);
        }
    }

    /// A `block` arrived from `peer_id`: completes the fetch asking it, or moves it on.
    pub(crate) fn on_block(
        &mut self,
        peer_id: Uuid,
        block: &Block,
        peers: &Peers,
        metrics: &Metrics,
        now: Instant,
    ) {
        let hash = block.hash();
        let Some(fetch) = self.fetches.get_mut(&hash) else {
            return; // Not asked for (e.g. a late answer after a timeout): ignored.
        };
        let Some(asked) = fetch.asked.take_if(|a| a.peer_id == peer_id) else {
            return;
        };
        release(&mut self.in_flight, peer_id);
        // The header hash is the hash asked for (we looked the fetch up by it); what remains
        // is that the transactions are the header's (`CheckBlock`, `src/validation.cpp`).
        match block.check_merkle_root() {
            Ok(()) => {
                let Some(fetch) = self.fetches.remove(&hash) else {
                    return;
                };
                metrics.block_fetched(block.encoded_len());
                let fetched = FetchedBlock {
                    block: Arc::new(block.clone()),
                    peer_id,
                    address: asked.address,
                    failed_attempts: fetch.tried,
                };
                for w in fetch.waiters {
                    let _ = w.send(Ok(fetched.clone()));
                }
                for (mode, w) in fetch.streams {
                    let stream = BlockStream::from_block(block, mode, peer_id, asked.address);
                    let _ = w.send(Ok(stream));
                }
                // A slot freed at this peer.
                self.pump(peers, metrics, now);
            }
            Err(e) => {
                let outcome = match e {
                    BlockError::MerkleMismatch { expected, computed } => {
                        AttemptOutcome::MerkleMismatch { expected, computed }
                    }
                    // An empty block has no merkle root to match.
                    _ => AttemptOutcome::MerkleMismatch {
                        expected: block.header.merkle_root,
                        computed: block.compute_merkle_root(),
                    },
                };
                peers.penalize(peer_id, Offence::Rule(Misbehavior::BadTxnMerkleRoot));
                self.failed(hash, asked, outcome, metrics);
                self.pump(peers, metrics, now);
            }
        }
    }

    /// `peer_id` started streaming a block: if a fetch asked it for that block, the stream
    /// answers the fetch (the offer is consumed); otherwise the offer is given back.
    pub(crate) fn on_stream_offer(
        &mut self,
        peer_id: Uuid,
        offer: StreamOffer,
        peers: &Peers,
        metrics: &Metrics,
        now: Instant,
    ) -> Option<StreamOffer> {
        let hash = offer.stream.hash();
        let asked_it = self
            .fetches
            .get(&hash)
            .and_then(|f| f.asked.as_ref())
            .is_some_and(|a| a.peer_id == peer_id);
        if !asked_it {
            return Some(offer);
        }
        let fetch = self.fetches.remove(&hash)?;
        release(&mut self.in_flight, peer_id);
        let StreamOffer { mut stream, reply } = offer;
        let mut streams = fetch.streams.into_iter();
        if let Some((mode, w)) = streams.next() {
            stream.set_mode(mode);
            let _ = reply.send(mode);
            let _ = w.send(Ok(stream));
            let err = BlockFetchError::StreamedElsewhere { hash };
            for w in fetch.waiters {
                let _ = w.send(Err(err.clone()));
            }
            for (_, w) in streams {
                let _ = w.send(Err(err.clone()));
            }
        } else {
            // `get_block` callers asked for the whole block: collect it from the stream.
            stream.set_mode(BlockStreamMode::Transactions);
            let _ = reply.send(BlockStreamMode::Transactions);
            let waiters = fetch.waiters;
            let tried = fetch.tried;
            tokio::spawn(async move {
                let peer_id = stream.peer_id();
                let address = stream.address();
                let result = match stream.into_block().await {
                    Ok(block) => Ok(FetchedBlock {
                        block: Arc::new(block),
                        peer_id,
                        address,
                        failed_attempts: tried,
                    }),
                    Err(failure) => Err(BlockFetchError::StreamFailed {
                        hash,
                        peer_id,
                        address,
                        failure: Box::new(failure),
                    }),
                };
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            });
        }
        self.pump(peers, metrics, now);
        None
    }

    /// `peer_id` answered `notfound` for `hash`.
    pub(crate) fn on_notfound(
        &mut self,
        peer_id: Uuid,
        hash: &Hash,
        peers: &Peers,
        metrics: &Metrics,
        now: Instant,
    ) {
        let Some(asked) = self
            .fetches
            .get_mut(hash)
            .and_then(|f| f.asked.take_if(|a| a.peer_id == peer_id))
        else {
            return;
        };
        release(&mut self.in_flight, peer_id);
        self.failed(*hash, asked, AttemptOutcome::NotFound, metrics);
        self.pump(peers, metrics, now);
    }

    /// `peer_id` answered a `getdata` with `reject` 0x44: it sends that instead of the block,
    /// and serves blocks in request order (§3.4), so the oldest request to it is the one
    /// refused.
    pub(crate) fn on_too_busy(
        &mut self,
        peer_id: Uuid,
        peers: &Peers,
        metrics: &Metrics,
        now: Instant,
    ) {
        let oldest = self
            .fetches
            .iter()
            .filter_map(|(h, f)| f.asked.as_ref().map(|a| (h, a)))
            .filter(|(_, a)| a.peer_id == peer_id)
            .min_by_key(|(_, a)| a.sent)
            .map(|(h, _)| *h);
        let Some(hash) = oldest else { return };
        let Some(asked) = self.fetches.get_mut(&hash).and_then(|f| f.asked.take()) else {
            return;
        };
        release(&mut self.in_flight, peer_id);
        self.failed(hash, asked, AttemptOutcome::TooBusy, metrics);
        self.pump(peers, metrics, now);
    }

    /// `peer_id`'s connection ended: its requests move on.
    pub(crate) fn on_peer_down(
        &mut self,
        peer_id: Uuid,
        peers: &Peers,
        metrics: &Metrics,
        now: Instant,
    ) {
        self.announced.remove(&peer_id);
        self.in_flight.remove(&peer_id);
        let hashes: Vec<Hash> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.asked.as_ref().is_some_and(|a| a.peer_id == peer_id))
            .map(|(h, _)| *h)
            .collect();
        for hash in hashes {
            if let Some(asked) = self.fetches.get_mut(&hash).and_then(|f| f.asked.take()) {
                self.failed(hash, asked, AttemptOutcome::Disconnected, metrics);
            }
        }
        self.pump(peers, metrics, now);
    }

    /// Attempts past their timeout move on; fetches nobody waits for any more end.
    pub(crate) fn on_tick(&mut self, peers: &Peers, metrics: &Metrics, now: Instant) {
        self.fetches.retain(|_, f| {
            f.waiters.retain(|w| !w.is_closed());
            f.streams.retain(|(_, w)| !w.is_closed());
            if f.waiters.is_empty() && f.streams.is_empty() {
                if let Some(a) = &f.asked {
                    release(&mut self.in_flight, a.peer_id);
                }
                return false;
            }
            true
        });
        let late: Vec<Hash> = self
            .fetches
            .iter()
            .filter(|(_, f)| {
                f.asked
                    .as_ref()
                    .is_some_and(|a| now.duration_since(a.sent) >= f.attempt_timeout)
            })
            .map(|(h, _)| *h)
            .collect();
        for hash in late {
            if let Some(f) = self.fetches.get_mut(&hash) {
                let after = f.attempt_timeout;
                if let Some(asked) = f.asked.take() {
                    release(&mut self.in_flight, asked.peer_id);
                    let outcome = match asked.blocks_before {
                        Some(n) if blocks_received(peers, asked.peer_id) > n => {
                            AttemptOutcome::Malformed
                        }
                        _ => AttemptOutcome::Silent { after },
                    };
                    self.failed(hash, asked, outcome, metrics);
                }
            }
        }
        self.pump(peers, metrics, now);
    }

    /// Records a failed attempt.
    fn failed(&mut self, hash: Hash, asked: Asked, outcome: AttemptOutcome, metrics: &Metrics) {
        debug!(%hash, peer = %asked.address, %outcome, "block fetch attempt failed");
        metrics.block_fetch_failed(outcome.kind());
        if let Some(f) = self.fetches.get_mut(&hash) {
            f.tried.push(Attempt {
                peer_id: asked.peer_id,
                address: asked.address,
                outcome,
            });
        }
    }

    /// Asks a peer for every fetch not asking one; ends the fetches no peer is left to ask.
    pub(crate) fn pump(&mut self, peers: &Peers, metrics: &Metrics, now: Instant) {
        let idle: Vec<Hash> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.asked.is_none())
            .map(|(h, _)| *h)
            .collect();
        if idle.is_empty() {
            return;
        }
        let connected: Vec<(Uuid, SocketAddr)> = peers
            .connected()
            .into_iter()
            .filter(|p| p.details.services & (NODE_NETWORK | NODE_NETWORK_LIMITED) != 0)
            .map(|p| (p.peer_id, p.address))
            .collect();
        for hash in idle {
            loop {
                match self.choose(&hash, &connected) {
                    Choice::Ask(peer_id, address) => {
                        let getdata = Message::GetData(vec![InvVect::block(hash)]);
                        let alone = !self.in_flight.contains_key(&peer_id);
                        let asked = Asked {
                            peer_id,
                            address,
                            sent: now,
                            blocks_before: alone.then(|| blocks_received(peers, peer_id)),
                        };
                        if peers.try_send(peer_id, &getdata) {
                            *self.in_flight.entry(peer_id).or_default() += 1;
                            if let Some(f) = self.fetches.get_mut(&hash) {
                                f.asked = Some(asked);
                            }
                            break;
                        }
                        self.failed(hash, asked, AttemptOutcome::NotSent, metrics);
                    }
                    Choice::Wait => break,
                    Choice::GiveUp => {
                        if let Some(mut f) = self.fetches.remove(&hash) {
                            let err = BlockFetchError::BlockNotFound {
                                hash,
                                tried: std::mem::take(&mut f.tried),
                            };
                            f.fail(err);
                        }
                        break;
                    }
                }
            }
        }
    }

    /// The next peer to ask for `hash`.
    fn choose(&self, hash: &Hash, connected: &[(Uuid, SocketAddr)]) -> Choice {
        let Some(f) = self.fetches.get(hash) else {
            return Choice::Wait;
        };
        let untried: Vec<&(Uuid, SocketAddr)> = connected
            .iter()
            .filter(|(id, _)| !f.tried.iter().any(|a| a.peer_id == *id))
            .collect();
        if untried.is_empty() {
            // Nobody left: give up once someone was asked; with no peer yet, wait for one.
            return if f.tried.is_empty() {
                Choice::Wait
            } else {
                Choice::GiveUp
            };
        }
        let free = |id: &Uuid| self.in_flight.get(id).copied().unwrap_or(0) < self.max_in_flight;
        let has = |id: &Uuid| self.announced.get(id).is_some_and(|a| a.set.contains(hash));
        let rank = |id: &Uuid| {
            if Some(*id) == f.preferred {
                0
            } else if has(id) {
                1
            } else {
                2
            }
        };
        untried
            .iter()
            .filter(|(id, _)| free(id))
            .min_by_key(|(id, _)| rank(id))
            .map_or(Choice::Wait, |(id, a)| Choice::Ask(*id, *a))
    }
}

impl Fetch {
    /// Ends the fetch with `err` for every caller.
    fn fail(self, err: BlockFetchError) {
        for w in self.waiters {
            let _ = w.send(Err(err.clone()));
        }
        for (_, w) in self.streams {
            let _ = w.send(Err(err.clone()));
        }
    }
}

/// A caller joining a fetch.
#[derive(Debug)]
pub(crate) enum Caller {
    /// `get_block`: the whole block.
    Whole(oneshot::Sender<FetchResult>),
    /// `get_block_stream`: a stream in this mode.
    Stream(BlockStreamMode, oneshot::Sender<StreamResult>),
}

/// What to do with an idle fetch.
enum Choice {
    Ask(Uuid, SocketAddr),
    /// Every untried peer is busy (or none is connected yet).
    Wait,
    /// Every peer was asked.
    GiveUp,
}

/// `block` messages received from `peer_id` so far (parsed or not).
fn blocks_received(peers: &Peers, peer_id: Uuid) -> u64 {
    peers
        .link(peer_id)
        .and_then(|l| {
            l.stats()
                .snapshot()
                .received
                .get("block")
                .map(|c| c.messages)
        })
        .unwrap_or(0)
}

fn release(in_flight: &mut HashMap<Uuid, usize>, peer_id: Uuid) {
    if let Some(n) = in_flight.get_mut(&peer_id) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            in_flight.remove(&peer_id);
        }
    }
}
