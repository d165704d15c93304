//! What a connection shares with whoever started it: the [`ConnectionContext`] it is given,
//! the [`PeerLink`] to send through and watch it, and the [`PeerHandle`] to wait for it. Reports
//! ([`Report`]) are the facts a connection tells the owner of the peer store; it never writes
//! the store itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    ConnectionState, ConnectionStats, Direction, DisconnectReason, HandshakeFailure, NonceRegistry,
    Outbox,
};
use crate::bitcoin::Network;
use crate::p2p::bans::{UserAgentBanList, Whitelist};
use crate::p2p::codec::MessageCodec;
use crate::p2p::config::{ConnectionConfig, ManagerConfig};
use crate::p2p::error::{P2pError, Result};
use crate::p2p::events::{BitcoinMessageEvent, ControlEvent, MessageSinks, PeerConnectionCommand};
use crate::p2p::limits::DEFAULT_SEND_QUEUE_BYTES;
use crate::p2p::metrics::Metrics;
use crate::p2p::peer::{BanReason, PeerStatus};
use crate::p2p::store::BanOutcome;
use crate::p2p::Message;

/// What a connection's mailbox carries: the manager's settings changes, and offences the
/// services found in this peer's messages, which the connection's `PeerProtocol` scores (the
/// score and the ban decision stay in one place).
///
/// Kept to 16 bytes (the settings are boxed): tokio's channel allocates its slots in blocks
/// of 32 when the channel is made, so every connection paid 32 times the largest variant
/// (4.8 KiB with the settings inline) for a mailbox that is almost always empty
/// (docs/BENCHMARKS.md, "10,000 connections").
#[derive(Debug)]
pub(crate) enum Mailbox {
    /// New connection settings.
    UpdateConfig(Box<ConnectionConfig>),
    /// A rule the peer broke that only a service can see.
    Offence(Offence),
}

/// An offence found outside the connection, in what the peer's messages mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offence {
    /// A `headers` announcement that does not connect to our chain (every tenth costs +20).
    UnconnectingHeaders,
    /// A rule of the catalogue, scored as the node scores it.
    Rule(crate::p2p::connection::Misbehavior),
}

/// What we advertise in our `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalVersion {
    /// Our user agent (must not match a ban pattern).
    pub user_agent: String,
    /// Our service bits (0 for a pure client).
    pub services: u64,
    /// Whether we want transaction `inv`s.
    pub relay: bool,
    /// Our best height.
    pub start_height: i32,
}

/// A fact for the owner of the peer store (the manager's supervisor), from a connection or from
/// the manager's own tasks. Handled in the order sent, so a ban can never be overtaken by a
/// status write that followed it.
#[derive(Debug)]
pub(crate) enum Report {
    /// The handshake completed.
    Established {
        /// The connection's peer.
        peer_id: Uuid,
        /// Who dialled.
        direction: Direction,
    },
    /// The rules call for a ban of this IP.
    Ban {
        /// The connection's peer.
        peer_id: Uuid,
        /// The address to ban (every port).
        ip: IpAddr,
        /// Why.
        reason: BanReason,
        /// Told the outcome once the ban is stored (`Manager::ban_peer` waits for it).
        ack: Option<tokio::sync::oneshot::Sender<Result<BanOutcome>>>,
    },
    /// Addresses a peer's `addr` named that passed the peer-learning filter
    /// (`services::addrs`): candidates the supervisor creates if it does not know them.
    Learned {
        /// The peer that sent them.
        source: Uuid,
        /// The candidates' listening addresses.
        addresses: Vec<SocketAddr>,
    },
    /// A connection actor finished (sent by the manager's monitor of that actor).
    Ended {
        /// The connection's peer.
        peer_id: Uuid,
        /// Who dialled.
        direction: Direction,
        /// How it ended.
        outcome: ConnectionOutcome,
    },
}

