//! DNS seed discovery against a real DNS server on loopback.
//!
//! Each test starts `hickory-server` in process on `127.0.0.1:<free port>` (UDP and TCP on the
//! same port), authoritative for the zone `test.`, and points [`DnsDiscovery`] at it as its only
//! name server. Nothing is mocked between the resolver and the server: queries go over real
//! sockets, NXDOMAIN comes from the zone, large answers are truncated over UDP and re-asked over
//! TCP. Nothing touches the internet.
//!
//! The zone (addresses from the documentation ranges, so none is ever dialled by accident):
//!
//! | name | A | AAAA |
//! |---|---|---|
//! | `seed-a.test.` | 192.0.2.1, 192.0.2.2, 192.0.2.3 | 2001:db8::a |
//! | `seed-b.test.` | 198.51.100.1, 198.51.100.2, 192.0.2.3 (also in seed-a) | 2001:db8::b |
//! | `seed-big.test.` | 10.1.0.1 … 10.1.0.120 (too many for one UDP answer) | none |
//!
//! Anything else under `test.` is NXDOMAIN.
//!
//! The tests of deadlines run on tokio's paused clock, resolver and server on the test's one
//! thread: the clock moves only when everything waits on a timer, so a deadline is asserted at
//! its exact virtual instant, whatever the machine's load.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::bans::Whitelist;
use bitcoinsv::p2p::{
    BanReason, DiscoveryReport, DnsDiscovery, InMemoryPeerStore, P2pError, Peer, PeerStatus,
    PeerStore,
};
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

/// The port discovered addresses are stored with (regtest's, to differ from every record).
const PORT: u16 = 18444;

fn seed_a() -> Vec<IpAddr> {
    ips(&["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::a"])
}

fn seed_b() -> Vec<IpAddr> {
    ips(&["198.51.100.1", "198.51.100.2", "192.0.2.3", "2001:db8::b"])
}

fn seed_big() -> Vec<IpAddr> {
    (1..=120)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)))
        .collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// The distinct addresses of seed-a and seed-b together (192.0.2.3 is in both).
fn both_seeds() -> BTreeSet<IpAddr> {
    seed_a().into_iter().chain(seed_b()).collect()
}

/// A DNS server on loopback, authoritative for `test.`, counting the queries it gets per
/// transport. Dropping it stops the server.
struct LoopbackDns {
    addr: SocketAddr,
    queries: Arc<QueryCounts>,
    _server: Server<CountingHandler>,
}

#[derive(Default)]
struct QueryCounts {
    udp: AtomicUsize,
    tcp: AtomicUsize,
}

/// The catalog, plus a count of queries by transport, so a test can tell TCP was really used.
struct CountingHandler {
    catalog: Catalog,
    queries: Arc<QueryCounts>,
}

#[async_trait::async_trait]
impl RequestHandler for CountingHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        match request.protocol() {
            Protocol::Udp => self.queries.udp.fetch_add(1, Ordering::SeqCst),
            Protocol::Tcp => self.queries.tcp.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

impl LoopbackDns {
    async fn start() -> Self {
        let origin = Name::from_ascii("test.").unwrap();
        let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        let serial = 1;
        let soa = SOA::new(
            Name::from_ascii("ns.test.").unwrap(),
            Name::from_ascii("hostmaster.test.").unwrap(),
            serial,
            3600,
            600,
            86_400,
            60,
        );
        assert!(zone.upsert_mut(
            Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)),
            serial
        ));
        for (name, addresses) in [
            ("seed-a.test.", seed_a()),
            ("seed-b.test.", seed_b()),
            ("seed-big.test.", seed_big()),
        ] {
            let name = Name::from_ascii(name).unwrap();
            for ip in addresses {
                let rdata = match ip {
                    IpAddr::V4(v4) => RData::from(v4),
                    IpAddr::V6(v6) => RData::from(v6),
                };
                assert!(zone.upsert_mut(Record::from_rdata(name.clone(), 60, rdata), serial));
            }
        }
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);

        let queries = Arc::new(QueryCounts::default());
        let mut server = Server::new(CountingHandler {
            catalog,
            queries: queries.clone(),
        });
        let (udp, tcp) = bind_udp_and_tcp_on_one_port().await;
        let addr = udp.local_addr().unwrap();
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 16);
        LoopbackDns {
            addr,
            queries,
            _server: server,
        }
    }

    /// A discovery of `seeds` that asks only this server.
    fn discovery(&self, seeds: &[&str]) -> DnsDiscovery {
        DnsDiscovery::new(
            seeds.iter().map(|s| s.to_string()).collect(),
            Some(vec![self.addr]),
            PORT,
        )
    }
}

/// A UDP socket and a TCP listener on the same free loopback port (the resolver asks one
/// `ip:port` over both transports). The OS picks the UDP port; TCP may find it taken by
/// another process, so try a few.
async fn bind_udp_and_tcp_on_one_port() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// A loopback address where no DNS server runs: a port that was just free.
fn dead_name_server() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

