//! Why a connection ended: one typed reason per way it can end, carried by the
//! `ConnectionLost`/`ConnectionFailed`/`ConnectionRestarting` events and returned when the actor
//! finishes. Applications `match` on the variants; `Display` is for logs.

use std::time::Duration;

use super::{HandshakeFailure, Misbehavior};

/// Why a connection (or an attempt) ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// TCP connect failed (refused, unreachable, reset).
    #[error("connect failed: {0}")]
    ConnectFailed(String),
    /// TCP connect did not complete within `connect_timeout`.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The handshake failed (validation, timeout, capacity, another chain).
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
    /// Misbehaviour reached the ban threshold.
    #[error("misbehaviour score {score} ({reason})")]
    Misbehavior {
        /// The score.
        score: u32,
        /// The last offence.
        reason: Misbehavior,
    },
    /// The peer broke a rule the node answers with a disconnect but no ban.
    #[error("protocol violation: {0}")]
    Protocol(ProtocolViolation),
    /// A streamed block arrived slower than `block_streaming.stall_min_rate` over
    /// `block_streaming.stall_timeout` of waiting for the peer (the node's block-download
    /// stall rule, `-blockstallingtimeout`).
    #[error("block download stalled: {received} bytes in {within:?}")]
    BlockStalled {
        /// Bytes received in the period.
        received: u64,
        /// The period.
        within: Duration,
    },
    /// Our side closed: the application, the manager (a ban of the IP, shutdown) or a dropped
    /// handle asked for it.
    #[error("disconnect requested")]
    Requested,
}

impl DisconnectReason {
    /// A short stable name of the variant, for metrics labels and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            DisconnectReason::ConnectFailed(_) => "connect_failed",
            DisconnectReason::ConnectTimeout(_) => "connect_timeout",
            DisconnectReason::Handshake(HandshakeFailure::Timeout(_)) => "handshake_timeout",
            DisconnectReason::Handshake(HandshakeFailure::OverCapacity) => "over_capacity",
            DisconnectReason::Handshake(_) => "handshake_refused",
            DisconnectReason::PingTimeout(_) => "ping_timeout",
            DisconnectReason::PeerClosed => "peer_closed",
            DisconnectReason::Io(_) => "io",
            DisconnectReason::Oversized(_) => "oversized",
            DisconnectReason::BadFrame(_) => "bad_frame",
            DisconnectReason::NotReading => "not_reading",
            DisconnectReason::Misbehavior { .. } => "misbehavior",
            DisconnectReason::Protocol(_) => "protocol_violation",
            DisconnectReason::BlockStalled { .. } => "block_stalled",
            DisconnectReason::Requested => "requested",
        }
    }

    /// Whether the network, not the peer's conduct, ended the connection: an outbound
    /// connection that ends this way is dialled again (with backoff before the handshake, at
    /// once after it). Everything else is final.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DisconnectReason::ConnectFailed(_)
                | DisconnectReason::ConnectTimeout(_)
                | DisconnectReason::PeerClosed
                | DisconnectReason::Io(_)
                | DisconnectReason::NotReading
                | DisconnectReason::BadFrame(_)
        )
    }
}

/// A rule whose breach the node answers with a disconnect but no score (docs/PROTOCOL.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A second `protoconf` (`ProcessProtoconfMessage`).
    #[error("a second protoconf")]
    DuplicateProtoconf,
    /// A `protoconf` advertising less than the 1 MiB everyone must accept.
    #[error("protoconf limit {0} is below 1 MiB")]
    ProtoconfLimitTooLow(u32),
    /// An `inv` with a type other than transaction or block (`ProcessInvMessage`).
    #[error("inv of unsupported type {0}")]
    UnsupportedInvType(u32),
    /// `filterload`/`filteradd` from a peer below 70011 when we do not offer `NODE_BLOOM`.
    #[error("bloom filter message without NODE_BLOOM")]
    BloomWithoutService,
    /// A first `version` that does not parse (`ProcessVersionMessage`: `reject` 0x60 and a
    /// disconnect, no score).
    #[error("a version message that does not parse")]
    MalformedVersion,
}
