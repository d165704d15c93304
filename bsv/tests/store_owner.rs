//! The manager as the one writer of the peer store, on real loopback sockets and a real store
//! file: inbound peers are never stored under their source port, and a ban made right after a
//! handshake reaches the saved store and keeps the peer out after a restart.

use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::Network;
use bitcoinsv::p2p::messages::FilterLoad;
use bitcoinsv::p2p::{
    BanReason, ControlEvent, InMemoryPeerStore, InboundRejection, Manager, ManagerConfig, Message,
    PeerClient, PeerStatus, PeerStore,
};
use tokio::sync::broadcast;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn listening_config() -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().unwrap();
    c.listener_port = 0;
    c.dns_seeds.clear();
    c
}

async fn next_event(
    rx: &mut broadcast::Receiver<ControlEvent>,
    want: impl Fn(&ControlEvent) -> bool,
) -> ControlEvent {
    timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(e) if want(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event channel: {e}"),
            }
        }
    })
    .await
    .expect("event in time")
}

#[tokio::test]
async fn inbound_peers_are_never_stored_under_their_source_port() {
    let store = Arc::new(InMemoryPeerStore::new());
    let manager = Manager::with_fixed_peers(listening_config(), store.clone(), Vec::new());
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    let addr = manager.listener_address().expect("listening");
    let client = PeerClient::connect(&ManagerConfig::new(Network::Regtest), addr)
        .await
        .expect("handshake with our own listener");
    next_event(&mut events, |e| {
        matches!(
            e,
            ControlEvent::ConnectionEstablished {
                is_inbound: true,
                ..
            }
        )
    })
    .await;
    assert_eq!(manager.connected_peers().len(), 1, "known in memory");
    assert!(
        store.list_all().await.unwrap().is_empty(),
        "an inbound peer's source port is not a listening address"
    );
    client.close().await;
    manager.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_ban_right_after_the_handshake_reaches_the_saved_store_and_holds_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    let store = Arc::new(InMemoryPeerStore::with_file(&path));
    let manager = Manager::with_fixed_peers(listening_config(), store.clone(), Vec::new());
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    let addr = manager.listener_address().expect("listening");
    let client = PeerClient::connect(&ManagerConfig::new(Network::Regtest), addr)
        .await
        .unwrap();
    // Bloom filters without NODE_BLOOM cost 100 at once (`no-bloom-version`).
    client
        .send(Message::FilterLoad(FilterLoad {
            filter: bytes::Bytes::from_static(&[0; 8]),
            hash_funcs: 1,
            tweak: 0,
            flags: 0,
        }))
        .await
        .unwrap();
    let e = next_event(&mut events, |e| {
        matches!(e, ControlEvent::PeerBanned { .. })
    })
    .await;
    let ControlEvent::PeerBanned { ip, reason, .. } = e else {
        unreachable!()
    };
    assert_eq!(ip, addr.ip());
    assert_eq!(
        reason,
        BanReason::Misbehavior {
            score: 100,
            reason: "no-bloom-version".into()
        }
    );
    let outcome = timeout(WAIT, client.finished()).await.unwrap();
    assert!(outcome.was_connected);
    manager.shutdown().await.unwrap();

    // The saved file says banned, and a restarted manager keeps the peer out.
    let reloaded = Arc::new(InMemoryPeerStore::with_file(&path));
    reloaded.load().await.unwrap();
    assert!(reloaded
        .find_by_ip(ip)
        .await
        .unwrap()
        .iter()
        .all(|p| matches!(p.status, PeerStatus::Banned { .. })));
    assert!(reloaded
        .is_ip_banned(ip, bitcoinsv::p2p::peer::unix_now())
        .await
        .unwrap());
    let manager = Manager::with_fixed_peers(listening_config(), reloaded, Vec::new());
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    let addr = manager.listener_address().unwrap();
    let again = PeerClient::connect(&ManagerConfig::new(Network::Regtest), addr).await;
    assert!(again.is_err(), "a banned IP gets no handshake");
    next_event(&mut events, |e| {
        matches!(
            e,
            ControlEvent::InboundConnectionRejected {
                reason: InboundRejection::Banned,
                ..
            }
        )
    })
    .await;
    manager.shutdown().await.unwrap();
}
