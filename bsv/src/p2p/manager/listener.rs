//! The inbound listener: accepts sockets and decides, before any handshake, what happens to each
//! (SPEC §7, docs/SECURITY.md), in this order:
//! 1. a banned IP is dropped at once (the ban check only reads the store);
//! 2. past the accept rate (`limits.accept_rate`, a token bucket of `limits.accept_burst`) the
//!    socket is closed at once, so a connect-and-drop loop costs us an accept and a close;
//! 3. an IP with `limits.max_inbound_per_ip` inbound connections already is closed (the host
//!    itself and the whitelist are exempt);
//! 4. with `limits.max_inbound_handshakes` inbound handshakes running, the oldest one past
//!    `limits.handshake_evict_age` is evicted, or the newcomer closed if none is that old;
//! 5. with a free slot the peer gets an inbound connection; without one, a peer is evicted if
//!    one qualifies (`evict`) and the newcomer waits for its slot; otherwise the newcomer gets
//!    the over-capacity handshake and a `reject`.
//!
//! Accept errors (file-descriptor exhaustion, aborted connections) are logged and the listener
//! carries on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::evict::{established_victim, oldest_stuck_handshake, Candidate};
use super::Inner;
use crate::p2p::config::ManagerConfig;
use crate::p2p::connection::{ConnectionState, Direction, PeerConnection};
use crate::p2p::events::{ControlEvent, InboundRejection};
use crate::p2p::limits::{EVICT_SLOT_WAIT, LISTEN_BACKLOG, MAX_CONCURRENT_REFUSALS};
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

/// The accept-rate limit: a bucket of `burst` tokens refilled at `rate` a second.
#[derive(Debug)]
pub(super) struct AcceptBucket {
    tokens: f64,
    last: Instant,
}

