//! Peer learning: the entries of `addr` messages become candidate peers in the store, so a
//! manager in Normal mode finds nodes beyond its DNS seeds.
//!
//! The `getaddr` that asks for them is a protocol rule and lives in `PeerProtocol` (one after
//! each outbound handshake, when [`AddressConfig::learn`] is on and the manager is in Normal
//! mode). This service filters what comes back, as the node's `ProcessAddrMessage`
//! (`src/net/net_processing.cpp`, docs/PROTOCOL.md §3.3) does:
//! * an entry needs `NODE_NETWORK`; a timestamp at or below 100,000,000 or more than ten minutes
//!   ahead becomes "five days ago", and entries older than 30 days are dropped (the address
//!   manager's `IsTerrible`);
//! * an `addr` from an inbound peer (never solicited: we only ask peers we dialled) counts only
//!   the entry naming that peer's own IP;
//! * only routable addresses on public networks: loopback, private, link-local, unspecified and
//!   the like are accepted on regtest only, where the simnet and a local node live;
//! * each peer has a bucket of tokens, one per entry (Bitcoin Core 22's rate limit, which the
//!   BSV node lacks): it starts with one, our `getaddr` adds 1000 for the reply, and it refills
//!   at one entry every ten seconds. Entries beyond the tokens are dropped.
//!
//! Survivors go to the supervisor, the store's one writer, as a `Report::Learned`; it creates
//! only peers it does not know (never touching an existing record), never our own listener, and
//! stops at [`AddressConfig::max_candidates`] untried peers and at `max_stored_peers`. The
//! hub must never wait: a report the supervisor has no room for is dropped (`busy`).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, trace};
use uuid::Uuid;

use super::{PeerView, Peers, Service};
use crate::bitcoin::{Network, TimestampedNetAddress};
use crate::p2p::config::ManagerConfig;
use crate::p2p::connection::link::Report;
use crate::p2p::connection::Direction;
use crate::p2p::limits::{
    ADDR_HORIZON, ADDR_INITIAL_TOKENS, ADDR_MAX_FUTURE, ADDR_MIN_TIMESTAMP, ADDR_PENALTY_AGE,
    ADDR_SOLICITED_TOKENS, ADDR_TOKENS_PER_SECOND, ADDR_TOKEN_BUCKET_MAX,
    DEFAULT_MAX_LEARNED_CANDIDATES, MAX_ADDR, NODE_NETWORK,
};
use crate::p2p::metrics::Metrics;
use crate::p2p::peer::unix_now;
use crate::p2p::Message;

/// Settings of peer learning (`[addresses]` in a configuration file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddressConfig {
    /// Learn peers from `addr` and send one `getaddr` after each outbound handshake (Normal
    /// mode only: a manager with a fixed peer list never asks).
    pub learn: bool,
    /// Learning stops while the store holds this many `Unknown` (never tried) peers, so a
    /// flooding peer cannot crowd out the candidates we already have.
    pub max_candidates: usize,
}

impl Default for AddressConfig {
    fn default() -> Self {
        AddressConfig {
            learn: true,
            max_candidates: DEFAULT_MAX_LEARNED_CANDIDATES,
        }
    }
}

