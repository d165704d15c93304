//! Handshakes in both directions, pings, and the node's handling of bad peers (misbehaviour
//! scores, immediate bans, refused connections), checked over real loopback sockets.
//!
//! The tests of the node's timers (ping interval, ping timeout, handshake timeout) run on
//! tokio's paused clock with the node's real durations: node and client share the test's one
//! thread, so the clock moves only when both wait on timers, and each timer is asserted to fire
//! at its exact virtual instant.

mod common;

use std::time::Duration;

use bitcoinsv::bitcoin::NetAddress;
use bitcoinsv::p2p::codec::frame_bytes;
use bitcoinsv::p2p::messages::{AssociationId, RejectCode, SendCmpct};
use bitcoinsv::p2p::{Message, Network};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use common::*;
use tokio::net::TcpListener;
use tokio::time::Instant;

async fn simnet(config: SimNetConfig) -> SimNet {
    SimNet::start(config).await.expect("simnet starts")
}

#[tokio::test]
async fn handshake_follows_node_message_order() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    let seen = c.handshake().await;
    assert_eq!(
        commands(&seen),
        [
            "version",
            "verack",
            "protoconf",
            "authch",
            "sendheaders",
            "sendcmpct",
            "ping"
        ]
    );
    let Message::Version(v) = &seen[0] else {
        unreachable!()
    };
    assert_eq!(v.version, 70016);
    assert_eq!(v.services, 0x21);
    assert_eq!(v.user_agent, "/Bitcoin SV:1.2.2/");
    assert_eq!(v.start_height, 200);
    assert_eq!(v.association_id, Some(AssociationId::Empty));
    assert!(v.relay);
    assert_ne!(v.nonce, 0);
    let Message::Protoconf(p) = &seen[2] else {
        unreachable!()
    };
    assert_eq!(p.number_of_fields, 2);
    assert_eq!(p.max_recv_payload_length, 2 * 1024 * 1024);
    assert_eq!(p.stream_policies, "BlockPriority,Default");
    let Message::AuthCh(a) = &seen[3] else {
        unreachable!()
    };
    assert_eq!((a.version, a.challenge.len()), (1, 32));
    assert_eq!(
        seen[5],
        Message::SendCmpct(SendCmpct {
            announce: false,
            version: 1
        })
    );
    assert!(matches!(seen[6], Message::Ping(n) if n != 0));
    // Nothing else is queued: the next thing after our ping is its pong.
    assert!(c.sync(99).await.is_empty());
    let stats = net
        .node(0)
        .wait_for_stats(WAIT, |s| s.handshakes == 1)
        .await
        .expect("handshake counted");
    assert_eq!(stats.sent("version"), 1);
    assert_eq!(stats.received("verack"), 1);
    assert_eq!(stats.inbound_connections, 1);
    net.shutdown().await;
}

#[tokio::test]
async fn configured_user_agent_is_advertised() {
    let net = simnet(
        SimNetConfig::default()
            .nodes(1)
            .user_agent("/Bitcoin SV:1.1.0/"),
    )
    .await;
    let mut c = Client::connect(net.node(0).address()).await;
    let seen = c.handshake().await;
    let Message::Version(v) = &seen[0] else {
        unreachable!()
    };
    assert_eq!(v.user_agent, "/Bitcoin SV:1.1.0/");
    net.shutdown().await;
}

