//! The original request's "Example Usage" program (`shared/seed/p2p_batch_4_complete.md`, copied
//! byte for byte into `testdata/seed_example.rs.txt`) is binding: it must compile and run as written, apart from `?` needing an enclosing function.
//!
//! * [`seed_example_as_written`] holds the seed's lines byte for byte (`#[rustfmt::skip]` keeps
//!   rustfmt from reordering its imports) inside an `async fn` returning `Result`. Its free
//!   variables, `peer_id` and `nonce`, are the function's parameters, and `Message` and
//!   `BanReason`, which the snippet uses without importing, are imported above it. It is
//!   compiled, so any drift of the API from the seed breaks the build.
//! * [`seed_example_against_a_simnet`] runs the same lines, unchanged and in the same order,
//!   against simulated *mainnet* nodes (the simnet speaks mainnet's magic), with three harness
//!   lines marked `// HARNESS` between them: drop the DNS seeds (tests never touch the
//!   internet), put the simnet's nodes in the store, and take `peer_id` from a live connection
//!   once the manager has started (it cannot be known before) with a fresh `nonce`.

mod common;

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{
    ControlEvent, InMemoryPeerStore, Manager, ManagerConfig, Peer, PeerStatus, PeerStore,
};
use bitcoinsv_simnet::{NodeHandle, SimNet, SimNetConfig};
use tokio::sync::broadcast::error::TryRecvError;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// The seed's example, exactly as written; compiled, not run (its `peer_id` would have to be a
/// connection of a manager that does not exist yet when the function is called).
#[rustfmt::skip]
#[allow(dead_code, unused_mut, clippy::single_component_path_imports)]
async fn seed_example_as_written(peer_id: Uuid, nonce: u64) -> Result<(), Box<dyn Error>> {
    use bitcoinsv::p2p::{BanReason, Message};

    // ---- the seed, verbatim ----
    use bitcoinsv::p2p::{Manager, ManagerConfig, Network, InMemoryPeerStore};
    use std::sync::Arc;
    use tracing_subscriber;

    // Initialize tracing
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .init();

    // Create manager - logs at INFO level
    let config = ManagerConfig::new(Network::Mainnet);
    let peer_store = Arc::new(InMemoryPeerStore::new());
    let mut manager = Manager::new(config, peer_store);

    // Subscribe to events
    let mut control_rx = manager.subscribe_control_events();
    let mut message_rx = manager.subscribe_bitcoin_messages();

    // Start manager - logs lifecycle events
    manager.start().await?;

    // Operations are logged with structured fields
    manager.send_message(peer_id, Message::Ping(nonce)).await?;
    manager.ban_peer(peer_id, BanReason::BannedUserAgent {
        user_agent: "malicious".to_string()
    }).await?;

    // Shutdown - logs final state
    manager.shutdown().await?;
    // ---- end of the seed ----

    let _ = (&mut control_rx, &mut message_rx);
    Ok(())
}

/// HARNESS: mainnet defaults, minus the DNS seeds (tests never touch the internet).
fn offline(mut config: ManagerConfig) -> ManagerConfig {
    config.dns_seeds.clear();
    config
}

/// HARNESS: stores the simnet's nodes for the manager to dial.
async fn add_peers(store: &InMemoryPeerStore, addrs: &[SocketAddr]) {
    for a in addrs {
        store.create(Peer::new(a.ip(), a.port())).await.unwrap();
    }
}

/// HARNESS: a connected peer and a fresh ping nonce. Waits (on the node's counters, without
/// sleeping) until the connection's own first keepalive ping has reached the node, so that the
/// test can tell the seed's ping apart from it.
async fn connected_peer(
    manager: &Manager,
    net: &SimNet,
) -> Result<(Uuid, u64, SocketAddr), Box<dyn Error>> {
    manager.wait_for_connections(1, WAIT).await?;
    let peer = manager.connected_peers().remove(0);
    node_at(net, peer.address)
        .wait_for_stats(WAIT, |s| s.received("ping") >= 1)
        .await
        .ok_or("the keepalive ping never arrived")?;
    Ok((peer.peer_id, rand::random::<u64>() | 1, peer.address))
}

