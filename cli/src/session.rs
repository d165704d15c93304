//! One connection to one peer for request/response subcommands (`headers`, `getblock`,
//! `broadcast`), built on the library's connection actor so the handshake, `protoconf`, pings and
//! size limits are exactly what applications get.
//!
//! The actor is told never to retry or restart: a tool should say at once that a peer is
//! unreachable. Messages come through a lossless `MessageSinks` subscription, so a reply is
//! never dropped however slowly the command consumes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::connection::{ConnectionContext, PeerDetails};
use bitcoinsv::p2p::{
    BitcoinMessageEvent, ControlEvent, InMemoryPeerStore, ManagerConfig, Message, Peer,
    PeerConnection, PeerHandle, PeerStore,
};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::error::CliError;

/// Messages buffered between the connection and the command before the connection stops
/// reading (2000-header batches and blocks are consumed one at a time).
const SINK_CAPACITY: usize = 256;

/// An established connection.
pub struct Session {
    address: SocketAddr,
    handle: PeerHandle,
    messages: mpsc::Receiver<BitcoinMessageEvent>,
    control: broadcast::Receiver<ControlEvent>,
}

/// Why [`Session::recv`] returned no message.
#[derive(Debug)]
pub enum RecvEnd {
    /// Nothing arrived before the deadline.
    Timeout,
    /// The connection ended; the reason, phrased for the user.
    Closed(String),
}

impl Session {
    /// Connects to `address` and completes the handshake, or fails with one line saying why.
    pub async fn open(config: &ManagerConfig, address: SocketAddr) -> Result<Session, CliError> {
        let mut config = config.clone();
        config.connection.max_retries = 0;
        config.connection.max_restarts = 0;
        let store = Arc::new(InMemoryPeerStore::new());
        let peer = Peer::new(address.ip(), address.port());
        store
            .create(peer.clone())
            .await
            .map_err(|e| CliError::Other(e.to_string()))?;
        let (control_tx, mut control) = broadcast::channel(1000);
        let (message_tx, _) = broadcast::channel(16);
        let ctx = ConnectionContext::new(&config, store, control_tx, message_tx)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let messages = ctx.sinks.subscribe(SINK_CAPACITY);
        let handle = PeerConnection::outbound(peer, ctx);
        let limit = config.connection.connect_timeout + config.connection.handshake_timeout;
        let deadline = Instant::now() + limit + Duration::from_secs(1);
        let mut failure: Option<String> = None;
        loop {
            match tokio::time::timeout_at(deadline, control.recv()).await {
                Err(_) => {
                    failure = Some(format!("no handshake with {address} within {limit:?}"));
                    break;
                }
                Ok(Ok(ControlEvent::ConnectionEstablished { .. })) => {
                    return Ok(Session {
                        address,
                        handle,
                        messages,
                        control,
                    })
                }
                Ok(Ok(ControlEvent::PeerBanned { reason, .. })) => {
                    failure = Some(format!("refused {address}: {reason}"));
                }
                Ok(Ok(ControlEvent::ConnectionFailed { reason, .. })) => {
                    failure.get_or_insert(format!("cannot connect to {address}: {reason}"));
                    break;
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => break,
            }
        }
        handle.disconnect();
        let outcome = handle.join().await;
        // A ban is announced before the failure that ends the connection; prefer its wording.
        while let Ok(e) = control.try_recv() {
            if let ControlEvent::PeerBanned { reason, .. } = e {
                failure = Some(format!("refused {address}: {reason}"));
            }
        }
        Err(CliError::Other(failure.unwrap_or_else(|| {
            format!("cannot connect to {address}: {}", outcome.reason)
        })))
    }

    /// The peer's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What the peer announced in its `version`.
    pub fn details(&self) -> PeerDetails {
        self.handle.stats().snapshot().details.unwrap_or_default()
    }

    /// Sends a message.
    pub async fn send(&self, message: Message) -> Result<(), CliError> {
        let command = message.command().to_string();
        self.handle
            .send_message(message)
            .await
            .map_err(|e| CliError::Other(format!("sending {command} to {}: {e}", self.address)))
    }

    /// The next message the peer sends (pings, `protoconf` and the like are handled by the
    /// connection and never appear), waiting until `until`.
    pub async fn recv(&mut self, until: Instant) -> Result<Message, RecvEnd> {
        match tokio::time::timeout_at(until, self.messages.recv()).await {
            Err(_) => Err(RecvEnd::Timeout),
            Ok(Some(e)) => Ok(e.message),
            Ok(None) => Err(RecvEnd::Closed(self.closed_reason())),
        }
    }

    fn closed_reason(&mut self) -> String {
        let mut reason = None;
        while let Ok(e) = self.control.try_recv() {
            match e {
                ControlEvent::PeerBanned { reason: r, .. } => {
                    reason = Some(format!("{} was banned: {r}", self.address))
                }
                ControlEvent::ConnectionLost { reason: r, .. }
                | ControlEvent::ConnectionFailed { reason: r, .. } => {
                    reason.get_or_insert(format!("{} closed the connection: {r}", self.address));
                }
                _ => {}
            }
        }
        reason.unwrap_or_else(|| format!("{} closed the connection", self.address))
    }

    /// Closes the connection cleanly and waits for it to end.
    pub async fn close(self) {
        self.handle.disconnect();
        let _ = self.handle.join().await;
    }
}
