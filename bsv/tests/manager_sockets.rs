//! The manager leaves no socket behind, whether shut down or dropped. These tests count the
//! process's open file descriptors, so they live alone in this test binary (the tests of one
//! binary run in parallel threads and would open sockets of their own meanwhile) and run one
//! after the other behind a lock, each on its own runtime, created and dropped while holding it.
//!
//! Each runtime is current-thread with tokio's clock paused, as in `manager.rs`: the manager, the
//! simnet and the test share the thread, so a node reading the end of a connection's stream is
//! an event to wait for, and the tests never sample the descriptor count.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoinsv::p2p::{
    ConnectionConfig, InMemoryPeerStore, Manager, ManagerConfig, Network, Peer, PeerStatusKind,
    PeerStore,
};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use tokio::time::Instant;

/// The bound on any wait, in virtual time: it fires only when nothing else is left to happen.
const WAIT: Duration = Duration::from_secs(600);

/// Serializes the tests of this binary: each counts every descriptor of the process.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `test` on a fresh current-thread runtime with the clock paused, holding [`SERIAL`].
fn serial<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(test());
}

fn config(target: usize) -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    c.target_connections = target;
    c.max_connections = 125;
    c.connection = ConnectionConfig {
        max_retries: 1,
        ..ConnectionConfig::default()
    };
    c
}

async fn store_with(addrs: &[SocketAddr]) -> Arc<InMemoryPeerStore> {
    let store = Arc::new(InMemoryPeerStore::new());
    for a in addrs {
        store.create(Peer::new(a.ip(), a.port())).await.unwrap();
    }
    store
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until every node has closed every connection it had: each closes its side when it
/// reads the end of the stream, so ours were closed before.
async fn nodes_closed_every_connection(net: &SimNet) {
    for n in net.nodes() {
        n.wait_for_stats(WAIT, |s| s.active_connections == 0)
            .await
            .unwrap_or_else(|| panic!("node {} kept a connection open", n.index()));
    }
}

#[test]
fn shutdown_with_100_connections_is_quick_saves_every_peer_and_leaks_no_socket() {
    serial(|| async {
        let net = SimNet::start(SimNetConfig::default().nodes(100).blocks(1))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let store = Arc::new(InMemoryPeerStore::with_file(&path));
        for a in net.addresses() {
            store.create(Peer::new(a.ip(), a.port())).await.unwrap();
        }
        let before = open_fds();
        let manager = Manager::new(config(100), store.clone());
        manager.start().await.unwrap();
        manager.wait_for_connections(100, WAIT).await.unwrap();
        // Quick: shutdown waits on no timer. (The only ones on its path are the writers' 2 s
        // flush timeout and the 10 s grace for connections that do not close; either would
        // show here, in virtual time.)
        let t = Instant::now();
        manager.shutdown().await.unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "shutdown took {:?}",
            t.elapsed()
        );
        drop(manager);
        let reloaded = InMemoryPeerStore::with_file(&path);
        assert_eq!(reloaded.load_from_file().await.unwrap(), 100);
        assert_eq!(
            reloaded
                .count_by_status(PeerStatusKind::Valid)
                .await
                .unwrap(),
            100
        );
        nodes_closed_every_connection(&net).await;
        let after = open_fds();
        assert!(after <= before, "fds before {before}, after {after}");
        net.shutdown().await;
    });
}

#[test]
fn dropping_a_running_manager_without_shutdown_leaks_no_socket() {
    serial(|| async {
        let net = SimNet::start(SimNetConfig::default().nodes(20).blocks(1))
            .await
            .unwrap();
        let store = store_with(&net.addresses()).await;
        let before = open_fds();
        let mut c = config(20);
        c.enable_listener = true;
        c.listener_address = "127.0.0.1".parse().unwrap();
        c.listener_port = 0;
        let manager = Manager::new(c, store);
        manager.start().await.unwrap();
        manager.wait_for_connections(20, WAIT).await.unwrap();
        drop(manager);
        // Dropping cancels every task. On this one thread they all run (the listener's too,
        // woken with the connections' by the same cancellation) before a node can read the end
        // of a connection's stream.
        nodes_closed_every_connection(&net).await;
        let after = open_fds();
        assert!(after <= before, "fds before {before}, after {after}");
        net.shutdown().await;
    });
}
