//! The header chain: the best chain of headers the connected peers know
//! (`Manager::header_chain`), kept by a service the hub feeds (docs/PROTOCOL.md §3.4–§3.6).
//!
//! * [`index`]: every header on every branch with height and cumulative work; the tip is the
//!   most work, first seen on ties; linkage and proof of work are checked, difficulty
//!   retargeting is not.
//! * The sync driver (here): one sync peer at a time gets `getheaders` with our locator; a
//!   reply of exactly 2000 headers is followed by another `getheaders` from its last header; a
//!   reply of fewer ends the round. A sync peer silent for `sync_timeout` is set aside and
//!   another asked. A peer that comes up with a start height above our tip (or any peer before
//!   the first round) starts a round. `headers` announcements are applied directly; an `inv`
//!   of an unknown block gets `getheaders(locator, stop = that block)` to its sender, as the
//!   node does (`ProcessInvMessage`).
//! * Scoring as the node scores (`ProcessHeadersMessage`, `src/net/net_processing.cpp`;
//!   `CheckBlockHeader`/`AcceptBlockHeader`, `src/validation.cpp`): a header failing proof of
//!   work is `high-hash` (+50); an announcement of at most 8 headers whose first does not
//!   connect gets `getheaders` and counts as unconnecting (every 10th +20, in the connection's
//!   `PeerProtocol`); a longer batch that does not connect is `prev-blk-not-found` (+10). More
//!   than 2000 headers and non-continuous batches are scored by `PeerProtocol` before they
//!   reach us.
//! * [`store`]: the optional header file, appended as headers are accepted, re-validated on
//!   load.
//!
//! Until the chain is activated (first `Manager::header_chain`, or `enabled` at start) it only
//! notes the peers' start heights.

mod config;
mod handle;
pub(crate) mod index;
mod metrics;
mod store;
pub(crate) mod work;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

pub use config::{Checkpoint, HeaderChainConfig};
pub use handle::{ChainEvent, ChainHeader, ChainTip, HeaderChain};

use super::{PeerView, Peers, Service};
use crate::bitcoin::{BlockHeader, BlockLocator, Hash, InvType, Network};
use crate::p2p::config::ManagerConfig;
use crate::p2p::connection::link::Offence;
use crate::p2p::connection::Misbehavior;
use crate::p2p::error::{P2pError, Result};
use crate::p2p::limits::{
    CHAIN_EVENT_CAPACITY, MAX_BLOCKS_TO_ANNOUNCE, MAX_HEADERS_RESULTS, PROTOCOL_VERSION,
};
use crate::p2p::Message;
use index::{Accepted, ChainIndex, Refusal};
use metrics::ChainMetrics;
use store::HeaderFile;

/// What the chain knows of one connected peer.
#[derive(Debug, Clone, Copy)]
struct PeerChain {
    /// The highest height it has shown it knows (start height, announcements); lowered to our
    /// tip when a round with it ends (it told us all it has).
    best: u32,
    /// It let a `getheaders` time out; asked again only when nobody else can be.
    stalled: bool,
}

/// The outstanding `getheaders` of a round.
#[derive(Debug, Clone, Copy)]
struct Round {
    peer: Uuid,
    deadline: Instant,
}

/// The service's state, behind one lock.
#[derive(Debug)]
struct State {
    active: bool,
    index: ChainIndex,
    file: Option<HeaderFile>,
    /// The header file's error, reported by `sync` (the chain then runs from memory).
    file_error: Option<P2pError>,
    peers: HashMap<Uuid, PeerChain>,
    round: Option<Round>,
    /// A round has completed (or headers were loaded): a peer no higher than us is not asked.
    synced_once: bool,
}

/// The service behind the manager's header chain.
#[derive(Debug)]
pub(crate) struct ChainService {
    peers: Peers,
    network: Network,
    config: HeaderChainConfig,
    state: Mutex<State>,
    events: broadcast::Sender<ChainEvent>,
    changes: watch::Sender<u64>,
    metrics: ChainMetrics,
}

fn copy_error(e: &P2pError) -> P2pError {
    match e {
        P2pError::HeaderFileNetwork {
            path,
            found,
            expected,
        } => P2pError::HeaderFileNetwork {
            path: path.clone(),
            found: found.clone(),
            expected: *expected,
        },
        other => P2pError::HeaderFile {
            path: Default::default(),
            reason: other.to_string(),
        },
    }
}

