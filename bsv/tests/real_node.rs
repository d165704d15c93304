//! Against a real node, when one is given: `BSV_TEST_NODE=ip:port` (and optionally
//! `BSV_TEST_NETWORK=testnet`). Skipped, saying so, when unset: CI never reaches the internet.

use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::connection::ConnectionContext;
use bitcoinsv::p2p::{
    ConnectionState, InMemoryPeerStore, ManagerConfig, Network, Peer, PeerConnection, PeerStore,
};
use tokio::sync::broadcast;

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
    let config = ManagerConfig::new(network);
    let store = Arc::new(InMemoryPeerStore::new());
    let peer = Peer::new(addr.ip(), addr.port());
    store.create(peer.clone()).await.unwrap();
    let (control_tx, _) = broadcast::channel(100);
    let (message_tx, _) = broadcast::channel(100);
    let ctx = ConnectionContext::new(&config, store, control_tx, message_tx).unwrap();
    let handle = PeerConnection::outbound(peer, ctx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while handle.stats().state() != ConnectionState::Connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no handshake with {addr} in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = handle.stats().snapshot().details.unwrap();
    assert!(d.version >= 70015, "{d:?}");
    handle.disconnect();
    handle.join().await;
}
