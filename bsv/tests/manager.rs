//! The manager against simnets on loopback: pool size, modes, listener, bans, configuration
//! updates, events and shutdown.
//!
//! Every test runs on tokio's paused clock. The manager, the simnet and the test share one
//! current-thread runtime and every socket has Nagle's algorithm off, so bytes written are
//! readable on the other end when the write returns: the runtime is idle only when every task
//! waits on a timer, and only then does the clock jump to the earliest one. So a test lets the
//! supervisor make its periodic passes by sleeping through them (instantly), checks timings
//! exactly, and waits on events, never by sampling; [`WAIT`] only bounds a hang.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{
    BanReason, ConnectionConfig, ControlEvent, InMemoryPeerStore, InboundRejection, Manager,
    ManagerConfig, Message, Network, Peer, PeerStatus, PeerStore,
};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use tokio::sync::broadcast;
use tokio::time::{timeout, Instant};

/// The bound on any wait, in virtual time: it fires only when nothing else is left to happen.
const WAIT: Duration = Duration::from_secs(600);

/// Long enough for six of the supervisor's periodic passes (every 5 s): whatever it would do
/// wrong meanwhile (dial past the target, redial a banned peer), it has done by then.
const SUPERVISOR_PASSES: Duration = Duration::from_secs(30);

/// The resolution of tokio's timers: a deadline is rounded up to the next millisecond.
const TICK: Duration = Duration::from_millis(1);

fn config(target: usize, max: usize) -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    c.target_connections = target;
    c.max_connections = max;
    c.connection = ConnectionConfig {
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(4),
        backoff_jitter: 0.0,
        max_retries: 1,
        ..ConnectionConfig::default()
    };
    c
}

/// Asserts that `took` is `expected` to the timer resolution (a deadline is rounded up to the
/// next millisecond).
#[track_caller]
fn assert_at(took: Duration, expected: Duration) {
    assert!(
        took >= expected && took <= expected + TICK,
        "took {took:?}, expected {expected:?}"
    );
}

