//! Peer learning against simnets on loopback: the manager asks each node it dials for
//! addresses (`getaddr`), the node answers with its siblings, and those become candidate peers
//! in the store, within the caps and never over what the store already knows.
//!
//! The tests of honest nodes run on tokio's paused clock, as `manager.rs` does (the runtime is
//! idle only when every task waits on a timer, so sleeping through the supervisor's passes is
//! instant and deterministic). A flooding node never lets the runtime idle, so the flood tests
//! run on a multi-threaded runtime with the real clock and wait on the node's own counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{
    BanReason, BitcoinMessageEvent, ConnectionConfig, InMemoryPeerStore, Manager, ManagerConfig,
    Message, Network, Peer, PeerStatus, PeerStatusKind, PeerStore,
};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};
use tokio::time::timeout;

/// The bound on any wait: in virtual time it fires only when nothing else is left to happen.
const WAIT: Duration = Duration::from_secs(600);

/// Six of the supervisor's periodic passes (every 5 s).
const SUPERVISOR_PASSES: Duration = Duration::from_secs(30);

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

async fn stored(store: &InMemoryPeerStore) -> Vec<SocketAddr> {
    let mut a: Vec<SocketAddr> = store
        .list_all()
        .await
        .unwrap()
        .iter()
        .map(Peer::socket_addr)
        .collect();
    a.sort();
    a
}

