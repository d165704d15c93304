//! Fault injection at the peer store (issue 14, docs/SECURITY.md): a store whose saves fail
//! must not stop the manager. The fault is real, not a mock: the store file's directory is
//! replaced by a regular file, so every save fails with "not a directory" (root ignores file
//! permissions, so a read-only file would not do). The manager logs the failure, tells
//! subscribers (`ControlEvent::StoreSaveFailed`), keeps serving peers and retries; once the
//! directory is back, the next save writes the file and it loads again.

use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::Network;
use bitcoinsv::p2p::{
    ControlEvent, InMemoryPeerStore, Manager, ManagerConfig, Peer, PeerClient, PeerStore,
};
use tokio::sync::broadcast;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

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
async fn failing_saves_are_reported_the_manager_keeps_serving_and_the_next_save_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("peers");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("peers.dat");
    let store = Arc::new(InMemoryPeerStore::with_file(&path));
    store
        .create(Peer::new("10.1.2.3".parse().unwrap(), 8333))
        .await
        .unwrap();

    let mut c = ManagerConfig::new(Network::Regtest);
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().unwrap();
    c.listener_port = 0;
    c.dns_seeds.clear();
    c.target_connections = 0;
    // Retries come after min(save_interval, STORE_SAVE_RETRY): a short interval keeps the test
    // short.
    c.save_interval = Duration::from_millis(200);
    let manager = Manager::with_fixed_peers(c, store.clone(), Vec::new());
    let mut events = manager.subscribe_control_events();

    // The fault: the directory becomes a regular file.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    manager.start().await.unwrap();
    let failed = next_event(&mut events, |e| {
        matches!(e, ControlEvent::StoreSaveFailed { .. })
    })
    .await;
    let ControlEvent::StoreSaveFailed { error } = failed else {
        unreachable!()
    };
    assert!(!error.is_empty());
    // It keeps failing, and keeps being retried.
    next_event(&mut events, |e| {
        matches!(e, ControlEvent::StoreSaveFailed { .. })
    })
    .await;

    // Meanwhile the manager serves peers.
    let addr = manager.listener_address().expect("listening");
    let client = PeerClient::connect(&ManagerConfig::new(Network::Regtest), addr)
        .await
        .expect("handshake while the store cannot be saved");
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

    // The disk is back: a later save writes the file.
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    timeout(WAIT, async {
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a retried save wrote the file");
    drop(client);
    manager.shutdown().await.unwrap();

    let reloaded = InMemoryPeerStore::with_file(&path);
    assert_eq!(reloaded.load().await.unwrap(), 1, "the saved store loads");
}
