//! The connection actor against simnet nodes running each misbehaviour mode: every mode ends in
//! the outcome SPEC §6 prescribes (ban with the right reason, timeout and `Inaccessible`,
//! restart and give-up).
//!
//! Every test runs on tokio's paused clock, the connection and the simnet on one current-thread
//! runtime: the clock moves only when both wait on timers, so each timeout fires at exactly its
//! virtual instant (asserted), and [`WAIT`] only bounds a hang.

use std::time::Duration;

use bitcoinsv::p2p::{
    BanReason, ConnectionState, ControlEvent, DisconnectReason, HandshakeFailure, ManagerConfig,
    Network, PeerClient, PeerClientOptions, PeerStatus,
};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};
use tokio::time::{timeout, Instant};

/// The bound on any wait, in virtual time: it fires only when nothing else is left to happen.
const WAIT: Duration = Duration::from_secs(3600);

/// Our handshake timeout: shorter than the node's own (60 s), so that ours is the one that fires.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Our ping timeout: shorter than the node's ping interval (2 minutes), whose pings would
/// otherwise keep a peer that never answers ours alive.
const PING_TIMEOUT: Duration = Duration::from_secs(60);

/// The resolution of tokio's timers: a deadline is rounded up to the next millisecond.
const TICK: Duration = Duration::from_millis(1);

struct Run {
    state: ConnectionState,
    reason: DisconnectReason,
    status: PeerStatus,
    /// Virtual time from the dial to the end.
    took: Duration,
}

/// Asserts that `took` is `expected` to the timer resolution.
#[track_caller]
fn assert_at(took: Duration, expected: Duration) {
    assert!(
        took >= expected && took <= expected + TICK,
        "took {took:?}, expected {expected:?}"
    );
}

/// Connects to a one-node simnet running `mode` and returns how the actor ended.
async fn run_against(mode: Misbehaviour, tweak: impl FnOnce(&mut ManagerConfig)) -> Run {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(3)
            .with_misbehaviour(0, mode),
    )
    .await
    .unwrap();
    let addr = net.addresses()[0];
    let mut config = ManagerConfig::new(Network::Regtest);
    config.connection.handshake_timeout = HANDSHAKE_TIMEOUT;
    tweak(&mut config);
    let started = Instant::now();
    let mut client = PeerClient::start(&config, addr, PeerClientOptions::default()).unwrap();
    let mut events = client.events();
    let out = timeout(WAIT, client.finished())
        .await
        .expect("actor ended in time");
    let took = started.elapsed();
    // What the manager would store: the ban the connection announced, or what its end means.
    let mut status = out.peer_status().unwrap_or(PeerStatus::Unknown);
    while let Ok(e) = events.try_recv() {
        if let ControlEvent::PeerBanned { reason, .. } = e {
            status = PeerStatus::Banned {
                reason,
                until: None,
            };
        }
    }
    net.shutdown().await;
    Run {
        state: out.state,
        reason: out.reason,
        status,
        took,
    }
}

