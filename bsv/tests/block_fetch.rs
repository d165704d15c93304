//! `Manager::get_block` against the simnet over loopback sockets: it moves on from a peer that
//! answers `notfound`, stays silent, or serves a corrupt block; it keeps at most 16 blocks in
//! flight per peer; and concurrent calls for one hash share a fetch. Tokio's clock is paused:
//! a silent peer's timeout passes in virtual time, as soon as nothing else is left to happen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::Hash;
use bitcoinsv::p2p::{
    AttemptOutcome, BlockFetchError, BlockFetchOptions, ControlEvent, InMemoryPeerStore, Manager,
    ManagerConfig, Network, P2pError,
};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// The bound on any wait, in virtual time.
const WAIT: Duration = Duration::from_secs(600);

/// A simnet of `nodes` nodes (with `modes`) holding 20 blocks, and a manager connected to all.
async fn setup(nodes: usize, modes: &[(usize, Misbehaviour)]) -> (SimNet, Manager) {
    // Distinct loopback IPs: a ban (a corrupt block costs 100) must not cut the other nodes.
    let mut config = SimNetConfig::default()
        .nodes(nodes)
        .blocks(20)
        .distinct_ips(true);
    for (i, m) in modes {
        config = config.with_misbehaviour(*i, m.clone());
    }
    let net = SimNet::start(config).await.unwrap();
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    let manager = Manager::with_fixed_peers(
        c,
        Arc::new(InMemoryPeerStore::new()),
        net.addresses().to_vec(),
    );
    manager.start().await.unwrap();
    manager.wait_for_connections(nodes, WAIT).await.unwrap();
    (net, manager)
}

/// The manager's connection id for the simnet node at `address`.
fn peer_at(manager: &Manager, address: SocketAddr) -> Uuid {
    manager
        .connected_peers()
        .into_iter()
        .find(|p| p.address == address)
        .map(|p| p.peer_id)
        .expect("connected to the node")
}

fn block_hash(net: &SimNet, height: u32) -> Hash {
    net.chain()
        .hash_at(height)
        .expect("the simnet has the block")
}

