//! The crawler against simnets on loopback: breadth-first discovery from one seed, chain
//! classification (BCH user agent, BTC magic, another network's magic), unreachable addresses,
//! and the bounds on concurrency, node count and time.
//!
//! The tests of time bounds run on tokio's paused clock, crawler and simnet on the test's one
//! thread: the clock moves only when everything waits on a timer, so a deadline or timeout is
//! asserted at its exact virtual instant, whatever the machine's load.

use std::net::SocketAddr;
use std::time::Duration;

use bitcoinsv::p2p::crawler::probe;
use bitcoinsv::p2p::{Chain, CrawlConfig, CrawlProgress, CrawlReport, Crawler, Network};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig, BCH_USER_AGENT, DEFAULT_USER_AGENT};

/// A crawl of a healthy simnet finishes in well under this.
const WAIT: Duration = Duration::from_secs(30);

fn config(seed: SocketAddr) -> CrawlConfig {
    let mut c = CrawlConfig::new(Network::Regtest, vec![seed]);
    c.connect_timeout = Duration::from_secs(2);
    c.handshake_timeout = Duration::from_secs(5);
    c.addr_timeout = Duration::from_secs(5);
    c.deadline = WAIT;
    c
}

/// Asserts that `took` is `expected` to the resolution of tokio's timers (a deadline is rounded
/// up to the next millisecond).
#[track_caller]
fn assert_at(took: Duration, expected: Duration) {
    assert!(
        took >= expected && took <= expected + Duration::from_millis(1),
        "took {took:?}, expected {expected:?}"
    );
}

async fn crawl(c: CrawlConfig) -> (CrawlReport, Vec<CrawlProgress>) {
    let mut seen = Vec::new();
    let report = Crawler::run(c, |p| seen.push(p))
        .await
        .expect("valid config");
    (report, seen)
}

fn chain_of(report: &CrawlReport, addr: SocketAddr) -> Chain {
    report
        .nodes
        .iter()
        .find(|n| n.address == addr)
        .unwrap_or_else(|| panic!("{addr} not in the report"))
        .chain
}

#[tokio::test]
async fn crawl_from_one_seed_finds_all_sixty_nodes_and_reports_the_bch_agent_node_as_bch() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(60)
            .blocks(5)
            .with_misbehaviour(17, Misbehaviour::BchUserAgent),
    )
    .await
    .unwrap();
    let (report, progress) = crawl(config(net.node(0).address())).await;
    assert!(!report.deadline_reached);
    assert_eq!(report.found, 60);
    assert_eq!(report.untried, 0);
    let mut got: Vec<SocketAddr> = report.nodes.iter().map(|n| n.address).collect();
    let mut want = net.addresses();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for n in &report.nodes {
        assert!(n.reachable, "{n:?}");
        assert_eq!(n.version, Some(70016));
        assert_eq!(n.services, Some(0x21));
        assert_eq!(n.start_height, Some(5));
        assert!(n.rtt.is_some());
        if n.address == net.node(17).address() {
            assert_eq!(n.chain, Chain::Bch);
            assert_eq!(n.user_agent.as_deref(), Some(BCH_USER_AGENT));
            assert_eq!(n.addresses, 0, "a BCH node's addresses are not followed");
        } else {
            assert_eq!(n.chain, Chain::Bsv, "{n:?}");
            assert_eq!(n.user_agent.as_deref(), Some(DEFAULT_USER_AGENT));
            assert_eq!(n.error, None);
            assert_eq!(n.addresses, 59);
        }
    }
    assert_eq!(report.on_chain(Chain::Bch).count(), 1);
    assert_eq!(report.on_chain(Chain::Bsv).count(), 59);
    let last = *progress.last().unwrap();
    assert_eq!(
        last,
        CrawlProgress {
            found: 60,
            tried: 60,
            reachable: 60,
            in_flight: 0
        }
    );
    assert!(progress.iter().all(|p| p.in_flight <= 32));
    // The crawler behaves: no node banned it.
    assert!(net.nodes().iter().all(|n| n.banned_ips().is_empty()));
    net.shutdown().await;
}

