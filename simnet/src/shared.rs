//! State shared between a simulated node's tasks and across the simnet: the per-node registry
//! of live connections, bans and counters ([`NodeShared`]), the simnet-wide chain, transaction
//! pool and node list ([`NetShared`]), and the events the rest of the simnet sends to a
//! connection task ([`ConnEvent`]).
//!
//! This module sits below both `node` (the supervisor) and `connection` (the per-connection
//! task) and depends on neither, so the modules form a chain `node` → `connection` → `shared`
//! with no cycle.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::{Block, BlockHeader, Hash, Transaction};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::chain::ChainHandle;
use crate::config::SimNetConfig;
use crate::misbehaviour::Misbehaviour;
use crate::protocol::{Direction, Mempool, SyntheticBlocks};
use crate::stats::Counters;

/// Pending announcements per connection; beyond this a slow peer misses announcements rather
/// than making the node buffer without bound.
const EVENT_QUEUE: usize = 1024;

/// Something a connection task must react to, sent by the rest of the simnet.
#[derive(Debug, Clone)]
pub(crate) enum ConnEvent {
    /// A block was mined.
    NewBlock(BlockHeader),
    /// The chain was reorganised: the new branch's headers, oldest first.
    NewBranch(Vec<BlockHeader>),
    /// A transaction entered the pool.
    NewTx(Hash),
    /// The peer's IP was banned (by another connection): close.
    Kick(String),
    /// Announce this (synthetic) block by `inv` (`SimNet::announce_synthetic`).
    AnnounceBlock(Hash),
}

/// A live connection as the node's registry sees it.
#[derive(Debug)]
struct PeerSlot {
    ip: IpAddr,
    events: mpsc::Sender<ConnEvent>,
}

/// State shared by one node's tasks.
#[derive(Debug)]
pub(crate) struct NodeShared {
    /// Index in the simnet.
    pub index: usize,
    /// Listening address (kept across restarts).
    pub address: SocketAddr,
    /// The misbehaviour mode new connections take.
    misbehaviour: Mutex<Misbehaviour>,
    /// Counters.
    pub counters: Counters,
    bans: Mutex<HashMap<IpAddr, Instant>>,
    peers: Mutex<HashMap<u64, PeerSlot>>,
    next_conn: AtomicU64,
    /// Nonces of the node's outbound `version`s.
    pub local_nonces: Mutex<HashSet<u64>>,
}

/// Locks `m`, ignoring poisoning.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a single insert/remove/read that cannot leave the data
    // inconsistent, so a poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NodeShared {
    pub(crate) fn new(index: usize, address: SocketAddr, mode: Misbehaviour) -> Self {
        NodeShared {
            index,
            address,
            misbehaviour: Mutex::new(mode),
            counters: Counters::default(),
            bans: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            local_nonces: Mutex::new(HashSet::new()),
        }
    }

    /// The mode a new connection takes.
    pub(crate) fn misbehaviour(&self) -> Misbehaviour {
        lock(&self.misbehaviour).clone()
    }

    /// Changes the mode for the node's next connections.
    pub(crate) fn set_misbehaviour(&self, mode: Misbehaviour) {
        *lock(&self.misbehaviour) = mode;
    }

    /// The IPs banned now.
    pub(crate) fn banned_ips(&self) -> Vec<IpAddr> {
        let now = Instant::now();
        lock(&self.bans)
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(ip, _)| *ip)
            .collect()
    }

    /// Lifts every ban.
    pub(crate) fn clear_bans(&self) {
        lock(&self.bans).clear();
    }

    /// Whether `ip` is banned now (expired bans are forgotten).
    pub(crate) fn is_banned(&self, ip: IpAddr) -> bool {
        let mut bans = lock(&self.bans);
        match bans.get(&ip) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                bans.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Bans `ip` for `duration` and closes every other connection from it, as the node does
    /// (a ban covers the whole IP, docs/PROTOCOL.md §5).
    pub(crate) fn ban(&self, ip: IpAddr, duration: Duration, reason: &str) {
        let until = Instant::now() + duration;
        lock(&self.bans).insert(ip, until);
        self.counters.update(|s| s.bans += 1);
        info!(node = self.index, peer_ip = %ip, reason, "simnet node banned peer IP");
        let peers = lock(&self.peers);
        for slot in peers.values().filter(|s| s.ip == ip) {
            let _ = slot
                .events
                .try_send(ConnEvent::Kick(format!("IP banned: {reason}")));
        }
    }

    /// Registers a new connection; the returned guard unregisters it when dropped (also when
    /// the task is aborted).
    pub(crate) fn register(
        self: &Arc<Self>,
        peer: SocketAddr,
        direction: Direction,
    ) -> (Registration, mpsc::Receiver<ConnEvent>) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        lock(&self.peers).insert(
            id,
            PeerSlot {
                ip: peer.ip(),
                events: tx,
            },
        );
        self.counters.update(|s| {
            match direction {
                Direction::Inbound => s.inbound_connections += 1,
                Direction::Outbound => s.outbound_connections += 1,
            }
            s.active_connections += 1;
        });
        (
            Registration {
                node: Arc::clone(self),
                id,
                nonce: None,
            },
            rx,
        )
    }

    /// Sends `event` to every connection except `except`.
    pub(crate) fn broadcast(&self, event: &ConnEvent, except: Option<u64>) {
        let peers = lock(&self.peers);
        for (id, slot) in peers.iter() {
            if Some(*id) == except {
                continue;
            }
            if slot.events.try_send(event.clone()).is_err() {
                debug!(
                    node = self.index,
                    conn = id,
                    "announcement queue full; dropped"
                );
            }
        }
    }
}

