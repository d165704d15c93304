//! The header chain (`Manager::header_chain`) against simnets on loopback: sync across the
//! 2000-header batch limit, reorganisations announced by `headers` and by `inv`, restart from
//! the header file, and the node's scores for headers without proof of work and for
//! announcements that do not connect.
//!
//! Every test runs on tokio's paused clock (see bsv/tests/manager.rs): waits are bounded by
//! [`WAIT`] in virtual time, which only passes when nothing else can happen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{
    ChainEvent, ControlEvent, HeaderChain, InMemoryPeerStore, Manager, ManagerConfig, Misbehavior,
    Network, Peer, PeerStore,
};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};
use tokio::sync::broadcast;
use tokio::time::timeout;

/// The bound on any wait, in virtual time.
const WAIT: Duration = Duration::from_secs(600);

fn config() -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    c
}

async fn manager_for(net: &SimNet, config: ManagerConfig) -> Manager {
    let addrs: Vec<SocketAddr> = net.addresses();
    let store = Arc::new(InMemoryPeerStore::new());
    for a in &addrs {
        store.create(Peer::new(a.ip(), a.port())).await.unwrap();
    }
    let manager = Manager::with_fixed_peers(config, store, addrs);
    manager.start().await.unwrap();
    manager
}

async fn next_chain_event(rx: &mut broadcast::Receiver<ChainEvent>) -> ChainEvent {
    timeout(WAIT, rx.recv())
        .await
        .expect("chain event in time")
        .expect("chain events open")
}

async fn next_control_event(
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

/// Starts a one-node simnet whose node misbehaves as `mode` and a manager syncing its header
/// chain from the start; returns them with the rule and score of the first offence reported.
async fn first_offence(mode: Misbehaviour) -> (SimNet, Manager, Misbehavior, u32) {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(5)
            .with_misbehaviour(0, mode),
    )
    .await
    .unwrap();
    let mut c = config();
    c.header_chain.enabled = true;
    let addrs = net.addresses();
    let store = Arc::new(InMemoryPeerStore::new());
    store
        .create(Peer::new(addrs[0].ip(), addrs[0].port()))
        .await
        .unwrap();
    let manager = Manager::with_fixed_peers(c, store, addrs);
    // Subscribed before start: the offence may come with the first headers.
    let mut control = manager.subscribe_control_events();
    manager.start().await.unwrap();
    match next_control_event(&mut control, |e| {
        matches!(e, ControlEvent::PeerMisbehavior { .. })
    })
    .await
    {
        ControlEvent::PeerMisbehavior { reason, score, .. } => (net, manager, reason, score),
        other => panic!("{other:?}"),
    }
}

fn total_sent(net: &SimNet, command: &str) -> u64 {
    net.nodes().iter().map(|n| n.stats().sent(command)).sum()
}

fn total_received(net: &SimNet, command: &str) -> u64 {
    net.nodes()
        .iter()
        .map(|n| n.stats().received(command))
        .sum()
}

async fn synced(net: &SimNet, manager: &Manager) -> HeaderChain {
    let chain = manager.header_chain();
    let tip = chain.sync(WAIT).await.unwrap();
    assert_eq!(tip.height, net.chain().tip_height());
    assert_eq!(tip.hash, net.chain().tip_hash());
    chain
}

