//! The `version`/`verack` handshake as a pure state machine (SPEC §6, docs/PROTOCOL.md §2).
//!
//! Three flows share one machine:
//! * **outbound**: we send `version` at once; the peer's `version` and `verack` may come in
//!   either order; we answer its `version` with `verack`. Complete when both have been sent and
//!   received.
//! * **inbound**: we wait for the peer's `version`, validate it, answer `version` + `verack`, and
//!   complete on its `verack`.
//! * **inbound over capacity**: as inbound, then a `reject` saying we are full and a close; the
//!   connection is never counted.
//!
//! The peer's `version` is validated as the node does: protocol version ≥ 31800 (older gets
//! `reject` 0x11 and a disconnect, no ban), a user agent matching the ban list is banned, and our
//! own nonce coming back means we dialled ourselves (disconnect, no ban). Frames with another
//! network's magic never reach this machine: the codec reports them and `PeerProtocol`
//! calls [`Handshake::on_wrong_magic`]. Messages that arrive too early are dropped and reported
//! as misbehaviour (+1 each, docs/PROTOCOL.md §2.8); the score and the ban it leads to are kept
//! by `PeerProtocol`, the one place that scores. The timeout runs from the moment the machine is
//! created, i.e. from entering `AwaitingHandshake`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::Misbehavior;
use crate::bitcoin::{Magic, Network};
use crate::p2p::limits::MIN_PEER_PROTO_VERSION;
use crate::p2p::messages::{Reject, RejectCode, VersionMessage};
use crate::p2p::Message;

/// Which handshake to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFlow {
    /// We dialled the peer.
    Outbound,
    /// The peer dialled us and we have room.
    Inbound,
    /// The peer dialled us but we are at `max_connections`.
    InboundOverCapacity,
}

/// Why a handshake ended without a usable connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeFailure {
    /// The peer did not finish within `handshake_timeout`.
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The peer's protocol version is below 31800.
    #[error("peer protocol version {version} is below the minimum {MIN_PEER_PROTO_VERSION}")]
    ObsoleteVersion {
        /// The version it sent.
        version: i32,
    },
    /// The peer's user agent matches the ban list (BCH and other chains).
    #[error("banned user agent {user_agent:?}")]
    BannedUserAgent {
        /// The user agent it sent.
        user_agent: String,
    },
    /// The peer's nonce is one of ours: we connected to ourselves.
    #[error("connected to ourselves (nonce {nonce:#018x})")]
    SelfConnection {
        /// The nonce.
        nonce: u64,
    },
    /// A frame carried another BSV network's magic.
    #[error("peer is on {received}, we are on {expected}")]
    NetworkMismatch {
        /// Our network.
        expected: Network,
        /// The peer's.
        received: Network,
    },
    /// A frame carried a magic no BSV network uses (another blockchain).
    #[error("peer speaks another blockchain (magic {})", hex::encode(magic))]
    BlockchainMismatch {
        /// The magic seen.
        magic: Magic,
    },
    /// We are full: the peer got the handshake and a `reject`.
    #[error("refused: connection limit reached")]
    OverCapacity,
}

impl HandshakeFailure {
    /// Whether the node's rules ban the peer's IP for this failure.
    pub fn is_ban(&self) -> bool {
        matches!(
            self,
            HandshakeFailure::BannedUserAgent { .. }
                | HandshakeFailure::NetworkMismatch { .. }
                | HandshakeFailure::BlockchainMismatch { .. }
        )
    }
}

/// What the machine wants the actor to do.
// Outputs live for one call and are consumed at once; boxing the message would only add an
// allocation per handshake step.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeOutput {
    /// Send this message now.
    Send(Message),
    /// The peer broke a rule (the message was dropped); the caller scores it.
    Misbehaving(Misbehavior),
    /// The handshake succeeded; the peer's `version` is attached.
    Complete(Box<VersionMessage>),
    /// The handshake failed; close (and ban if [`HandshakeFailure::is_ban`]).
    Failed(HandshakeFailure),
}

/// Nonces of our own `version` messages that are still in flight, shared by every connection of
/// a manager so that an inbound `version` carrying one of them is recognised as ourselves.
#[derive(Debug, Default, Clone)]
pub struct NonceRegistry(Arc<Mutex<HashSet<u64>>>);

impl NonceRegistry {
    /// Records a nonce we sent.
    pub fn insert(&self, nonce: u64) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(nonce);
        }
    }

    /// Forgets a nonce (its connection ended or completed).
    pub fn remove(&self, nonce: u64) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(&nonce);
        }
    }

    /// Whether `nonce` is one of ours.
    pub fn contains(&self, nonce: u64) -> bool {
        self.0.lock().map(|s| s.contains(&nonce)).unwrap_or(false)
    }
}

/// Decides whether a user agent is banned (the configured pattern list).
pub type UserAgentFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The handshake state of one connection.
pub struct Handshake {
    flow: HandshakeFlow,
    network: Network,
    ours: VersionMessage,
    nonces: NonceRegistry,
    banned_agent: UserAgentFilter,
    timeout: Duration,
    started: Instant,
    version_sent: bool,
    verack_sent: bool,
    peer_version: Option<VersionMessage>,
    verack_received: bool,
    finished: bool,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("flow", &self.flow)
            .field("version_sent", &self.version_sent)
            .field("verack_sent", &self.verack_sent)
            .field("version_received", &self.peer_version.is_some())
            .field("verack_received", &self.verack_received)
            .finish()
    }
}

