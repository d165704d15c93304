//! One connection to one peer.
//!
//! Every protocol decision lives in `PeerProtocol` (`protocol.rs`), a sans-I/O state machine with
//! the clock passed in, built from smaller pure machines, all tested without sockets or
//! sleeping:
//! * `protocol`: the rules from the first byte to the close (handshake, keepalive, codec-error
//!   policy, the misbehaviour catalogue, scores and bans), returning actions;
//! * `handshake`: `version`/`verack` for outbound, inbound and over-capacity connections;
//! * `keepalive`: the ping schedule, pong matching, RTT and the dead-peer timeout;
//! * `rules`: the node's checks on single messages and the counters some rules need;
//! * `retry`: backoff with cap and jitter, the retry budget, restarts per window;
//! * `state`: the lifecycle of SPEC §6 with only the legal transitions;
//! * `stall`: the block-download stall rule for streamed blocks.
//!
//! The actor (`actor`, `session`) only moves bytes and timers for the machine: it dials, reads,
//! writes through the `Outbox` and reports facts to the manager, which alone writes
//! the peer store.

pub(crate) mod actor;
mod checksum;
pub(crate) mod handshake;
pub(crate) mod keepalive;
pub(crate) mod link;
mod misbehavior;
pub(crate) mod outbox;
pub(crate) mod protocol;
mod reason;
pub(crate) mod retry;
pub(crate) mod rules;
pub(crate) mod session;
mod session_block;
pub(crate) mod stall;
pub(crate) mod state;
pub mod stats;

#[cfg(test)]
mod actor_tests;

pub(crate) use actor::PeerConnection;
pub(crate) use handshake::{Handshake, HandshakeOutput, NonceRegistry, UserAgentFilter};
pub use handshake::{HandshakeFailure, HandshakeFlow};
pub(crate) use keepalive::{Keepalive, KeepaliveAction};
pub use link::{ConnectionOutcome, PeerHandle, PeerLink};
pub use misbehavior::Misbehavior;
pub(crate) use outbox::{Outbox, OutboxError};
pub use reason::{DisconnectReason, ProtocolViolation};
pub(crate) use retry::{RetryDecision, RetryPolicy, RetryState};
pub(crate) use state::StateMachine;
pub use state::{ConnectionState, IllegalTransition};
pub use stats::{CommandCount, ConnectionSnapshot, ConnectionStats, Direction, PeerDetails};
