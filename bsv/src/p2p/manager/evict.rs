//! Whom to close when the listener is full and a new peer knocks (docs/SECURITY.md), as pure
//! functions of the inbound connections' facts, so they are tested without sockets.
//!
//! * An inbound connection still in its handshake after `limits.handshake_evict_age` is the
//!   first to go, the oldest first: an honest handshake takes a round trip or two, so such a
//!   peer is slow at best and a slowloris at worst. This is what stops a few sockets sending a
//!   byte a second from keeping honest peers out.
//! * Otherwise, with `limits.evict_established`, an established inbound peer is picked the way
//!   the node's `CConnman::AttemptToEvictConnection` (`src/net/net.cpp`) does: whitelisted peers
//!   are never candidates; protected are 4 peers by a keyed hash of their address group (an
//!   attacker cannot predict which), the 8 with the lowest ping, the 4 that sent us the most
//!   transactions and blocks, then the older half of the rest; of what remains, the youngest
//!   peer of the most crowded address group (/16 for IPv4, /32 for IPv6) is evicted.

use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::p2p::limits::{EVICT_PROTECT_NETGROUP, EVICT_PROTECT_PING, EVICT_PROTECT_USEFUL};

/// What eviction knows of one inbound connection.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// The connection's peer.
    pub peer_id: Uuid,
    /// Its address.
    pub address: SocketAddr,
    /// When the listener accepted it.
    pub accepted: Instant,
    /// Whether its handshake is still running.
    pub in_handshake: bool,
    /// Whether it is whitelisted (never evicted).
    pub whitelisted: bool,
    /// Its last ping round trip.
    pub rtt: Option<Duration>,
    /// Transactions and blocks it sent us.
    pub useful: u64,
}

/// The address group of `ip`: the node's `GetGroup` in its simplest form, /16 for IPv4 (and
/// IPv4-mapped IPv6), /32 for IPv6.
pub(crate) fn netgroup(ip: IpAddr) -> [u8; 4] {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [4, o[0], o[1], 0]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            // The tag keeps the two families apart; 3 bytes of the /32 are enough to group.
            [6, o[0] ^ o[3], o[1], o[2]]
        }
    }
}

/// The oldest connection still in its handshake after `min_age`, if any.
pub(crate) fn oldest_stuck_handshake(
    candidates: &[Candidate],
    min_age: Duration,
    now: Instant,
) -> Option<&Candidate> {
    candidates
        .iter()
        .filter(|c| c.in_handshake && !c.whitelisted)
        .filter(|c| now.saturating_duration_since(c.accepted) >= min_age)
        .min_by_key(|c| c.accepted)
}