async fn stored(store: &InMemoryPeerStore) -> BTreeSet<(IpAddr, u16)> {
    store
        .list_all()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.ip, p.port))
        .collect()
}

fn at_port(ips: impl IntoIterator<Item = IpAddr>) -> BTreeSet<(IpAddr, u16)> {
    ips.into_iter().map(|ip| (ip, PORT)).collect()
}

#[tokio::test]
async fn resolve_seed_returns_the_a_and_aaaa_records_of_the_seed() {
    let dns = LoopbackDns::start().await;
    let discovery = dns.discovery(&[]);

    let a: HashSet<IpAddr> = discovery
        .resolve_seed("seed-a.test")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(a, seed_a().into_iter().collect());

    // A fully qualified seed name resolves the same.
    let b = discovery.resolve_seed("seed-b.test.").await.unwrap();
    assert_eq!(b.len(), 4);
    assert_eq!(
        b.iter().copied().collect::<HashSet<_>>(),
        seed_b().into_iter().collect()
    );
    // IPv4 first, then IPv6.
    assert_eq!(
        b[3],
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb))
    );
}

#[tokio::test]
async fn discovery_stores_the_addresses_of_two_seeds_as_unknown_peers_on_the_default_port() {
    let dns = LoopbackDns::start().await;
    let store = InMemoryPeerStore::new();

    let report = dns
        .discovery(&["seed-a.test", "seed-b.test"])
        .discover(&store)
        .await;

    // 192.0.2.3 is returned by both seeds and stored once.
    assert_eq!(
        report,
        DiscoveryReport {
            found: 7,
            added: 7,
            ..DiscoveryReport::default()
        }
    );
    assert_eq!(stored(&store).await, at_port(both_seeds()));
    for peer in store.list_all().await.unwrap() {
        assert_eq!(peer.status, PeerStatus::Unknown, "{}", peer.socket_addr());
    }
}

