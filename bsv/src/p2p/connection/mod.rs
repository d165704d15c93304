//! One connection to one peer.
//!
//! The protocol decisions live in pure state machines with the time passed in, so they are
//! tested without sockets or sleeping:
//! * [`state`]: the lifecycle of SPEC §6 with only the legal transitions;
//! * [`handshake`]: `version`/`verack` for outbound, inbound and over-capacity connections, with
//!   the node's validation and misbehaviour rules;
//! * [`keepalive`]: the ping schedule, pong matching, RTT and the dead-peer timeout;
//! * [`retry`]: backoff with cap and jitter, the retry budget, restarts per window.

pub mod actor;
pub mod handshake;
pub mod keepalive;
pub mod outbox;
pub mod reason;
pub mod retry;
pub mod state;
pub mod stats;

pub use actor::{
    ConnectionContext, ConnectionOutcome, LocalVersion, PeerConnection, PeerHandle, PeerLink,
    DEFAULT_SEND_QUEUE_BYTES,
};
pub use handshake::{
    Handshake, HandshakeFailure, HandshakeFlow, HandshakeOutput, NonceRegistry, UserAgentFilter,
};
pub use keepalive::{Keepalive, KeepaliveAction};
pub use outbox::{Outbox, OutboxError};
pub use reason::DisconnectReason;
pub use retry::{RetryDecision, RetryPolicy, RetryState};
pub use state::{ConnectionState, IllegalTransition, StateMachine};
pub use stats::{CommandCount, ConnectionSnapshot, ConnectionStats, Direction, PeerDetails};
