//! The manager against simnets on loopback: pool size, modes, listener, bans, configuration
//! updates, events and shutdown.

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
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

fn config(target: usize, max: usize) -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    c.target_connections = target;
    c.max_connections = max;
    c.connection = ConnectionConfig {
        connect_timeout: Duration::from_secs(2),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
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

/// Samples the connection count for `d`, returning the largest seen.
async fn max_over(manager: &Manager, d: Duration) -> usize {
    let end = tokio::time::Instant::now() + d;
    let mut max = 0;
    while tokio::time::Instant::now() < end {
        max = max.max(manager.connection_count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    max
}

#[tokio::test]
async fn normal_mode_reaches_exactly_the_target_and_replaces_stopped_nodes() {
    let net = SimNet::start(SimNetConfig::default().nodes(12).blocks(5))
        .await
        .unwrap();
    let store = store_with(&net.addresses()).await;
    let manager = Manager::new(config(4, 125), store.clone());
    manager.start().await.unwrap();
    manager.wait_for_connections(4, WAIT).await.unwrap();
    assert_eq!(max_over(&manager, Duration::from_millis(500)).await, 4);
    // Stop two of the connected nodes: the manager replaces them.
    let connected: Vec<SocketAddr> = manager
        .connected_peers()
        .iter()
        .map(|s| s.address)
        .collect();
    for (i, n) in net.nodes().iter().enumerate() {
        if connected[..2].contains(&n.address()) {
            net.stop_node(i).await.unwrap();
        }
    }
    timeout(WAIT, async {
        loop {
            let now: Vec<SocketAddr> = manager
                .connected_peers()
                .iter()
                .map(|s| s.address)
                .collect();
            if now.len() == 4 && !now.contains(&connected[0]) && !now.contains(&connected[1]) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("stopped nodes replaced");
    assert_eq!(max_over(&manager, Duration::from_millis(300)).await, 4);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test]
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
    max_over(&manager, Duration::from_millis(300)).await;
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

#[tokio::test]
async fn fixed_mode_connects_only_to_the_given_peers_and_reconnects_one_that_restarts() {
    let net = SimNet::start(SimNetConfig::default().nodes(5).blocks(5))
        .await
        .unwrap();
    let addrs = net.addresses();
    let store = store_with(&addrs).await;
    let fixed = vec![addrs[1], addrs[3]];
    let mut c = config(8, 125);
    c.connection.max_retries = 50;
    let manager = Manager::with_fixed_peers(c, store, fixed.clone());
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    manager.wait_for_connections(2, WAIT).await.unwrap();
    assert_eq!(max_over(&manager, Duration::from_millis(300)).await, 2);
    for i in [0, 2, 4] {
        assert_eq!(
            net.node(i).stats().inbound_connections,
            0,
            "node {i} is not in the list"
        );
    }
    net.stop_node(1).await.unwrap();
    next_event(&mut events, |e| {
        matches!(e, ControlEvent::ConnectionLost { .. })
    })
    .await;
    net.restart_node(1).await.unwrap();
    timeout(WAIT, async {
        while manager.connection_count() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("restarted node reconnected");
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test]
async fn inbound_flood_never_exceeds_max_connections() {
    let net = SimNet::start(SimNetConfig::default().nodes(300).blocks(1))
        .await
        .unwrap();
    let store = Arc::new(InMemoryPeerStore::new());
    let mut c = config(0, 50);
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().unwrap();
    c.listener_port = 0;
    let manager = Arc::new(Manager::new(c, store));
    let mut events = manager.subscribe_control_events();
    manager.start().await.unwrap();
    let listen = manager.listener_address().expect("listening");
    let sampler = {
        let m = manager.clone();
        tokio::spawn(async move { max_over(&m, Duration::from_secs(4)).await })
    };
    let dials: Vec<_> = net.nodes().iter().map(|n| n.dial(listen)).collect();
    for r in futures::future::join_all(dials).await {
        r.unwrap();
    }
    let mut rejected = 0;
    let _ = timeout(Duration::from_secs(4), async {
        while rejected < 250 {
            if let Ok(ControlEvent::ConnectionRejectedCapacity { .. }) = events.recv().await {
                rejected += 1;
            }
        }
    })
    .await;
    let max = sampler.await.unwrap();
    assert!(max <= 50, "saw {max} connections with max_connections = 50");
    assert_eq!(manager.connection_count(), 50);
    assert_eq!(
        rejected, 250,
        "everyone else got the handshake and a reject"
    );
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test]
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

#[tokio::test]
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
    let before = net.node(idx).stats().received("ping");
    let mut c = manager.config();
    c.connection.ping_interval = Duration::from_millis(100);
    manager.update_config(c.clone()).await.unwrap();
    next_event(&mut events, |e| matches!(e, ControlEvent::ConfigUpdated)).await;
    net.node(idx)
        .wait_for_stats(WAIT, |s| s.received("ping") >= before + 3)
        .await
        .expect("pings at the new interval");
    // A higher target brings more connections.
    c.target_connections = 5;
    manager.update_config(c).await.unwrap();
    manager.wait_for_connections(5, WAIT).await.unwrap();
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test]
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
    assert_eq!(
        max_over(&manager, Duration::from_millis(300)).await,
        0,
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

#[tokio::test]
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

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn shutdown_with_100_connections_is_quick_saves_every_peer_and_leaks_no_socket() {
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
    let manager = Manager::new(config(100, 125), store.clone());
    manager.start().await.unwrap();
    manager.wait_for_connections(100, WAIT).await.unwrap();
    let t = std::time::Instant::now();
    manager.shutdown().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    drop(manager);
    let reloaded = InMemoryPeerStore::with_file(&path);
    assert_eq!(reloaded.load_from_file().await.unwrap(), 100);
    assert_eq!(
        reloaded
            .count_by_status(bitcoinsv::p2p::PeerStatusKind::Valid)
            .await
            .unwrap(),
        100
    );
    // Give the kernel a moment to release closed sockets, then compare.
    let after = timeout(WAIT, async {
        loop {
            let n = open_fds();
            if n <= before {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| open_fds());
    assert!(after <= before, "fds before {before}, after {after}");
    net.shutdown().await;
}

#[tokio::test]
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

#[tokio::test]
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
    assert_eq!(
        max_over(&manager, Duration::from_millis(300)).await,
        2,
        "the other connections stay"
    );
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

#[tokio::test]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_manager_without_shutdown_leaks_no_socket() {
    let net = SimNet::start(SimNetConfig::default().nodes(20).blocks(1))
        .await
        .unwrap();
    let store = store_with(&net.addresses()).await;
    let before = open_fds();
    let mut c = config(20, 125);
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().unwrap();
    c.listener_port = 0;
    let manager = Manager::new(c, store);
    manager.start().await.unwrap();
    manager.wait_for_connections(20, WAIT).await.unwrap();
    drop(manager);
    let after = timeout(WAIT, async {
        loop {
            let n = open_fds();
            if n <= before {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| open_fds());
    assert!(after <= before, "fds before {before}, after {after}");
    net.shutdown().await;
}
