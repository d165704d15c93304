//! The connection actor: one tokio task per peer that owns the socket and drives the state
//! machines of this module. It only moves bytes and timers; every decision is made by
//! [`Handshake`], [`Keepalive`], [`RetryState`] and [`StateMachine`].
//!
//! Shape of one session: the socket is split; a writer task drains the [`Outbox`] to the write
//! half while the actor loop reads, decodes and reacts, so reading never waits on writing. The
//! loop also serves commands and the one timer that matters at the moment (the handshake deadline
//! before completion, the keepalive deadline after).
//!
//! Outbound actors dial with `connect_timeout`, retry with backoff up to `max_retries`, restart
//! at once after an established connection drops (at most `max_restarts` per `restart_window`)
//! and mark the peer `Inaccessible` when they give up. Inbound actors run one session: a peer's
//! source port is not its listening port, so there is nothing to redial.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn, Instrument};
use uuid::Uuid;

use super::{
    ConnectionState, ConnectionStats, Direction, DisconnectReason, Handshake, HandshakeFailure,
    HandshakeFlow, HandshakeOutput, Keepalive, KeepaliveAction, NonceRegistry, Outbox, PeerDetails,
    RetryDecision, RetryPolicy, RetryState, StateMachine,
};
use crate::bitcoin::{NetAddress, Network};
use crate::p2p::bans::{UserAgentBanList, Whitelist};
use crate::p2p::codec::{CodecError, MessageCodec, RecvLimits};
use crate::p2p::config::{ConnectionConfig, ManagerConfig};
use crate::p2p::error::{P2pError, Result};
use crate::p2p::events::{BitcoinMessageEvent, ControlEvent, MessageSinks, PeerConnectionCommand};
use crate::p2p::limits::{BAN_SCORE_THRESHOLD, DEFAULT_MAX_RECV_PAYLOAD, PROTOCOL_VERSION};
use crate::p2p::messages::{AssociationId, Protoconf, Reject, RejectCode, VersionMessage};
use crate::p2p::peer::{unix_now, BanReason, Peer, PeerStatus};
use crate::p2p::store::PeerStore;
use crate::p2p::Message;

/// Bytes of bulk data a connection may have queued for the socket before senders wait.
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Commands a connection buffers before the manager's sends wait.
const COMMAND_CAPACITY: usize = 64;
/// Stream policies we advertise: we do not open extra streams.
const STREAM_POLICIES: &str = "Default";

/// What we advertise in our `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVersion {
    /// Our user agent (must not match a ban pattern).
    pub user_agent: String,
    /// Our service bits (0 for a pure client).
    pub services: u64,
    /// Whether we want transaction `inv`s.
    pub relay: bool,
    /// Our best height.
    pub start_height: i32,
}

/// Everything a connection shares with the manager that created it.
#[derive(Clone)]
pub struct ConnectionContext {
    /// The network we are on.
    pub network: Network,
    /// Per-connection settings.
    pub config: ConnectionConfig,
    /// What we advertise.
    pub local: LocalVersion,
    /// Where peer status goes.
    pub store: Arc<dyn PeerStore>,
    /// Lifecycle events.
    pub control_tx: broadcast::Sender<ControlEvent>,
    /// Messages from peers (lossy broadcast).
    pub message_tx: broadcast::Sender<BitcoinMessageEvent>,
    /// Messages from peers (lossless, back-pressured).
    pub sinks: MessageSinks,
    /// User agents to ban.
    pub banned_agents: UserAgentBanList,
    /// Addresses never banned.
    pub whitelist: Whitelist,
    /// How long bans last.
    pub ban_duration: Duration,
    /// Our in-flight `version` nonces (self-connection detection).
    pub nonces: NonceRegistry,
    /// Bulk bytes a connection may queue for its socket.
    pub send_queue_bytes: usize,
    /// Sees every message received, handshake and keepalive included, before the connection
    /// acts on it (for tools such as `bsvp2p connect`).
    pub tap: Option<broadcast::Sender<BitcoinMessageEvent>>,
}

impl ConnectionContext {
    /// A context for connections of a manager configured by `config`.
    pub fn new(
        config: &ManagerConfig,
        store: Arc<dyn PeerStore>,
        control_tx: broadcast::Sender<ControlEvent>,
        message_tx: broadcast::Sender<BitcoinMessageEvent>,
    ) -> Result<Self> {
        Ok(ConnectionContext {
            network: config.network,
            config: config.connection.clone(),
            local: LocalVersion {
                user_agent: config.user_agent.clone(),
                services: config.services,
                relay: config.relay,
                start_height: config.start_height,
            },
            store,
            control_tx,
            message_tx,
            sinks: MessageSinks::default(),
            banned_agents: UserAgentBanList::parse(&config.banned_user_agents)?,
            whitelist: config.whitelist.clone(),
            ban_duration: config.ban_duration,
            nonces: NonceRegistry::default(),
            send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
            tap: None,
        })
    }
}