#[tokio::test(start_paused = true)]
async fn sync_fetches_more_than_2000_headers_in_batches_from_several_nodes() {
    let net = SimNet::start(SimNetConfig::default().nodes(3).blocks(2500))
        .await
        .unwrap();
    let manager = manager_for(&net, config()).await;
    manager.wait_for_connections(3, WAIT).await.unwrap();
    let chain = synced(&net, &manager).await;
    // Two batches: 2000, then the remaining 500 (plus genesis).
    assert!(total_received(&net, "getheaders") >= 2);
    assert_eq!(chain.len(), 2501);
    for h in [0, 1, 1999, 2000, 2001, 2500] {
        let got = chain.header_at(h).unwrap();
        assert_eq!(Some(got.hash), net.chain().hash_at(h), "height {h}");
        assert!(got.best);
        assert_eq!(got.chain_work, 2 * (u128::from(h) + 1));
    }
    let tip = chain.tip();
    assert!(chain.announced_by(&tip.hash).is_some());
    assert_eq!(chain.locator().last(), net.chain().hash_at(0).as_ref());
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn sync_waits_for_a_peer_and_times_out_without_one() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(5))
        .await
        .unwrap();
    net.stop_node(0).await.unwrap();
    let manager = manager_for(&net, config()).await;
    let chain = manager.header_chain();
    let err = chain.sync(Duration::from_secs(3)).await.unwrap_err();
    assert!(
        matches!(err, bitcoinsv::p2p::P2pError::Timeout { .. }),
        "{err}"
    );
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn mined_blocks_arrive_as_new_tips() {
    let net = SimNet::start(SimNetConfig::default().nodes(2).blocks(10))
        .await
        .unwrap();
    let manager = manager_for(&net, config()).await;
    manager.wait_for_connections(2, WAIT).await.unwrap();
    let chain = synced(&net, &manager).await;
    let mut events = chain.subscribe();
    let block = net.mine_block();
    assert_eq!(
        next_chain_event(&mut events).await,
        ChainEvent::NewTip {
            height: 11,
            hash: block.hash()
        }
    );
    assert_eq!(chain.tip().height, 11);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_longer_branch_announced_later_is_a_reorg_with_its_depth_and_fork_height() {
    let net = SimNet::start(SimNetConfig::default().nodes(2).blocks(20))
        .await
        .unwrap();
    let manager = manager_for(&net, config()).await;
    manager.wait_for_connections(2, WAIT).await.unwrap();
    let chain = synced(&net, &manager).await;
    let old_tip = chain.tip().hash;
    let old_18 = chain.header_at(18).unwrap().hash;
    let mut events = chain.subscribe();
    // Four blocks on 17 replace 18..=20: announced as `headers` (≤ 8, sendheaders).
    let branch = net.reorg(17, 4).unwrap();
    let new_tip = branch.last().unwrap().hash();
    assert_eq!(
        next_chain_event(&mut events).await,
        ChainEvent::Reorg {
            old_tip,
            new_tip,
            fork_height: 17,
            depth: 3
        }
    );
    assert_eq!(
        next_chain_event(&mut events).await,
        ChainEvent::NewTip {
            height: 21,
            hash: new_tip
        }
    );
    // The old branch is kept, off the best chain.
    let old = chain.header(&old_18).unwrap();
    assert!(!old.best);
    assert_eq!(old.height, 18);
    assert_eq!(chain.header_at(18).unwrap().hash, branch[0].hash());
    let tip = chain.sync(WAIT).await.unwrap();
    assert_eq!(tip.hash, new_tip);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_reorg_longer_than_eight_blocks_arrives_by_inv_and_getheaders() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(30))
        .await
        .unwrap();
    let manager = manager_for(&net, config()).await;
    manager.wait_for_connections(1, WAIT).await.unwrap();
    let chain = synced(&net, &manager).await;
    let old_tip = chain.tip().hash;
    let mut events = chain.subscribe();
    let asked = total_received(&net, "getheaders");
    let branch = net.reorg(25, 12).unwrap();
    let new_tip = branch.last().unwrap().hash();
    assert_eq!(
        next_chain_event(&mut events).await,
        ChainEvent::Reorg {
            old_tip,
            new_tip,
            fork_height: 25,
            depth: 5
        }
    );
    assert!(total_received(&net, "getheaders") > asked);
    assert_eq!(chain.sync(WAIT).await.unwrap().height, 37);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_resumes_from_the_header_file_without_downloading_the_headers_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.dat");
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(300))
        .await
        .unwrap();
    let mut c = config();
    c.header_chain.store_path = Some(path.clone());
    let first = manager_for(&net, c.clone()).await;
    first.wait_for_connections(1, WAIT).await.unwrap();
    synced(&net, &first).await;
    first.shutdown().await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 96 + 300 * 80);

    let headers_sent = total_sent(&net, "headers");
    let asked = total_received(&net, "getheaders");
    let second = manager_for(&net, c).await;
    second.wait_for_connections(1, WAIT).await.unwrap();
    let chain = synced(&net, &second).await;
    assert_eq!(chain.len(), 301);
    assert_eq!(total_sent(&net, "headers"), headers_sent);
    assert_eq!(total_received(&net, "getheaders"), asked);
    second.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_header_file_of_another_network_fails_sync_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.dat");
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(3))
        .await
        .unwrap();
    let mut c = config();
    c.header_chain.store_path = Some(path.clone());
    let m = manager_for(&net, c).await;
    synced(&net, &m).await;
    m.shutdown().await.unwrap();
    let mut main = ManagerConfig::new(Network::Mainnet);
    main.dns_seeds.clear();
    main.header_chain.store_path = Some(path);
    let m = Manager::new(main, Arc::new(InMemoryPeerStore::new()));
    let err = m.header_chain().sync(WAIT).await.unwrap_err();
    assert!(
        matches!(
            err,
            bitcoinsv::p2p::P2pError::HeaderFileNetwork {
                expected: Network::Mainnet,
                ..
            }
        ),
        "{err}"
    );
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_header_without_proof_of_work_is_scored_high_hash() {
    let (net, manager, reason, score) = first_offence(Misbehaviour::BadPowHeader).await;
    assert_eq!((reason, score), (Misbehavior::HighHash, 50));
    assert_eq!(manager.header_chain().tip().height, 5);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn ten_unconnecting_announcements_cost_twenty_and_each_gets_getheaders() {
    let (net, manager, reason, score) = first_offence(Misbehaviour::UnconnectingHeaders(10)).await;
    assert_eq!(
        (reason, score),
        (Misbehavior::TooManyUnconnectedHeaders, 20)
    );
    let chain = manager.header_chain();
    chain.sync(WAIT).await.unwrap();
    // One getheaders to start the sync, one for each of the ten announcements.
    let stats = net
        .node(0)
        .wait_for_stats(WAIT, |s| s.received("getheaders") >= 11)
        .await
        .expect("eleven getheaders");
    assert_eq!(stats.received("getheaders"), 11);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_longer_batch_that_does_not_connect_costs_ten_as_prev_blk_not_found() {
    let (net, manager, reason, score) = first_offence(Misbehaviour::UnconnectingBatch).await;
    assert_eq!((reason, score), (Misbehavior::PrevBlkNotFound, 10));
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_sync_peer_is_replaced_after_the_sync_timeout() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(2)
            .blocks(50)
            .with_misbehaviour(0, Misbehaviour::IgnoreGetHeaders),
    )
    .await
    .unwrap();
    // The answering node is down at first, so the silent one becomes the sync peer.
    net.stop_node(1).await.unwrap();
    let mut c = config();
    let timeout_after = Duration::from_secs(5);
    c.header_chain.sync_timeout = timeout_after;
    c.connection.initial_backoff = Duration::from_secs(1);
    c.connection.max_retries = 100;
    let manager = manager_for(&net, c).await;
    manager.wait_for_connections(1, WAIT).await.unwrap();
    let started = tokio::time::Instant::now();
    let chain = manager.header_chain();
    net.node(0)
        .wait_for_stats(WAIT, |s| s.received("getheaders") >= 1)
        .await
        .expect("the silent node is asked first");
    net.restart_node(1).await.unwrap();
    let tip = chain.sync(WAIT).await.unwrap();
    assert_eq!(tip.hash, net.chain().tip_hash());
    assert!(
        started.elapsed() >= timeout_after,
        "{:?}",
        started.elapsed()
    );
    assert!(net.node(1).stats().received("getheaders") >= 1);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_is_the_start_and_nothing_below_it_is_fetched() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(300))
        .await
        .unwrap();
    let mut c = config();
    c.header_chain.checkpoint = Some(bitcoinsv::p2p::Checkpoint {
        height: 100,
        header: net.chain().header_at(100).unwrap(),
    });
    let manager = manager_for(&net, c).await;
    manager.wait_for_connections(1, WAIT).await.unwrap();
    let chain = synced(&net, &manager).await;
    assert_eq!(chain.len(), 201);
    assert_eq!(chain.header_at(99), None);
    assert_eq!(
        chain.header_at(100).map(|h| h.hash),
        net.chain().hash_at(100)
    );
    assert_eq!(chain.locator().last(), net.chain().hash_at(100).as_ref());
    // Work counts from the checkpoint (2 per regtest header).
    assert_eq!(chain.tip().chain_work, 2 * 201);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}