/// The established peer to evict, as the node's `AttemptToEvictConnection` picks it; `None`
/// when every candidate is protected. `key` is the manager's secret for the netgroup hash.
pub(crate) fn established_victim<S: BuildHasher>(
    candidates: &[Candidate],
    key: &S,
) -> Option<Candidate> {
    let mut c: Vec<Candidate> = candidates
        .iter()
        .filter(|c| !c.in_handshake && !c.whitelisted)
        .cloned()
        .collect();
    let hash = |x: &Candidate| {
        let mut h = key.build_hasher();
        netgroup(x.address.ip()).hash(&mut h);
        std::hash::Hasher::finish(&h)
    };
    // Each step sorts the protected peers to the end and removes them.
    c.sort_by_key(|x| hash(x));
    c.truncate(c.len().saturating_sub(EVICT_PROTECT_NETGROUP));
    c.sort_by_key(|x| std::cmp::Reverse(x.rtt.unwrap_or(Duration::MAX)));
    c.truncate(c.len().saturating_sub(EVICT_PROTECT_PING));
    c.sort_by_key(|x| x.useful);
    let useful = c.iter().rev().take_while(|x| x.useful > 0).count();
    c.truncate(c.len() - useful.min(EVICT_PROTECT_USEFUL));
    // The older half of the rest (longest connected).
    c.sort_by_key(|x| std::cmp::Reverse(x.accepted));
    c.truncate(c.len() - c.len() / 2);
    if c.is_empty() {
        return None;
    }
    // The most crowded group; on a tie, the group with the youngest connection.
    let mut groups: std::collections::HashMap<[u8; 4], (usize, Instant)> =
        std::collections::HashMap::new();
    for x in &c {
        let e = groups
            .entry(netgroup(x.address.ip()))
            .or_insert((0, x.accepted));
        e.0 += 1;
        e.1 = e.1.max(x.accepted);
    }
    let (group, _) = groups
        .into_iter()
        .max_by_key(|(_, (n, youngest))| (*n, *youngest))?;
    c.into_iter()
        .filter(|x| netgroup(x.address.ip()) == group)
        .max_by_key(|x| x.accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::RandomState;

    fn cand(ip: &str, age_s: u64, now: Instant) -> Candidate {
        Candidate {
            peer_id: Uuid::new_v4(),
            address: SocketAddr::new(ip.parse().unwrap(), 8333),
            accepted: now - Duration::from_secs(age_s),
            in_handshake: false,
            whitelisted: false,
            rtt: None,
            useful: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_handshake_past_the_age_goes_first() {
        let now = Instant::now() + Duration::from_secs(100);
        let mut a = cand("10.0.0.1", 30, now);
        a.in_handshake = true;
        let mut b = cand("10.0.0.2", 60, now);
        b.in_handshake = true;
        let mut young = cand("10.0.0.3", 1, now);
        young.in_handshake = true;
        let established = cand("10.0.0.4", 90, now);
        let all = [a, b.clone(), young, established];
        let got = oldest_stuck_handshake(&all, Duration::from_secs(5), now).unwrap();
        assert_eq!(got.peer_id, b.peer_id);
        assert!(oldest_stuck_handshake(&all[2..], Duration::from_secs(5), now).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_youngest_of_the_most_crowded_group_is_evicted_and_protected_peers_are_not() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let mut all = Vec::new();
        // 20 peers from distinct groups, each with a low ping or useful traffic to protect
        // some, and a crowd of 10 from one /16 that connected recently.
        for i in 0..20u64 {
            let mut c = cand(&format!("{}.1.0.1", 10 + i), 5000 - i, now);
            c.rtt = Some(Duration::from_millis(10 + i));
            all.push(c);
        }
        for i in 0..10u64 {
            all.push(cand(&format!("99.99.0.{}", i + 1), 100 - i, now));
        }
        for _ in 0..20 {
            // Whatever the secret key protects, the victim is from the crowd and no older than
            // the crowd's five youngest (the keyed hash protects at most four peers).
            let victim = established_victim(&all, &RandomState::new()).unwrap();
            assert_eq!(
                netgroup(victim.address.ip()),
                netgroup(all[29].address.ip())
            );
            assert!(now.saturating_duration_since(victim.accepted) <= Duration::from_secs(95));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn whitelisted_and_handshaking_peers_are_never_established_victims() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let mut all: Vec<Candidate> = (0..40u64)
            .map(|i| {
                let mut c = cand("10.0.0.1", 100 + i, now);
                c.whitelisted = true;
                c
            })
            .collect();
        let mut h = cand("10.0.0.2", 1, now);
        h.in_handshake = true;
        all.push(h);
        assert!(established_victim(&all, &RandomState::new()).is_none());
    }

    #[test]
    fn ipv4_groups_are_slash_16_and_mapped_addresses_group_with_ipv4() {
        let g = |s: &str| netgroup(s.parse().unwrap());
        assert_eq!(g("1.2.3.4"), g("1.2.200.7"));
        assert_ne!(g("1.2.3.4"), g("1.3.3.4"));
        assert_eq!(g("::ffff:1.2.3.4"), g("1.2.9.9"));
    }
}
