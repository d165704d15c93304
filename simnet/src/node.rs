//! One simulated node: its listener, its connections, its bans and counters, and the
//! [`NodeHandle`] tests use to watch and steer it.
//!
//! Each running node is one supervisor task that owns the listening socket and a `JoinSet` of
//! connection tasks (accepted, or dialled through [`NodeHandle::dial`]). Stopping the node
//! cancels the supervisor, which drops the listener and shuts the `JoinSet` down (aborting and
//! awaiting every connection task), so when [`NodeHandle`]'s stop returns no task or socket of
//! the node is left. Dropping a handle aborts the supervisor, whose `JoinSet` then aborts the
//! connection tasks.
//!
//! State shared by the node's tasks lives in [`NodeShared`]; state shared by the whole simnet
//! (chain, transaction pool, every node for relay) in [`NetShared`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::{Block, BlockHeader, Hash, Transaction};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::chain::ChainHandle;
use crate::config::SimNetConfig;
use crate::connection;
use crate::error::SimNetError;
use crate::misbehaviour::Misbehaviour;
use crate::protocol::{Direction, Mempool};
use crate::stats::{Counters, NodeStats};

/// Pending announcements per connection; beyond this a slow peer misses announcements rather
/// than making the node buffer without bound.
const EVENT_QUEUE: usize = 1024;
/// Pending dials per node.
const DIAL_QUEUE: usize = 64;
/// Listen backlog: enough for hundreds of simultaneous connects in tests.
const LISTEN_BACKLOG: u32 = 1024;
/// How long [`NodeHandle::dial`] waits for the TCP connect (`DEFAULT_CONNECT_TIMEOUT`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Something a connection task must react to, sent by the rest of the simnet.
#[derive(Debug, Clone)]
pub(crate) enum ConnEvent {
    /// A block was mined.
    NewBlock(BlockHeader),
    /// A transaction entered the pool.
    NewTx(Hash),
    /// The peer's IP was banned (by another connection): close.
    Kick(String),
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
    /// (a ban covers the whole IP, PROTOCOL.md §5).
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

/// A running node's supervisor.
#[derive(Debug)]
struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    dial: mpsc::Sender<(TcpStream, SocketAddr)>,
}

/// A handle on one simulated node: its address, counters, misbehaviour mode, bans, and outbound
/// dialling.
#[derive(Debug)]
pub struct NodeHandle {
    shared: Arc<NodeShared>,
    net: Arc<NetShared>,
    running: Mutex<Option<Running>>,
}

/// Binds a listener on `addr` with `SO_REUSEADDR`, so a restarted node gets its port back even
/// while old connections linger in `TIME_WAIT`.
pub(crate) fn bind(addr: SocketAddr) -> Result<TcpListener, SimNetError> {
    let err = |source| SimNetError::Bind { addr, source };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(LISTEN_BACKLOG).map_err(err)
}

impl NodeHandle {
    pub(crate) fn new(shared: Arc<NodeShared>, net: Arc<NetShared>) -> Self {
        NodeHandle {
            shared,
            net,
            running: Mutex::new(None),
        }
    }

    /// Starts the supervisor on an already bound listener.
    pub(crate) fn start_with(&self, listener: TcpListener) {
        let cancel = CancellationToken::new();
        let (dial_tx, dial_rx) = mpsc::channel(DIAL_QUEUE);
        let span = tracing::info_span!("simnet_node", node = self.shared.index);
        let task = tokio::spawn(
            supervise(
                listener,
                Arc::clone(&self.shared),
                Arc::clone(&self.net),
                dial_rx,
                cancel.clone(),
            )
            .instrument(span),
        );
        info!(node = self.shared.index, address = %self.shared.address, "simnet node listening");
        *lock(&self.running) = Some(Running {
            cancel,
            task,
            dial: dial_tx,
        });
    }

    /// Rebinds the node's port and starts it (stopping it first if it runs).
    pub(crate) async fn restart(&self) -> Result<(), SimNetError> {
        self.stop().await;
        let listener = bind(self.shared.address)?;
        self.start_with(listener);
        Ok(())
    }

    /// Stops the node: closes the listener and every connection, and waits for its tasks.
    pub(crate) async fn stop(&self) {
        let running = lock(&self.running).take();
        if let Some(r) = running {
            r.cancel.cancel();
            drop(r.dial);
            let _ = r.task.await;
            info!(node = self.shared.index, "simnet node stopped");
        }
    }

