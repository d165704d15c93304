//! The `addr` filter of peer learning (docs/PROTOCOL.md §3.3), on plain values with a fake clock.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::bitcoin::NetAddress;
use crate::p2p::connection::PeerDetails;

const NOW: u64 = 1_800_000_000;

fn entry(addr: &str, services: u64, time: u32) -> TimestampedNetAddress {
    TimestampedNetAddress {
        time,
        addr: NetAddress::new(addr.parse().unwrap(), services),
    }
}

fn fresh(addr: &str) -> TimestampedNetAddress {
    entry(addr, 0x21, NOW as u32 - 60)
}

fn peer(direction: Direction, address: &str) -> PeerView {
    PeerView {
        peer_id: Uuid::new_v4(),
        address: address.parse().unwrap(),
        direction,
        details: PeerDetails::default(),
    }
}

fn run(entries: &[TimestampedNetAddress], p: &PeerView, network: Network) -> Filtered {
    let now = Instant::now();
    let mut bucket = TokenBucket::new(true, now);
    filter(entries, p, &mut bucket, network, NOW, now)
}

#[test]
fn entries_without_node_network_are_dropped() {
    let p = peer(Direction::Outbound, "8.8.8.8:8333");
    let f = run(
        &[
            entry("1.2.3.4:8333", 0x20, NOW as u32),
            fresh("5.6.7.8:8333"),
        ],
        &p,
        Network::Mainnet,
    );
    let want: SocketAddr = "5.6.7.8:8333".parse().unwrap();
    assert_eq!(f.keep, [want]);
    assert_eq!(f.dropped, [(DropReason::NoNetworkService, 1)]);
}

#[test]
fn non_routable_addresses_are_learned_on_regtest_only() {
    let p = peer(Direction::Outbound, "8.8.8.8:8333");
    let local = [
        fresh("127.0.0.1:18444"),
        fresh("10.0.0.1:8333"),
        fresh("192.168.1.1:8333"),
        fresh("169.254.1.1:8333"),
        fresh("0.0.0.0:8333"),
        fresh("[::1]:8333"),
        fresh("[fe80::1]:8333"),
    ];
    let f = run(&local, &p, Network::Mainnet);
    assert!(f.keep.is_empty());
    assert_eq!(f.dropped, [(DropReason::Unroutable, 7)]);
    assert_eq!(run(&local, &p, Network::Regtest).keep.len(), 7);
}

#[test]
fn port_zero_is_never_learned() {
    let p = peer(Direction::Outbound, "8.8.8.8:8333");
    let f = run(&[fresh("127.0.0.1:0")], &p, Network::Regtest);
    assert_eq!(f.dropped, [(DropReason::Unroutable, 1)]);
}

#[test]
fn implausible_timestamps_become_five_days_old_and_old_entries_are_dropped() {
    assert_eq!(corrected_time(100_000_000, NOW), NOW - 5 * 86_400);
    assert_eq!(corrected_time((NOW + 601) as u32, NOW), NOW - 5 * 86_400);
    assert_eq!(corrected_time((NOW + 600) as u32, NOW), NOW + 600);
    let p = peer(Direction::Outbound, "8.8.8.8:8333");
    let f = run(
        &[
            entry("1.1.1.1:8333", 1, 5),
            entry("2.2.2.2:8333", 1, (NOW - 31 * 86_400) as u32),
        ],
        &p,
        Network::Mainnet,
    );
    let want: SocketAddr = "1.1.1.1:8333".parse().unwrap();
    assert_eq!(f.keep, [want]);
    assert_eq!(f.dropped, [(DropReason::Stale, 1)]);
}

#[test]
fn an_inbound_peer_only_counts_for_its_own_address() {
    let p = peer(Direction::Inbound, "9.9.9.9:50123");
    let f = run(
        &[fresh("1.1.1.1:8333"), fresh("9.9.9.9:8333")],
        &p,
        Network::Mainnet,
    );
    let want: SocketAddr = "9.9.9.9:8333".parse().unwrap();
    assert_eq!(f.keep, [want]);
    assert_eq!(f.dropped, [(DropReason::NotSelf, 1)]);
}

