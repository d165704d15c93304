//! The inbound listener: accepts sockets and decides, before any handshake, what happens to each
//! (SPEC §7): a banned IP is dropped at once (the ban check only reads the store); with a free slot the peer gets an inbound
//! connection; without one it gets the over-capacity handshake and a `reject`. Accept errors
//! (file-descriptor exhaustion, aborted connections) are logged and the listener carries on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use super::Inner;
use crate::p2p::connection::PeerConnection;
use crate::p2p::events::{ControlEvent, InboundRejection};
use crate::p2p::limits::{LISTEN_BACKLOG, MAX_CONCURRENT_REFUSALS};
use crate::p2p::peer::{unix_now, Peer};

/// Binds the listener with the node's backlog ([`LISTEN_BACKLOG`]).
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does on Unix: a restarted manager can bind its port at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub(super) async fn run(inner: Arc<Inner>, listener: TcpListener, cancel: CancellationToken) {
    let refusals = Arc::new(Semaphore::new(MAX_CONCURRENT_REFUSALS));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, addr)) => admit(&inner, stream, addr, &refusals).await,
            Err(e) => {
                warn!(error = %e, "accept failed; listener continues");
                // Typically out of file descriptors: give the system a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    debug!("listener stopped");
}

async fn admit(inner: &Arc<Inner>, stream: TcpStream, addr: SocketAddr, refusals: &Arc<Semaphore>) {
    let store = inner.store.clone();
    match store.is_ip_banned(addr.ip(), unix_now()).await {
        Ok(true) => {
            debug!(peer_address = %addr, "dropping connection from banned address");
            inner.emit(ControlEvent::InboundConnectionRejected {
                address: addr,
                reason: InboundRejection::Banned,
            });
            return;
        }
        Ok(false) => {}
        Err(e) => warn!(peer_address = %addr, error = %e, "checking ban status"),
    }
    // Never stored: the source port is not the peer's listening port, and dialling it later
    // would fail (docs/PROTOCOL.md §3.3). The peer lives in memory, by its id, for as long as
    // the connection does.
    let peer = Peer::new(addr.ip(), addr.port());
    let config = inner.config();
    let Some(ctx) = inner.context() else { return };
    let _ = stream.set_nodelay(true);
    match inner.slots.try_reserve(config.max_connections) {
        Some(slot) => {
            inner.emit(ControlEvent::InboundConnectionAccepted {
                peer_id: peer.id,
                address: addr,
            });
            debug!(peer_address = %addr, "inbound connection accepted");
            let handle = PeerConnection::inbound(peer, stream, ctx);
            inner.track(handle, Some(slot));
        }
        None => match refusals.clone().try_acquire_owned() {
            Ok(permit) => {
                debug!(peer_address = %addr, max_connections = config.max_connections, "at capacity: refusing inbound peer after handshake");
                let handle = PeerConnection::over_capacity(peer, stream, ctx);
                inner.tracker.spawn(
                    async move {
                        handle.join().await;
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
            Err(_) => {
                debug!(peer_address = %addr, "at capacity and refusing many already: closing at once");
                inner.emit(ControlEvent::InboundConnectionRejected {
                    address: addr,
                    reason: InboundRejection::AtCapacity,
                });
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the listener used tokio's `bind`, whose backlog of 128 made the kernel drop
    /// the SYNs of a burst of dials (they got in a second or more later, on retransmission).
    /// With the node's backlog, a burst of several hundred connects completes at once even
    /// while nothing accepts: the kernel finishes every handshake and queues the socket.
    #[tokio::test]
    async fn a_burst_of_dials_completes_without_waiting_for_accept() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        // The kernel caps the backlog at somaxconn; below 256 there is nothing to tell apart.
        if somaxconn < 256 {
            eprintln!("skipped: net.core.somaxconn is {somaxconn}");
            return;
        }
        let burst = somaxconn.min(600) - 10;
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Nothing accepts: only the kernel's queue can complete these.
        let dials = (0..burst)
            .map(|_| tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)));
        let results = futures::future::join_all(dials).await;
        let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(connected, burst, "dials completed before any accept");
        drop(listener);
    }
}
