//! Every misbehaviour mode, each shown doing exactly what its documentation says, as seen by a
//! codec-only client.
//!
//! Every test runs on tokio's paused clock, node and client on the test's one thread: the clock
//! moves only when both wait on timers. So a [`QUIET`] window that shows the node does *not* do
//! something passes only once the node has nothing left to do, however slow the machine, and the
//! slow reader's pace is exact.

mod common;

use std::time::Duration;

use bitcoinsv::p2p::codec::MessageCodec;
use bitcoinsv::p2p::messages::RejectCode;
use bitcoinsv::p2p::{CodecError, Message, Network};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig, BCH_USER_AGENT};
use bytes::BytesMut;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

async fn misbehaving(mode: Misbehaviour) -> SimNet {
    SimNet::start(SimNetConfig::default().nodes(2).with_misbehaviour(0, mode))
        .await
        .unwrap()
}

/// Connects to node 0 and sends `version`.
async fn greet(net: &SimNet) -> Client {
    let mut c = Client::connect(net.node(0).address()).await;
    c.send(&Message::Version(client_version())).await;
    c
}

#[tokio::test(start_paused = true)]
async fn wrong_magic_node_frames_its_version_with_btc_magic() {
    let net = misbehaving(Misbehaviour::WrongMagic).await;
    let mut c = greet(&net).await;
    match c.recv_timeout(WAIT).await {
        Recv::Error(CodecError::BadMagic {
            received, network, ..
        }) => {
            assert_eq!(received, [0xf9, 0xbe, 0xb4, 0xd9]);
            assert_eq!(network, None);
        }
        other => panic!("expected bad magic, got {other:?}"),
    }
    // The frame itself is a well-formed `version` under BTC's magic.
    let mut btc = MessageCodec::with_magic([0xf9, 0xbe, 0xb4, 0xd9]);
    assert!(matches!(
        btc.decode(&mut c.buf),
        Ok(Some(Message::Version(_)))
    ));
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn other_network_magic_node_speaks_that_networks_magic() {
    let net = misbehaving(Misbehaviour::OtherNetworkMagic(Network::Testnet)).await;
    let mut c = greet(&net).await;
    match c.recv_timeout(WAIT).await {
        Recv::Error(CodecError::BadMagic { network, .. }) => {
            assert_eq!(network, Some(Network::Testnet))
        }
        other => panic!("expected bad magic, got {other:?}"),
    }
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn bch_user_agent_node_advertises_bitcoin_abc() {
    let net = misbehaving(Misbehaviour::BchUserAgent).await;
    let mut c = Client::connect(net.node(0).address()).await;
    let seen = c.handshake().await;
    assert!(matches!(&seen[0], Message::Version(v) if v.user_agent == BCH_USER_AGENT));
    assert_eq!(BCH_USER_AGENT, "/Bitcoin ABC:0.22.0/");
    // The other node is unaffected.
    let mut normal = Client::connect(net.node(1).address()).await;
    let seen = normal.handshake().await;
    assert!(matches!(&seen[0], Message::Version(v) if v.user_agent == "/Bitcoin SV:1.2.2/"));
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn never_answer_version_node_stays_silent_but_reads() {
    let net = misbehaving(Misbehaviour::NeverAnswerVersion).await;
    let mut c = greet(&net).await;
    assert!(matches!(c.recv_timeout(QUIET).await, Recv::Timeout));
    c.send(&Message::Verack).await;
    let stats = net
        .node(0)
        .wait_for_stats(WAIT, |s| s.received("verack") == 1)
        .await
        .unwrap();
    assert_eq!(stats.received("version"), 1);
    assert!(stats.messages_out.is_empty());
    assert_eq!(stats.active_connections, 1, "the connection stays open");
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn never_verack_node_answers_version_with_version_only() {
    let net = misbehaving(Misbehaviour::NeverVerack).await;
    let mut c = greet(&net).await;
    assert!(matches!(c.recv().await, Message::Version(_)));
    c.send(&Message::Verack).await;
    // Our verack completes nothing on our side: the node's verack never comes.
    let mut after = Vec::new();
    while let Recv::Msg(m) = c.recv_timeout(QUIET).await {
        after.push(m);
    }
    assert!(
        !commands(&after)
            .iter()
            .any(|c| c == "verack" || c == "protoconf"),
        "{after:?}"
    );
    assert_eq!(net.node(0).stats().sent("verack"), 0);
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stall_node_sends_half_a_frame_then_nothing() {
    let net = misbehaving(Misbehaviour::StallMidMessage).await;
    let mut c = greet(&net).await;
    let bytes = c.read_raw(4096, QUIET * 2).await;
    // Half of a version frame: the 24-byte header and part of the payload.
    assert!(
        bytes.len() > 24 && bytes.len() < 24 + 120,
        "{}",
        bytes.len()
    );
    let declared = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]) as usize;
    assert_eq!(bytes.len(), (24 + declared) / 2);
    let mut buf = BytesMut::from(&bytes[..]);
    let mut codec = MessageCodec::new(Network::Regtest);
    assert!(
        matches!(codec.decode(&mut buf), Ok(None)),
        "incomplete frame"
    );
    assert_eq!(net.node(0).stats().active_connections, 1);
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn garbage_node_sends_bytes_that_are_no_frame() {
    let net = misbehaving(Misbehaviour::Garbage).await;
    let mut c = greet(&net).await;
    let bytes = c.read_raw(1024, WAIT).await;
    assert_eq!(bytes.len(), 1024);
    let mut buf = BytesMut::from(&bytes[..]);
    let err = MessageCodec::new(Network::Regtest)
        .decode(&mut buf)
        .unwrap_err();
    assert!(err.is_fatal(), "{err}");
    assert!(matches!(c.recv_timeout(QUIET).await, Recv::Timeout));
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn oversized_header_node_declares_a_32_mib_inv() {
    let net = misbehaving(Misbehaviour::OversizedHeader).await;
    let mut c = greet(&net).await;
    match c.recv_timeout(WAIT).await {
        Recv::Error(CodecError::Oversized {
            command, length, ..
        }) => {
            assert_eq!(command, "inv");
            assert_eq!(length, 32 * 1024 * 1024);
        }
        other => panic!("expected oversized, got {other:?}"),
    }
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn disconnect_after_n_closes_after_n_messages() {
    let net = misbehaving(Misbehaviour::DisconnectAfter(3)).await;
    let mut c = greet(&net).await;
    let mut got = Vec::new();
    loop {
        match c.recv_timeout(WAIT).await {
            Recv::Msg(m) => got.push(m),
            Recv::Closed => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(commands(&got), ["version", "verack", "protoconf"]);
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn disconnect_after_zero_closes_at_once() {
    let net = misbehaving(Misbehaviour::DisconnectAfter(0)).await;
    let mut c = Client::connect(net.node(0).address()).await;
    assert!(c.closed_within(WAIT).await);
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn never_pong_node_ignores_pings() {
    let net = misbehaving(Misbehaviour::NeverPong).await;
    let mut c = Client::connect(net.node(0).address()).await;
    let seen = c.handshake().await;
    assert!(
        matches!(seen.last(), Some(Message::Ping(_))),
        "it still pings"
    );
    c.send(&Message::Ping(5)).await;
    assert!(matches!(c.recv_timeout(QUIET).await, Recv::Timeout));
    let stats = net
        .node(0)
        .wait_for_stats(WAIT, |s| s.received("ping") == 1)
        .await
        .unwrap();
    assert_eq!(stats.sent("pong"), 0);
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn flood_inv_node_sends_inv_back_to_back() {
    let net = misbehaving(Misbehaviour::FloodInv).await;
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    for _ in 0..20 {
        match c.recv().await {
            Message::Inv(items) => assert_eq!(items.len(), 1000),
            other => panic!("expected inv, got {other:?}"),
        }
    }
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn flood_addr_node_sends_loopback_addr_back_to_back() {
    let net = misbehaving(Misbehaviour::FloodAddr).await;
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    for _ in 0..20 {
        match c.recv().await {
            Message::Addr(addrs) => {
                assert_eq!(addrs.len(), 1000);
                assert!(addrs.iter().all(|a| a.addr.ip.is_loopback()));
            }
            other => panic!("expected addr, got {other:?}"),
        }
    }
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn slow_reader_node_makes_a_large_write_block() {
    let net = SimNet::start(SimNetConfig::default().nodes(2).with_misbehaviour(
        0,
        Misbehaviour::SlowReader {
            bytes_per_second: 20_000,
        },
    ))
    .await
    .unwrap();
    // An 8 MiB `tx` frame (twice the most the kernel buffers on the sending side here): a
    // normal node swallows it at once, the slow one cannot.
    let payload = vec![0u8; 8 * 1024 * 1024];
    let frame = bitcoinsv::p2p::codec::frame_bytes(Network::Regtest.magic(), "tx", &payload);
    let mut normal = Client::connect(net.node(1).address()).await;
    normal.handshake().await;
    tokio::time::timeout(WAIT, normal.stream.write_all(&frame))
        .await
        .expect("the normal node reads 8 MiB quickly")
        .unwrap();
    let mut slow = Client::connect(net.node(0).address()).await;
    let seen = slow.handshake().await;
    assert_eq!(seen.len(), 7, "small messages still get through");
    let blocked = tokio::time::timeout(Duration::from_secs(1), slow.stream.write_all(&frame)).await;
    assert!(blocked.is_err(), "the write must not complete in 1 s");
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reject_all_tx_node_rejects_every_transaction() {
    let net = misbehaving(Misbehaviour::RejectAllTx).await;
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    let tx = sample_tx(9);
    c.send(&Message::Tx(tx.clone())).await;
    let Message::Reject(r) = c.recv().await else {
        panic!("expected reject")
    };
    assert_eq!(r.message, "tx");
    assert_eq!(r.code, RejectCode::Invalid);
    assert_eq!(r.reason, "bad-txns-inputs-missingorspent");
    assert_eq!(r.hash, Some(tx.txid()));
    assert_eq!(net.mempool_len(), 0);
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn misbehaviour_set_at_run_time_applies_to_new_connections() {
    let net = SimNet::start(SimNetConfig::default().nodes(1))
        .await
        .unwrap();
    let mut before = Client::connect(net.node(0).address()).await;
    before.handshake().await;
    net.node(0).set_misbehaviour(Misbehaviour::NeverPong);
    assert_eq!(net.node(0).misbehaviour(), Misbehaviour::NeverPong);
    // The live connection keeps its behaviour...
    assert!(before.sync(1).await.is_empty());
    // ...a new one gets the new mode.
    let mut after = Client::connect(net.node(0).address()).await;
    after.handshake().await;
    after.send(&Message::Ping(2)).await;
    assert!(matches!(after.recv_timeout(QUIET).await, Recv::Timeout));
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn misbehaving_outbound_dial_sends_garbage_first() {
    let net = misbehaving(Misbehaviour::Garbage).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    net.node(0)
        .dial(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let mut c = Client::from_stream(stream, Network::Regtest);
    assert!(matches!(c.recv_timeout(WAIT).await, Recv::Error(e) if e.is_fatal()));
    net.shutdown().await;
}
