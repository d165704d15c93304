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
//! State shared by the node's tasks ([`NodeShared`]) and by the whole simnet ([`NetShared`])
//! lives in `shared`, which this module and `connection` both use.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::connection;
use crate::error::SimNetError;
use crate::misbehaviour::Misbehaviour;
use crate::protocol::Direction;
use crate::shared::{lock, NetShared, NodeShared};
use crate::stats::NodeStats;

/// Pending dials per node.
const DIAL_QUEUE: usize = 64;
/// Listen backlog: enough for hundreds of simultaneous connects in tests.
const LISTEN_BACKLOG: u32 = 1024;
/// How long [`NodeHandle::dial`] waits for the TCP connect (`DEFAULT_CONNECT_TIMEOUT`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
        self.shared.set_misbehaviour(mode);
    }

    /// Whether the node refuses `ip` now.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.shared.is_banned(ip)
    }

    /// The IPs the node refuses now.
    pub fn banned_ips(&self) -> Vec<IpAddr> {
        self.shared.banned_ips()
    }

    /// Lifts every ban (`clearbanned`).
    pub fn clear_bans(&self) {
        self.shared.clear_bans();
    }

    /// Dials `addr` and runs the node's outbound handshake on it (docs/PROTOCOL.md §2.6): for
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
