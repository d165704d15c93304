//! Against a real node, when one is given: `BSV_TEST_NODE=ip:port` (and optionally
//! `BSV_TEST_NETWORK=testnet`). Skipped, saying so, when unset: CI never reaches the internet.

use bitcoinsv::p2p::{ManagerConfig, Network, PeerClient};

#[tokio::test]
async fn handshake_with_a_real_node_completes() {
    let Ok(addr) = std::env::var("BSV_TEST_NODE") else {
        eprintln!("skipping handshake_with_a_real_node_completes: BSV_TEST_NODE is not set");
        return;
    };
    let addr: std::net::SocketAddr = addr.parse().expect("BSV_TEST_NODE must be ip:port");
    let network: Network = std::env::var("BSV_TEST_NETWORK")
        .unwrap_or_else(|_| "mainnet".into())
        .parse()
        .expect("BSV_TEST_NETWORK");
    let client = PeerClient::connect(&ManagerConfig::new(network), addr)
        .await
        .expect("handshake");
    let d = client.details();
    assert!(d.version >= 70015, "{d:?}");
    client.close().await;
}