    /// Signals the node to stop and returns its supervisor to await.
    pub(crate) fn begin_stop(&self) -> Option<JoinHandle<()>> {
        let running = lock(&self.running).take()?;
        running.cancel.cancel();
        Some(running.task)
    }

    /// The node's index in the simnet.
    pub fn index(&self) -> usize {
        self.shared.index
    }

    /// The address the node listens on (the same across restarts).
    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// Whether the node is running (not stopped).
    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> NodeStats {
        self.shared.counters.snapshot()
    }

    /// Waits until `pred` holds on the node's counters, at most `timeout`. Returns the snapshot
    /// that satisfied it, or `None` on timeout. Use this instead of sleeping in tests.
    pub async fn wait_for_stats(
        &self,
        timeout: Duration,
        pred: impl FnMut(&NodeStats) -> bool,
    ) -> Option<NodeStats> {
        self.shared.counters.wait_for(timeout, pred).await
    }

    /// The misbehaviour mode the node's next connections take.
    pub fn misbehaviour(&self) -> Misbehaviour {
        self.shared.misbehaviour()
    }

    /// Changes the mode for the node's next connections (live ones keep theirs).
    pub fn set_misbehaviour(&self, mode: Misbehaviour) {
        info!(
            node = self.shared.index,
            mode = mode.name(),
            "simnet node misbehaviour set"
        );
        *lock(&self.shared.misbehaviour) = mode;
    }

    /// Whether the node refuses `ip` now.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.shared.is_banned(ip)
    }

    /// The IPs the node refuses now.
    pub fn banned_ips(&self) -> Vec<IpAddr> {
        let now = Instant::now();
        lock(&self.shared.bans)
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(ip, _)| *ip)
            .collect()
    }

    /// Lifts every ban (`clearbanned`).
    pub fn clear_bans(&self) {
        lock(&self.shared.bans).clear();
    }

    /// Dials `addr` and runs the node's outbound handshake on it (PROTOCOL.md §2.6): for
    /// testing a library's listener. Returns once the TCP connection is up; watch the node's
    /// counters (or the listener) for the handshake. Only loopback addresses are dialled.
    pub async fn dial(&self, addr: SocketAddr) -> Result<(), SimNetError> {
        if !addr.ip().is_loopback() {
            return Err(SimNetError::NotLoopback(addr));
        }
        let dial = lock(&self.running)
            .as_ref()
            .map(|r| r.dial.clone())
            .ok_or(SimNetError::NodeStopped(self.shared.index))?;
        // Dial from the node's own address, so the peer sees (and may ban) this node alone.
        let own = self.shared.address.ip();
        let connect = async move {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if own.is_ipv4() == addr.is_ipv4() {
                socket.bind(SocketAddr::new(own, 0))?;
            }
            socket.connect(addr).await
        };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(SimNetError::Connect { addr, source }),
            Err(_) => {
                return Err(SimNetError::Connect {
                    addr,
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                })
            }
        };
        dial.send((stream, addr))
            .await
            .map_err(|_| SimNetError::NodeStopped(self.shared.index))
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        if let Some(r) = lock(&self.running).take() {
            // Aborting the supervisor drops its JoinSet, which aborts every connection task.
            r.cancel.cancel();
            r.task.abort();
        }
    }
}

/// The node's supervisor: accepts connections (refusing banned IPs at once), spawns dialled
/// ones, reaps finished tasks, and on cancellation closes everything and waits for it.
async fn supervise(
    listener: TcpListener,
    node: Arc<NodeShared>,
    net: Arc<NetShared>,
    mut dials: mpsc::Receiver<(TcpStream, SocketAddr)>,
    cancel: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if node.is_banned(peer.ip()) {
                        debug!(node = node.index, peer_address = %peer, "refusing banned IP");
                        node.counters.update(|s| s.refused_banned += 1);
                        drop(stream);
                        continue;
                    }
                    tasks.spawn(connection::run(
                        stream,
                        peer,
                        Direction::Inbound,
                        Arc::clone(&node),
                        Arc::clone(&net),
                    ));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off briefly instead of spinning.
                    warn!(node = node.index, error = %e, "accept failed");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
            Some((stream, peer)) = dials.recv() => {
                tasks.spawn(connection::run(
                    stream,
                    peer,
                    Direction::Outbound,
                    Arc::clone(&node),
                    Arc::clone(&net),
                ));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    tasks.shutdown().await;
}
