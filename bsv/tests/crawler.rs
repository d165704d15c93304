//! The crawler against simnets on loopback.

use std::collections::HashSet;
use std::time::Duration;

use bitcoinsv::p2p::crawler::{Chain, CrawlConfig, Crawler};
use bitcoinsv::p2p::Network;
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};

#[tokio::test]
async fn crawl_from_one_seed_finds_every_node_and_reports_the_bch_one() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(60)
            .blocks(1)
            .with_misbehaviour(17, Misbehaviour::BchUserAgent),
    )
    .await
    .unwrap();
    let addrs = net.addresses();
    let config = CrawlConfig {
        seeds: vec![addrs[0]],
        addr_wait: Duration::from_secs(3),
        ..CrawlConfig::new(Network::Regtest)
    };
    let mut calls = 0;
    let report = Crawler::run(config, |_| calls += 1).await.unwrap();
    let found: HashSet<_> = report.nodes.iter().map(|n| n.address).collect();
    assert_eq!(found, addrs.iter().copied().collect::<HashSet<_>>());
    assert_eq!(calls, 60);
    for n in &report.nodes {
        assert!(n.reachable, "{} unreachable: {:?}", n.address, n.error);
        let expected = if n.address == addrs[17] {
            Chain::Bch
        } else {
            Chain::Bsv
        };
        assert_eq!(n.chain, expected, "{}", n.address);
        assert_eq!(n.start_height, Some(1));
        assert!(n.rtt_ms.is_some());
    }
    assert!(!report.timed_out);
    net.shutdown().await;
}

#[tokio::test]
async fn unreachable_addresses_and_other_chains_are_reported_as_such() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(3)
            .blocks(1)
            .include_unreachable_addrs(2)
            .with_misbehaviour(1, Misbehaviour::WrongMagic)
            .with_misbehaviour(2, Misbehaviour::OtherNetworkMagic(Network::Testnet)),
    )
    .await
    .unwrap();
    let addrs = net.addresses();
    let config = CrawlConfig {
        seeds: vec![addrs[0]],
        addr_wait: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        ..CrawlConfig::new(Network::Regtest)
    };
    let report = Crawler::run(config, |_| {}).await.unwrap();
    let chain_of = |a| {
        report
            .nodes
            .iter()
            .find(|n| n.address == a)
            .map(|n| n.chain)
    };
    assert_eq!(chain_of(addrs[0]), Some(Chain::Bsv));
    assert_eq!(chain_of(addrs[1]), Some(Chain::Btc));
    assert_eq!(chain_of(addrs[2]), Some(Chain::Other));
    let unreachable: Vec<_> = report
        .nodes
        .iter()
        .filter(|n| n.chain == Chain::Unknown)
        .collect();
    assert_eq!(unreachable.len(), 2);
    assert!(unreachable
        .iter()
        .all(|n| !n.reachable && n.error.as_deref().is_some_and(|e| e.contains("connect"))));
    net.shutdown().await;
}