impl Handshake {
    /// A handshake entering `AwaitingHandshake` at `now`. `ours` is the `version` we send (its
    /// nonce is registered in `nonces` for self-connection detection).
    pub fn new(
        flow: HandshakeFlow,
        network: Network,
        ours: VersionMessage,
        nonces: NonceRegistry,
        banned_agent: UserAgentFilter,
        timeout: Duration,
        now: Instant,
    ) -> Self {
        nonces.insert(ours.nonce);
        Handshake {
            flow,
            network,
            ours,
            nonces,
            banned_agent,
            timeout,
            started: now,
            version_sent: false,
            verack_sent: false,
            peer_version: None,
            verack_received: false,
            finished: false,
        }
    }

    /// Messages to send as soon as the socket is open: our `version` when we dialled.
    pub fn start(&mut self) -> Vec<HandshakeOutput> {
        if self.flow == HandshakeFlow::Outbound && !self.version_sent {
            self.version_sent = true;
            return vec![HandshakeOutput::Send(Message::Version(self.ours.clone()))];
        }
        Vec::new()
    }

    /// When the handshake times out.
    pub fn deadline(&self) -> Instant {
        self.started + self.timeout
    }

    /// Whether the machine has produced `Complete` or `Failed`.
    #[cfg(test)]
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Checks the timeout at `now`.
    pub fn on_tick(&mut self, now: Instant) -> Vec<HandshakeOutput> {
        if !self.finished && now >= self.deadline() {
            return self.fail(HandshakeFailure::Timeout(self.timeout));
        }
        Vec::new()
    }

    /// The codec saw a frame with the wrong magic.
    pub fn on_wrong_magic(&mut self, magic: Magic) -> Vec<HandshakeOutput> {
        let failure = match Network::from_magic(magic) {
            Some(received) => HandshakeFailure::NetworkMismatch {
                expected: self.network,
                received,
            },
            None => HandshakeFailure::BlockchainMismatch { magic },
        };
        self.fail(failure)
    }

    /// Handles a message received before the handshake finished.
    pub fn on_message(&mut self, msg: &Message) -> Vec<HandshakeOutput> {
        if self.finished {
            return Vec::new();
        }
        match msg {
            Message::Version(v) => self.on_version(v),
            Message::Verack => {
                if self.peer_version.is_none() && self.flow != HandshakeFlow::Outbound {
                    return self.misbehave(Misbehavior::MissingVersion);
                }
                self.verack_received = true;
                self.maybe_complete(Vec::new())
            }
            // Handled at any time by the node; nothing for a client to do before completion.
            Message::Reject(_) | Message::CreateStream(_) | Message::StreamAck(_) => Vec::new(),
            Message::AuthCh(_) | Message::AuthResp(_) if self.peer_version.is_some() => Vec::new(),
            _ if self.peer_version.is_none() => self.misbehave(Misbehavior::MissingVersion),
            _ => self.misbehave(Misbehavior::MissingVerack),
        }
    }

    fn on_version(&mut self, v: &VersionMessage) -> Vec<HandshakeOutput> {
        if self.peer_version.is_some() {
            let mut out = vec![HandshakeOutput::Send(Message::Reject(Reject {
                message: "version".into(),
                code: RejectCode::Duplicate,
                reason: "Duplicate version message".into(),
                hash: None,
            }))];
            out.extend(self.misbehave(Misbehavior::MultipleVersion));
            return out;
        }
        if v.version < MIN_PEER_PROTO_VERSION {
            let mut out = vec![HandshakeOutput::Send(Message::Reject(Reject {
                message: "version".into(),
                code: RejectCode::Obsolete,
                reason: format!("Version must be {MIN_PEER_PROTO_VERSION} or greater"),
                hash: None,
            }))];
            out.extend(self.fail(HandshakeFailure::ObsoleteVersion { version: v.version }));
            return out;
        }
        if v.nonce != 0 && (v.nonce == self.ours.nonce || self.nonces.contains(v.nonce)) {
            return self.fail(HandshakeFailure::SelfConnection { nonce: v.nonce });
        }
        if (self.banned_agent)(&v.user_agent) {
            return self.fail(HandshakeFailure::BannedUserAgent {
                user_agent: v.user_agent.clone(),
            });
        }
        self.peer_version = Some(v.clone());
        let mut out = Vec::new();
        if !self.version_sent {
            self.version_sent = true;
            out.push(HandshakeOutput::Send(Message::Version(self.ours.clone())));
        }
        self.verack_sent = true;
        out.push(HandshakeOutput::Send(Message::Verack));
        self.maybe_complete(out)
    }

    fn maybe_complete(&mut self, mut out: Vec<HandshakeOutput>) -> Vec<HandshakeOutput> {
        if !(self.version_sent && self.verack_sent && self.verack_received) {
            return out;
        }
        let Some(peer) = self.peer_version.clone() else {
            return out;
        };
        self.finished = true;
        self.nonces.remove(self.ours.nonce);
        if self.flow == HandshakeFlow::InboundOverCapacity {
            out.push(HandshakeOutput::Send(Message::Reject(Reject {
                message: "version".into(),
                code: RejectCode::TooBusy,
                reason: "connection limit reached".into(),
                hash: None,
            })));
            out.push(HandshakeOutput::Failed(HandshakeFailure::OverCapacity));
        } else {
            out.push(HandshakeOutput::Complete(Box::new(peer)));
        }
        out
    }

    fn misbehave(&mut self, offence: Misbehavior) -> Vec<HandshakeOutput> {
        vec![HandshakeOutput::Misbehaving(offence)]
    }

    fn fail(&mut self, f: HandshakeFailure) -> Vec<HandshakeOutput> {
        self.finished = true;
        self.nonces.remove(self.ours.nonce);
        vec![HandshakeOutput::Failed(f)]
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.nonces.remove(self.ours.nonce);
    }
}

#[cfg(test)]
mod tests;
