//! Which stored peers to dial next (SPEC §7), as a pure function of the store's contents, the
//! live connections and the time: `Valid` peers first (they answered before), then `Unknown`;
//! never `Banned`; `Inaccessible` only once `inaccessible_retry_delay` has passed since it was
//! marked (so a network that was down recovers); never a peer we are already connected to, never
//! two connections to one IP:port, and never our own listener.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::p2p::peer::{Peer, PeerStatus, UnixTime};

/// What the selection must avoid.
#[derive(Debug, Default)]
pub struct Exclusions {
    /// Addresses with a live connection (either direction).
    pub connected: HashSet<SocketAddr>,
    /// Our own listening addresses.
    pub own: HashSet<SocketAddr>,
    /// Our listening port, if the listener is bound to every interface (then any loopback or
    /// unspecified address with this port is us).
    pub own_port: Option<u16>,
}

impl Exclusions {
    fn excludes(&self, addr: SocketAddr) -> bool {
        self.connected.contains(&addr)
            || self.own.contains(&addr)
            || self.own_port.is_some_and(|p| {
                p == addr.port() && (addr.ip().is_loopback() || addr.ip().is_unspecified())
            })
    }
}

/// Up to `want` peers to dial, best first.
pub fn select_candidates(
    peers: Vec<Peer>,
    ex: &Exclusions,
    now: UnixTime,
    inaccessible_retry: Duration,
    want: usize,
) -> Vec<Peer> {
    if want == 0 {
        return Vec::new();
    }
    let rank = |p: &Peer| -> Option<u8> {
        match &p.status {
            PeerStatus::Valid => Some(0),
            PeerStatus::Unknown => Some(1),
            PeerStatus::Inaccessible => (now.saturating_sub(p.status_timestamp)
                >= inaccessible_retry.as_secs())
            .then_some(2),
            PeerStatus::Banned { .. } => None,
        }
    };
    let mut ranked: Vec<(u8, Peer)> = peers
        .into_iter()
        // Port 0 marks a ban record of an IP known only from inbound connections: not dialable.
        .filter(|p| p.port != 0 && !ex.excludes(p.socket_addr()))
        .filter_map(|p| rank(&p).map(|r| (r, p)))
        .collect();
    // Within a rank, the peer whose status changed longest ago first, for fairness.
    ranked.sort_by_key(|(r, p)| (*r, p.status_timestamp));
    let mut seen = HashSet::new();
    ranked
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| seen.insert(p.socket_addr()))
        .take(want)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::peer::BanReason;

    fn peer(port: u16, status: PeerStatus, ts: UnixTime) -> Peer {
        let mut p = Peer::new("127.0.0.1".parse().unwrap(), port);
        p.status = status;
        p.status_timestamp = ts;
        p
    }

    #[test]
    fn valid_peers_come_before_unknown_and_banned_never_appear() {
        let peers = vec![
            peer(1, PeerStatus::Unknown, 10),
            peer(2, PeerStatus::Valid, 50),
            peer(
                3,
                PeerStatus::Banned {
                    reason: BanReason::Manual { note: "x".into() },
                    until: None,
                },
                1,
            ),
            peer(4, PeerStatus::Valid, 20),
        ];
        let got: Vec<u16> = select_candidates(
            peers,
            &Exclusions::default(),
            100,
            Duration::from_secs(3600),
            10,
        )
        .iter()
        .map(|p| p.port)
        .collect();
        assert_eq!(got, [4, 2, 1]);
    }

    #[test]
    fn inaccessible_peers_return_only_after_the_retry_delay() {
        let peers = vec![
            peer(1, PeerStatus::Inaccessible, 1000),
            peer(2, PeerStatus::Inaccessible, 0),
        ];
        let got: Vec<u16> = select_candidates(
            peers,
            &Exclusions::default(),
            3600,
            Duration::from_secs(3600),
            10,
        )
        .iter()
        .map(|p| p.port)
        .collect();
        assert_eq!(got, [2]);
    }

    #[test]
    fn connected_addresses_and_our_own_listener_are_skipped() {
        let peers = vec![
            peer(1, PeerStatus::Valid, 0),
            peer(2, PeerStatus::Valid, 0),
            peer(3, PeerStatus::Unknown, 0),
        ];
        let ex = Exclusions {
            connected: ["127.0.0.1:1".parse().unwrap()].into(),
            own: HashSet::new(),
            own_port: Some(3),
        };
        let got: Vec<u16> = select_candidates(peers, &ex, 0, Duration::ZERO, 10)
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(got, [2]);
    }

    #[test]
    fn takes_at_most_what_is_wanted() {
        let peers = (1..=10).map(|i| peer(i, PeerStatus::Unknown, 0)).collect();
        assert_eq!(
            select_candidates(peers, &Exclusions::default(), 0, Duration::ZERO, 3).len(),
            3
        );
    }
}
