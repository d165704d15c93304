//! [`PeerClient`]: one connection to one peer, for programs that need a single peer rather than
//! a managed pool (a request/response tool, a test, a probe). It runs the same connection actor
//! and the same [`PeerProtocol`](crate::p2p::connection) rules the manager's connections do, so
//! the handshake, `protoconf`, pings, size limits and bans are exactly those of the library,
//! with no peer store, no retries and no restarts: one dial, one session.
//!
//! Messages arrive on a lossless channel (the connection stops reading while it is full, so a
//! reply is never dropped however slowly it is consumed) or, with
//! [`PeerClientOptions::lossy`], on a broadcast channel that drops the oldest messages instead
//! (the connection never waits for the reader); lifecycle events on a broadcast channel; and,
//! if asked for, a *tap* shows every message received, handshake and keepalive included, before
//! the connection acts on it.
//!
//! A `block` above `block_streaming.threshold` is never buffered whole, here as in the manager
//! (docs/GUIDE.md, "Blocks of any size"): it arrives as a [`BlockStream`] on
//! [`PeerClient::block_streams`], in [`PeerClientOptions::block_stream_mode`], within the
//! streaming window and budget. One nobody takes (the receiver not taken, dropped, or still
//! holding an unread stream) is read, verified and dropped.

use std::net::SocketAddr;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use uuid::Uuid;

use crate::p2p::config::ManagerConfig;
use crate::p2p::connection::link::{ConnectionContext, Streaming};
use crate::p2p::connection::{
    ConnectionOutcome, ConnectionSnapshot, DisconnectReason, PeerConnection, PeerDetails,
    PeerHandle,
};
use crate::p2p::error::{P2pError, Result};
use crate::p2p::events::{BitcoinMessageEvent, ControlEvent};
use crate::p2p::peer::Peer;
use crate::p2p::services::blocks::stream::StreamBudget;
use crate::p2p::services::blocks::{BlockStream, BlockStreamMode};
use crate::p2p::Message;

/// How a [`PeerClient`] buffers what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerClientOptions {
    /// Messages buffered for [`PeerClient::recv`]: before the connection stops reading, or, when
    /// `lossy`, before the oldest are dropped.
    pub capacity: usize,
    /// Drop messages rather than slow the peer down: [`PeerClient::recv`] reads a broadcast
    /// channel of `capacity` messages that loses the oldest when the reader falls behind
    /// ([`PeerClient::dropped`] counts them), and the connection keeps reading its socket (and
    /// answering pings) however slowly messages are consumed. For tools that watch a busy peer
    /// and prefer gaps to back-pressure: a monitor of announcements, a traffic sampler. Off by
    /// default: a request/response program must not lose the reply it waits for.
    pub lossy: bool,
    /// Keep a tap of every message received ([`PeerClient::take_tap`]) with room for this many
    /// (lossy: a tap that falls behind skips messages).
    pub tap_capacity: Option<usize>,
    /// Lifecycle events buffered for [`PeerClient::events`].
    pub event_capacity: usize,
    /// What a block above the streaming threshold yields on [`PeerClient::block_streams`]:
    /// parsed transactions (the default), txids only, or the raw bytes.
    pub block_stream_mode: BlockStreamMode,
}

impl Default for PeerClientOptions {
    fn default() -> Self {
        PeerClientOptions {
            capacity: 256,
            lossy: false,
            tap_capacity: None,
            event_capacity: 1000,
            block_stream_mode: BlockStreamMode::Transactions,
        }
    }
}

/// Where [`PeerClient::recv`] reads messages.
#[derive(Debug)]
enum Inbox {
    /// A subscriber of the connection's lossless sinks (back-pressure).
    Lossless(crate::p2p::MessageReceiver),
    /// A receiver of the connection's message broadcast (drops the oldest).
    Lossy(broadcast::Receiver<BitcoinMessageEvent>),
}

/// The receivers of a client, all made before its connection starts.
struct Channels {
    messages: Inbox,
    events: broadcast::Receiver<ControlEvent>,
    first_events: broadcast::Receiver<ControlEvent>,
    tap: Option<broadcast::Receiver<BitcoinMessageEvent>>,
    streams: mpsc::Receiver<BlockStream>,
}

