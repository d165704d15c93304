//! Peer learning's metric, `bsv_p2p.addresses`, as Prometheus sees it: entries received,
//! learned, and dropped by reason. Alone in its test binary because it installs the global
//! meter provider.
#![cfg(feature = "metrics")]

use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{InMemoryPeerStore, Manager, ManagerConfig, Network, Peer, PeerStore};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

/// The bound on any wait: in virtual time it fires only when nothing else is left to happen.
const WAIT: Duration = Duration::from_secs(600);

fn sample(page: &str, labels: &str) -> Option<f64> {
    let prefix = format!("bsv_p2p_addresses_total{{{labels}");
    page.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(start_paused = true)]
async fn addresses_received_learned_and_dropped_as_known_are_counted() {
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_target_info()
        .build()
        .unwrap();
    let provider = SdkMeterProvider::builder().with_reader(exporter).build();
    opentelemetry::global::set_meter_provider(provider.clone());

    let net = SimNet::start(SimNetConfig::default().nodes(4).blocks(1))
        .await
        .unwrap();
    let all = net.addresses();
    // Node 0 is dialled; node 1 is already known.
    let store = Arc::new(InMemoryPeerStore::new());
    for a in &all[..2] {
        store.create(Peer::new(a.ip(), a.port())).await.unwrap();
    }
    let mut config = ManagerConfig::new(Network::Regtest);
    config.dns_seeds.clear();
    config.target_connections = 1;
    let manager = Manager::new(config, store.clone());
    manager.start().await.unwrap();
    manager.wait_for_connections(1, WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;

    let mut page = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut page)
        .unwrap();
    let page = String::from_utf8(page).unwrap();
    // Node 0 names its three siblings: two are new, one is known.
    assert_eq!(sample(&page, "outcome=\"received\""), Some(3.0), "{page}");
    assert_eq!(sample(&page, "outcome=\"learned\""), Some(2.0), "{page}");
    assert_eq!(
        sample(&page, "outcome=\"dropped\",reason=\"known\""),
        Some(1.0),
        "{page}"
    );
    manager.shutdown().await.unwrap();
    provider.shutdown().unwrap();
}