/// Everything a connection shares with the manager that created it.
#[derive(Clone)]
pub(crate) struct ConnectionContext {
    /// The network we are on.
    pub network: Network,
    /// Per-connection settings.
    pub config: ConnectionConfig,
    /// What we advertise.
    pub local: LocalVersion,
    /// Where facts for the peer store go; `None` for a lone connection, which then announces
    /// its bans itself.
    pub reports: Option<mpsc::Sender<Report>>,
    /// Lifecycle events.
    pub control_tx: broadcast::Sender<ControlEvent>,
    /// Messages from peers (lossy broadcast).
    pub message_tx: broadcast::Sender<BitcoinMessageEvent>,
    /// Messages from peers (lossless, back-pressured).
    pub sinks: MessageSinks,
    /// User agents to ban.
    pub banned_agents: UserAgentBanList,
    /// Addresses never banned for score.
    pub whitelist: Whitelist,
    /// Our in-flight `version` nonces (self-connection detection).
    pub nonces: NonceRegistry,
    /// Bulk bytes a connection may queue for its socket.
    pub send_queue_bytes: usize,
    /// Capacity of the broadcast channels (to count overflows).
    pub event_capacity: usize,
    /// Where measurements go.
    pub metrics: Metrics,
    /// Sees every message received, handshake and keepalive included, before the connection
    /// acts on it (for tools such as `bsvp2p connect`).
    pub tap: Option<broadcast::Sender<BitcoinMessageEvent>>,
    /// Send one `getaddr` after an outbound handshake (a manager in Normal mode that learns
    /// peers; never a lone connection).
    pub ask_for_addresses: bool,
    /// The manager's services (header chain, blocks, transactions, addresses): told when the
    /// handshake completes and given the messages they use.
    pub services: Option<crate::p2p::services::ServiceTx>,
    /// Streaming of large blocks; `None` (a lone connection, without services to hand the
    /// streams to) buffers every block whole up to `max_block_size`.
    pub streaming: Option<Streaming>,
}

/// What a connection needs to stream large blocks (docs/GUIDE.md, "Blocks of any size").
#[derive(Debug, Clone)]
pub(crate) struct Streaming {
    /// The settings.
    pub config: crate::p2p::services::blocks::BlockStreamingConfig,
    /// The manager-wide budget of queued bytes.
    pub budget: crate::p2p::services::blocks::stream::StreamBudget,
    /// Where a lone connection ([`PeerClient`](crate::p2p::PeerClient)) hands its streams, in
    /// which mode; `None` in a manager, whose block service routes them.
    pub offers: Option<(
        tokio::sync::mpsc::Sender<crate::p2p::services::blocks::stream::BlockStream>,
        crate::p2p::services::blocks::stream::BlockStreamMode,
    )>,
}