/// Keeps a connection registered while alive.
#[derive(Debug)]
pub(crate) struct Registration {
    node: Arc<NodeShared>,
    /// The connection's id within the node.
    pub id: u64,
    nonce: Option<u64>,
}

impl Registration {
    /// Records the nonce of our outbound `version`, for self-connection detection.
    pub(crate) fn set_local_nonce(&mut self, nonce: u64) {
        lock(&self.node.local_nonces).insert(nonce);
        self.nonce = Some(nonce);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.node.peers).remove(&self.id);
        if let Some(n) = self.nonce {
            lock(&self.node.local_nonces).remove(&n);
        }
        self.node.counters.update(|s| {
            s.active_connections = s.active_connections.saturating_sub(1);
            s.disconnects += 1;
        });
    }
}

/// State shared by the whole simnet.
#[derive(Debug)]
pub(crate) struct NetShared {
    /// The configuration.
    pub config: SimNetConfig,
    /// The chain.
    pub chain: ChainHandle,
    /// Every node's address, then the unreachable ones: what `getaddr` is answered with.
    pub addresses: Vec<SocketAddr>,
    /// The transaction pool every node serves from.
    pub mempool: Mutex<Mempool>,
    /// Every node.
    pub nodes: Vec<Arc<NodeShared>>,
    /// The synthetic blocks every node serves on request (not part of the chain).
    pub synthetic: SyntheticBlocks,
}

impl NetShared {
    /// Puts `tx` in the pool and, if it is new, announces it on every connection of every
    /// node but the one it came from. Returns whether it was new.
    pub(crate) fn accept_tx(&self, tx: Transaction, origin: Option<(usize, u64)>) -> bool {
        let txid = tx.txid();
        if !lock(&self.mempool).insert(tx) {
            return false;
        }
        debug!(%txid, "simnet accepted transaction");
        let event = ConnEvent::NewTx(txid);
        for node in &self.nodes {
            let except = origin.and_then(|(n, c)| (n == node.index).then_some(c));
            node.broadcast(&event, except);
        }
        true
    }

    /// Replaces the chain above `fork_height` with `blocks` new blocks and announces the new
    /// branch everywhere. Returns the new blocks.
    pub(crate) fn reorg(&self, fork_height: u32, blocks: u32) -> Vec<Arc<Block>> {
        let new = self.chain.write().reorg(fork_height, blocks);
        info!(
            fork_height,
            blocks = new.len(),
            height = self.chain.tip_height(),
            "simnet reorganised"
        );
        if !new.is_empty() {
            let event = ConnEvent::NewBranch(new.iter().map(|b| b.header).collect());
            for node in &self.nodes {
                node.broadcast(&event, None);
            }
        }
        new
    }

    /// Mines a block with every pooled transaction and announces it everywhere.
    pub(crate) fn mine_block(&self) -> Arc<Block> {
        let txs = lock(&self.mempool).drain();
        let block = self.chain.write().extend(txs);
        info!(hash = %block.hash(), height = self.chain.tip_height(), "simnet mined block");
        let event = ConnEvent::NewBlock(block.header);
        for node in &self.nodes {
            node.broadcast(&event, None);
        }
        block
    }
}
