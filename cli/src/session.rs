//! One connection to one peer for request/response subcommands (`headers`, `getblock`,
//! `broadcast`), built on the library's connection actor so the handshake, `protoconf`, pings and
//! size limits are exactly what applications get.
//!
//! The actor is told never to retry or restart: a tool should say at once that a peer is
//! unreachable. Messages come through a lossless `MessageSinks` subscription, so a reply is
//! never dropped however slowly the command consumes it.

use std::net::SocketAddr;

use bitcoinsv::p2p::connection::PeerDetails;
use bitcoinsv::p2p::{
    ControlEvent, ManagerConfig, Message, P2pError, PeerClient, PeerClientOptions,
};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::error::CliError;

/// Messages buffered between the connection and the command before the connection stops
/// reading (2000-header batches and blocks are consumed one at a time).
const SINK_CAPACITY: usize = 256;

/// An established connection.
pub struct Session {
    address: SocketAddr,
    client: PeerClient,
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
        let limit = config.connection.connect_timeout + config.connection.handshake_timeout;
        Self::open_within(config, address, limit + std::time::Duration::from_secs(1)).await
    }

    /// As [`Session::open`], but gives up after `limit` in all, TCP connect and handshake
    /// included: a command's `--timeout` bounds the whole command, so a silent peer cannot hold
    /// it for the 60 s handshake timeout.
    pub async fn open_within(
        config: &ManagerConfig,
        address: SocketAddr,
        limit: std::time::Duration,
    ) -> Result<Session, CliError> {
        // The command's deadline alone decides (closing the client ends a connect or a
        // handshake still in progress), so the error always names the bound.
        let options = PeerClientOptions {
            capacity: SINK_CAPACITY,
            ..PeerClientOptions::default()
        };
        let mut client = PeerClient::start(config, address, options)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let control = client.events();
        let deadline = Instant::now() + limit;
        match tokio::time::timeout_at(deadline, client.established()).await {
            Ok(Ok(())) => Ok(Session {
                address,
                client,
                control,
            }),
            Ok(Err(P2pError::Disconnected { reason, .. })) => {
                client.close().await;
                Err(CliError::Other(match reason {
                    bitcoinsv::p2p::DisconnectReason::Handshake(f) if f.is_ban() => {
                        format!("refused {address}: {f}")
                    }
                    r => format!("cannot connect to {address}: {r}"),
                }))
            }
            Ok(Err(e)) => {
                client.close().await;
                Err(CliError::Other(format!("cannot connect to {address}: {e}")))
            }
            Err(_) => {
                client.close().await;
                Err(CliError::Other(format!(
                    "no handshake with {address} within {limit:?}"
                )))
            }
        }
    }

    /// The peer's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What the peer announced in its `version`.
    pub fn details(&self) -> PeerDetails {
        self.client.details()
    }

    /// Sends a message.
    pub async fn send(&self, message: Message) -> Result<(), CliError> {
        let command = message.command().to_string();
        self.client
            .send(message)
            .await
            .map_err(|e| CliError::Other(format!("sending {command} to {}: {e}", self.address)))
    }

    /// The next message the peer sends (pings, `protoconf` and the like are handled by the
    /// connection and never appear), waiting until `until`.
    pub async fn recv(&mut self, until: Instant) -> Result<Message, RecvEnd> {
        match self.client.recv_until(until).await {
            Err(_) => Err(RecvEnd::Timeout),
            Ok(Some(m)) => Ok(m),
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
        let _ = self.client.close().await;
    }
}