impl AcceptBucket {
    pub(super) fn new(burst: usize) -> Self {
        AcceptBucket {
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub(super) fn take(&mut self, rate: f64, burst: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst as f64);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(super) async fn run(inner: Arc<Inner>, listener: TcpListener, cancel: CancellationToken) {
    let refusals = Arc::new(Semaphore::new(MAX_CONCURRENT_REFUSALS));
    let mut bucket = AcceptBucket::new(inner.config().limits.accept_burst);
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, addr)) => {
                let config = inner.config();
                let limits = &config.limits;
                if !bucket.take(limits.accept_rate, limits.accept_burst, Instant::now()) {
                    debug!(peer_address = %addr, "accept rate exceeded: closing at once");
                    reject(&inner, addr, InboundRejection::RateLimited);
                    continue;
                }
                admit(&inner, stream, addr, &refusals, &config).await
            }
            Err(e) => {
                warn!(error = %e, "accept failed; listener continues");
                // Typically out of file descriptors: give the system a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    debug!("listener stopped");
}

fn reject(inner: &Inner, address: SocketAddr, reason: InboundRejection) {
    inner.emit(ControlEvent::InboundConnectionRejected { address, reason });
}

/// The host itself: local tools and tests share its address, so the per-IP cap skips it.
fn is_host_itself(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6 == std::net::Ipv6Addr::LOCALHOST,
    }
}

/// What eviction needs to know of every live inbound connection.
fn inbound_candidates(inner: &Inner, config: &ManagerConfig) -> Vec<Candidate> {
    let accepted = inner.inbound.lock().map(|m| m.clone()).unwrap_or_default();
    inner
        .links()
        .into_iter()
        .filter(|l| l.direction() == Direction::Inbound)
        .filter_map(|l| {
            let state = l.stats().state();
            if state.is_terminal() || state == ConnectionState::Disconnected {
                return None;
            }
            let snap = l.stats().snapshot();
            let useful = ["tx", "block"]
                .iter()
                .filter_map(|c| snap.received.get(*c).map(|n| n.messages))
                .sum();
            Some(Candidate {
                peer_id: l.peer_id(),
                address: l.address(),
                accepted: accepted.get(&l.peer_id()).copied()?,
                in_handshake: state != ConnectionState::Connected,
                whitelisted: config.whitelist.contains(l.address().ip()),
                rtt: snap.rtt,
                useful,
            })
        })
        .collect()
}

/// Closes `victim` to make room, telling subscribers.
fn evict(inner: &Inner, victim: &Candidate) {
    info!(peer_id = %victim.peer_id, peer_address = %victim.address, in_handshake = victim.in_handshake, "evicting an inbound peer to make room");
    if let Some(link) = inner
        .links
        .lock()
        .ok()
        .and_then(|l| l.get(&victim.peer_id).cloned())
    {
        link.disconnect();
    }
    inner.emit(ControlEvent::PeerEvicted {
        peer_id: victim.peer_id,
        address: victim.address,
        in_handshake: victim.in_handshake,
    });
}

async fn admit(
    inner: &Arc<Inner>,
    stream: TcpStream,
    addr: SocketAddr,
    refusals: &Arc<Semaphore>,
    config: &ManagerConfig,
) {
    let store = inner.store.clone();
    match store.is_ip_banned(addr.ip(), unix_now()).await {
        Ok(true) => {
            debug!(peer_address = %addr, "dropping connection from banned address");
            reject(inner, addr, InboundRejection::Banned);
            return;
        }
        Ok(false) => {}
        Err(e) => warn!(peer_address = %addr, error = %e, "checking ban status"),
    }
    let limits = &config.limits;
    let candidates = inbound_candidates(inner, config);
    let ip = addr.ip().to_canonical();
    if limits.max_inbound_per_ip > 0
        && !is_host_itself(ip)
        && !config.whitelist.contains(ip)
        && candidates
            .iter()
            .filter(|c| c.address.ip().to_canonical() == ip)
            .count()
            >= limits.max_inbound_per_ip
    {
        debug!(peer_address = %addr, cap = limits.max_inbound_per_ip, "too many connections from this address: closing");
        reject(inner, addr, InboundRejection::PerIpCap);
        return;
    }
    let now = Instant::now();
    let handshaking = candidates.iter().filter(|c| c.in_handshake).count();
    if handshaking >= limits.max_inbound_handshakes {
        match oldest_stuck_handshake(&candidates, limits.handshake_evict_age, now) {
            Some(victim) => evict(inner, victim),
            None => {
                debug!(peer_address = %addr, handshaking, "handshake budget full: closing");
                reject(inner, addr, InboundRejection::AtCapacity);
                return;
            }
        }
    }
    // Never stored: the source port is not the peer's listening port, and dialling it later
    // would fail (docs/PROTOCOL.md §3.3). The peer lives in memory, by its id, for as long as
    // the connection does.
    let peer = Peer::new(addr.ip(), addr.port());
    let _ = stream.set_nodelay(true);
    if let Some(slot) = inner.slots.try_reserve(config.max_connections) {
        start_inbound(inner, peer, stream, addr, slot);
        return;
    }
    let victim = oldest_stuck_handshake(&candidates, limits.handshake_evict_age, now)
        .cloned()
        .or_else(|| {
            limits
                .evict_established
                .then(|| established_victim(&candidates, &inner.evict_key))
                .flatten()
        });
    match (victim, refusals.clone().try_acquire_owned()) {
        (Some(victim), Ok(permit)) => {
            evict(inner, &victim);
            // The victim's slot frees when its actor ends, a moment from now.
            let inner2 = inner.clone();
            let max = config.max_connections;
            inner.tracker.spawn(
                async move {
                    match inner2.slots.reserve_within(max, EVICT_SLOT_WAIT).await {
                        Some(slot) => start_inbound(&inner2, peer, stream, addr, slot),
                        None => refuse_after_handshake(&inner2, peer, stream, addr, max).await,
                    }
                    drop(permit);
                }
                .in_current_span(),
            );
        }
        (None, Ok(permit)) => {
            let inner2 = inner.clone();
            let max = config.max_connections;
            inner.tracker.spawn(
                async move {
                    refuse_after_handshake(&inner2, peer, stream, addr, max).await;
                    drop(permit);
                }
                .in_current_span(),
            );
        }
        (_, Err(_)) => {
            debug!(peer_address = %addr, "at capacity and refusing many already: closing at once");
            reject(inner, addr, InboundRejection::AtCapacity);
        }
    }
}

fn start_inbound(
    inner: &Arc<Inner>,
    peer: Peer,
    stream: TcpStream,
    addr: SocketAddr,
    slot: super::slots::Slot,
) {
    let Some(ctx) = inner.context() else { return };
    inner.emit(ControlEvent::InboundConnectionAccepted {
        peer_id: peer.id,
        address: addr,
    });
    debug!(peer_address = %addr, "inbound connection accepted");
    if let Ok(mut m) = inner.inbound.lock() {
        m.insert(peer.id, Instant::now());
    }
    let handle = PeerConnection::inbound(peer, stream, ctx);
    inner.track(handle, Some(slot));
}

/// The node's answer when full: the handshake, then a `reject` (SPEC §7).
async fn refuse_after_handshake(
    inner: &Arc<Inner>,
    peer: Peer,
    stream: TcpStream,
    addr: SocketAddr,
    max_connections: usize,
) {
    let Some(ctx) = inner.context() else { return };
    debug!(peer_address = %addr, max_connections, "at capacity: refusing inbound peer after handshake");
    PeerConnection::over_capacity(peer, stream, ctx)
        .join()
        .await;
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

    #[tokio::test(start_paused = true)]
    async fn the_accept_bucket_allows_the_burst_then_the_rate() {
        let mut b = AcceptBucket::new(3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| b.take(2.0, 3, t0)));
        assert!(!b.take(2.0, 3, t0));
        let t1 = t0 + Duration::from_millis(500);
        assert!(
            b.take(2.0, 3, t1),
            "one token back after half a second at 2/s"
        );
        assert!(!b.take(2.0, 3, t1));
    }

    #[test]
    fn only_the_hosts_own_addresses_are_exempt_from_the_per_ip_cap() {
        assert!(is_host_itself("127.0.0.1".parse().unwrap()));
        assert!(is_host_itself("::1".parse().unwrap()));
        assert!(is_host_itself("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_host_itself("127.0.0.2".parse().unwrap()));
        assert!(!is_host_itself("10.0.0.1".parse().unwrap()));
    }
}