impl std::fmt::Debug for ConnectionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionContext")
            .field("network", &self.network)
            .field("config", &self.config)
            .finish()
    }
}

/// How an actor finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionOutcome {
    /// The final state.
    pub state: ConnectionState,
    /// Why it ended.
    pub reason: DisconnectReason,
    /// Whether the handshake ever completed.
    pub was_connected: bool,
}

/// State shared between the actor and its handle.
struct Shared {
    stats: Arc<ConnectionStats>,
    /// The session's outbox and encoder, present while connected.
    session: Mutex<Option<(Outbox, MessageCodec)>>,
    cancel: CancellationToken,
}

/// A cloneable view of a running connection: send, command, disconnect, read statistics.
/// The manager keeps these; whoever owns the [`PeerHandle`] waits for the actor to end.
#[derive(Clone)]
pub struct PeerLink {
    peer_id: Uuid,
    address: SocketAddr,
    direction: Direction,
    cmd_tx: mpsc::Sender<PeerConnectionCommand>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLink")
            .field("peer_id", &self.peer_id)
            .field("address", &self.address)
            .field("direction", &self.direction)
            .finish()
    }
}

impl PeerLink {
    /// The peer's id.
    pub fn peer_id(&self) -> Uuid {
        self.peer_id
    }

    /// The peer's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Who dialled.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Live statistics.
    pub fn stats(&self) -> &Arc<ConnectionStats> {
        &self.shared.stats
    }

    /// Sends a message, waiting while the connection's send queue is full. Refused, with nothing
    /// written, when the connection is not established or the message is larger than the peer
    /// accepts (its `protoconf` limit; 1 MiB until that arrives).
    pub async fn send_message(&self, message: Message) -> Result<()> {
        let (outbox, frame) = {
            let guard = self
                .shared
                .session
                .lock()
                .map_err(|_| not_connected(self.address))?;
            let Some((outbox, codec)) = guard.as_ref() else {
                return Err(not_connected(self.address));
            };
            (outbox.clone(), codec.encode_to_bytes(&message)?)
        };
        let command = message.command().to_string();
        outbox
            .push_bulk(frame.clone())
            .await
            .map_err(|_| not_connected(self.address))?;
        self.shared.stats.count_sent(&command, frame.len());
        Ok(())
    }

    /// Sends a command through the actor's mailbox (`Disconnect` takes effect at once).
    pub async fn command(&self, cmd: PeerConnectionCommand) -> Result<()> {
        if matches!(cmd, PeerConnectionCommand::Disconnect) {
            self.shared.cancel.cancel();
            return Ok(());
        }
        self.cmd_tx
            .send(cmd)
            .await
            .map_err(|_| P2pError::ChannelClosed {
                channel: format!("connection {}", self.peer_id),
            })
    }

    /// Asks the actor to close cleanly (no restart).
    pub fn disconnect(&self) {
        self.shared.cancel.cancel();
    }
}

/// The owner's side of a connection actor: a [`PeerLink`] plus the task to wait for.
pub struct PeerHandle {
    link: PeerLink,
    task: JoinHandle<ConnectionOutcome>,
}

impl std::fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.link.fmt(f)
    }
}

impl std::ops::Deref for PeerHandle {
    type Target = PeerLink;
    fn deref(&self) -> &PeerLink {
        &self.link
    }
}

impl PeerHandle {
    /// A cloneable link to the connection.
    pub fn link(&self) -> PeerLink {
        self.link.clone()
    }

    /// Whether the actor has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the actor to end.
    pub async fn join(self) -> ConnectionOutcome {
        let id = self.link.peer_id;
        self.task.await.unwrap_or(ConnectionOutcome {
            state: ConnectionState::Failed,
            reason: DisconnectReason::Io(format!("connection task {id} panicked or was aborted")),
            was_connected: false,
        })
    }

    /// Stops the actor at once, without a clean close.
    pub fn abort(&self) {
        self.task.abort();
    }
}

fn not_connected(address: SocketAddr) -> P2pError {
    P2pError::Connection {
        address,
        reason: "not connected".into(),
    }
}

/// Constructors for connection actors.
pub struct PeerConnection;

impl PeerConnection {
    /// Dials `peer` and keeps the connection up (retries, restarts) until told to stop or it
    /// gives up.
    pub fn outbound(peer: Peer, ctx: ConnectionContext) -> PeerHandle {
        spawn(
            peer,
            ctx,
            Direction::Outbound,
            None,
            HandshakeFlow::Outbound,
        )
    }

    /// Runs one inbound session on an accepted socket.
    pub fn inbound(peer: Peer, stream: TcpStream, ctx: ConnectionContext) -> PeerHandle {
        spawn(
            peer,
            ctx,
            Direction::Inbound,
            Some(stream),
            HandshakeFlow::Inbound,
        )
    }

