//! `PostgresPeerStore` against a real PostgreSQL server (`BSV_TEST_POSTGRES_URL`, started by
//! `scripts/postgres-test.sh`; see `tests/common/postgres.rs` for the contract with CI): schema
//! migrations, surviving lost sessions, and bans shared between managers through the database.
//!
//! These tests run on the real clock (PostgreSQL does not follow tokio's paused one); every wait
//! is bounded by a timeout of a few seconds.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{
    BanNotice, BanReason, ControlEvent, DisconnectReason, InboundRejection, Manager, ManagerConfig,
    Network, P2pError, Peer, PeerStatus, PeerStatusKind, PeerStore, PostgresPeerStore, Whitelist,
};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use common::postgres::{fresh_schema, options, store, url_or_skip};
use tokio::sync::broadcast;
use tokio::time::{timeout, Instant};
use tokio_postgres::NoTls;

/// The bound on any wait: far above what each step takes (milliseconds), low enough that a
/// hang fails the test quickly.
const WAIT: Duration = Duration::from_secs(5);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A plain session on the test server, for looking behind the store's back.
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// The `schema_version` rows of `schema`: (version, applied_at as text).
async fn versions(url: &str, schema: &str) -> Vec<(i64, String)> {
    admin(url)
        .await
        .query(
            &format!("SELECT version, applied_at::text FROM {schema}.schema_version ORDER BY 1"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// `url` with an `application_name`, so a test can find its own sessions on the server.
fn with_app_name(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

async fn next_notice(rx: &mut broadcast::Receiver<BanNotice>) -> BanNotice {
    timeout(WAIT, rx.recv())
        .await
        .expect("a ban notice in time")
        .expect("the notice channel is open")
}

fn manual(note: &str) -> BanReason {
    BanReason::Manual { note: note.into() }
}

#[tokio::test]
async fn a_fresh_database_is_migrated_to_the_current_version_and_reconnecting_changes_nothing() {
    let Some(url) = url_or_skip(
        "store_postgres",
        "a_fresh_database_is_migrated_to_the_current_version_and_reconnecting_changes_nothing",
    ) else {
        return;
    };
    let schema = fresh_schema();
    let first = store(&url, &schema, 100).await;
    assert_eq!(
        first.schema_version().await.unwrap(),
        PostgresPeerStore::SCHEMA_VERSION
    );
    let applied = versions(&url, &schema).await;
    assert_eq!(
        applied.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        (1..=PostgresPeerStore::SCHEMA_VERSION).collect::<Vec<_>>()
    );
    first.create(Peer::new(ip("10.0.0.1"), 8333)).await.unwrap();

    let again = store(&url, &schema, 100).await;
    assert_eq!(
        versions(&url, &schema).await,
        applied,
        "no migration ran twice"
    );
    assert_eq!(again.count().await.unwrap(), 1, "and the data is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_apply_each_migration_once() {
    let Some(url) = url_or_skip(
        "store_postgres",
        "instances_starting_together_apply_each_migration_once",
    ) else {
        return;
    };
    let schema = fresh_schema();
    let starts = (0..6).map(|_| {
        let (url, schema) = (url.clone(), schema.clone());
        tokio::spawn(async move { PostgresPeerStore::connect(&url, options(&schema, 100)).await })
    });
    for started in futures::future::join_all(starts).await {
        let store = started.unwrap().expect("every instance starts");
        assert_eq!(
            store.schema_version().await.unwrap(),
            PostgresPeerStore::SCHEMA_VERSION
        );
    }
    assert_eq!(
        versions(&url, &schema).await.len() as i64,
        PostgresPeerStore::SCHEMA_VERSION,
        "one row per migration"
    );
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_release_is_refused() {
    let Some(url) = url_or_skip(
        "store_postgres",
        "a_database_migrated_by_a_newer_release_is_refused",
    ) else {
        return;
    };
    let schema = fresh_schema();
    drop(store(&url, &schema, 100).await);
    let newer = PostgresPeerStore::SCHEMA_VERSION + 1;
    admin(&url)
        .await
        .execute(
            &format!(
                "INSERT INTO {schema}.schema_version (version, description) VALUES ($1, 'future')"
            ),
            &[&newer],
        )
        .await
        .unwrap();
    let err = PostgresPeerStore::connect(&url, options(&schema, 100))
        .await
        .unwrap_err();
    assert!(
        matches!(err, P2pError::UnsupportedStoreSchema { found, supported, .. }
            if found == newer && supported == PostgresPeerStore::SCHEMA_VERSION),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_a_typed_error() {
    let Some(_url) = url_or_skip(
        "store_postgres",
        "a_server_that_cannot_be_reached_is_a_typed_error",
    ) else {
        return;
    };
    // A loopback port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PostgresPeerStore::connect(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        options("public", 100),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, P2pError::StoreUnavailable { .. }), "{err}");
    assert!(
        !err.to_string().contains("password"),
        "no credentials in errors: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_and_ban_notices_survive_the_server_closing_every_session() {
    let Some(url) = url_or_skip(
        "store_postgres",
        "peers_and_ban_notices_survive_the_server_closing_every_session",
    ) else {
        return;
    };
    let schema = fresh_schema();
    let ours = with_app_name(&url, &schema);
    let a = PostgresPeerStore::connect(&ours, options(&schema, 100))
        .await
        .unwrap();
    let b = store(&url, &schema, 100).await;
    let mut notices = a
        .ban_notifications()
        .expect("the Postgres store announces bans");
    let peers: Vec<Peer> = (1..=3)
        .map(|i| Peer::new(ip(&format!("10.0.0.{i}")), 8333))
        .collect();
    for p in &peers {
        a.create(p.clone()).await.unwrap();
    }

    // As a server restart looks to the store: every one of its sessions ends, the listener's too.
    let ended: i64 = admin(&url)
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        ended >= 2,
        "the store's call session and its listener ({ended})"
    );

    // Reads and writes go on, on new sessions; nothing was lost.
    let mut stored = a.list_all().await.unwrap();
    stored.sort_by_key(|p| p.ip);
    assert_eq!(stored, peers);
    a.create(Peer::new(ip("10.0.0.4"), 8333)).await.unwrap();
    assert_eq!(b.count().await.unwrap(), 4);

    // The listener reconnects by itself: a ban made by the other instance reaches it, whether
    // it is sent while the listener is back (a notification) or still away (the re-announce).
    b.ban_ip(peers[0].ip, manual("shared"), None, &Whitelist::new())
        .await
        .unwrap();
    let notice = next_notice(&mut notices).await;
    assert_eq!(
        notice,
        BanNotice {
            ip: peers[0].ip,
            reason: manual("shared"),
            until: None
        }
    );
}

#[tokio::test]
async fn a_ban_reaches_the_other_instances_but_not_the_one_that_made_it() {
    let Some(url) = url_or_skip(
        "store_postgres",
        "a_ban_reaches_the_other_instances_but_not_the_one_that_made_it",
    ) else {
        return;
    };
    let schema = fresh_schema();
    let a = store(&url, &schema, 100).await;
    let b = store(&url, &schema, 100).await;
    let mut at_a = a.ban_notifications().unwrap();
    let mut at_b = b.ban_notifications().unwrap();
    let target = Peer::new(ip("203.0.113.7"), 8333);
    a.create(target.clone()).await.unwrap();
    a.ban_ip(
        target.ip,
        manual("from a"),
        Some(4_000_000_000),
        &Whitelist::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        next_notice(&mut at_b).await,
        BanNotice {
            ip: target.ip,
            reason: manual("from a"),
            until: Some(4_000_000_000)
        }
    );
    // A banned record created outright (how a manager bans an address it only knows from
    // inbound connections) is announced too, and a ban too long for a notification's payload
    // is read back from the table.
    let long_note = "x".repeat(9000);
    let mut record = Peer::new(ip("198.51.100.9"), 0);
    record.status = PeerStatus::Banned {
        reason: manual(&long_note),
        until: None,
    };
    b.create(record.clone()).await.unwrap();
    assert_eq!(
        next_notice(&mut at_a).await,
        BanNotice {
            ip: record.ip,
            reason: manual(&long_note),
            until: None
        }
    );
    // Neither heard its own bans.
    assert!(matches!(
        at_a.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));
    assert!(matches!(
        at_b.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));
    assert_eq!(a.count_by_status(PeerStatusKind::Banned).await.unwrap(), 2);
}

#[tokio::test]
async fn a_status_written_from_a_read_older_than_another_instances_ban_does_not_lift_it() {
    let Some(url) = url_or_skip(
        "store_postgres",
        "a_status_written_from_a_read_older_than_another_instances_ban_does_not_lift_it",
    ) else {
        return;
    };
    let schema = fresh_schema();
    let a = store(&url, &schema, 100).await;
    let b = store(&url, &schema, 100).await;
    let mut read_by_a = Peer::new(ip("192.0.2.44"), 8333);
    a.create(read_by_a.clone()).await.unwrap();
    // `a` read the peer (above); `b` bans it; `a` writes the status it decided on.
    b.ban_ip(read_by_a.ip, manual("b"), None, &Whitelist::new())
        .await
        .unwrap();
    read_by_a.set_status(PeerStatus::Valid);
    let err = a.update(read_by_a.clone()).await.unwrap_err();
    assert!(
        matches!(err, P2pError::BanInForce { peer_id } if peer_id == read_by_a.id),
        "{err}"
    );
    assert!(
        a.is_ip_banned(read_by_a.ip, 0).await.unwrap(),
        "the ban stands"
    );
    // A ban that has lapsed is no obstacle.
    b.ban_ip(read_by_a.ip, manual("b"), Some(1), &Whitelist::new())
        .await
        .unwrap();
    a.update(read_by_a.clone()).await.unwrap();
    assert_eq!(a.read(read_by_a.id).await.unwrap(), Some(read_by_a));
}

fn manager_config() -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    c.target_connections = 2;
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().unwrap();
    c.listener_port = 0;
    c
}

/// Waits for the first event `want` accepts.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_in_one_manager_closes_and_refuses_the_address_in_another_within_a_second() {
    let Some(url) = url_or_skip(
        "store_postgres",
        "a_ban_in_one_manager_closes_and_refuses_the_address_in_another_within_a_second",
    ) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,bitcoinsv=debug")
        .with_test_writer()
        .try_init();
    // Two nodes on their own loopback addresses; both managers keep a connection to each.
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(2)
            .blocks(1)
            .distinct_ips(true),
    )
    .await
    .unwrap();
    let nodes = net.addresses();
    let schema = fresh_schema();
    let store_a = Arc::new(store(&url, &schema, 100).await);
    let store_b = Arc::new(store(&url, &schema, 100).await);
    let a = Manager::with_fixed_peers(manager_config(), store_a.clone(), nodes.clone());
    let b = Manager::with_fixed_peers(manager_config(), store_b.clone(), nodes.clone());
    a.start().await.unwrap();
    b.start().await.unwrap();
    a.wait_for_connections(2, WAIT).await.unwrap();
    b.wait_for_connections(2, WAIT).await.unwrap();
    let mut b_events = b.subscribe_control_events();
    let mut b_bans = b.subscribe_control_events();

    let banned = nodes[0];
    let id_at = |m: &Manager| {
        m.connected_peers()
            .iter()
            .find(|s| s.address == banned)
            .expect("connected to the node")
            .peer_id
    };
    let (peer_id, b_peer_id) = (id_at(&a), id_at(&b));
    let started = Instant::now();
    a.ban_peer(peer_id, manual("banned in bridge A"))
        .await
        .unwrap();

    // B hears of it and closes its connection (the actor reports the close it was asked for).
    let e = next_event(
        &mut b_events,
        |e| matches!(e, ControlEvent::ConnectionLost { peer_id, .. } if *peer_id == b_peer_id),
    )
    .await;
    let latency = started.elapsed();
    eprintln!("ban propagation: banned in A -> B's connection closed in {latency:?}");
    assert!(
        matches!(
            &e,
            ControlEvent::ConnectionLost {
                reason: DisconnectReason::Requested,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(latency < Duration::from_secs(1), "took {latency:?}");
    assert!(
        b.connected_peers().iter().any(|s| s.address == nodes[1]),
        "B keeps its other connection"
    );

    // B's listener refuses the address before any handshake.
    net.node(0)
        .dial(b.listener_address().unwrap())
        .await
        .unwrap();
    let e = next_event(&mut b_events, |e| {
        matches!(
            e,
            ControlEvent::InboundConnectionRejected { .. }
                | ControlEvent::InboundConnectionAccepted { .. }
        )
    })
    .await;
    assert!(
        matches!(e, ControlEvent::InboundConnectionRejected { address, reason: InboundRejection::Banned } if address.ip() == banned.ip()),
        "{e:?}"
    );
    // It told its subscribers why, and did not write the store again (A's ban stands as is).
    let e = next_event(&mut b_bans, |e| {
        matches!(e, ControlEvent::PeerBanned { .. })
    })
    .await;
    assert!(
        matches!(&e, ControlEvent::PeerBanned { peer_id, ip, reason }
            if *peer_id == b_peer_id && *ip == banned.ip() && *reason == manual("banned in bridge A")),
        "{e:?}"
    );
    let stored = store_b.find_by_ip(banned.ip()).await.unwrap();
    assert!(
        stored.iter().all(|p| matches!(&p.status, PeerStatus::Banned { reason, .. } if *reason == manual("banned in bridge A"))),
        "{stored:?}"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_ban_of_an_address_whitelisted_here_keeps_its_connections() {
    let Some(url) = url_or_skip(
        "store_postgres",
        "a_shared_ban_of_an_address_whitelisted_here_keeps_its_connections",
    ) else {
        return;
    };
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(2)
            .blocks(1)
            .distinct_ips(true),
    )
    .await
    .unwrap();
    let nodes = net.addresses();
    let schema = fresh_schema();
    let store_a = store(&url, &schema, 100).await;
    let store_b = Arc::new(store(&url, &schema, 100).await);
    let mut config_b = manager_config();
    config_b.whitelist = Whitelist::parse(&[nodes[0].ip().to_string()]).unwrap();
    let b = Manager::with_fixed_peers(config_b, store_b.clone(), nodes.clone());
    b.start().await.unwrap();
    b.wait_for_connections(2, WAIT).await.unwrap();
    let mut events = b.subscribe_control_events();
    // Two bans elsewhere, the whitelisted address first. Notices are handled in order, so once
    // B has acted on the second it has decided on the first.
    for node in &nodes {
        store_a
            .ban_ip(node.ip(), manual("elsewhere"), None, &Whitelist::new())
            .await
            .unwrap();
    }
    let e = next_event(&mut events, |e| {
        matches!(e, ControlEvent::PeerBanned { .. })
    })
    .await;
    assert!(
        matches!(e, ControlEvent::PeerBanned { ip, .. } if ip == nodes[1].ip()),
        "only the address not whitelisted here: {e:?}"
    );
    let connected: Vec<_> = b.connected_peers().iter().map(|s| s.address).collect();
    assert!(connected.contains(&nodes[0]), "{connected:?}");
    b.shutdown().await.unwrap();
    net.shutdown().await;
}

/// A TCP relay to the test server that the test can cut (every session through it ends and new
/// ones are refused) and restore: the store sees what it would of a server going down and
/// coming back, while the server itself keeps serving the other tests.
struct Relay {
    addr: std::net::SocketAddr,
    state: Arc<std::sync::Mutex<(bool, tokio_util::sync::CancellationToken)>>,
}

impl Relay {
    async fn start(upstream: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(std::sync::Mutex::new((
            true,
            tokio_util::sync::CancellationToken::new(),
        )));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (up, cut) = {
                    let s = shared.lock().unwrap();
                    (s.0, s.1.clone())
                };
                if !up {
                    continue; // dropped: the client sees the connection close at once
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Relay { addr, state }
    }

    fn cut(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = false;
        s.1.cancel();
    }

    fn restore(&self) {
        let mut s = self.state.lock().unwrap();
        *s = (true, tokio_util::sync::CancellationToken::new());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_server_is_away_calls_fail_typed_and_afterwards_all_resumes() {
    let Some(url) = url_or_skip(
        "store_postgres",
        "while_the_server_is_away_calls_fail_typed_and_afterwards_all_resumes",
    ) else {
        return;
    };
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("the test server must be on TCP, not {other:?}"),
    };
    let upstream = tokio::net::lookup_host((host.as_str(), config.get_ports()[0]))
        .await
        .unwrap()
        .next()
        .unwrap();
    let relay = Relay::start(upstream).await;
    let relayed = format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or("postgres"),
        relay.addr,
        config.get_dbname().unwrap_or("postgres")
    );
    let schema = fresh_schema();
    let a = PostgresPeerStore::connect(&relayed, options(&schema, 100))
        .await
        .unwrap();
    let b = store(&url, &schema, 100).await;
    let mut notices = a.ban_notifications().unwrap();
    let peers: Vec<Peer> = (1..=3)
        .map(|i| Peer::new(ip(&format!("10.1.0.{i}")), 8333))
        .collect();
    for p in &peers {
        a.create(p.clone()).await.unwrap();
    }

    relay.cut();
    let err = a.list_all().await.unwrap_err();
    assert!(matches!(err, P2pError::StoreUnavailable { .. }), "{err}");
    let err = a.create(Peer::new(ip("10.1.0.9"), 8333)).await.unwrap_err();
    assert!(matches!(err, P2pError::StoreUnavailable { .. }), "{err}");
    // Meanwhile another instance bans one of them: no notification can reach `a` now.
    b.ban_ip(peers[1].ip, manual("while away"), None, &Whitelist::new())
        .await
        .unwrap();

    relay.restore();
    let mut stored = a
        .list_all()
        .await
        .expect("the first call after the outage works");
    stored.sort_by_key(|p| p.ip);
    assert_eq!(stored.len(), 3, "nothing lost, nothing half-written");
    assert_eq!(stored[0], peers[0]);
    assert!(matches!(stored[1].status, PeerStatus::Banned { .. }));
    a.create(Peer::new(ip("10.1.0.9"), 8333)).await.unwrap();
    // The listener came back by itself and re-announced the ban it missed.
    assert_eq!(
        next_notice(&mut notices).await,
        BanNotice {
            ip: peers[1].ip,
            reason: manual("while away"),
            until: None
        }
    );
}