fn ban_reason(s: &PeerStatus) -> Option<&BanReason> {
    match s {
        PeerStatus::Banned { reason, .. } => Some(reason),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn wrong_magic_is_banned_as_another_blockchain() {
    let r = run_against(Misbehaviour::WrongMagic, |_| {}).await;
    assert_eq!(r.state, ConnectionState::Rejected);
    assert_eq!(
        ban_reason(&r.status),
        Some(&BanReason::BlockchainMismatch {
            received: "f9beb4d9".into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn another_networks_magic_is_banned_as_network_mismatch() {
    let r = run_against(Misbehaviour::OtherNetworkMagic(Network::Testnet), |_| {}).await;
    assert_eq!(r.state, ConnectionState::Rejected);
    assert_eq!(
        ban_reason(&r.status),
        Some(&BanReason::NetworkMismatch {
            expected: Network::Regtest,
            received: "testnet".into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn bch_user_agent_is_banned_as_banned_user_agent() {
    let r = run_against(Misbehaviour::BchUserAgent, |_| {}).await;
    assert_eq!(r.state, ConnectionState::Rejected);
    assert_eq!(
        ban_reason(&r.status),
        Some(&BanReason::BannedUserAgent {
            user_agent: bitcoinsv_simnet::BCH_USER_AGENT.into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_that_never_answers_version_times_out_and_is_inaccessible() {
    let r = run_against(Misbehaviour::NeverAnswerVersion, |_| {}).await;
    assert_eq!(r.state, ConnectionState::Failed);
    assert_eq!(
        r.reason,
        DisconnectReason::Handshake(HandshakeFailure::Timeout(HANDSHAKE_TIMEOUT))
    );
    assert_at(r.took, HANDSHAKE_TIMEOUT);
    assert_eq!(r.status, PeerStatus::Inaccessible);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_never_sends_verack_times_out_and_is_inaccessible() {
    let r = run_against(Misbehaviour::NeverVerack, |_| {}).await;
    assert_eq!(r.state, ConnectionState::Failed);
    assert_eq!(
        r.reason,
        DisconnectReason::Handshake(HandshakeFailure::Timeout(HANDSHAKE_TIMEOUT))
    );
    assert_at(r.took, HANDSHAKE_TIMEOUT);
    assert_eq!(r.status, PeerStatus::Inaccessible);
}

#[tokio::test(start_paused = true)]
async fn a_stall_in_the_middle_of_a_message_times_out_and_closes() {
    let r = run_against(Misbehaviour::StallMidMessage, |_| {}).await;
    assert_eq!(r.state, ConnectionState::Failed);
    assert_eq!(
        r.reason,
        DisconnectReason::Handshake(HandshakeFailure::Timeout(HANDSHAKE_TIMEOUT))
    );
    assert_at(r.took, HANDSHAKE_TIMEOUT);
    assert_eq!(r.status, PeerStatus::Inaccessible);
}

#[tokio::test(start_paused = true)]
async fn garbage_bytes_before_the_handshake_are_another_blockchain_and_a_ban() {
    let r = run_against(Misbehaviour::Garbage, |_| {}).await;
    assert_eq!(r.state, ConnectionState::Rejected);
    assert!(
        matches!(
            r.reason,
            DisconnectReason::Handshake(HandshakeFailure::BlockchainMismatch { .. })
        ),
        "{:?}",
        r.reason
    );
    assert!(matches!(
        ban_reason(&r.status),
        Some(BanReason::BlockchainMismatch { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn an_oversized_header_disconnects_with_the_oversized_reason_and_a_ban() {
    let r = run_against(Misbehaviour::OversizedHeader, |_| {}).await;
    assert_eq!(r.state, ConnectionState::Rejected);
    assert!(
        matches!(r.reason, DisconnectReason::Oversized(_)),
        "{:?}",
        r.reason
    );
    assert!(matches!(
        ban_reason(&r.status),
        Some(BanReason::Misbehavior { score: 100, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_node_that_never_pongs_is_closed_at_ping_timeout_and_inaccessible() {
    let r = run_against(Misbehaviour::NeverPong, |c| {
        c.connection.ping_timeout = PING_TIMEOUT;
    })
    .await;
    assert_eq!(r.state, ConnectionState::Failed);
    assert!(
        matches!(r.reason, DisconnectReason::PingTimeout(_)),
        "{:?}",
        r.reason
    );
    // Our first ping goes out with the handshake, the moment we dialled.
    assert_at(r.took, PING_TIMEOUT);
    assert_eq!(r.status, PeerStatus::Inaccessible);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_keeps_dropping_restarts_then_gives_up_after_max_restarts() {
    // Three messages (version, verack, protoconf) complete the handshake, then EOF.
    let r = run_against(Misbehaviour::DisconnectAfter(3), |c| {
        c.connection.max_restarts = 2;
    })
    .await;
    assert_eq!(r.state, ConnectionState::Failed);
    assert_eq!(r.reason, DisconnectReason::PeerClosed);
    assert_eq!(r.status, PeerStatus::Inaccessible);
    assert_eq!(r.took, Duration::ZERO, "no timer involved");
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_inv_is_read_and_delivered_without_disconnecting() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(1)
            .with_misbehaviour(0, Misbehaviour::FloodInv),
    )
    .await
    .unwrap();
    let addr = net.addresses()[0];
    let config = ManagerConfig::new(Network::Regtest);
    let options = PeerClientOptions {
        capacity: 64,
        ..PeerClientOptions::default()
    };
    let mut client = PeerClient::start(&config, addr, options).unwrap();
    let mut invs = 0;
    while invs < 200 {
        let m = timeout(WAIT, client.recv()).await.unwrap().unwrap();
        if let bitcoinsv::p2p::Message::Inv(v) = m {
            assert_eq!(v.len(), 1000);
            invs += 1;
        }
    }
    assert_eq!(client.snapshot().state, ConnectionState::Connected);
    client.close().await;
    net.shutdown().await;
}

#[tokio::test]
async fn a_lossy_client_drops_what_it_does_not_read_and_keeps_the_connection_reading() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(1)
            .with_misbehaviour(0, Misbehaviour::FloodInv),
    )
    .await
    .unwrap();
    let addr = net.addresses()[0];
    let config = ManagerConfig::new(Network::Regtest);
    let options = PeerClientOptions {
        capacity: 4,
        lossy: true,
        ..PeerClientOptions::default()
    };
    let mut client = PeerClient::start(&config, addr, options).unwrap();
    timeout(WAIT, client.established()).await.unwrap().unwrap();
    // Read nothing while the node floods: a lossless client would stop reading its socket once
    // 4 messages wait; a lossy one keeps reading and lets the oldest go.
    let read_before = client.snapshot().bytes_in;
    let mut grew = false;
    for _ in 0..250 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if client.snapshot().bytes_in > read_before + 20 * 36_000 {
            grew = true;
            break;
        }
    }
    assert!(
        grew,
        "the connection kept reading while nobody consumed its messages"
    );
    let m = timeout(WAIT, client.recv()).await.unwrap().unwrap();
    assert!(matches!(m, bitcoinsv::p2p::Message::Inv(_)), "{m:?}");
    assert!(client.dropped() > 0, "older messages were dropped");
    assert_eq!(client.snapshot().state, ConnectionState::Connected);
    client.close().await;
    net.shutdown().await;
}