    /// Handshakes an inbound peer we have no room for, then sends `reject` and closes.
    pub fn over_capacity(peer: Peer, stream: TcpStream, ctx: ConnectionContext) -> PeerHandle {
        spawn(
            peer,
            ctx,
            Direction::Inbound,
            Some(stream),
            HandshakeFlow::InboundOverCapacity,
        )
    }
}

fn spawn(
    peer: Peer,
    ctx: ConnectionContext,
    direction: Direction,
    stream: Option<TcpStream>,
    flow: HandshakeFlow,
) -> PeerHandle {
    let address = peer.socket_addr();
    let stats = Arc::new(ConnectionStats::new(peer.id, address, direction));
    // Visible at once, before the task first runs: the manager counts this connection from the
    // moment it exists, or a second pass of its supervisor would dial again.
    stats.set_state(if stream.is_some() {
        ConnectionState::AwaitingHandshake
    } else {
        ConnectionState::Connecting
    });
    let shared = Arc::new(Shared {
        stats,
        session: Mutex::new(None),
        cancel: CancellationToken::new(),
    });
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
    let span = tracing::info_span!("peer", peer_id = %peer.id, peer_address = %address, direction = %direction);
    let actor = Actor {
        peer: peer.clone(),
        ctx,
        shared: shared.clone(),
        cmd_rx,
        machine: StateMachine::default(),
        retry: RetryState::default(),
        was_connected: false,
    };
    let task = tokio::spawn(actor.run(stream, flow).instrument(span));
    PeerHandle {
        link: PeerLink {
            peer_id: peer.id,
            address,
            direction,
            cmd_tx,
            shared,
        },
        task,
    }
}

/// How one session (one TCP connection) ended.
enum SessionEnd {
    Handshake(HandshakeFailure),
    /// The connection dropped; `connected` says whether the handshake had completed.
    Lost {
        reason: DisconnectReason,
        connected: bool,
    },
    Ban {
        reason: BanReason,
        why: DisconnectReason,
    },
    PingTimeout(Duration),
    Requested,
}

struct Actor {
    peer: Peer,
    ctx: ConnectionContext,
    shared: Arc<Shared>,
    cmd_rx: mpsc::Receiver<PeerConnectionCommand>,
    machine: StateMachine,
    retry: RetryState,
    was_connected: bool,
}

impl Actor {
    fn policy(&self) -> RetryPolicy {
        let c = &self.ctx.config;
        RetryPolicy {
            initial_backoff: c.initial_backoff,
            multiplier: c.backoff_multiplier,
            max_backoff: c.max_backoff,
            jitter: c.backoff_jitter,
            max_retries: c.max_retries,
            max_restarts: c.max_restarts,
            restart_window: c.restart_window,
        }
    }

    fn set_state(&mut self, to: ConnectionState) {
        match self.machine.transition(to) {
            Ok(from) => debug!(state = %to, from = %from, "connection state changed"),
            Err(e) => warn!(error = %e, "ignoring illegal state transition"),
        }
        self.shared.stats.set_state(self.machine.state());
    }

    fn emit(&self, e: ControlEvent) {
        let _ = self.ctx.control_tx.send(e);
    }

    fn finish(&mut self, state: ConnectionState, reason: DisconnectReason) -> ConnectionOutcome {
        if state != self.machine.state() {
            self.set_state(state);
        }
        ConnectionOutcome {
            state: self.machine.state(),
            reason,
            was_connected: self.was_connected,
        }
    }