impl ConnectionContext {
    /// A context for connections of a manager configured by `config`.
    pub(crate) fn new(
        config: &ManagerConfig,
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
            reports: None,
            control_tx,
            message_tx,
            sinks: MessageSinks::default(),
            banned_agents: UserAgentBanList::parse(&config.banned_user_agents)?,
            whitelist: config.whitelist.clone(),
            nonces: NonceRegistry::default(),
            send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
            event_capacity: config.event_channel_capacity.max(1),
            metrics: Metrics::default(),
            tap: None,
            ask_for_addresses: false,
            services: None,
            streaming: None,
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

impl ConnectionOutcome {
    /// What this end means for the dialled address in the peer store: `Inaccessible` when the
    /// actor gave up, timed out, or found an obsolete peer or ourselves; otherwise nothing
    /// (bans are reported as they happen). Only meaningful for outbound connections: an inbound
    /// peer's source address is never stored.
    pub fn peer_status(&self) -> Option<PeerStatus> {
        let unusable = matches!(
            self.reason,
            DisconnectReason::PingTimeout(_)
                | DisconnectReason::Handshake(
                    HandshakeFailure::Timeout(_)
                        | HandshakeFailure::ObsoleteVersion { .. }
                        | HandshakeFailure::SelfConnection { .. }
                )
        );
        (unusable || self.state == ConnectionState::Failed).then_some(PeerStatus::Inaccessible)
    }
}

/// State shared between the actor and its links.
pub(crate) struct Shared {
    pub stats: Arc<ConnectionStats>,
    /// The session's outbox and encoder, present while connected.
    pub session: Mutex<Option<(Outbox, MessageCodec)>>,
    /// Requests wait until then after the peer said it is too busy (`REJECT_TOOBUSY`).
    pub busy_until: Mutex<Option<Instant>>,
    pub cancel: CancellationToken,
}

/// A cloneable view of a running connection: send, command, disconnect, read statistics.
#[derive(Clone)]
pub struct PeerLink {
    pub(crate) peer_id: Uuid,
    pub(crate) address: SocketAddr,
    pub(crate) direction: Direction,
    pub(crate) cmd_tx: mpsc::Sender<Mailbox>,
    pub(crate) shared: Arc<Shared>,
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

    /// Sends a message, waiting while the connection's send queue is full (and, for `getdata`,
    /// while the peer has asked us to back off). Refused, with nothing written, when the
    /// connection is not established or the message is larger than the peer accepts (its
    /// `protoconf` limit; 1 MiB until that arrives).
    pub async fn send_message(&self, message: Message) -> Result<()> {
        if matches!(message, Message::GetData(_)) {
            let until = self.shared.busy_until.lock().ok().and_then(|g| *g);
            if let Some(until) = until {
                tokio::time::sleep_until(until).await;
            }
        }
        let (outbox, frame) = self.encode(&message)?;
        let len = frame.len();
        outbox
            .push_bulk(frame)
            .await
            .map_err(|_| not_connected(self.address))?;
        self.shared.stats.count_sent(message.command(), len);
        Ok(())
    }

    /// Sends a command: `Disconnect` takes effect at once, `SendMessage` is
    /// [`PeerLink::send_message`], `UpdateConfig` goes through the actor's mailbox.
    pub async fn command(&self, cmd: PeerConnectionCommand) -> Result<()> {
        match cmd {
            PeerConnectionCommand::Disconnect => {
                self.shared.cancel.cancel();
                Ok(())
            }
            PeerConnectionCommand::SendMessage(m) => self.send_message(m).await,
            PeerConnectionCommand::UpdateConfig(c) => self
                .cmd_tx
                .send(Mailbox::UpdateConfig(Box::new(c)))
                .await
                .map_err(|_| P2pError::ChannelClosed {
                    channel: format!("connection {}", self.peer_id),
                }),
        }
    }

    /// Queues `message` only if the connection's send queue has room now; `Ok(false)` when it is
    /// full (the peer is slow to read). For the services, which must not wait on one peer.
    pub(crate) fn try_send_message(&self, message: &Message) -> Result<bool> {
        let (outbox, frame) = self.encode(message)?;
        let len = frame.len();
        let queued = outbox
            .try_push_bulk(frame)
            .map_err(|_| not_connected(self.address))?;
        if queued {
            self.shared.stats.count_sent(message.command(), len);
        }
        Ok(queued)
    }

    /// Encodes `message` with the session's codec (which knows the peer's limits) and returns
    /// it with the session's outbox; fails when the connection is not established or the
    /// message is over the peer's limit.
    fn encode(&self, message: &Message) -> Result<(Outbox, bytes::Bytes)> {
        let guard = self
            .shared
            .session
            .lock()
            .map_err(|_| not_connected(self.address))?;
        let Some((outbox, codec)) = guard.as_ref() else {
            return Err(not_connected(self.address));
        };
        Ok((outbox.clone(), codec.encode_to_bytes(message)?))
    }

    /// Sends a `block` frame whose `len`-byte payload is read from `body` as it is written
    /// (see `Manager::send_block_stream`); `checksum` is used for a basic frame. Waits for the
    /// frames queued before it, then for the write to end; returns the payload bytes written.
    pub(crate) async fn send_block_stream(
        &self,
        body: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        len: u64,
        checksum: [u8; 4],
    ) -> Result<u64> {
        let (outbox, header) = {
            let guard = self
                .shared
                .session
                .lock()
                .map_err(|_| not_connected(self.address))?;
            let Some((outbox, codec)) = guard.as_ref() else {
                return Err(not_connected(self.address));
            };
            (outbox.clone(), codec.block_frame_header(len, checksum)?)
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let job = super::outbox::StreamJob {
            header,
            body,
            len,
            done,
        };
        outbox
            .push_stream(job)
            .await
            .map_err(|_| not_connected(self.address))?;
        let written = result
            .await
            .map_err(|_| not_connected(self.address))?
            .map_err(|reason| P2pError::Connection {
                address: self.address,
                reason: format!("streaming a block failed: {reason}"),
            })?;
        self.shared.stats.count_sent(
            crate::p2p::messages::commands::BLOCK,
            usize::try_from(written).unwrap_or(usize::MAX),
        );
        Ok(written)
    }

    /// Tells the connection's protocol machine that the peer broke a rule only a service can
    /// see; the machine scores it (and bans at the threshold). Dropped if the mailbox is full.
    pub(crate) fn penalize(&self, offence: Offence) {
        let _ = self.cmd_tx.try_send(Mailbox::Offence(offence));
    }

    /// Asks the actor to close cleanly (no restart).
    pub fn disconnect(&self) {
        self.shared.cancel.cancel();
    }
}

/// The owner's side of a connection actor: a [`PeerLink`] plus the task to wait for.
pub struct PeerHandle {
    pub(crate) link: PeerLink,
    pub(crate) task: JoinHandle<ConnectionOutcome>,
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

pub(crate) fn not_connected(address: SocketAddr) -> P2pError {
    P2pError::Connection {
        address,
        reason: "not connected".into(),
    }
}
