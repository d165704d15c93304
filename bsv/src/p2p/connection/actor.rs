//! The connection actor: one tokio task per peer that owns the socket and moves bytes and
//! timers for [`PeerProtocol`], which makes every protocol decision. The actor dials, runs
//! sessions (see [`super::session`]), and between sessions follows [`RetryState`]: outbound
//! actors retry a failed dial with backoff up to `max_retries` and restart at once after an
//! established connection drops (at most `max_restarts` per `restart_window`); inbound actors run
//! one session, since a peer's source port is not its listening port and there is nothing to
//! redial.
//!
//! The actor writes no peer store. It reports facts ([`Report`]) while it runs and returns a
//! [`ConnectionOutcome`] when it ends; the manager decides what they mean for the store.

use std::sync::{Arc, Mutex};

use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::link::{ConnectionContext, ConnectionOutcome, PeerHandle, PeerLink, Shared};
use super::session::{self, SessionEnd};
use super::{
    ConnectionState, ConnectionStats, Direction, DisconnectReason, HandshakeFailure, HandshakeFlow,
    RetryDecision, RetryPolicy, RetryState, StateMachine,
};
use crate::p2p::events::ControlEvent;
use crate::p2p::limits::CONNECTION_COMMAND_CAPACITY;
use crate::p2p::peer::Peer;

/// Constructors for connection actors.
pub(crate) struct PeerConnection;

impl PeerConnection {
    /// Dials `peer` and keeps the connection up (retries, restarts) until told to stop or it
    /// gives up.
    pub(crate) fn outbound(peer: Peer, ctx: ConnectionContext) -> PeerHandle {
        spawn(peer, ctx, None, HandshakeFlow::Outbound)
    }

    /// Runs one inbound session on an accepted socket.
    pub(crate) fn inbound(peer: Peer, stream: TcpStream, ctx: ConnectionContext) -> PeerHandle {
        spawn(peer, ctx, Some(stream), HandshakeFlow::Inbound)
    }

    /// Handshakes an inbound peer we have no room for, then sends `reject` and closes.
    pub(crate) fn over_capacity(
        peer: Peer,
        stream: TcpStream,
        ctx: ConnectionContext,
    ) -> PeerHandle {
        spawn(peer, ctx, Some(stream), HandshakeFlow::InboundOverCapacity)
    }
}

fn spawn(
    peer: Peer,
    ctx: ConnectionContext,
    stream: Option<TcpStream>,
    flow: HandshakeFlow,
) -> PeerHandle {
    let address = peer.socket_addr();
    let direction = if stream.is_some() {
        Direction::Inbound
    } else {
        Direction::Outbound
    };
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
        busy_until: Mutex::new(None),
        cancel: CancellationToken::new(),
    });
    let (cmd_tx, cmd_rx) = mpsc::channel(CONNECTION_COMMAND_CAPACITY);
    let span = tracing::info_span!("peer", peer_id = %peer.id, peer_address = %address, direction = %direction, network = %ctx.network);
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

pub(crate) struct Actor {
    pub(crate) peer: Peer,
    pub(crate) ctx: ConnectionContext,
    pub(crate) shared: Arc<Shared>,
    pub(crate) cmd_rx: mpsc::Receiver<super::link::Mailbox>,
    pub(crate) machine: StateMachine,
    pub(crate) retry: RetryState,
    pub(crate) was_connected: bool,
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

    pub(crate) fn set_state(&mut self, to: ConnectionState) {
        match self.machine.transition(to) {
            Ok(from) => debug!(state = %to, from = %from, "connection state changed"),
            Err(e) => warn!(error = %e, "ignoring illegal state transition"),
        }
        self.shared.stats.set_state(self.machine.state());
    }