    async fn run(mut self, stream: Option<TcpStream>, flow: HandshakeFlow) -> ConnectionOutcome {
        if let Some(stream) = stream {
            self.set_state(ConnectionState::AwaitingHandshake);
            let end = self.session(stream, flow).await;
            return self.after_inbound(end).await;
        }
        loop {
            self.set_state(ConnectionState::Connecting);
            let connect_timeout = self.ctx.config.connect_timeout;
            let dial = tokio::select! {
                _ = self.shared.cancel.cancelled() => {
                    return self.finish(ConnectionState::Disconnected, DisconnectReason::Requested);
                }
                r = timeout(connect_timeout, TcpStream::connect(self.peer.socket_addr())) => r,
            };
            let failure = match dial {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    self.set_state(ConnectionState::AwaitingHandshake);
                    match self.session(stream, HandshakeFlow::Outbound).await {
                        SessionEnd::Lost {
                            reason,
                            connected: true,
                        } => {
                            self.emit(ControlEvent::ConnectionLost {
                                peer_id: self.peer.id,
                                reason: reason.to_string(),
                            });
                            info!(error = %reason, "connection lost");
                            match self
                                .retry
                                .on_connection_lost(&self.policy(), Instant::now())
                            {
                                RetryDecision::RestartNow => {
                                    self.emit(ControlEvent::ConnectionRestarting {
                                        peer_id: self.peer.id,
                                        reason: reason.to_string(),
                                    });
                                    info!("restarting connection");
                                    self.set_state(ConnectionState::Disconnected);
                                    continue;
                                }
                                _ => {
                                    warn!(
                                        max_restarts = self.ctx.config.max_restarts,
                                        "too many restarts, giving up"
                                    );
                                    self.mark(PeerStatus::Inaccessible).await;
                                    return self.finish(ConnectionState::Failed, reason);
                                }
                            }
                        }
                        SessionEnd::Lost {
                            reason,
                            connected: false,
                        } => reason,
                        other => return self.terminal(other).await,
                    }
                }
                Ok(Err(e)) => DisconnectReason::ConnectFailed(e.to_string()),
                Err(_) => DisconnectReason::ConnectTimeout(connect_timeout),
            };
            self.emit(ControlEvent::ConnectionFailed {
                peer_id: self.peer.id,
                reason: failure.to_string(),
            });
            let unit = rand::thread_rng().gen_range(-1.0..=1.0);
            match self.retry.on_connect_failure(&self.policy(), unit) {
                RetryDecision::RetryAfter(delay) => {
                    debug!(error = %failure, delay_ms = delay.as_millis() as u64, retry = self.retry.retries(), "connect failed, backing off");
                    self.set_state(ConnectionState::Disconnected);
                    tokio::select! {
                        _ = self.shared.cancel.cancelled() => {
                            return self.finish(ConnectionState::Disconnected, DisconnectReason::Requested);
                        }
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                _ => {
                    warn!(error = %failure, retries = self.retry.retries(), "peer unreachable, giving up");
                    self.mark(PeerStatus::Inaccessible).await;
                    return self.finish(ConnectionState::Failed, failure);
                }
            }
        }
    }

    async fn after_inbound(&mut self, end: SessionEnd) -> ConnectionOutcome {
        match end {
            SessionEnd::Lost { reason, connected } => {
                if connected {
                    info!(error = %reason, "connection lost");
                    self.emit(ControlEvent::ConnectionLost {
                        peer_id: self.peer.id,
                        reason: reason.to_string(),
                    });
                } else {
                    self.emit(ControlEvent::ConnectionFailed {
                        peer_id: self.peer.id,
                        reason: reason.to_string(),
                    });
                }
                let state = if self.machine.state() == ConnectionState::Connected {
                    ConnectionState::Disconnected
                } else {
                    ConnectionState::Failed
                };
                self.finish(state, reason)
            }
            other => self.terminal(other).await,
        }
    }

    /// Ends that never restart: handshake failures, bans, timeouts, requests.
    async fn terminal(&mut self, end: SessionEnd) -> ConnectionOutcome {
        match end {
            SessionEnd::Requested => {
                if self.was_connected {
                    self.emit(ControlEvent::ConnectionLost {
                        peer_id: self.peer.id,
                        reason: DisconnectReason::Requested.to_string(),
                    });
                }
                self.finish(ConnectionState::Disconnected, DisconnectReason::Requested)
            }
            SessionEnd::PingTimeout(waited) => {
                let reason = DisconnectReason::PingTimeout(waited);
                warn!(error = %reason, "peer stopped answering");
                self.emit(ControlEvent::ConnectionLost {
                    peer_id: self.peer.id,
                    reason: reason.to_string(),
                });
                self.mark(PeerStatus::Inaccessible).await;
                self.finish(ConnectionState::Failed, reason)
            }
            SessionEnd::Ban { reason, why } => {
                self.ban(reason).await;
                if self.was_connected && self.machine.state() == ConnectionState::Connected {
                    self.emit(ControlEvent::ConnectionLost {
                        peer_id: self.peer.id,
                        reason: why.to_string(),
                    });
                } else {
                    self.emit(ControlEvent::ConnectionFailed {
                        peer_id: self.peer.id,
                        reason: why.to_string(),
                    });
                }
                self.finish(ConnectionState::Rejected, why)
            }
            SessionEnd::Handshake(f) => {
                let reason = DisconnectReason::Handshake(f.clone());
                match &f {
                    HandshakeFailure::OverCapacity => {
                        info!("inbound peer refused: connection limit reached");
                        self.emit(ControlEvent::ConnectionRejectedCapacity {
                            peer_id: self.peer.id,
                            address: self.peer.socket_addr(),
                        });
                        return self.finish(ConnectionState::Rejected, reason);
                    }
                    HandshakeFailure::Timeout(_) => {
                        warn!(error = %f, "handshake timed out");
                        self.mark(PeerStatus::Inaccessible).await;
                        self.emit(ControlEvent::ConnectionFailed {
                            peer_id: self.peer.id,
                            reason: reason.to_string(),
                        });
                        return self.finish(ConnectionState::Failed, reason);
                    }
                    _ => {}
                }
                if let Some(ban) = ban_reason(&f) {
                    self.ban(ban).await;
                } else {
                    // Obsolete version or ourselves: not a ban, but not worth dialling again.
                    warn!(error = %f, "handshake refused");
                    if self.machine.state() != ConnectionState::Connected {
                        self.mark(PeerStatus::Inaccessible).await;
                    }
                }
                self.emit(ControlEvent::ConnectionFailed {
                    peer_id: self.peer.id,
                    reason: reason.to_string(),
                });
                self.finish(ConnectionState::Rejected, reason)
            }
            SessionEnd::Lost { reason, .. } => self.finish(ConnectionState::Failed, reason),
        }
    }

    async fn mark(&mut self, status: PeerStatus) {
        let mut peer = match self.ctx.store.read(self.peer.id).await {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "reading peer from store");
                return;
            }
        };
        if matches!(peer.status, PeerStatus::Banned { .. }) {
            return;
        }
        if peer.set_status(status) {
            if let Err(e) = self.ctx.store.update(peer.clone()).await {
                warn!(error = %e, "updating peer status");
            }
        }
        self.peer = peer;
    }

    async fn ban(&mut self, reason: BanReason) {
        let ip = self.peer.ip;
        let until = unix_now().saturating_add(self.ctx.ban_duration.as_secs());
        warn!(%ip, reason = %reason, "banning peer");
        match self
            .ctx
            .store
            .ban_ip(ip, reason.clone(), Some(until), &self.ctx.whitelist)
            .await
        {
            Ok(crate::p2p::store::BanOutcome::Whitelisted) => {}
            Ok(_) => self.emit(ControlEvent::PeerBanned {
                peer_id: self.peer.id,
                ip,
                reason,
            }),
            Err(e) => warn!(error = %e, "storing ban"),
        }
    }

    fn our_version(&self) -> VersionMessage {
        let l = &self.ctx.local;
        VersionMessage {
            version: PROTOCOL_VERSION,
            services: l.services,
            timestamp: unix_now() as i64,
            receiver: NetAddress::new(self.peer.socket_addr(), 0),
            sender: NetAddress {
                services: l.services,
                ..NetAddress::UNSPECIFIED
            },
            nonce: rand::thread_rng().gen_range(1..=u64::MAX),
            user_agent: l.user_agent.clone(),
            start_height: l.start_height,
            relay: l.relay,
            // Empty until streams are supported (PROTOCOL.md §9.5).
            association_id: Some(AssociationId::Empty),
        }
    }

    fn recv_limits(&self) -> RecvLimits {
        RecvLimits {
            max_payload: self.ctx.config.max_recv_payload,
            max_block: self.ctx.config.max_block_size,
            ..RecvLimits::default()
        }
    }

    async fn session(&mut self, stream: TcpStream, flow: HandshakeFlow) -> SessionEnd {
        let (mut rd, wr) = stream.into_split();
        let outbox = Outbox::new(self.ctx.send_queue_bytes);
        let writer = tokio::spawn(
            write_loop(wr, outbox.clone(), self.shared.stats.clone()).in_current_span(),
        );
        let mut s = Session {
            codec: MessageCodec::new(self.ctx.network).with_recv_limits(self.recv_limits()),
            outbox,
            started: Instant::now(),
            keepalive: None,
            score: 0,
            pending_push: None,
        };
        let end = self.session_loop(&mut rd, &mut s, flow).await;
        if let Ok(mut g) = self.shared.session.lock() {
            *g = None;
        }
        s.outbox.close();
        // Let the writer flush what is queued (a final reject, a pong) briefly, then stop it.
        let mut writer = writer;
        if timeout(Duration::from_secs(2), &mut writer).await.is_err() {
            writer.abort();
        }
        end
    }

    async fn session_loop(
        &mut self,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
        s: &mut Session,
        flow: HandshakeFlow,
    ) -> SessionEnd {
        let filter = {
            let list = self.ctx.banned_agents.clone();
            Arc::new(move |ua: &str| list.is_banned(ua)) as super::UserAgentFilter
        };
        let mut hs = Handshake::new(
            flow,
            self.ctx.network,
            self.our_version(),
            self.ctx.nonces.clone(),
            filter,
            self.ctx.config.handshake_timeout,
            s.started,
        );
        let out = hs.start();
        if let Some(end) = self.apply_handshake(out, s) {
            return end;
        }
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            let deadline = match &s.keepalive {
                Some(k) => k.next_deadline(),
                None => hs.deadline(),
            };
            tokio::select! {
                biased;
                _ = self.shared.cancel.cancelled() => return SessionEnd::Requested,
                r = read_some(rd, &mut buf) => {
                    match r {
                        Ok(0) => return SessionEnd::Lost { reason: DisconnectReason::PeerClosed, connected: s.keepalive.is_some() },
                        Err(e) => return SessionEnd::Lost { reason: read_error(e), connected: s.keepalive.is_some() },
                        Ok(n) => {
                            self.shared.stats.add_bytes_in(n);
                            if let Some(k) = s.keepalive.as_mut() {
                                k.on_bytes_received(Instant::now());
                            }
                        }
                    }
                    if let Some(end) = self.drain_frames(&mut buf, s, &mut hs).await {
                        return end;
                    }
                }
                _ = async { if let Some(f) = s.pending_push.as_mut() { f.await } }, if s.pending_push.is_some() => {
                    s.pending_push = None;
                }
                cmd = self.cmd_rx.recv(), if s.pending_push.is_none() => {
                    match cmd {
                        None => return SessionEnd::Requested,
                        Some(c) => if let Some(end) = self.on_command(c, s) { return end; },
                    }
                }
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    if let Some(k) = s.keepalive.as_mut() {
                        match k.on_tick(now, || rand::thread_rng().gen()) {
                            KeepaliveAction::SendPing(nonce) => {
                                trace!(nonce, "ping");
                                if let Some(end) = self.send_control(s, &Message::Ping(nonce)) { return end; }
                            }
                            KeepaliveAction::TimedOut { waited } => return SessionEnd::PingTimeout(waited),
                            KeepaliveAction::Idle => {}
                        }
                    } else {
                        let out = hs.on_tick(now);
                        if let Some(end) = self.apply_handshake(out, s) { return end; }
                    }
                }
            }
        }
    }

    fn on_command(&mut self, cmd: PeerConnectionCommand, s: &mut Session) -> Option<SessionEnd> {
        match cmd {
            PeerConnectionCommand::Disconnect => Some(SessionEnd::Requested),
            PeerConnectionCommand::UpdateConfig(c) => {
                debug!("connection settings updated");
                self.ctx.config = c;
                s.codec.set_recv_limits(self.recv_limits());
                if let Some(k) = s.keepalive.as_mut() {
                    k.set_timing(
                        self.ctx.config.ping_interval,
                        self.ctx.config.ping_timeout,
                        Instant::now(),
                    );
                }
                None
            }
            PeerConnectionCommand::SendMessage(m) => {
                if s.keepalive.is_none() {
                    warn!(
                        command = m.command(),
                        "dropping message: handshake not complete"
                    );
                    return None;
                }
                match s.codec.encode_to_bytes(&m) {
                    Ok(frame) => {
                        self.shared.stats.count_sent(m.command(), frame.len());
                        let outbox = s.outbox.clone();
                        s.pending_push = Some(Box::pin(async move {
                            let _ = outbox.push_bulk(frame).await;
                        }));
                    }
                    Err(e) => warn!(error = %e, "refusing to send"),
                }
                None
            }
        }
    }

    /// Decodes every complete frame in `buf` and reacts to each.
    async fn drain_frames(
        &mut self,
        buf: &mut BytesMut,
        s: &mut Session,
        hs: &mut Handshake,
    ) -> Option<SessionEnd> {
        loop {
            let frame = match s.codec.decode_frame(buf) {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => {
                    if let Some(end) = self.on_codec_error(e, s, hs) {
                        return Some(end);
                    }
                    continue;
                }
            };
            let size = frame.header.wire_len() + frame.payload.len();
            self.shared
                .stats
                .count_received(&frame.header.command, size);
            let msg = match frame.message() {
                Ok(m) => m,
                Err(e) => {
                    if let Some(end) = self.on_codec_error(e, s, hs) {
                        return Some(end);
                    }
                    continue;
                }
            };
            trace!(command = %frame.header.command, bytes = size, "received");
            if let Some(tap) = &self.ctx.tap {
                let _ = tap.send(BitcoinMessageEvent {
                    peer_id: self.peer.id,
                    message: msg.clone(),
                });
            }
            if s.keepalive.is_none() {
                let out = hs.on_message(&msg);
                if let Some(end) = self.apply_handshake(out, s) {
                    return Some(end);
                }
                continue;
            }
            if let Some(end) = self.on_message(msg, s).await {
                return Some(end);
            }
        }
    }

    fn on_codec_error(
        &mut self,
        e: CodecError,
        s: &mut Session,
        hs: &mut Handshake,
    ) -> Option<SessionEnd> {
        match e {
            CodecError::BadMagic { received, .. } => {
                let out = hs.on_wrong_magic(received);
                let why = DisconnectReason::BadFrame(e.to_string());
                for o in out {
                    if let HandshakeOutput::Failed(f) = o {
                        if let Some(reason) = ban_reason(&f) {
                            return Some(SessionEnd::Ban { reason, why });
                        }
                    }
                }
                Some(SessionEnd::Lost {
                    reason: why,
                    connected: s.keepalive.is_some(),
                })
            }
            CodecError::Oversized { .. } => Some(SessionEnd::Ban {
                reason: BanReason::Misbehavior {
                    score: BAN_SCORE_THRESHOLD,
                    reason: "Oversized header detected".into(),
                },
                why: DisconnectReason::Oversized(e.to_string()),
            }),
            CodecError::Io(io) => Some(SessionEnd::Lost {
                reason: DisconnectReason::Io(io.to_string()),
                connected: s.keepalive.is_some(),
            }),
            CodecError::VarIntTooLarge { .. } => {
                debug!(error = %e, "dropping message");
                self.misbehave(s, 1, "Over-long size message protection")
            }
            CodecError::Malformed { ref command, .. }
            | CodecError::NonCanonicalVarInt { ref command, .. } => {
                debug!(error = %e, "dropping malformed message");
                let reject = Message::Reject(Reject {
                    message: command.chars().take(12).collect(),
                    code: RejectCode::Malformed,
                    reason: "error parsing message".into(),
                    hash: None,
                });
                self.send_control(s, &reject)
            }
            // The node drops bad checksums and bad command fields silently.
            other => {
                debug!(error = %other, "dropping frame");
                None
            }
        }
    }

    fn misbehave(&mut self, s: &mut Session, score: u32, reason: &str) -> Option<SessionEnd> {
        s.score = s.score.saturating_add(score);
        self.emit(ControlEvent::PeerMisbehavior {
            peer_id: self.peer.id,
            score: s.score,
            reason: reason.to_string(),
        });
        if s.score >= BAN_SCORE_THRESHOLD {
            return Some(SessionEnd::Ban {
                reason: BanReason::Misbehavior {
                    score: s.score,
                    reason: reason.to_string(),
                },
                why: DisconnectReason::Misbehavior {
                    score: s.score,
                    reason: reason.to_string(),
                },
            });
        }
        None
    }

    fn apply_handshake(
        &mut self,
        out: Vec<HandshakeOutput>,
        s: &mut Session,
    ) -> Option<SessionEnd> {
        for o in out {
            match o {
                HandshakeOutput::Send(m) => {
                    if let Some(end) = self.send_control(s, &m) {
                        return Some(end);
                    }
                }
                HandshakeOutput::Misbehaving { total, reason, .. } => {
                    debug!(score = total, reason, "message before handshake completed");
                    s.score = total;
                    self.emit(ControlEvent::PeerMisbehavior {
                        peer_id: self.peer.id,
                        score: total,
                        reason: reason.to_string(),
                    });
                }
                HandshakeOutput::Failed(f) => {
                    if let Some(reason) = ban_reason(&f) {
                        return Some(SessionEnd::Ban {
                            reason,
                            why: DisconnectReason::Handshake(f),
                        });
                    }
                    return Some(SessionEnd::Handshake(f));
                }
                HandshakeOutput::Complete(v) => self.on_handshake_complete(*v, s),
            }
        }
        None
    }

    fn on_handshake_complete(&mut self, v: VersionMessage, s: &mut Session) {
        let now = Instant::now();
        s.codec.set_peer_version(v.version);
        let details = PeerDetails {
            version: v.version,
            user_agent: v.user_agent.clone(),
            services: v.services,
            start_height: v.start_height,
            relay: v.relay,
            ..PeerDetails::default()
        };
        self.shared
            .stats
            .set_connected(details, now.saturating_duration_since(s.started));
        let _ = self.machine.transition(ConnectionState::Connected);
        debug!(state = %ConnectionState::Connected, "connection state changed");
        self.was_connected = true;
        self.retry.on_handshake_complete();
        s.keepalive = Some(Keepalive::new(
            self.ctx.config.ping_interval,
            self.ctx.config.ping_timeout,
            now,
        ));
        if let Ok(mut g) = self.shared.session.lock() {
            *g = Some((s.outbox.clone(), s.codec.clone()));
        }
        // Our protoconf goes after our verack (PROTOCOL.md §2.5), then sendheaders.
        let max = u32::try_from(self.ctx.config.max_recv_payload)
            .unwrap_or(DEFAULT_MAX_RECV_PAYLOAD as u32);
        let _ = self.send_control(s, &Message::Protoconf(Protoconf::new(max, STREAM_POLICIES)));
        let _ = self.send_control(s, &Message::SendHeaders);
        info!(user_agent = %v.user_agent, version = v.version, start_height = v.start_height, "connection established");
        self.emit(ControlEvent::HandshakeComplete {
            peer_id: self.peer.id,
        });
        self.emit(ControlEvent::ConnectionEstablished {
            peer_id: self.peer.id,
            is_inbound: self.shared.stats.direction() == Direction::Inbound,
        });
        let store = self.ctx.store.clone();
        let id = self.peer.id;
        tokio::spawn(
            async move {
                if let Ok(Some(mut p)) = store.read(id).await {
                    if p.set_status(PeerStatus::Valid) {
                        if let Err(e) = store.update(p).await {
                            warn!(error = %e, "marking peer valid");
                        }
                    }
                }
            }
            .in_current_span(),
        );
    }

    /// Handles a message after the handshake: consume what is ours, deliver the rest.
    async fn on_message(&mut self, msg: Message, s: &mut Session) -> Option<SessionEnd> {
        let now = Instant::now();
        match &msg {
            Message::Ping(nonce) => return self.send_control(s, &Message::Pong(*nonce)),
            Message::Pong(nonce) => {
                if let Some(rtt) = s.keepalive.as_mut().and_then(|k| k.on_pong(*nonce, now)) {
                    trace!(rtt_ms = rtt.as_millis() as u64, "pong");
                    self.shared.stats.set_rtt(rtt);
                    return None;
                }
                // Not the answer to our own ping: the application sent that ping, so the pong
                // is the application's to see.
            }
            Message::Protoconf(p) => {
                let limit = u64::from(p.max_recv_payload_length);
                s.codec.set_peer_max_recv(limit);
                if let Ok(mut g) = self.shared.session.lock() {
                    if let Some((_, codec)) = g.as_mut() {
                        codec.set_peer_max_recv(limit);
                    }
                }
                self.shared
                    .stats
                    .update_details(|d| d.max_recv_payload = Some(limit));
                return None;
            }
            Message::SendHeaders => {
                self.shared.stats.update_details(|d| d.wants_headers = true);
                return None;
            }
            Message::SendCmpct(c) => {
                self.shared
                    .stats
                    .update_details(|d| d.compact_blocks = Some((c.announce, c.version)));
                return None;
            }
            Message::FeeFilter(f) => {
                let f = *f;
                self.shared.stats.update_details(|d| d.fee_filter = Some(f));
                return None;
            }
            Message::AuthCh(_) | Message::Verack | Message::Version(_) => return None,
            _ => {}
        }
        let event = BitcoinMessageEvent {
            peer_id: self.peer.id,
            message: msg,
        };
        if !self.ctx.sinks.is_empty() {
            // Lossless subscribers: wait for room (reading pauses, TCP pushes back).
            tokio::select! {
                _ = self.ctx.sinks.deliver(&event) => {}
                _ = self.shared.cancel.cancelled() => return Some(SessionEnd::Requested),
            }
        }
        let _ = self.ctx.message_tx.send(event);
        None
    }

    fn send_control(&mut self, s: &mut Session, m: &Message) -> Option<SessionEnd> {
        let frame = match s.codec.encode_to_bytes(m) {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "cannot encode control message");
                return None;
            }
        };
        self.shared.stats.count_sent(m.command(), frame.len());
        match s.outbox.push_priority(frame) {
            Ok(()) => None,
            Err(super::OutboxError::PriorityFull) => Some(SessionEnd::Lost {
                reason: DisconnectReason::NotReading,
                connected: s.keepalive.is_some(),
            }),
            Err(super::OutboxError::Closed) => Some(SessionEnd::Lost {
                reason: DisconnectReason::Io("writer closed".into()),
                connected: s.keepalive.is_some(),
            }),
        }
    }
}