#[tokio::test]
async fn node_answers_ping_with_pong_of_the_same_nonce() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    c.send(&Message::Ping(0xdead_beef)).await;
    assert_eq!(c.recv().await, Message::Pong(0xdead_beef));
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn node_pings_every_interval_with_nonzero_nonces() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let interval = SimNetConfig::default().ping_interval;
    let mut c = Client::connect(net.node(0).address()).await;
    let seen = c.handshake().await;
    let Some(Message::Ping(first)) = seen.last().cloned() else {
        unreachable!()
    };
    c.send(&Message::Pong(first)).await;
    let mut last = Instant::now();
    let mut nonces = vec![first];
    for _ in 0..2 {
        match c.recv_timeout(PAUSED_WAIT).await {
            Recv::Msg(Message::Ping(n)) => {
                assert_ne!(n, 0);
                assert_at(last.elapsed(), interval);
                last = Instant::now();
                nonces.push(n);
                c.send(&Message::Pong(n)).await;
            }
            other => panic!("expected ping, got {other:?}"),
        }
    }
    nonces.dedup();
    assert_eq!(nonces.len(), 3, "fresh nonce per ping");
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn node_does_not_ping_again_while_a_ping_is_outstanding_and_drops_on_timeout() {
    let (interval, timeout) = (Duration::from_secs(120), Duration::from_secs(600));
    let net = simnet(
        SimNetConfig::default()
            .nodes(1)
            .ping_interval(interval)
            .ping_timeout(timeout),
    )
    .await;
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    let first_ping = Instant::now();
    // We never answer the first ping: no second ping comes at the four ticks of the ping timer
    // in between, and the node hangs up at the tick when the ping is `timeout` old.
    match c.recv_timeout(PAUSED_WAIT).await {
        Recv::Closed => {}
        other => panic!("expected the node to close, got {other:?}"),
    }
    assert_at(first_ping.elapsed(), timeout);
    assert_eq!(net.node(0).stats().sent("ping"), 1);
    net.shutdown().await;
}

#[tokio::test]
async fn outbound_dial_runs_the_node_side_handshake() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    net.node(0)
        .dial(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut c = Client::from_stream(stream, Network::Regtest);
    // The node speaks first on its outbound connections.
    let Message::Version(v) = c.recv().await else {
        panic!("expected version first")
    };
    assert_eq!(v.receiver.port, listener.local_addr().unwrap().port());
    c.send(&Message::Version(client_version())).await;
    c.send(&Message::Verack).await;
    let seen = c.recv_until("ping").await;
    assert_eq!(
        commands(&seen),
        [
            "verack",
            "protoconf",
            "getaddr",
            "authch",
            "sendheaders",
            "sendcmpct",
            "ping"
        ]
    );
    let stats = net
        .node(0)
        .wait_for_stats(WAIT, |s| s.handshakes == 1)
        .await
        .unwrap();
    assert_eq!(stats.outbound_connections, 1);
    net.shutdown().await;
}

#[tokio::test]
async fn dialling_a_non_loopback_address_is_refused() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let err = net
        .node(0)
        .dial("192.0.2.1:8333".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, bitcoinsv_simnet::SimNetError::NotLoopback(_)));
    net.shutdown().await;
}

#[tokio::test]
async fn messages_before_verack_are_misbehaviour_and_100_bans_the_ip() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let node = net.node(0);
    let mut c = Client::connect(node.address()).await;
    c.send(&Message::Version(client_version())).await;
    c.recv_until("protoconf").await;
    for _ in 0..99 {
        c.send(&Message::SendHeaders).await;
    }
    let stats = node
        .wait_for_stats(WAIT, |s| s.misbehaviour_score == 99)
        .await
        .expect("99 points");
    assert_eq!(stats.bans, 0);
    c.send(&Message::SendHeaders).await;
    assert!(c.closed_within(WAIT).await, "banned peer is disconnected");
    let stats = node.wait_for_stats(WAIT, |s| s.bans == 1).await.unwrap();
    assert_eq!(stats.misbehaviour_score, 100);
    assert!(node.is_banned("127.0.0.1".parse().unwrap()));
    // While banned, a new connection from the same IP is closed at once, unanswered.
    let mut again = Client::connect(node.address()).await;
    again.send(&Message::Version(client_version())).await;
    assert!(matches!(again.recv_timeout(WAIT).await, Recv::Closed));
    node.wait_for_stats(WAIT, |s| s.refused_banned == 1)
        .await
        .unwrap();
    node.clear_bans();
    let mut after = Client::connect(node.address()).await;
    assert_eq!(after.handshake().await.len(), 7);
    net.shutdown().await;
}

#[tokio::test]
async fn message_before_version_costs_one_point() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    c.send(&Message::GetAddr).await;
    net.node(0)
        .wait_for_stats(WAIT, |s| s.misbehaviour_score == 1)
        .await
        .unwrap();
    assert_eq!(c.handshake().await.len(), 7);
    net.shutdown().await;
}

