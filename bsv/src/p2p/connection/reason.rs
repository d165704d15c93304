//! Why a connection ended: one typed reason per way it can end, carried by the
//! `ConnectionLost`/`ConnectionFailed` events and returned when the actor finishes.

use std::time::Duration;

use super::HandshakeFailure;

/// Why a connection (or an attempt) ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectReason {
    /// TCP connect failed (refused, unreachable, reset).
    #[error("connect failed: {0}")]
    ConnectFailed(String),
    /// TCP connect did not complete within `connect_timeout`.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The handshake failed (validation, timeout, capacity, misbehaviour).
    #[error("handshake failed: {0}")]
    Handshake(HandshakeFailure),
    /// No pong and no bytes within `ping_timeout`.
    #[error("no pong and no data for {0:?}")]
    PingTimeout(Duration),
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    PeerClosed,
    /// A socket error.
    #[error("i/o error: {0}")]
    Io(String),
    /// The peer sent a header declaring a payload over the limit (the node bans for this).
    #[error("oversized message: {0}")]
    Oversized(String),
    /// The peer sent bytes that are not a frame of our network (garbage or another chain).
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// The peer kept sending without reading our replies.
    #[error("peer is not reading")]
    NotReading,
    /// Misbehaviour after the handshake reached the ban threshold.
    #[error("misbehaviour score {score} ({reason})")]
    Misbehavior {
        /// The score.
        score: u32,
        /// The last offence.
        reason: String,
    },
    /// The application or manager asked for it.
    #[error("disconnect requested")]
    Requested,
}