async fn store_with(addrs: &[SocketAddr]) -> Arc<InMemoryPeerStore> {
    let store = Arc::new(InMemoryPeerStore::new());
    for a in addrs {
        store.create(Peer::new(a.ip(), a.port())).await.unwrap();
    }
    store
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

/// Connections the simnet's nodes have accepted, in all: every dial that reached one.
fn dials_accepted(net: &SimNet) -> u64 {
    net.nodes()
        .iter()
        .map(|n| n.stats().inbound_connections)
        .sum()
}

fn connected_addresses(manager: &Manager) -> Vec<SocketAddr> {
    let mut a: Vec<SocketAddr> = manager
        .connected_peers()
        .iter()
        .map(|s| s.address)
        .collect();
    a.sort();
    a
}

#[tokio::test(start_paused = true)]
async fn normal_mode_reaches_exactly_the_target_and_replaces_stopped_nodes() {
    let net = SimNet::start(SimNetConfig::default().nodes(12).blocks(5))
        .await
        .unwrap();
    let store = store_with(&net.addresses()).await;
    let manager = Manager::new(config(4, 125), store.clone());
    manager.start().await.unwrap();
    manager.wait_for_connections(4, WAIT).await.unwrap();
    // The supervisor's later passes dial no one: exactly four dials ever reached a node.
    tokio::time::sleep(SUPERVISOR_PASSES).await;
    assert_eq!(manager.connection_count(), 4);
    assert_eq!(dials_accepted(&net), 4);
    // Stop two of the connected nodes: each connection is lost, its redial refused and retried
    // once after the backoff, then the peer is given up and the manager dials another.
    let connected = connected_addresses(&manager);
    let stopped = &connected[..2];
    let mut events = manager.subscribe_control_events();
    for (i, n) in net.nodes().iter().enumerate() {
        if stopped.contains(&n.address()) {
            net.stop_node(i).await.unwrap();
        }
    }
    for _ in 0..2 {
        next_event(&mut events, |e| {
            matches!(e, ControlEvent::ConnectionEstablished { .. })
        })
        .await;
    }
    let now = connected_addresses(&manager);
    assert_eq!(now.len(), 4, "{now:?}");
    assert!(
        !now.contains(&stopped[0]) && !now.contains(&stopped[1]),
        "{now:?}"
    );
    // And then nothing more: two replacements, no other dial.
    tokio::time::sleep(SUPERVISOR_PASSES).await;
    assert_eq!(connected_addresses(&manager), now);
    assert_eq!(dials_accepted(&net), 6);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn banned_and_recently_inaccessible_peers_are_never_dialled() {
    let net = SimNet::start(SimNetConfig::default().nodes(6).blocks(5))
        .await
        .unwrap();
    let addrs = net.addresses();
    let store = store_with(&addrs).await;
    let mut banned = store
        .find_by_ip_port(addrs[0].ip(), addrs[0].port())
        .await
        .unwrap()
        .unwrap();
    banned.set_status(PeerStatus::Banned {
        reason: BanReason::Manual {
            note: "test".into(),
        },
        until: None,
    });
    store.update(banned).await.unwrap();
    let mut gone = store
        .find_by_ip_port(addrs[1].ip(), addrs[1].port())
        .await
        .unwrap()
        .unwrap();
    gone.set_status(PeerStatus::Inaccessible);
    store.update(gone).await.unwrap();
    // A ban is per IP and every simnet node is 127.0.0.1, so only store-level status is tested
    // here: the manager must not pick those two entries.
    let manager = Manager::new(config(4, 125), store.clone());
    manager.start().await.unwrap();
    manager.wait_for_connections(4, WAIT).await.unwrap();
    tokio::time::sleep(SUPERVISOR_PASSES).await;
    assert_eq!(manager.connection_count(), 4);
    assert_eq!(dials_accepted(&net), 4);
    assert_eq!(
        net.node(0).stats().inbound_connections,
        0,
        "banned peer dialled"
    );
    assert_eq!(
        net.node(1).stats().inbound_connections,
        0,
        "inaccessible peer dialled"
    );
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn fixed_mode_connects_only_to_the_given_peers_and_reconnects_one_that_restarts() {
    let net = SimNet::start(SimNetConfig::default().nodes(5).blocks(5))
        .await
        .unwrap();
    let addrs = net.addresses();
    let store = store_with(&addrs).await;
    let fixed = vec![addrs[1], addrs[3]];
    let mut c = config(8, 125);
    c.connection.max_retries = 50;
    let backoff = c.connection.initial_backoff;
    let manager = Manager::with_fixed_peers(c, store, fixed.clone());
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    manager.wait_for_connections(2, WAIT).await.unwrap();
    tokio::time::sleep(SUPERVISOR_PASSES).await;
    assert_eq!(manager.connection_count(), 2);
    for i in [0, 2, 4] {
        assert_eq!(
            net.node(i).stats().inbound_connections,
            0,
            "node {i} is not in the list"
        );
    }
    assert_eq!(dials_accepted(&net), 2);
    // Node 1 stops: the connection restarts at once, finds it down, and backs off.
    net.stop_node(1).await.unwrap();
    next_event(&mut events, |e| {
        matches!(e, ControlEvent::ConnectionLost { .. })
    })
    .await;
    next_event(&mut events, |e| {
        matches!(e, ControlEvent::ConnectionFailed { .. })
    })
    .await;
    let failed = Instant::now();
    // Back up meanwhile: the retry after the backoff reconnects.
    net.restart_node(1).await.unwrap();
    next_event(&mut events, |e| {
        matches!(e, ControlEvent::ConnectionEstablished { .. })
    })
    .await;
    assert_at(failed.elapsed(), backoff);
    let mut expected = fixed.clone();
    expected.sort();
    assert_eq!(connected_addresses(&manager), expected);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn inbound_flood_never_exceeds_max_connections() {
    let net = SimNet::start(SimNetConfig::default().nodes(300).blocks(1))
        .await
        .unwrap();
    let store = Arc::new(InMemoryPeerStore::new());
    let mut c = config(0, 50);
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().unwrap();
    c.listener_port = 0;
    // Room for every event of the flood, so the count below sees each one.
    c.event_channel_capacity = 10_000;
    let manager = Manager::new(c, store);
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    let listen = manager.listener_address().expect("listening");
    let dials: Vec<_> = net.nodes().iter().map(|n| n.dial(listen)).collect();
    for r in futures::future::join_all(dials).await {
        r.unwrap();
    }
    // The events in order: established minus lost is the number of connections at each moment.
    let (mut connected, mut max, mut rejected) = (0usize, 0usize, 0usize);
    timeout(WAIT, async {
        while connected < 50 || rejected < 250 {
            match events.recv().await.expect("no event lost") {
                ControlEvent::ConnectionEstablished { .. } => {
                    connected += 1;
                    max = max.max(connected);
                }
                ControlEvent::ConnectionLost { .. } => connected -= 1,
                ControlEvent::ConnectionRejectedCapacity { .. } => rejected += 1,
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{connected} connected, {rejected} rejected"));
    assert!(max <= 50, "{max} connections with max_connections = 50");
    assert_eq!(manager.connection_count(), 50);
    assert_eq!(
        rejected, 250,
        "everyone else got the handshake and a reject"
    );
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_listener_port_already_in_use_leaves_the_manager_running_outbound() {
    let net = SimNet::start(SimNetConfig::default().nodes(2).blocks(1))
        .await
        .unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = config(2, 125);
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().unwrap();
    c.listener_port = taken.local_addr().unwrap().port();
    let manager = Manager::new(c, store_with(&net.addresses()).await);
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    let e = next_event(&mut events, |e| {
        matches!(e, ControlEvent::ListenerBindFailed { .. })
    })
    .await;
    assert!(
        matches!(e, ControlEvent::ListenerBindFailed { address, .. } if address.port() == c_port(&taken))
    );
    assert_eq!(manager.listener_address(), None);
    manager.wait_for_connections(2, WAIT).await.unwrap();
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

fn c_port(l: &std::net::TcpListener) -> u16 {
    l.local_addr().unwrap().port()
}

#[tokio::test(start_paused = true)]
async fn config_updates_are_validated_and_reach_live_connections() {
    let net = SimNet::start(SimNetConfig::default().nodes(6).blocks(1))
        .await
        .unwrap();
    let manager = Manager::new(config(2, 125), store_with(&net.addresses()).await);
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    manager.wait_for_connections(2, WAIT).await.unwrap();
    // Invalid: target above max. Nothing changes.
    let mut bad = manager.config();
    bad.target_connections = 500;
    assert!(manager.update_config(bad).await.is_err());
    assert_eq!(manager.config().target_connections, 2);
    // A short ping interval is seen on the wire by the connected nodes.
    let connected = manager.connected_peers()[0].address;
    let idx = net
        .nodes()
        .iter()
        .position(|n| n.address() == connected)
        .unwrap();
    // The connection's own first ping, sent with the handshake, has reached the node.
    let before = net
        .node(idx)
        .wait_for_stats(WAIT, |s| s.received("ping") >= 1)
        .await
        .expect("the first ping")
        .received("ping");
    let interval = Duration::from_secs(10);
    let mut c = manager.config();
    assert!(c.connection.ping_interval > interval);
    c.connection.ping_interval = interval;
    manager.update_config(c.clone()).await.unwrap();
    next_event(&mut events, |e| matches!(e, ControlEvent::ConfigUpdated)).await;
    // The next ping one interval after the update (not at the old schedule), then one per
    // interval (each answered by the node).
    let updated = Instant::now();
    net.node(idx)
        .wait_for_stats(WAIT, |s| s.received("ping") >= before + 3)
        .await
        .expect("pings at the new interval");
    assert_at(updated.elapsed(), 3 * interval);
    // A higher target brings more connections.
    c.target_connections = 5;
    manager.update_config(c).await.unwrap();
    manager.wait_for_connections(5, WAIT).await.unwrap();
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn ban_peer_disconnects_and_stores_the_ban_and_unban_lifts_it() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(1))
        .await
        .unwrap();
    let store = store_with(&net.addresses()).await;
    let manager = Manager::new(config(1, 125), store.clone());
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    manager.wait_for_connections(1, WAIT).await.unwrap();
    let peer_id = manager.connected_peers()[0].peer_id;
    manager
        .ban_peer(
            peer_id,
            BanReason::Manual {
                note: "test".into(),
            },
        )
        .await
        .unwrap();
    let e = next_event(&mut events, |e| {
        matches!(e, ControlEvent::PeerBanned { .. })
    })
    .await;
    assert!(matches!(e, ControlEvent::PeerBanned { peer_id: p, .. } if p == peer_id));
    next_event(&mut events, |e| {
        matches!(e, ControlEvent::ConnectionLost { .. })
    })
    .await;
    assert!(matches!(
        store.read(peer_id).await.unwrap().unwrap().status,
        PeerStatus::Banned { .. }
    ));
    tokio::time::sleep(SUPERVISOR_PASSES).await;
    assert_eq!(manager.connection_count(), 0);
    assert_eq!(
        net.node(0).stats().inbound_connections,
        1,
        "banned peer not redialled"
    );
    manager.unban_peer(peer_id).await.unwrap();
    let e = next_event(&mut events, |e| {
        matches!(e, ControlEvent::PeerUnbanned { .. })
    })
    .await;
    assert_eq!(
        e,
        ControlEvent::PeerUnbanned {
            ip: net.addresses()[0].ip()
        }
    );
    manager.wait_for_connections(1, WAIT).await.unwrap();
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_broadcast_subscriber_lags_while_the_lossless_stream_loses_nothing() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(1))
        .await
        .unwrap();
    let mut c = config(1, 125);
    c.event_channel_capacity = 16;
    let manager = Manager::new(c, store_with(&net.addresses()).await);
    let mut lossy = manager.subscribe_bitcoin_messages();
    let mut lossless = manager.subscribe_messages_lossless(8);
    manager.start().await.unwrap();
    manager.wait_for_connections(1, WAIT).await.unwrap();
    // The node announces only to peers whose `verack` it has read (we count the connection
    // on its `verack`, a moment earlier).
    net.node(0)
        .wait_for_stats(WAIT, |s| s.handshakes >= 1)
        .await
        .unwrap();
    // Ask for 300 `inv`s: one getblocks per 500-block window is not enough on a 1-block chain,
    // so mine blocks instead: each is announced (headers after our sendheaders).
    for _ in 0..300 {
        net.mine_block();
    }
    let mut got = 0;
    while got < 300 {
        match timeout(WAIT, lossless.recv()).await {
            Ok(Some(e)) if matches!(e.message, Message::Headers(_) | Message::Inv(_)) => got += 1,
            Ok(Some(_)) => {}
            other => panic!("lossless stream ended after {got}: {other:?}"),
        }
    }
    let mut lagged = false;
    loop {
        match lossy.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(_)) => {
                lagged = true;
                break;
            }
            Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(lagged, "the broadcast subscriber that never read lagged");
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dns_discovery_finds_the_seeds_nodes_and_the_manager_connects_to_them() {
    // Nodes on their own loopback addresses, all on one port: what DNS seeds point at.
    let probe = std::net::TcpListener::bind("127.1.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(4)
            .blocks(1)
            .distinct_ips(true)
            .base_port(port),
    )
    .await
    .unwrap();
    let ips: Vec<std::net::IpAddr> = net.addresses().iter().map(|a| a.ip()).collect();
    let dns = common::dns::start(&[
        ("seed-a.test.", ips[..2].to_vec()),
        ("seed-b.test.", ips[2..].to_vec()),
    ])
    .await;
    let mut c = config(4, 125);
    c.dns_seeds = vec![
        "seed-a.test".into(),
        "nosuch.test".into(),
        "seed-b.test".into(),
    ];
    c.dns_nameservers = Some(vec![dns.addr]);
    c.default_port = port;
    let store = Arc::new(InMemoryPeerStore::new());
    let manager = Manager::new(c, store.clone());
    manager.start().await.unwrap();
    manager.wait_for_connections(4, WAIT).await.unwrap();
    let mut stored: Vec<SocketAddr> = store
        .list_all()
        .await
        .unwrap()
        .iter()
        .map(|p| p.socket_addr())
        .collect();
    stored.sort();
    let mut expected = net.addresses();
    expected.sort();
    assert_eq!(
        stored, expected,
        "both seeds' addresses stored, the failing seed did not stop them"
    );
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_validation_ban_disconnects_only_that_address() {
    // Node 2 claims to be a BCH node and dials our listener: it is banned, the others stay.
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(3)
            .blocks(1)
            .distinct_ips(true)
            .with_misbehaviour(2, bitcoinsv_simnet::Misbehaviour::BchUserAgent),
    )
    .await
    .unwrap();
    let addrs = net.addresses();
    let mut c = config(2, 125);
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().unwrap();
    c.listener_port = 0;
    let store = store_with(&addrs[..2]).await;
    let manager = Manager::new(c, store.clone());
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    manager.wait_for_connections(2, WAIT).await.unwrap();
    net.node(2)
        .dial(manager.listener_address().unwrap())
        .await
        .unwrap();
    let e = next_event(&mut events, |e| {
        matches!(e, ControlEvent::InboundConnectionAccepted { .. })
    })
    .await;
    assert!(
        matches!(e, ControlEvent::InboundConnectionAccepted { address, .. } if address.ip() == addrs[2].ip())
    );
    let e = next_event(&mut events, |e| {
        matches!(e, ControlEvent::PeerBanned { .. })
    })
    .await;
    assert!(
        matches!(e, ControlEvent::PeerBanned { ip, reason: BanReason::BannedUserAgent { .. }, .. } if ip == addrs[2].ip())
    );
    tokio::time::sleep(SUPERVISOR_PASSES).await;
    let mut others = addrs[..2].to_vec();
    others.sort();
    assert_eq!(
        connected_addresses(&manager),
        others,
        "the other connections stay"
    );
    for i in 0..2 {
        assert_eq!(net.node(i).stats().inbound_connections, 1, "node {i}");
    }
    // Dialling again, the banned address is dropped by the listener before any handshake.
    let handshakes = net.node(2).stats().handshakes;
    net.node(2)
        .dial(manager.listener_address().unwrap())
        .await
        .unwrap();
    let e = next_event(&mut events, |e| {
        matches!(e, ControlEvent::InboundConnectionRejected { .. })
    })
    .await;
    assert!(
        matches!(e, ControlEvent::InboundConnectionRejected { address, reason } if address.ip() == addrs[2].ip() && reason == InboundRejection::Banned)
    );
    assert_eq!(net.node(2).stats().handshakes, handshakes);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_log_level_change_is_handed_to_the_applications_handler_at_once() {
    let manager = Manager::new(config(1, 125), Arc::new(InMemoryPeerStore::new()));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    manager.set_log_level_handler(Box::new(move |level| {
        s.lock().unwrap().push(level.to_string());
        Ok(())
    }));
    manager.start().await.unwrap();
    let mut c = manager.config();
    c.log_level = "debug".into();
    manager.update_config(c).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["debug"]);
    manager.shutdown().await.unwrap();
}