impl AddressConfig {
    /// Checks the settings.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if self.learn && self.max_candidates == 0 {
            return Err(
                "addresses.max_candidates must be at least 1 (or set addresses.learn = false)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Why an `addr` entry was not learned; the `reason` of the `bsv_p2p.addresses` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DropReason {
    /// The peer ran out of tokens.
    RateLimited,
    /// No `NODE_NETWORK` service bit.
    NoNetworkService,
    /// Not routable on this network (loopback, private, ... off regtest; port 0).
    Unroutable,
    /// Last seen longer ago than the horizon.
    Stale,
    /// Unsolicited from an inbound peer, and not that peer's own address.
    NotSelf,
    /// The same address twice in one message.
    Duplicate,
    /// The supervisor had no room for the report.
    Busy,
    /// Already in the store (whatever its status).
    Known,
    /// Our own listener.
    Own,
    /// An IP with a ban on some port.
    Banned,
    /// The cap on untried candidates is reached.
    CandidateCap,
    /// The store is at `max_stored_peers`.
    StoreFull,
}

impl DropReason {
    /// The metric attribute value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::RateLimited => "rate_limited",
            DropReason::NoNetworkService => "no_network_service",
            DropReason::Unroutable => "unroutable",
            DropReason::Stale => "stale",
            DropReason::NotSelf => "not_self",
            DropReason::Duplicate => "duplicate",
            DropReason::Busy => "busy",
            DropReason::Known => "known",
            DropReason::Own => "own",
            DropReason::Banned => "banned",
            DropReason::CandidateCap => "candidate_cap",
            DropReason::StoreFull => "store_full",
        }
    }
}

/// Whether `ip` is a public, routable address (the node's `CNetAddr::IsRoutable`): not
/// unspecified, loopback, private (RFC 1918, RFC 4193), link-local, shared (RFC 6598),
/// documentation, benchmarking, multicast or broadcast.
pub(crate) fn is_routable(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, _, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

/// Whether an address is acceptable as a candidate on `network`. Regtest accepts any non-zero
/// port on any IP: regtest nodes (the simnet, a local node) listen on loopback and private
/// addresses, and nothing on regtest is public anyway. Elsewhere only routable addresses.
pub(crate) fn acceptable(addr: SocketAddr, network: Network) -> bool {
    if addr.port() == 0 {
        return false;
    }
    network == Network::Regtest || is_routable(addr.ip())
}

/// The entry's timestamp as the node corrects it (`ProcessAddrMessage`): implausible ones
/// become `now - 5 days`.
pub(crate) fn corrected_time(time: u32, now: u64) -> u64 {
    let t = u64::from(time);
    if time <= ADDR_MIN_TIMESTAMP || t > now.saturating_add(ADDR_MAX_FUTURE) {
        now.saturating_sub(ADDR_PENALTY_AGE)
    } else {
        t
    }
}

/// One peer's `addr` token bucket.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A bucket at `now` for a peer we did (`asked`) or did not send `getaddr`.
    pub(crate) fn new(asked: bool, now: Instant) -> Self {
        let extra = if asked { ADDR_SOLICITED_TOKENS } else { 0.0 };
        TokenBucket {
            tokens: ADDR_INITIAL_TOKENS + extra,
            refilled: now,
        }
    }

    /// Takes one token if there is one, after refilling for the time since the last call.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        if self.tokens < ADDR_TOKEN_BUCKET_MAX {
            self.tokens =
                (self.tokens + elapsed * ADDR_TOKENS_PER_SECOND).min(ADDR_TOKEN_BUCKET_MAX);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What filtering one `addr` message gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Filtered {
    /// Candidates for the store.
    pub keep: Vec<SocketAddr>,
    /// Dropped entries, by reason.
    pub dropped: Vec<(DropReason, u64)>,
}

impl Filtered {
    fn drop(&mut self, reason: DropReason) {
        match self.dropped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.dropped.push((reason, 1)),
        }
    }
}

/// Filters one `addr` message from `peer` (see the module documentation). `now_unix` is the
/// wall clock for timestamps, `now` the monotonic clock for the bucket.
pub(crate) fn filter(
    entries: &[TimestampedNetAddress],
    peer: &PeerView,
    bucket: &mut TokenBucket,
    network: Network,
    now_unix: u64,
    now: Instant,
) -> Filtered {
    let mut out = Filtered::default();
    let mut seen = HashSet::new();
    for e in entries.iter().take(MAX_ADDR) {
        if !bucket.take(now) {
            out.drop(DropReason::RateLimited);
            continue;
        }
        let addr = SocketAddr::new(e.addr.ip.to_canonical(), e.addr.port);
        if e.addr.services & NODE_NETWORK == 0 {
            out.drop(DropReason::NoNetworkService);
        } else if peer.direction == Direction::Inbound
            && addr.ip() != peer.address.ip().to_canonical()
        {
            out.drop(DropReason::NotSelf);
        } else if !acceptable(addr, network) {
            out.drop(DropReason::Unroutable);
        } else if now_unix.saturating_sub(corrected_time(e.time, now_unix)) > ADDR_HORIZON {
            out.drop(DropReason::Stale);
        } else if !seen.insert(addr) {
            out.drop(DropReason::Duplicate);
        } else {
            out.keep.push(addr);
        }
    }
    out
}