/// The simnet node listening at `address`.
fn node_at(net: &SimNet, address: SocketAddr) -> &NodeHandle {
    net.nodes()
        .iter()
        .find(|n| n.address() == address)
        .expect("the peer is a simnet node")
}

/// What the run saw, for the test to check.
struct Observed {
    peer_id: Uuid,
    address: SocketAddr,
    events: Vec<ControlEvent>,
    store: Arc<InMemoryPeerStore>,
}

/// The seed's lines, unchanged and in order, with the harness lines marked between them.
#[rustfmt::skip]
#[allow(unused_mut, clippy::single_component_path_imports)]
async fn seed_example_against_a_simnet(net: &SimNet) -> Result<Observed, Box<dyn Error>> {
    use bitcoinsv::p2p::{BanReason, Message};

    // ---- the seed, with harness lines ----
    use bitcoinsv::p2p::{Manager, ManagerConfig, Network, InMemoryPeerStore};
    use std::sync::Arc;
    use tracing_subscriber;

    // Initialize tracing
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .init();

    // Create manager - logs at INFO level
    let config = ManagerConfig::new(Network::Mainnet);
    let config = offline(config); // HARNESS
    let peer_store = Arc::new(InMemoryPeerStore::new());
    add_peers(&peer_store, &net.addresses()).await; let store = peer_store.clone(); // HARNESS
    let mut manager = Manager::new(config, peer_store);

    // Subscribe to events
    let mut control_rx = manager.subscribe_control_events();
    let mut message_rx = manager.subscribe_bitcoin_messages();

    // Start manager - logs lifecycle events
    manager.start().await?;
    let (peer_id, nonce, address) = connected_peer(&manager, net).await?; // HARNESS

    // Operations are logged with structured fields
    manager.send_message(peer_id, Message::Ping(nonce)).await?;
    manager.ban_peer(peer_id, BanReason::BannedUserAgent {
        user_agent: "malicious".to_string()
    }).await?;

    // Shutdown - logs final state
    manager.shutdown().await?;
    // ---- end of the seed ----

    let mut events = Vec::new();
    loop {
        match control_rx.try_recv() {
            Ok(e) => events.push(e),
            Err(TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    let _ = message_rx.try_recv();
    Ok(Observed { peer_id, address, events, store })
}

#[tokio::test]
async fn the_seed_example_runs_against_simulated_mainnet_nodes() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(2)
            .blocks(5)
            .network(bitcoinsv::p2p::Network::Mainnet),
    )
    .await
    .unwrap();
    let seen = seed_example_against_a_simnet(&net)
        .await
        .expect("the seed's program runs to the end");

    // The seed's ping reached the node, after the connection's own first ping.
    node_at(&net, seen.address)
        .wait_for_stats(WAIT, |s| s.received("ping") >= 2)
        .await
        .expect("the seed's ping arrived");
    // The ban was announced, stored, and closed the connection.
    assert!(seen.events.iter().any(|e| matches!(
        e,
        ControlEvent::PeerBanned { peer_id, .. } if *peer_id == seen.peer_id
    )));
    assert!(seen.events.iter().any(|e| matches!(
        e,
        ControlEvent::ConnectionLost { peer_id, .. } if *peer_id == seen.peer_id
    )));
    let stored = seen.store.read(seen.peer_id).await.unwrap().unwrap();
    assert!(
        matches!(stored.status, PeerStatus::Banned { .. }),
        "{:?}",
        stored.status
    );
    net.shutdown().await;
}

/// The seed block in [`seed_example_as_written`] is the seed's text, byte for byte (indented
/// by one level to sit in the function). The seed's "Example Usage" block is kept in
/// `testdata/seed_example.rs.txt`: exactly the lines between its code fences.
#[test]
fn the_compiled_copy_is_the_seed_verbatim() {
    let seed_path = common::testdata_dir().join("seed_example.rs.txt");
    let block = std::fs::read_to_string(&seed_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", seed_path.display()));
    let this = include_str!("seed_example.rs");
    let copy = this
        .split("    // ---- the seed, verbatim ----\n")
        .nth(1)
        .and_then(|rest| rest.split("    // ---- end of the seed ----").next())
        .expect("the verbatim block in this file");
    let unindented: String = copy
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(unindented, block);
}