/// One connection to one peer. See the module documentation.
#[derive(Debug)]
pub struct PeerClient {
    address: SocketAddr,
    handle: PeerHandle,
    messages: Inbox,
    /// Messages a lossy inbox dropped because `recv` fell behind.
    dropped: u64,
    events: broadcast::Receiver<ControlEvent>,
    /// A receiver made before the dial, handed out by the first [`PeerClient::events`].
    first_events: Option<broadcast::Receiver<ControlEvent>>,
    tap: Option<broadcast::Receiver<BitcoinMessageEvent>>,
    streams: Option<mpsc::Receiver<BlockStream>>,
}

impl PeerClient {
    /// Dials `address` with `config`'s settings and waits for the handshake (at most the
    /// connect timeout plus the handshake timeout). Fails with [`P2pError::Disconnected`]
    /// carrying the typed reason when the peer cannot be reached or the rules refuse it.
    pub async fn connect(config: &ManagerConfig, address: SocketAddr) -> Result<PeerClient> {
        let mut client = Self::start(config, address, PeerClientOptions::default())?;
        client.established().await?;
        Ok(client)
    }

    /// Dials `address` and returns at once; the handshake runs in the background
    /// ([`PeerClient::established`] waits for it).
    pub fn start(
        config: &ManagerConfig,
        address: SocketAddr,
        options: PeerClientOptions,
    ) -> Result<PeerClient> {
        let (handle, channels) = Self::spawn(config, options, |ctx| {
            PeerConnection::outbound(Peer::new(address.ip(), address.port()), ctx)
        })?;
        Ok(Self::assemble(address, handle, channels))
    }

    fn spawn(
        config: &ManagerConfig,
        options: PeerClientOptions,
        start: impl FnOnce(ConnectionContext) -> PeerHandle,
    ) -> Result<(PeerHandle, Channels)> {
        let mut config = config.clone();
        config.connection.max_retries = 0;
        config.connection.max_restarts = 0;
        let (control_tx, events) = broadcast::channel(options.event_capacity.max(1));
        let first_events = control_tx.subscribe();
        // The connection delivers to its lossless sinks (if any subscribed, waiting for room)
        // and then to its broadcast: a lossless client reads the former and leaves the
        // broadcast without receivers, a lossy one subscribes no sink and reads the broadcast.
        let broadcast_capacity = if options.lossy { options.capacity } else { 1 };
        let (message_tx, lossy_rx) = broadcast::channel(broadcast_capacity.max(1));
        let mut ctx = ConnectionContext::new(&config, control_tx, message_tx)?;
        ctx.metrics = crate::p2p::metrics::Metrics::from_global();
        let messages = if options.lossy {
            Inbox::Lossy(lossy_rx)
        } else {
            drop(lossy_rx);
            Inbox::Lossless(ctx.sinks.subscribe(options.capacity))
        };
        let tap = options.tap_capacity.map(|n| {
            let (tx, rx) = broadcast::channel(n.max(1));
            ctx.tap = Some(tx);
            rx
        });
        // One stream at a time: a second large block while the first is unread is dropped
        // rather than held (the window and budget bound what the first holds).
        let (offers, streams) = mpsc::channel(1);
        ctx.streaming = Some(Streaming {
            config: config.block_streaming.clone(),
            budget: StreamBudget::new(config.block_streaming.budget),
            offers: Some((offers, options.block_stream_mode)),
        });
        let channels = Channels {
            messages,
            events,
            first_events,
            tap,
            streams,
        };
        Ok((start(ctx), channels))
    }

    fn assemble(address: SocketAddr, handle: PeerHandle, channels: Channels) -> PeerClient {
        PeerClient {
            address,
            handle,
            messages: channels.messages,
            dropped: 0,
            events: channels.events,
            first_events: Some(channels.first_events),
            tap: channels.tap,
            streams: Some(channels.streams),
        }
    }

    /// Takes the receiver of blocks above the streaming threshold (`None` once taken). Each
    /// [`BlockStream`] yields the block's parts as they arrive and ends saying whether the
    /// checksum and merkle root matched; reading it slowly slows the peer down. Blocks at or
    /// under the threshold keep arriving whole on [`PeerClient::recv`].
    pub fn block_streams(&mut self) -> Option<mpsc::Receiver<BlockStream>> {
        self.streams.take()
    }