impl ChainService {
    /// The service for a manager configured by `config`; follows the chain at once when
    /// `config.header_chain.enabled`.
    pub(crate) fn new(config: &ManagerConfig, peers: Peers) -> Self {
        let network = config.network;
        let hc = config.header_chain.clone();
        let (base, base_height) = match &hc.checkpoint {
            Some(c) => (c.header, c.height),
            None => (network.genesis_header(), 0),
        };
        let index = ChainIndex::new(base, base_height, work::pow_limit(network));
        let (events, _) = broadcast::channel(CHAIN_EVENT_CAPACITY);
        let service = ChainService {
            peers,
            network,
            config: hc,
            state: Mutex::new(State {
                active: false,
                index,
                file: None,
                file_error: None,
                peers: HashMap::new(),
                round: None,
                synced_once: false,
            }),
            events,
            changes: watch::channel(0).0,
            metrics: ChainMetrics::from_global(),
        };
        if service.config.enabled {
            service.activate();
        }
        service
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements (no partial updates across a panic).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Starts following the chain (once): loads the header file, then asks a peer.
    pub(crate) fn activate(&self) {
        let mut st = self.lock();
        if st.active {
            return;
        }
        st.active = true;
        if let Some(path) = self.config.store_path.clone() {
            self.load(&mut st, &path);
        }
        self.metrics.height(st.index.tip_height());
        // Peers that came up before activation are known from `on_peer_up`.
        self.next_round(&mut st, Instant::now());
        drop(st);
        self.changed();
    }

    fn load(&self, st: &mut State, path: &std::path::Path) {
        let base_height = st.index.base_height();
        let base = st.index.get(&st.index.base_hash()).map(|e| e.header);
        let Some(base) = base else { return };
        let started = std::time::Instant::now();
        match HeaderFile::open(path, self.network, &base, base_height) {
            Ok((mut file, headers)) => {
                st.index.reserve(headers.len());
                let mut good = headers.len();
                for (i, h) in headers.iter().enumerate() {
                    if st.index.accept(h, None).is_err() {
                        warn!(path = %path.display(), record = i, "header file record does not validate; cutting the file there");
                        good = i;
                        break;
                    }
                }
                if good < headers.len() {
                    if let Err(e) = file.truncate(good) {
                        warn!(error = %e, "cutting the header file");
                    }
                }
                st.synced_once = st.index.tip_height() > base_height;
                info!(
                    path = %path.display(),
                    headers = good,
                    height = st.index.tip_height(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "header chain loaded"
                );
                st.file = Some(file);
            }
            Err(e) => {
                warn!(error = %e, "header chain file unusable; following the chain in memory only");
                st.file_error = Some(e);
            }
        }
    }

    /// A receiver that sees every change of the state `sync` waits on.
    pub(crate) fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The tip if the chain is synced with every connected peer, `None` while not, or the
    /// header file's error.
    pub(crate) fn synced_tip(&self) -> Result<Option<ChainTip>> {
        let st = self.lock();
        if let Some(e) = &st.file_error {
            return Err(copy_error(e));
        }
        let tip_height = st.index.tip_height();
        let synced = st.active
            && !st.peers.is_empty()
            && st.round.is_none()
            && st.synced_once
            && st.peers.values().all(|p| p.best <= tip_height);
        Ok(synced.then(|| tip_of(&st.index)))
    }

    pub(crate) fn tip(&self) -> ChainTip {
        tip_of(&self.lock().index)
    }

    pub(crate) fn header(&self, hash: &Hash) -> Option<ChainHeader> {
        let st = self.lock();
        let e = st.index.get(hash)?;
        Some(ChainHeader {
            header: e.header,
            hash: *hash,
            height: e.height,
            chain_work: e.work,
            best: st.index.is_best(hash),
        })
    }

    pub(crate) fn header_at(&self, height: u32) -> Option<ChainHeader> {
        let st = self.lock();
        let hash = st.index.hash_at(height)?;
        let e = st.index.get(&hash)?;
        Some(ChainHeader {
            header: e.header,
            hash,
            height: e.height,
            chain_work: e.work,
            best: true,
        })
    }

    pub(crate) fn locator(&self) -> Vec<Hash> {
        self.lock().index.locator()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ChainEvent> {
        self.events.subscribe()
    }

    pub(crate) fn announced_by(&self, hash: &Hash) -> Option<Uuid> {
        self.lock().index.source_of(hash)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().index.len()
    }

    fn getheaders(&self, peer: Uuid, locator: Vec<Hash>, stop: Hash) -> bool {
        let msg = Message::GetHeaders(BlockLocator {
            version: PROTOCOL_VERSION as u32,
            hashes: locator,
            stop_hash: stop,
        });
        self.peers.try_send(peer, &msg)
    }

    /// Starts a round with the best candidate if none is running.
    fn next_round(&self, st: &mut State, now: Instant) {
        if !st.active || st.round.is_some() {
            return;
        }
        let tip = st.index.tip_height();
        let wanted = |p: &PeerChain| p.best > tip || !st.synced_once;
        let pick = st
            .peers
            .iter()
            .filter(|(_, p)| wanted(p) && !p.stalled)
            .max_by_key(|(_, p)| p.best)
            .or_else(|| {
                st.peers
                    .iter()
                    .filter(|(_, p)| wanted(p))
                    .max_by_key(|(_, p)| p.best)
            })
            .map(|(id, _)| *id);
        let Some(peer) = pick else { return };
        if let Some(p) = st.peers.get_mut(&peer) {
            p.stalled = false;
        }
        debug!(%peer, height = tip, "header sync: asking for headers");
        self.getheaders(peer, st.index.locator(), Hash::ZERO);
        st.round = Some(Round {
            peer,
            deadline: now + self.config.sync_timeout,
        });
    }

    /// Applies a `headers` message from `peer`.
    fn on_headers(&self, st: &mut State, peer: Uuid, headers: &[BlockHeader]) {
        let now = Instant::now();
        let in_round = st.round.is_some_and(|r| r.peer == peer);
        let Some(first) = headers.first() else {
            if in_round {
                self.end_round(st, peer, now);
            }
            return;
        };
        if !st.index.contains(&first.prev_hash) {
            if headers.len() <= MAX_BLOCKS_TO_ANNOUNCE {
                // `ProcessHeadersMessage`: ask for what leads to it, count the miss.
                debug!(%peer, "unconnecting headers announcement");
                self.getheaders(peer, st.index.locator(), Hash::ZERO);
                self.peers.penalize(peer, Offence::UnconnectingHeaders);
            } else {
                self.peers
                    .penalize(peer, Offence::Rule(Misbehavior::PrevBlkNotFound));
            }
            return;
        }
        let (old_tip, old_height) = (st.index.tip(), st.index.tip_height());
        let mut failed = false;
        let mut last_height = None;
        for h in headers {
            match st.index.accept(h, Some(peer)) {
                Ok(Accepted::Known(height)) => last_height = Some(height),
                Ok(Accepted::New(height)) => {
                    if let Some(f) = st.file.as_mut() {
                        if let Err(e) = f.append(h) {
                            warn!(error = %e, "header file append failed; no longer saving headers");
                            st.file = None;
                        }
                    }
                    last_height = Some(height);
                }
                Err(Refusal::HighHash) => {
                    self.peers
                        .penalize(peer, Offence::Rule(Misbehavior::HighHash));
                    failed = true;
                    break;
                }
                // Continuity was checked by the connection; a gap cannot happen.
                Err(Refusal::Unconnected) => {
                    failed = true;
                    break;
                }
            }
        }
        if let Some(f) = st.file.as_mut() {
            if let Err(e) = f.flush() {
                warn!(error = %e, "header file flush failed; no longer saving headers");
                st.file = None;
            }
        }
        if let (Some(p), Some(h)) = (st.peers.get_mut(&peer), last_height) {
            p.best = p.best.max(h);
        }
        self.report_change(st, old_tip, old_height);
        if failed {
            if in_round {
                st.round = None;
                self.next_round(st, now);
            }
            return;
        }
        if headers.len() == MAX_HEADERS_RESULTS {
            // `ProcessHeadersMessage`: a full batch, there may be more.
            let last = headers.last().map_or(Hash::ZERO, BlockHeader::hash);
            self.getheaders(peer, st.index.locator_from(last), Hash::ZERO);
            if in_round {
                st.round = Some(Round {
                    peer,
                    deadline: now + self.config.sync_timeout,
                });
            }
        } else {
            self.end_round(st, peer, now);
        }
    }

    /// `peer` has told us all it has: it is no higher than our tip.
    fn end_round(&self, st: &mut State, peer: Uuid, now: Instant) {
        let tip = st.index.tip_height();
        if let Some(p) = st.peers.get_mut(&peer) {
            p.best = p.best.min(tip);
        }
        if st.round.is_some_and(|r| r.peer == peer) {
            st.round = None;
            st.synced_once = true;
        }
        self.next_round(st, now);
    }

    fn report_change(&self, st: &State, old_tip: Hash, old_height: u32) {
        let Some(c) = st.index.change(old_tip, old_height) else {
            return;
        };
        if c.depth > 0 {
            info!(
                old_tip = %c.old_tip, new_tip = %c.new_tip,
                fork_height = c.fork_height, depth = c.depth, "header chain reorganised"
            );
            self.metrics.reorg();
            let _ = self.events.send(ChainEvent::Reorg {
                old_tip: c.old_tip,
                new_tip: c.new_tip,
                fork_height: c.fork_height,
                depth: c.depth,
            });
        }
        self.metrics.height(c.new_height);
        let _ = self.events.send(ChainEvent::NewTip {
            height: c.new_height,
            hash: c.new_tip,
        });
    }

    /// An `inv`: unknown blocks are asked for by `getheaders` up to the last of them.
    fn on_inv(&self, st: &mut State, peer: Uuid, items: &[crate::bitcoin::InvVect]) {
        let unknown = items
            .iter()
            .rfind(|i| i.inv_type == InvType::Block && !st.index.contains(&i.hash));
        let Some(item) = unknown else { return };
        let tip = st.index.tip_height();
        if let Some(p) = st.peers.get_mut(&peer) {
            p.best = p.best.max(tip.saturating_add(1));
        }
        self.getheaders(peer, st.index.locator(), item.hash);
    }
}

fn tip_of(index: &ChainIndex) -> ChainTip {
    let hash = index.tip();
    match index.tip_entry() {
        Some(e) => ChainTip {
            height: e.height,
            hash,
            header: e.header,
            chain_work: e.work,
        },
        // The tip is always in the index; this arm only keeps the code panic-free.
        None => ChainTip {
            height: index.base_height(),
            hash,
            header: BlockHeader {
                version: 0,
                prev_hash: Hash::ZERO,
                merkle_root: Hash::ZERO,
                time: 0,
                bits: 0,
                nonce: 0,
            },
            chain_work: 0,
        },
    }
}

impl Service for ChainService {
    fn on_peer_up(&self, _peers: &Peers, peer: &PeerView) {
        let mut st = self.lock();
        let best = u32::try_from(peer.details.start_height).unwrap_or(0);
        st.peers.insert(
            peer.peer_id,
            PeerChain {
                best,
                stalled: false,
            },
        );
        self.next_round(&mut st, Instant::now());
        drop(st);
        self.changed();
    }

    fn on_message(&self, _peers: &Peers, peer_id: Uuid, message: &Message) {
        let mut st = self.lock();
        if !st.active {
            return;
        }
        match message {
            Message::Headers(headers) => self.on_headers(&mut st, peer_id, headers),
            Message::Inv(items) => self.on_inv(&mut st, peer_id, items),
            _ => return,
        }
        drop(st);
        self.changed();
    }

    fn on_peer_down(&self, _peers: &Peers, peer_id: Uuid) {
        let mut st = self.lock();
        st.peers.remove(&peer_id);
        if st.round.is_some_and(|r| r.peer == peer_id) {
            st.round = None;
            self.next_round(&mut st, Instant::now());
        }
        drop(st);
        self.changed();
    }

    fn on_tick(&self, _peers: &Peers, now: Instant) {
        let mut st = self.lock();
        if let Some(r) = st.round {
            if now >= r.deadline {
                debug!(peer = %r.peer, "header sync peer silent; asking another");
                if let Some(p) = st.peers.get_mut(&r.peer) {
                    p.stalled = true;
                }
                st.round = None;
                self.next_round(&mut st, now);
                drop(st);
                self.changed();
                return;
            }
        }
        self.next_round(&mut st, now);
    }
}