struct Session {
    codec: MessageCodec,
    outbox: Outbox,
    started: Instant,
    keepalive: Option<Keepalive>,
    score: u32,
    pending_push: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

/// The ban a handshake failure deserves, if any.
fn ban_reason(f: &HandshakeFailure) -> Option<BanReason> {
    match f {
        HandshakeFailure::NetworkMismatch { expected, received } => {
            Some(BanReason::NetworkMismatch {
                expected: *expected,
                received: received.to_string(),
            })
        }
        HandshakeFailure::BlockchainMismatch { magic } => Some(BanReason::BlockchainMismatch {
            received: hex::encode(magic),
        }),
        HandshakeFailure::BannedUserAgent { user_agent } => Some(BanReason::BannedUserAgent {
            user_agent: user_agent.clone(),
        }),
        HandshakeFailure::Misbehavior { score, reason } => Some(BanReason::Misbehavior {
            score: *score,
            reason: reason.clone(),
        }),
        _ => None,
    }
}

/// A reset is how most peers close a socket with data still in flight: report it as a close.
fn read_error(e: std::io::Error) -> DisconnectReason {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            DisconnectReason::PeerClosed
        }
        _ => DisconnectReason::Io(e.to_string()),
    }
}

/// Reads what the socket has, keeping a fixed amount of room in `buf` so that large payloads
/// arrive in big reads; the buffer then grows with what arrives, never with a declared length.
async fn read_some(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    const READ_ROOM: usize = 16 * 1024;
    if buf.capacity() - buf.len() < READ_ROOM {
        buf.reserve(READ_ROOM);
    }
    rd.read_buf(buf).await
}

/// Drains the outbox into the socket until it is closed and empty or the socket fails.
async fn write_loop(mut wr: OwnedWriteHalf, outbox: Outbox, stats: Arc<ConnectionStats>) {
    while let Some((frame, permit)) = outbox.next().await {
        if let Err(e) = write_frame(&mut wr, &frame).await {
            debug!(error = %e, "write failed");
            outbox.close();
            break;
        }
        stats.add_bytes_out(frame.len());
        drop(permit);
    }
    let _ = wr.shutdown().await;
}

async fn write_frame(wr: &mut OwnedWriteHalf, frame: &Bytes) -> std::io::Result<()> {
    wr.write_all(frame).await
}