/// The service behind the manager's peer learning.
#[derive(Debug)]
pub(crate) struct AddrService {
    peers: Peers,
    network: Network,
    /// Whether the manager learns (Normal mode and `addresses.learn`); set once at build.
    learning: AtomicBool,
    reports: mpsc::Sender<Report>,
    buckets: Mutex<HashMap<Uuid, TokenBucket>>,
    metrics: Metrics,
}

impl AddrService {
    /// The service for a manager configured by `config`, reporting to the supervisor on
    /// `reports`. It learns only once [`AddrService::set_learning`] says so.
    pub(crate) fn new(config: &ManagerConfig, peers: Peers, reports: mpsc::Sender<Report>) -> Self {
        AddrService {
            peers,
            network: config.network,
            learning: AtomicBool::new(false),
            reports,
            buckets: Mutex::new(HashMap::new()),
            metrics: Metrics::from_global(),
        }
    }

    /// Turns learning on (Normal mode with `addresses.learn`) or off.
    pub(crate) fn set_learning(&self, on: bool) {
        self.learning.store(on, Ordering::Relaxed);
    }

    fn learning(&self) -> bool {
        self.learning.load(Ordering::Relaxed)
    }
}

impl Service for AddrService {
    fn on_peer_up(&self, _peers: &Peers, peer: &PeerView) {
        if !self.learning() {
            return;
        }
        // Our getaddr went to every outbound peer as the handshake completed.
        let asked = peer.direction == Direction::Outbound;
        if let Ok(mut b) = self.buckets.lock() {
            b.insert(peer.peer_id, TokenBucket::new(asked, Instant::now()));
        }
    }

    fn on_message(&self, _peers: &Peers, peer_id: Uuid, message: &Message) {
        let Message::Addr(entries) = message else {
            return;
        };
        if !self.learning() {
            return;
        }
        self.metrics.addresses_received(entries.len() as u64);
        let Some(view) = self.peers.view(peer_id) else {
            return;
        };
        let filtered = {
            let Ok(mut buckets) = self.buckets.lock() else {
                return;
            };
            let bucket = buckets
                .entry(peer_id)
                .or_insert_with(|| TokenBucket::new(false, Instant::now()));
            filter(
                entries,
                &view,
                bucket,
                self.network,
                unix_now(),
                Instant::now(),
            )
        };
        for (reason, n) in &filtered.dropped {
            self.metrics.addresses_dropped(reason.as_str(), *n);
        }
        trace!(%peer_id, received = entries.len(), kept = filtered.keep.len(), "addr filtered");
        if filtered.keep.is_empty() {
            return;
        }
        let n = filtered.keep.len() as u64;
        let report = Report::Learned {
            source: peer_id,
            addresses: filtered.keep,
        };
        if self.reports.try_send(report).is_err() {
            debug!(%peer_id, dropped = n, "supervisor busy; addresses dropped");
            self.metrics.addresses_dropped(DropReason::Busy.as_str(), n);
        }
    }

    fn on_peer_down(&self, _peers: &Peers, peer_id: Uuid) {
        if let Ok(mut b) = self.buckets.lock() {
            b.remove(&peer_id);
        }
    }
}

#[cfg(test)]
#[path = "addrs_tests.rs"]
mod tests;