#[tokio::test(start_paused = true)]
async fn addr_from_a_node_adds_its_siblings_to_the_store() {
    let net = SimNet::start(SimNetConfig::default().nodes(4).blocks(1))
        .await
        .unwrap();
    let all = net.addresses();
    let store = store_with(&all[..1]).await;
    let manager = Manager::new(config(1), store.clone());
    manager.start().await.unwrap();
    manager.wait_for_connections(1, WAIT).await.unwrap();
    tokio::time::sleep(SUPERVISOR_PASSES).await;
    assert_eq!(net.node(0).stats().received("getaddr"), 1);
    let mut want = all.clone();
    want.sort();
    assert_eq!(stored(&store).await, want);
    // The learned ones are candidates, not yet tried (the target is one connection).
    assert_eq!(
        manager.count_peers(PeerStatusKind::Unknown).await.unwrap(),
        3
    );
    manager.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn normal_mode_connects_to_peers_it_learned_beyond_its_seeds() {
    let net = SimNet::start(SimNetConfig::default().nodes(4).blocks(1))
        .await
        .unwrap();
    let all = net.addresses();
    let store = store_with(&all[..1]).await;
    let manager = Manager::new(config(4), store.clone());
    manager.start().await.unwrap();
    manager.wait_for_connections(4, WAIT).await.unwrap();
    let mut connected: Vec<SocketAddr> = manager
        .connected_peers()
        .iter()
        .map(|s| s.address)
        .collect();
    connected.sort();
    let mut want = all.clone();
    want.sort();
    assert_eq!(connected, want);
    manager.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_fixed_peer_list_manager_never_asks_for_addresses() {
    let net = SimNet::start(SimNetConfig::default().nodes(3).blocks(1))
        .await
        .unwrap();
    let all = net.addresses();
    let store = Arc::new(InMemoryPeerStore::new());
    let manager = Manager::with_fixed_peers(config(1), store.clone(), all[..1].to_vec());
    manager.start().await.unwrap();
    manager.wait_for_connections(1, WAIT).await.unwrap();
    tokio::time::sleep(SUPERVISOR_PASSES).await;
    assert_eq!(net.node(0).stats().received("getaddr"), 0);
    assert_eq!(stored(&store).await, all[..1].to_vec());
    manager.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_addr_naming_known_peers_leaves_their_records_as_they_are() {
    // Distinct IPs: a ban covers a whole IP, so the banned node must not share ours.
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(4)
            .blocks(1)
            .distinct_ips(true),
    )
    .await
    .unwrap();
    let all = net.addresses();
    let store = store_with(&all[..1]).await;
    let mut banned = Peer::new(all[2].ip(), all[2].port());
    banned.set_status(PeerStatus::Banned {
        reason: BanReason::Manual {
            note: "test".into(),
        },
        until: None,
    });
    store.create(banned.clone()).await.unwrap();
    let mut inaccessible = Peer::new(all[3].ip(), all[3].port());
    inaccessible.set_status(PeerStatus::Inaccessible);
    store.create(inaccessible.clone()).await.unwrap();

    let manager = Manager::new(config(1), store.clone());
    manager.start().await.unwrap();
    manager.wait_for_connections(1, WAIT).await.unwrap();
    tokio::time::sleep(SUPERVISOR_PASSES).await;

    assert_eq!(net.node(0).stats().received("getaddr"), 1);
    assert_eq!(store.read(banned.id).await.unwrap(), Some(banned.clone()));
    assert_eq!(
        store.read(inaccessible.id).await.unwrap(),
        Some(inaccessible.clone())
    );
    // One record per address: node 1 was learned, nothing duplicated.
    assert_eq!(store.count().await.unwrap(), 4);
    let learned = store
        .find_by_ip_port(all[1].ip(), all[1].port())
        .await
        .unwrap()
        .expect("node 1 learned");
    assert_eq!(learned.status, PeerStatus::Unknown);
    manager.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn our_own_listener_is_never_learned() {
    // A port for our listener, free now; the simnet names it in its getaddr answers.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let own: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(2)
            .blocks(1)
            .advertise(vec![own]),
    )
    .await
    .unwrap();
    let all = net.addresses();
    let store = store_with(&all[..1]).await;
    let mut c = config(1);
    c.enable_listener = true;
    c.listener_address = std::net::IpAddr::from([127, 0, 0, 1]);
    c.listener_port = port;
    let manager = Manager::new(c, store.clone());
    manager.start().await.unwrap();
    assert_eq!(manager.listener_address(), Some(own));
    manager.wait_for_connections(1, WAIT).await.unwrap();
    tokio::time::sleep(SUPERVISOR_PASSES).await;
    // Node 1 was learned; our listener was not.
    let mut want = all.clone();
    want.sort();
    assert_eq!(stored(&store).await, want);
    manager.shutdown().await.unwrap();
}

/// Starts a manager on a simnet whose node 0 floods `addr` and node 1 is honest, lets the
/// flood run for `messages` messages, and returns the store, the manager and the simnet.
async fn flooded(
    store: Arc<InMemoryPeerStore>,
    max_candidates: usize,
    max_stored_peers: usize,
    messages: u64,
) -> (Manager, SimNet) {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(2)
            .blocks(1)
            .with_misbehaviour(0, Misbehaviour::FloodAddr),
    )
    .await
    .unwrap();
    for a in net.addresses() {
        store.create(Peer::new(a.ip(), a.port())).await.unwrap();
    }
    let mut c = config(2);
    c.addresses.max_candidates = max_candidates;
    c.max_stored_peers = max_stored_peers;
    let manager = Manager::new(c, store.clone());
    manager.start().await.unwrap();
    manager
        .wait_for_connections(2, Duration::from_secs(30))
        .await
        .unwrap();
    net.node(0)
        .wait_for_stats(Duration::from_secs(60), |s| s.sent("addr") >= messages)
        .await
        .expect("the flood ran");
    (manager, net)
}

/// The honest node still answers: an application ping gets its pong.
async fn honest_connection_works(manager: &Manager, net: &SimNet) {
    let honest = manager
        .connected_peers()
        .into_iter()
        .find(|s| s.address == net.node(1).address())
        .expect("still connected to the honest node");
    let mut messages = manager.subscribe_bitcoin_messages();
    manager
        .send_message(honest.peer_id, Message::Ping(0x5eed))
        .await
        .unwrap();
    timeout(Duration::from_secs(30), async {
        loop {
            match messages.recv().await {
                Ok(BitcoinMessageEvent {
                    peer_id,
                    message: Message::Pong(0x5eed),
                }) if peer_id == honest.peer_id => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("message channel: {e}"),
            }
        }
    })
    .await
    .expect("pong from the honest node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_node_cannot_grow_the_store_past_the_candidate_cap() {
    let store = Arc::new(InMemoryPeerStore::new());
    // 200 messages of 1000 addresses: 200,000 entries offered.
    let (manager, net) = flooded(store.clone(), 50, 10_000, 200).await;
    let unknown = store
        .count_by_status(PeerStatusKind::Unknown)
        .await
        .unwrap();
    // The flood's first message (the reply to our getaddr) filled the cap; nothing passed it.
    assert_eq!(unknown, 50);
    assert_eq!(store.count().await.unwrap(), 52);
    honest_connection_works(&manager, &net).await;
    manager.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_node_cannot_grow_the_store_past_max_stored_peers() {
    let store = Arc::new(InMemoryPeerStore::new().with_max_peers(20));
    let (manager, net) = flooded(store.clone(), 10_000, 20, 200).await;
    assert_eq!(store.count().await.unwrap(), 20);
    // Learning never evicts: both simnet nodes are still stored.
    for a in net.addresses() {
        assert!(store
            .find_by_ip_port(a.ip(), a.port())
            .await
            .unwrap()
            .is_some());
    }
    honest_connection_works(&manager, &net).await;
    manager.shutdown().await.unwrap();
}