#[test]
fn duplicates_in_one_message_count_once() {
    let p = peer(Direction::Outbound, "8.8.8.8:8333");
    let f = run(
        &[fresh("1.1.1.1:8333"), fresh("1.1.1.1:8333")],
        &p,
        Network::Mainnet,
    );
    assert_eq!(f.keep.len(), 1);
    assert_eq!(f.dropped, [(DropReason::Duplicate, 1)]);
}

fn many(n: usize, from: u32) -> Vec<TimestampedNetAddress> {
    (0..n as u32)
        .map(|i| TimestampedNetAddress {
            time: NOW as u32,
            addr: NetAddress::new(
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(from + i)), 8333),
                1,
            ),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_solicited_reply_of_1000_passes_then_the_bucket_refills_one_entry_per_ten_seconds() {
    let p = peer(Direction::Outbound, "8.8.8.8:8333");
    let t0 = Instant::now();
    let mut bucket = TokenBucket::new(true, t0);
    let base = u32::from(Ipv4Addr::new(1, 0, 0, 0));
    let f = filter(
        &many(1000, base),
        &p,
        &mut bucket,
        Network::Mainnet,
        NOW,
        t0,
    );
    assert_eq!(f.keep.len(), 1000);
    // The one initial token (for the peer's self-announcement) is left.
    let f = filter(
        &many(1000, base + 1000),
        &p,
        &mut bucket,
        Network::Mainnet,
        NOW,
        t0,
    );
    assert_eq!(f.keep.len(), 1);
    assert_eq!(f.dropped, [(DropReason::RateLimited, 999)]);
    tokio::time::advance(Duration::from_secs(100)).await;
    let f = filter(
        &many(1000, base + 2000),
        &p,
        &mut bucket,
        Network::Mainnet,
        NOW,
        Instant::now(),
    );
    assert_eq!(f.keep.len(), 10);
}

#[tokio::test(start_paused = true)]
async fn an_unasked_peer_gets_one_entry_and_the_bucket_never_holds_more_than_1000() {
    let p = peer(Direction::Outbound, "8.8.8.8:8333");
    let t0 = Instant::now();
    let mut bucket = TokenBucket::new(false, t0);
    let base = u32::from(Ipv4Addr::new(1, 0, 0, 0));
    let f = filter(&many(5, base), &p, &mut bucket, Network::Mainnet, NOW, t0);
    assert_eq!(f.keep.len(), 1);
    tokio::time::advance(Duration::from_secs(1_000_000)).await;
    let mut total = 0;
    for k in 0..3 {
        let f = filter(
            &many(1000, base + 1000 * (k + 1)),
            &p,
            &mut bucket,
            Network::Mainnet,
            NOW,
            Instant::now(),
        );
        total += f.keep.len();
    }
    assert_eq!(total, 1000);
}

#[test]
fn routable_public_addresses_are_recognised() {
    for ok in ["1.1.1.1", "8.8.8.8", "2a01:4f8::1"] {
        assert!(is_routable(ok.parse().unwrap()), "{ok}");
    }
    for no in [
        "100.64.0.1",
        "198.18.0.1",
        "192.0.2.1",
        "240.0.0.1",
        "255.255.255.255",
        "fc00::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
    ] {
        assert!(!is_routable(no.parse().unwrap()), "{no}");
    }
}

#[test]
fn a_config_that_learns_needs_room_for_a_candidate() {
    assert!(AddressConfig::default().check().is_ok());
    let bad = AddressConfig {
        max_candidates: 0,
        ..AddressConfig::default()
    };
    assert!(bad.check().is_err());
    let off = AddressConfig {
        learn: false,
        max_candidates: 0,
    };
    assert!(off.check().is_ok());
}