#[tokio::test]
async fn oversized_header_from_peer_bans_at_once() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    // An `inv` header declaring 2 MiB + 1: over the limit, banned before any payload.
    let mut header = frame_bytes(Network::Regtest.magic(), "inv", &[]).to_vec();
    header[16..20].copy_from_slice(&(2 * 1024 * 1024 + 1u32).to_le_bytes());
    c.send_raw(&header).await;
    assert!(c.closed_within(WAIT).await);
    let stats = net.node(0).wait_for_stats(WAIT, |s| s.bans == 1).await;
    assert!(stats.is_some());
    net.shutdown().await;
}

#[tokio::test]
async fn wrong_magic_from_peer_bans_at_once() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    // A mainnet frame sent to a regtest node.
    let mut version = Vec::new();
    Message::Version(client_version()).encode_payload(&mut version);
    c.send_raw(&frame_bytes(Network::Mainnet.magic(), "version", &version))
        .await;
    assert!(c.closed_within(WAIT).await);
    assert!(net
        .node(0)
        .wait_for_stats(WAIT, |s| s.bans == 1)
        .await
        .is_some());
    assert_eq!(net.node(0).stats().sent("version"), 0);
    net.shutdown().await;
}

#[tokio::test]
async fn bch_user_agent_peer_is_banned() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    let mut v = client_version();
    v.user_agent = "/Bitcoin ABC:0.22.0/".into();
    c.send(&Message::Version(v)).await;
    assert!(c.closed_within(WAIT).await);
    assert_eq!(
        net.node(0)
            .wait_for_stats(WAIT, |s| s.bans == 1)
            .await
            .unwrap()
            .sent("version"),
        0
    );
    net.shutdown().await;
}

#[tokio::test]
async fn unknown_commands_are_ignored_after_the_handshake() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    c.send(&Message::Unknown {
        command: "wtxidrelay".into(),
        payload: Default::default(),
    })
    .await;
    assert!(c.sync(1).await.is_empty());
    let stats = net.node(0).stats();
    assert_eq!(stats.misbehaviour_score, 0);
    assert_eq!(stats.received("wtxidrelay"), 1);
    net.shutdown().await;
}

#[tokio::test]
async fn malformed_payload_gets_reject_malformed() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    // A `tx` whose payload stops after the version field.
    c.send_raw(&frame_bytes(Network::Regtest.magic(), "tx", &[1, 0, 0, 0]))
        .await;
    let Message::Reject(r) = c.recv().await else {
        panic!("expected reject")
    };
    assert_eq!(r.message, "tx");
    assert_eq!(r.code, RejectCode::Malformed);
    assert_eq!(r.reason, "error parsing message");
    assert!(c.sync(2).await.is_empty(), "the connection carries on");
    net.shutdown().await;
}

#[tokio::test]
async fn obsolete_version_is_rejected_and_disconnected() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    let mut v = client_version();
    v.version = 31799;
    c.send(&Message::Version(v)).await;
    let Message::Reject(r) = c.recv().await else {
        panic!("expected reject")
    };
    assert_eq!(r.code, RejectCode::Obsolete);
    assert_eq!(r.reason, "Version must be 31800 or greater");
    assert!(c.closed_within(WAIT).await);
    assert_eq!(net.node(0).stats().bans, 0);
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn silent_peer_is_dropped_after_the_handshake_timeout() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let timeout = SimNetConfig::default().handshake_timeout;
    let mut c = Client::connect(net.node(0).address()).await;
    let connected = Instant::now();
    assert!(c.closed_within(PAUSED_WAIT).await);
    assert_at(connected.elapsed(), timeout);
    net.shutdown().await;
}

#[tokio::test]
async fn version_receiver_field_names_the_peer() {
    let net = simnet(SimNetConfig::default().nodes(1)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    let local = c.stream.local_addr().unwrap();
    let seen = c.handshake().await;
    let Message::Version(v) = &seen[0] else {
        unreachable!()
    };
    assert_eq!(v.receiver, NetAddress::new(local, 0));
    assert_eq!(v.sender.services, 0x21);
    net.shutdown().await;
}