    pub(crate) fn emit(&self, e: ControlEvent) {
        match &e {
            ControlEvent::ConnectionFailed { reason, .. } => {
                self.ctx.metrics.connection_ended(reason, false)
            }
            ControlEvent::ConnectionLost { reason, .. } => {
                self.ctx.metrics.connection_ended(reason, true)
            }
            ControlEvent::ConnectionRestarting { .. } => self.ctx.metrics.restart(),
            _ => {}
        }
        let ctx = &self.ctx;
        ctx.metrics
            .send_counted(&ctx.control_tx, ctx.event_capacity, "control", e);
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
            self.ctx.metrics.connection_attempt(Direction::Inbound);
            self.set_state(ConnectionState::AwaitingHandshake);
            let end = session::run(&mut self, stream, flow).await;
            return self.end_session(end);
        }
        loop {
            self.ctx.metrics.connection_attempt(Direction::Outbound);
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
                    let end = session::run(&mut self, stream, HandshakeFlow::Outbound).await;
                    if end.banned || !end.reason.is_transient() {
                        return self.end_session(end);
                    }
                    if !end.connected {
                        end.reason
                    } else {
                        self.emit(ControlEvent::ConnectionLost {
                            peer_id: self.peer.id,
                            reason: end.reason.clone(),
                        });
                        info!(error = %end.reason, "connection lost");
                        match self
                            .retry
                            .on_connection_lost(&self.policy(), Instant::now())
                        {
                            RetryDecision::RestartNow => {
                                self.emit(ControlEvent::ConnectionRestarting {
                                    peer_id: self.peer.id,
                                    reason: end.reason,
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
                                return self.finish(ConnectionState::Failed, end.reason);
                            }
                        }
                    }
                }
                Ok(Err(e)) => DisconnectReason::ConnectFailed(e.to_string()),
                Err(_) => DisconnectReason::ConnectTimeout(connect_timeout),
            };
            self.emit(ControlEvent::ConnectionFailed {
                peer_id: self.peer.id,
                reason: failure.clone(),
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
                    return self.finish(ConnectionState::Failed, failure);
                }
            }
        }
    }

    /// A session ended in a way that is not retried: report it and finish.
    fn end_session(&mut self, end: SessionEnd) -> ConnectionOutcome {
        let reason = end.reason;
        let state = if end.banned {
            ConnectionState::Rejected
        } else {
            final_state(&reason, end.connected)
        };
        match &reason {
            DisconnectReason::Handshake(HandshakeFailure::OverCapacity) => {
                debug!("inbound peer refused: connection limit reached");
                self.emit(ControlEvent::ConnectionRejectedCapacity {
                    peer_id: self.peer.id,
                    address: self.peer.socket_addr(),
                });
                return self.finish(state, reason);
            }
            DisconnectReason::Requested => {}
            DisconnectReason::PingTimeout(_) | DisconnectReason::Handshake(_) => {
                warn!(error = %reason, "connection closed")
            }
            _ => info!(error = %reason, "connection closed"),
        }
        if end.connected {
            self.emit(ControlEvent::ConnectionLost {
                peer_id: self.peer.id,
                reason: reason.clone(),
            });
        } else if reason != DisconnectReason::Requested {
            self.emit(ControlEvent::ConnectionFailed {
                peer_id: self.peer.id,
                reason: reason.clone(),
            });
        }
        self.finish(state, reason)
    }
}

/// The state a connection ends in for `reason` (SPEC §6): `Disconnected` when closed on
/// request or after an established connection dropped, `Rejected` when refused by the rules,
/// `Failed` when the peer could not be kept (timeouts, drops before the handshake).
fn final_state(reason: &DisconnectReason, connected: bool) -> ConnectionState {
    use DisconnectReason::*;
    match reason {
        Requested => ConnectionState::Disconnected,
        PingTimeout(_) | Handshake(HandshakeFailure::Timeout(_)) => ConnectionState::Failed,
        Handshake(_) | Misbehavior { .. } | Protocol(_) | Oversized(_) => ConnectionState::Rejected,
        _ if connected => ConnectionState::Disconnected,
        _ => ConnectionState::Failed,
    }
}
