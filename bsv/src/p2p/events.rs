//! What connections report and how the application hears it (SPEC §8).
//!
//! * [`ControlEvent`]s (lifecycle, bans, capacity) and [`BitcoinMessageEvent`]s (every message a
//!   connection does not consume itself) go out on tokio broadcast channels, as the seed asks. A
//!   broadcast receiver that falls behind loses events (`Lagged`): fine for monitoring.
//! * For applications that must not lose a transaction, [`MessageSinks`] holds lossless,
//!   bounded per-subscriber channels: when one is full, the connection that wants to deliver
//!   stops reading its socket until there is room, so TCP back-pressure slows the peer instead
//!   of us dropping messages.
//! * [`PeerConnectionCommand`] is what the manager sends a connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::p2p::config::ConnectionConfig;
use crate::p2p::connection::{DisconnectReason, Misbehavior};
use crate::p2p::peer::BanReason;
use crate::p2p::Message;

/// A command from the manager to one connection actor.
#[derive(Debug, Clone)]
pub enum PeerConnectionCommand {
    /// Apply new connection settings (timeouts, ping interval, backoff, limits).
    UpdateConfig(ConnectionConfig),
    /// Close the connection cleanly; no restart.
    Disconnect,
    /// Send a message to the peer.
    SendMessage(Message),
}

/// A lifecycle event of a connection, the listener or the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// A handshake completed and the connection counts.
    ConnectionEstablished {
        /// The peer.
        peer_id: Uuid,
        /// Whether the peer dialled us.
        is_inbound: bool,
    },
    /// A dial or a handshake failed.
    ConnectionFailed {
        /// The peer.
        peer_id: Uuid,
        /// Why.
        reason: DisconnectReason,
    },
    /// An established connection ended.
    ConnectionLost {
        /// The peer.
        peer_id: Uuid,
        /// Why.
        reason: DisconnectReason,
    },
    /// An outbound connection that dropped is being re-dialled at once.
    ConnectionRestarting {
        /// The peer.
        peer_id: Uuid,
        /// Why it dropped.
        reason: DisconnectReason,
    },
    /// The `version`/`verack` exchange finished.
    HandshakeComplete {
        /// The peer.
        peer_id: Uuid,
    },
    /// The peer broke a protocol rule; its score grew.
    PeerMisbehavior {
        /// The peer.
        peer_id: Uuid,
        /// Its total score.
        score: u32,
        /// The rule (its `Display` is the node's name, e.g. `missing-verack`).
        reason: Misbehavior,
    },
    /// The peer's IP was banned.
    PeerBanned {
        /// The peer.
        peer_id: Uuid,
        /// The banned address (every port).
        ip: IpAddr,
        /// Why.
        reason: BanReason,
    },
    /// A ban was lifted.
    PeerUnbanned {
        /// The address.
        ip: IpAddr,
    },
    /// The listener accepted a connection that will be handshaken.
    InboundConnectionAccepted {
        /// The peer.
        peer_id: Uuid,
        /// Its address.
        address: SocketAddr,
    },
    /// The listener dropped a connection before any handshake.
    InboundConnectionRejected {
        /// Its address.
        address: SocketAddr,
        /// Why.
        reason: InboundRejection,
    },
    /// An inbound peer got the handshake and then a `reject`: we were at `max_connections`.
    ConnectionRejectedCapacity {
        /// The peer.
        peer_id: Uuid,
        /// Its address.
        address: SocketAddr,
    },
    /// The listener could not bind; the manager carries on outbound only.
    ListenerBindFailed {
        /// The address it tried.
        address: SocketAddr,
        /// The error.
        error: String,
    },
    /// A configuration update was applied.
    ConfigUpdated,
}

/// Why the listener closed an inbound socket before any handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundRejection {
    /// The address is banned.
    #[error("banned")]
    Banned,
    /// We are full and already refusing as many peers as we allow at once.
    #[error("at capacity")]
    AtCapacity,
}

/// A message received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitcoinMessageEvent {
    /// The peer that sent it.
    pub peer_id: Uuid,
    /// The message.
    pub message: Message,
}

/// The lossless, back-pressured subscribers of the message stream.
#[derive(Debug, Clone, Default)]
pub struct MessageSinks(Arc<RwLock<Vec<mpsc::Sender<BitcoinMessageEvent>>>>);

impl MessageSinks {
    /// Adds a subscriber with room for `capacity` messages and returns its receiver.
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<BitcoinMessageEvent> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        if let Ok(mut v) = self.0.write() {
            v.push(tx);
        }
        rx
    }

    /// Whether anyone is subscribed.
    pub fn is_empty(&self) -> bool {
        self.0
            .read()
            .map(|v| v.iter().all(|s| s.is_closed()))
            .unwrap_or(true)
    }

    /// Delivers `event` to every subscriber, waiting while any of them is full; returns whether
    /// it had to wait (back-pressure). Subscribers that went away are dropped.
    pub async fn deliver(&self, event: &BitcoinMessageEvent) -> bool {
        let senders: Vec<_> = match self.0.read() {
            Ok(v) => v.clone(),
            Err(_) => return false,
        };
        let mut closed = false;
        let mut waited = false;
        for s in &senders {
            let sent = match s.try_send(event.clone()) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
                Err(mpsc::error::TrySendError::Full(e)) => {
                    waited = true;
                    s.send(e).await.map_err(|_| ())
                }
            };
            if sent.is_err() {
                closed = true;
            }
        }
        if closed {
            if let Ok(mut v) = self.0.write() {
                v.retain(|s| !s.is_closed());
            }
        }
        waited
    }
}