#[tokio::test]
async fn a_seed_that_does_not_exist_fails_without_stopping_the_others() {
    let dns = LoopbackDns::start().await;
    let store = InMemoryPeerStore::new();

    let report = dns
        .discovery(&["seed-a.test", "no-such-seed.test", "seed-b.test"])
        .discover(&store)
        .await;

    assert_eq!(report.found, 7);
    assert_eq!(report.added, 7);
    assert_eq!(report.failed_seeds.len(), 1, "{:?}", report.failed_seeds);
    let (seed, error) = &report.failed_seeds[0];
    assert_eq!(seed, "no-such-seed.test");
    assert_eq!(error, "no such host name (NXDOMAIN)");
    assert_eq!(stored(&store).await, at_port(both_seeds()));

    // The same failure through `resolve_seed` is a typed DNS error naming the seed.
    match dns.discovery(&[]).resolve_seed("no-such-seed.test").await {
        Err(P2pError::Dns { seed, message }) => {
            assert_eq!(seed, "no-such-seed.test");
            assert_eq!(&message, error);
        }
        other => panic!("expected a DNS error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_name_without_address_records_fails_as_such() {
    let dns = LoopbackDns::start().await;

    // `test.` exists (it holds the zone's SOA) but has no A or AAAA record.
    match dns.discovery(&[]).resolve_seed("test").await {
        Err(P2pError::Dns { seed, message }) => {
            assert_eq!(seed, "test");
            assert_eq!(message, "no A or AAAA records");
        }
        other => panic!("expected a DNS error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_name_server_fails_every_seed_at_the_seed_deadline() {
    let store = InMemoryPeerStore::new();
    let discovery = DnsDiscovery::new(
        vec!["seed-a.test".into(), "seed-b.test".into()],
        Some(vec![dead_name_server()]),
        PORT,
    )
    .with_seed_timeout(Duration::from_secs(1));

    let started = tokio::time::Instant::now();
    let report = discovery.discover(&store).await;
    let elapsed = started.elapsed();

    // Seeds are resolved concurrently: two dead seeds cost one deadline, not two. (Virtual
    // time: a timer fires at its deadline rounded up to the next millisecond.)
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed <= Duration::from_millis(1001),
        "took {elapsed:?}"
    );
    assert_eq!(
        report,
        DiscoveryReport {
            failed_seeds: vec![
                ("seed-a.test".into(), "no answer within 1s".into()),
                ("seed-b.test".into(), "no answer within 1s".into()),
            ],
            ..DiscoveryReport::default()
        }
    );
    assert_eq!(store.count().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dead_name_server_beside_a_live_one_does_not_stop_discovery() {
    let dns = LoopbackDns::start().await;
    let store = InMemoryPeerStore::new();
    let discovery = DnsDiscovery::new(
        vec!["seed-a.test".into(), "seed-b.test".into()],
        Some(vec![dead_name_server(), dns.addr]),
        PORT,
    )
    .with_seed_timeout(Duration::from_secs(3));

    let started = tokio::time::Instant::now();
    let report = discovery.discover(&store).await;

    // The live server's answer is used without waiting out the dead server's query timeout.
    assert!(
        started.elapsed() < bitcoinsv::p2p::discovery::DNS_QUERY_TIMEOUT,
        "took {:?}",
        started.elapsed()
    );

    assert_eq!(
        report,
        DiscoveryReport {
            found: 7,
            added: 7,
            ..DiscoveryReport::default()
        }
    );
    assert_eq!(stored(&store).await, at_port(both_seeds()));
}

#[tokio::test]
async fn existing_entries_and_banned_ips_are_skipped() {
    let dns = LoopbackDns::start().await;
    let store = InMemoryPeerStore::new();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();

    // Already stored at the default port, and known good: kept as it is.
    let mut known = Peer::new(ip("192.0.2.1"), PORT);
    known.set_status(PeerStatus::Valid);
    store.create(known.clone()).await.unwrap();
    // Banned on another port: the ban covers the IP, so the default port is not added either.
    store
        .create(Peer::new(ip("192.0.2.2"), 9999))
        .await
        .unwrap();
    store
        .ban_ip(
            ip("192.0.2.2"),
            BanReason::Manual {
                note: "test".into(),
            },
            None,
            &Whitelist::default(),
        )
        .await
        .unwrap();
    // Stored on another port only, not banned: the default port is a new address.
    store
        .create(Peer::new(ip("198.51.100.1"), 9999))
        .await
        .unwrap();
    // A ban that has lapsed does not block the address.
    store
        .create(Peer::new(ip("2001:db8::a"), 9999))
        .await
        .unwrap();
    store
        .ban_ip(
            ip("2001:db8::a"),
            BanReason::Manual {
                note: "lapsed".into(),
            },
            Some(1),
            &Whitelist::default(),
        )
        .await
        .unwrap();

    let report = dns
        .discovery(&["seed-a.test", "seed-b.test"])
        .discover(&store)
        .await;

    assert_eq!(
        report,
        DiscoveryReport {
            found: 7,
            added: 5,
            skipped_existing: 1,
            skipped_banned: 1,
            ..DiscoveryReport::default()
        }
    );
    let mut expected = at_port(both_seeds());
    expected.remove(&(ip("192.0.2.2"), PORT));
    expected.insert((ip("192.0.2.2"), 9999));
    expected.insert((ip("198.51.100.1"), 9999));
    expected.insert((ip("2001:db8::a"), 9999));
    assert_eq!(stored(&store).await, expected);
    assert_eq!(store.read(known.id).await.unwrap(), Some(known));
}

#[tokio::test]
async fn running_discovery_twice_adds_nothing_the_second_time() {
    let dns = LoopbackDns::start().await;
    let store = InMemoryPeerStore::new();
    let discovery = dns.discovery(&["seed-a.test", "seed-b.test"]);

    let first = discovery.discover(&store).await;
    let after_first = store.list_all().await.unwrap();
    let second = discovery.discover(&store).await;

    assert_eq!(first.added, 7);
    assert_eq!(
        second,
        DiscoveryReport {
            found: 7,
            skipped_existing: 7,
            ..DiscoveryReport::default()
        }
    );
    let mut after_second = store.list_all().await.unwrap();
    let mut after_first = after_first;
    after_first.sort_by_key(|p| p.id);
    after_second.sort_by_key(|p| p.id);
    assert_eq!(after_second, after_first);
}

#[tokio::test]
async fn a_seed_answer_too_large_for_udp_is_fetched_over_tcp() {
    let dns = LoopbackDns::start().await;
    let store = InMemoryPeerStore::new();

    let report = dns.discovery(&["seed-big.test"]).discover(&store).await;

    assert_eq!(
        report,
        DiscoveryReport {
            found: 120,
            added: 120,
            ..DiscoveryReport::default()
        }
    );
    assert_eq!(stored(&store).await, at_port(seed_big()));
    // Asked over UDP first, truncated, then asked again over TCP.
    assert!(dns.queries.udp.load(Ordering::SeqCst) >= 1);
    assert!(dns.queries.tcp.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn addresses_a_full_store_refuses_are_reported_with_the_store_error() {
    let dns = LoopbackDns::start().await;
    // Room for two peers, both Valid: nothing can be evicted to make room.
    let store = InMemoryPeerStore::new().with_max_peers(2);
    for ip in ["203.0.113.1", "203.0.113.2"] {
        let mut peer = Peer::new(ip.parse().unwrap(), PORT);
        peer.set_status(PeerStatus::Valid);
        store.create(peer).await.unwrap();
    }

    let report = dns.discovery(&["seed-a.test"]).discover(&store).await;

    assert_eq!(report.found, 4);
    assert_eq!(report.added, 0);
    let refused: BTreeSet<IpAddr> = report.store_errors.iter().map(|(ip, _)| *ip).collect();
    assert_eq!(refused, seed_a().into_iter().collect());
    for (_, error) in &report.store_errors {
        assert_eq!(
            error,
            "peer store is full: 2 peers, all Valid or Banned, none can be evicted \
             (raise max_stored_peers)"
        );
    }
    assert_eq!(store.count().await.unwrap(), 2);
}