    /// Runs the inbound handshake on a socket the application accepted itself and returns at
    /// once; the connection ends when that session does.
    pub fn accept(
        config: &ManagerConfig,
        stream: tokio::net::TcpStream,
        options: PeerClientOptions,
    ) -> Result<PeerClient> {
        let address = stream.peer_addr()?;
        let (handle, channels) = Self::spawn(config, options, |ctx| {
            PeerConnection::inbound(Peer::new(address.ip(), address.port()), stream, ctx)
        })?;
        Ok(Self::assemble(address, handle, channels))
    }

    /// Waits until the handshake completes, or fails with the reason the connection ended.
    pub async fn established(&mut self) -> Result<()> {
        loop {
            if self.snapshot().state == crate::p2p::ConnectionState::Connected {
                return Ok(());
            }
            match self.events.recv().await {
                Ok(ControlEvent::ConnectionEstablished { .. }) => return Ok(()),
                Ok(ControlEvent::ConnectionFailed { reason, .. })
                | Ok(ControlEvent::ConnectionLost { reason, .. }) => {
                    return Err(P2pError::Disconnected {
                        address: self.address,
                        reason,
                    })
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(P2pError::Disconnected {
                        address: self.address,
                        reason: DisconnectReason::PeerClosed,
                    })
                }
            }
        }
    }

    /// The peer's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The connection's id (as in its events).
    pub fn peer_id(&self) -> Uuid {
        self.handle.peer_id()
    }

    /// What the peer announced in its `version` and told us since.
    pub fn details(&self) -> PeerDetails {
        self.snapshot().details.unwrap_or_default()
    }

    /// The connection's statistics now.
    pub fn snapshot(&self) -> ConnectionSnapshot {
        self.handle.stats().snapshot()
    }

    /// Sends a message, waiting while the send queue is full; refused when the connection is not
    /// established or the message is larger than the peer accepts.
    pub async fn send(&self, message: Message) -> Result<()> {
        self.handle.send_message(message).await
    }

    /// The next message the peer sends that the rules hand to the application (pings,
    /// `protoconf` and the like are handled by the connection); `None` once the connection has
    /// ended and every message has been read. With [`PeerClientOptions::lossy`], messages the
    /// reader fell too far behind to see are skipped and counted by [`PeerClient::dropped`].
    pub async fn recv(&mut self) -> Option<Message> {
        match &mut self.messages {
            Inbox::Lossless(rx) => rx.recv().await.map(|e| e.message),
            Inbox::Lossy(rx) => loop {
                match rx.recv().await {
                    Ok(e) => return Some(e.message),
                    Err(RecvError::Lagged(n)) => self.dropped += n,
                    Err(RecvError::Closed) => return None,
                }
            },
        }
    }

    /// How many messages [`PeerClient::recv`] skipped because the reader fell behind a
    /// [`lossy`](PeerClientOptions::lossy) client's buffer (always 0 for a lossless client).
    /// Counted as `recv` finds the gap, so it may lag the connection by a buffer's worth.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// As [`PeerClient::recv`], giving up at `deadline` with [`P2pError::Timeout`].
    pub async fn recv_until(&mut self, deadline: Instant) -> Result<Option<Message>> {
        let started = Instant::now();
        tokio::time::timeout_at(deadline, self.recv())
            .await
            .map_err(|_| P2pError::Timeout {
                what: format!("a message from {}", self.address),
                after: started.elapsed(),
            })
    }

    /// Lifecycle events of this connection: the first call's receiver has every event since the
    /// dial, later calls' receivers start from the call.
    pub fn events(&mut self) -> broadcast::Receiver<ControlEvent> {
        self.first_events
            .take()
            .unwrap_or_else(|| self.events.resubscribe())
    }

    /// Takes the tap, if it was asked for: every message received since the dial, before the
    /// connection acts on it.
    pub fn take_tap(&mut self) -> Option<broadcast::Receiver<BitcoinMessageEvent>> {
        self.tap.take()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the connection to end by itself and returns how it ended.
    pub async fn finished(self) -> ConnectionOutcome {
        self.handle.join().await
    }

    /// Closes the connection cleanly and returns how it ended.
    pub async fn close(self) -> ConnectionOutcome {
        self.handle.disconnect();
        self.handle.join().await
    }
}