/// Fetches `hash` asking the node `first` before any other.
async fn fetch_preferring(
    net: &SimNet,
    manager: &Manager,
    first: usize,
    hash: Hash,
) -> bitcoinsv::p2p::FetchedBlock {
    let options = BlockFetchOptions {
        preferred_peer: Some(peer_at(manager, net.node(first).address())),
        ..BlockFetchOptions::default()
    };
    manager.get_block_with(hash, options).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn get_block_moves_to_the_next_peer_when_the_first_answers_notfound() {
    let (net, manager) = setup(2, &[(0, Misbehaviour::NotFoundBlocks)]).await;
    let hash = block_hash(&net, 5);
    let started = tokio::time::Instant::now();
    let fetched = fetch_preferring(&net, &manager, 0, hash).await;
    assert_eq!(fetched.block.hash(), hash);
    assert_eq!(*fetched.block, *net.chain().block(&hash).unwrap());
    assert_eq!(fetched.address, net.node(1).address());
    assert_eq!(fetched.failed_attempts.len(), 1);
    assert_eq!(fetched.failed_attempts[0].address, net.node(0).address());
    assert_eq!(fetched.failed_attempts[0].outcome, AttemptOutcome::NotFound);
    // At once, not after the attempt timeout.
    assert!(started.elapsed() < Duration::from_secs(1));
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn get_block_moves_to_the_next_peer_after_the_first_stays_silent() {
    let (net, manager) = setup(2, &[(0, Misbehaviour::SilentOnBlockGetData)]).await;
    let hash = block_hash(&net, 7);
    let started = tokio::time::Instant::now();
    let options = BlockFetchOptions {
        preferred_peer: Some(peer_at(&manager, net.node(0).address())),
        attempt_timeout: Some(Duration::from_secs(5)),
        ..BlockFetchOptions::default()
    };
    let fetched = manager.get_block_with(hash, options).await.unwrap();
    assert_eq!(fetched.block.hash(), hash);
    assert_eq!(fetched.address, net.node(1).address());
    assert_eq!(
        fetched.failed_attempts[0].outcome,
        AttemptOutcome::Silent {
            after: Duration::from_secs(5)
        }
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(7),
        "{took:?}"
    );
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_block_is_reported_typed_and_the_next_peers_block_is_returned() {
    let (net, manager) = setup(2, &[(0, Misbehaviour::CorruptBlocks)]).await;
    let mut events = manager.subscribe_control_events();
    let hash = block_hash(&net, 3);
    let fetched = fetch_preferring(&net, &manager, 0, hash).await;
    assert_eq!(*fetched.block, *net.chain().block(&hash).unwrap());
    assert_eq!(fetched.address, net.node(1).address());
    let first = &fetched.failed_attempts[0];
    assert_eq!(first.address, net.node(0).address());
    assert!(
        matches!(first.outcome, AttemptOutcome::MerkleMismatch { expected, .. }
            if expected == fetched.block.header.merkle_root),
        "{first}"
    );
    assert!(first.to_string().contains("bad-txnmrklroot"), "{first}");
    // Charged 100, as the node charges `bad-txnmrklroot`: the corrupting node is banned.
    let banned = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(ControlEvent::PeerBanned { ip, .. }) => return ip,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("event channel closed"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(banned, net.node(0).address().ip());
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_block_no_peer_serves_fails_with_block_not_found_naming_each_peer() {
    let (net, manager) = setup(
        2,
        &[
            (0, Misbehaviour::NotFoundBlocks),
            (1, Misbehaviour::SilentOnBlockGetData),
        ],
    )
    .await;
    let hash = block_hash(&net, 2);
    let err = manager.get_block(hash).await.unwrap_err();
    let P2pError::BlockFetch(BlockFetchError::BlockNotFound { hash: h, tried }) = &err else {
        panic!("{err}");
    };
    assert_eq!(*h, hash);
    assert_eq!(tried.len(), 2, "{err}");
    let text = err.to_string();
    assert!(text.contains("answered notfound"), "{text}");
    assert!(text.contains("sent nothing"), "{text}");
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn at_most_sixteen_blocks_are_in_flight_to_one_peer() {
    let (net, manager) = setup(1, &[(0, Misbehaviour::SilentOnBlockGetData)]).await;
    let manager = Arc::new(manager);
    let options = BlockFetchOptions {
        attempt_timeout: Some(Duration::from_secs(10)),
        ..BlockFetchOptions::default()
    };
    let mut fetches = Vec::new();
    for height in 1..=20 {
        let (m, hash, o) = (manager.clone(), block_hash(&net, height), options.clone());
        fetches.push(tokio::spawn(async move { m.get_block_with(hash, o).await }));
    }
    let node = net.node(0);
    node.wait_for_stats(WAIT, |s| s.received("getdata") >= 16)
        .await
        .unwrap();
    // Less than an attempt timeout later, still only 16 requests went out.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(node.stats().received("getdata"), 16);
    // Each silent attempt frees its slot for one of the four waiting fetches.
    for f in fetches {
        let err = f.await.unwrap().unwrap_err();
        assert!(matches!(
            err,
            P2pError::BlockFetch(BlockFetchError::BlockNotFound { .. })
        ));
    }
    assert_eq!(node.stats().received("getdata"), 20);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_for_one_block_share_one_fetch() {
    let (net, manager) = setup(1, &[]).await;
    let hash = block_hash(&net, 4);
    let (a, b, c) = tokio::join!(
        manager.get_block(hash),
        manager.get_block(hash),
        manager.get_block(hash)
    );
    let want = net.chain().block(&hash).unwrap();
    for got in [a, b, c] {
        assert_eq!(got.unwrap(), *want);
    }
    assert_eq!(net.node(0).stats().received("getdata"), 1);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_overall_timeout_bounds_a_fetch_with_every_peer_silent() {
    let (net, manager) = setup(1, &[(0, Misbehaviour::SilentOnBlockGetData)]).await;
    let hash = block_hash(&net, 1);
    let options = BlockFetchOptions {
        timeout: Some(Duration::from_secs(3)),
        ..BlockFetchOptions::default()
    };
    let started = tokio::time::Instant::now();
    let err = manager.get_block_with(hash, options).await.unwrap_err();
    assert!(
        matches!(err, P2pError::BlockFetch(BlockFetchError::Timeout { .. })),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}