#[tokio::test]
async fn btc_magic_and_another_networks_magic_are_classified_and_not_followed() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(3)
            .blocks(1)
            .with_misbehaviour(1, Misbehaviour::WrongMagic)
            .with_misbehaviour(2, Misbehaviour::OtherNetworkMagic(Network::Testnet)),
    )
    .await
    .unwrap();
    let (report, _) = crawl(config(net.node(0).address())).await;
    assert_eq!(report.nodes.len(), 3);
    assert_eq!(chain_of(&report, net.node(0).address()), Chain::Bsv);
    assert_eq!(chain_of(&report, net.node(1).address()), Chain::Btc);
    assert_eq!(
        chain_of(&report, net.node(2).address()),
        Chain::OtherNetwork(Network::Testnet)
    );
    let btc = &report.nodes.iter().find(|n| n.chain == Chain::Btc).unwrap();
    assert!(btc.reachable);
    // The version still decodes under the foreign magic, so it is shown.
    assert_eq!(btc.user_agent.as_deref(), Some(DEFAULT_USER_AGENT));
    assert!(btc.error.as_deref().unwrap().contains("f9beb4d9"));
    net.shutdown().await;
}

#[tokio::test]
async fn unreachable_advertised_addresses_are_reported_unreachable() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(3)
            .blocks(1)
            .include_unreachable_addrs(3),
    )
    .await
    .unwrap();
    let (report, _) = crawl(config(net.node(0).address())).await;
    assert_eq!(report.nodes.len(), 6);
    assert_eq!(report.reachable(), 3);
    for n in report.nodes.iter().filter(|n| !n.reachable) {
        assert_eq!(n.chain, Chain::Unknown);
        assert!(n.error.as_deref().unwrap().starts_with("connect failed"));
        assert_ne!(n.address.ip(), net.node(0).address().ip());
    }
    net.shutdown().await;
}

#[tokio::test]
async fn concurrency_bounds_probes_in_flight_and_max_nodes_bounds_the_crawl() {
    let net = SimNet::start(SimNetConfig::default().nodes(20).blocks(1))
        .await
        .unwrap();
    let mut c = config(net.node(0).address());
    c.concurrency = 2;
    c.max_nodes = 7;
    let (report, progress) = crawl(c).await;
    assert_eq!(report.found, 7);
    assert_eq!(report.nodes.len(), 7);
    assert!(report.nodes.iter().all(|n| n.reachable));
    assert!(progress.iter().all(|p| p.in_flight <= 2));
    assert!(progress.iter().any(|p| p.in_flight == 2));
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_a_crawl_stuck_on_a_silent_peer() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(1)
            .with_misbehaviour(0, Misbehaviour::NeverAnswerVersion),
    )
    .await
    .unwrap();
    let mut c = config(net.node(0).address());
    // The node would close the silent connection at its own 60 s handshake timeout; ours is as
    // long, and the crawl's deadline comes first.
    c.handshake_timeout = Duration::from_secs(60);
    c.deadline = Duration::from_secs(20);
    let started = tokio::time::Instant::now();
    let (report, progress) = crawl(c).await;
    assert_at(started.elapsed(), Duration::from_secs(20));
    assert!(report.deadline_reached);
    assert!(report.nodes.is_empty());
    assert_eq!(report.untried, 1);
    assert_eq!(progress.last().unwrap().in_flight, 0);
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_reported_with_a_handshake_timeout() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(1)
            .with_misbehaviour(0, Misbehaviour::NeverAnswerVersion),
    )
    .await
    .unwrap();
    let mut c = config(net.node(0).address());
    // Shorter than the node's own 60 s, after which it would close the connection itself.
    c.handshake_timeout = Duration::from_secs(20);
    let started = tokio::time::Instant::now();
    let p = probe(net.node(0).address(), &c).await;
    assert_at(started.elapsed(), Duration::from_secs(20));
    assert!(!p.report.reachable);
    assert_eq!(p.report.chain, Chain::Unknown);
    assert_eq!(p.report.error.as_deref(), Some("no version within 20s"));
    net.shutdown().await;
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_before_any_connection() {
    let c = CrawlConfig::new(Network::Regtest, Vec::new());
    let err = Crawler::run(c, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("no seed"), "{err}");
}

#[tokio::test]
async fn garbage_and_oversized_frames_end_a_probe_with_an_error_not_a_panic() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(2)
            .blocks(1)
            .with_misbehaviour(0, Misbehaviour::Garbage)
            .with_misbehaviour(1, Misbehaviour::OversizedHeader),
    )
    .await
    .unwrap();
    let mut c = config(net.node(0).address());
    c.handshake_timeout = Duration::from_secs(2);
    for i in 0..2 {
        let p = probe(net.node(i).address(), &c).await;
        assert!(!p.report.reachable);
        assert_eq!(p.report.chain, Chain::Unknown);
        let error = p.report.error.unwrap();
        assert!(error.starts_with("oversized "), "{error}");
        assert!(!error.chars().any(char::is_control), "{error:?}");
    }
    net.shutdown().await;
}
