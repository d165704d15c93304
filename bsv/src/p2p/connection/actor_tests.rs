//! The connection actor on real loopback sockets against a scripted node: a peer built only
//! from the codec and a `TcpStream`, so every test can assert the exact messages and their order.
//! The harness plays the manager's part for reports, applying them to a store as the supervisor
//! does, so the tests also show what each connection's facts mean for the store.
//!
//! Every test runs on tokio's paused clock with the library's real (long) timeouts. The actor,
//! the scripted node and the harness share one current-thread runtime, and a loopback write on a
//! socket without Nagle's algorithm is readable on the other end when the write returns, so the
//! runtime is idle only when every task waits on a timer: only then does the clock jump, straight
//! to the earliest timer. A timeout
//! under test therefore fires at exactly its virtual instant, which the tests assert, and the
//! [`WAIT`] guards bound a hang, never a delay: they fire only if nothing else is left to happen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::link::{ConnectionContext, LocalVersion, Report};
use super::{Misbehavior, NonceRegistry, PeerConnection};
use crate::bitcoin::{Hash, InvVect, NetAddress, Network};
use crate::p2p::bans::{UserAgentBanList, Whitelist};
use crate::p2p::codec::frame_bytes;
use crate::p2p::limits::DEFAULT_SEND_QUEUE_BYTES;
use crate::p2p::messages::{AuthChallenge, Protoconf, SendCmpct, VersionMessage};
use crate::p2p::{
    BanReason, BitcoinMessageEvent, ConnectionConfig, ConnectionState, ControlEvent,
    DisconnectReason, InMemoryPeerStore, Message, MessageCodec, MessageSinks, Peer, PeerStatus,
    PeerStore,
};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{timeout, Instant};

/// The bound on any wait, in virtual time: longer than every timer a test expects to fire (the
/// 20-minute ping timeout is the longest), so it fires only when the test would hang.
const WAIT: Duration = Duration::from_secs(2 * 3600);

/// The resolution of tokio's timers: a deadline is rounded up to the next millisecond.
const TICK: Duration = Duration::from_millis(1);

struct Harness {
    ctx: ConnectionContext,
    store: Arc<InMemoryPeerStore>,
    control: broadcast::Receiver<ControlEvent>,
    messages: broadcast::Receiver<BitcoinMessageEvent>,
    /// How many reports the harness has applied to the store.
    applied: watch::Receiver<u64>,
}

/// Applies reports to `store` as the manager's supervisor does (`manager::store_owner`), and
/// counts them on `applied`.
async fn apply_reports(
    mut rx: mpsc::Receiver<Report>,
    store: Arc<InMemoryPeerStore>,
    control: broadcast::Sender<ControlEvent>,
    applied: watch::Sender<u64>,
) {
    while let Some(r) = rx.recv().await {
        match r {
            Report::Established {
                peer_id,
                direction: super::Direction::Outbound,
            } => {
                if let Ok(Some(mut p)) = store.read(peer_id).await {
                    if !matches!(p.status, PeerStatus::Banned { .. })
                        && p.set_status(PeerStatus::Valid)
                    {
                        let _ = store.update(p).await;
                    }
                }
            }
            Report::Ban {
                peer_id,
                ip,
                reason,
                ..
            } => {
                let until = crate::p2p::peer::unix_now() + 86_400;
                let _ = store
                    .ban_ip(ip, reason.clone(), Some(until), &Whitelist::new())
                    .await;
                let _ = control.send(ControlEvent::PeerBanned {
                    peer_id,
                    ip,
                    reason,
                });
            }
            _ => {}
        }
        applied.send_modify(|n| *n += 1);
    }
}

fn harness(config: ConnectionConfig) -> Harness {
    let store = Arc::new(InMemoryPeerStore::new());
    let (control_tx, control) = broadcast::channel(1000);
    let (message_tx, messages) = broadcast::channel(1000);
    let (reports, rx) = mpsc::channel(100);
    let (applied_tx, applied) = watch::channel(0);
    tokio::spawn(apply_reports(
        rx,
        store.clone(),
        control_tx.clone(),
        applied_tx,
    ));
    let ctx = ConnectionContext {
        network: Network::Regtest,
        config,
        local: LocalVersion {
            user_agent: "/bitcoinsv-rs:test/".into(),
            services: 0,
            relay: true,
            start_height: 0,
        },
        reports: Some(reports),
        control_tx,
        message_tx,
        sinks: MessageSinks::default(),
        banned_agents: UserAgentBanList::default(),
        whitelist: Whitelist::new(),
        nonces: NonceRegistry::default(),
        send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
        event_capacity: 1000,
        metrics: crate::p2p::metrics::Metrics::default(),
        tap: None,
        ask_for_addresses: false,
        services: None,
        streaming: None,
    };
    Harness {
        ctx,
        store,
        control,
        messages,
        applied,
    }
}

/// The library's defaults (60 s handshake timeout, 2-minute pings, 20-minute ping timeout, 5 s
/// first backoff), without jitter so that backoff delays are exact.
fn config() -> ConnectionConfig {
    ConnectionConfig {
        backoff_jitter: 0.0,
        ..ConnectionConfig::default()
    }
}

/// Asserts that `took` is `expected` to the timer resolution: a timer fires at its deadline
/// rounded up to the next millisecond, never earlier and never later.
#[track_caller]
fn assert_at(took: Duration, expected: Duration) {
    assert!(
        took >= expected && took <= expected + TICK,
        "took {took:?}, expected {expected:?}"
    );
}

async fn stored_peer(h: &Harness, addr: SocketAddr) -> Peer {
    let p = Peer::new(addr.ip(), addr.port());
    h.store.create(p.clone()).await.unwrap();
    p
}

/// A scripted node: one accepted (or dialled) socket plus a codec.
struct Node {
    stream: TcpStream,
    codec: MessageCodec,
    buf: BytesMut,
}

impl Node {
    fn new(stream: TcpStream) -> Self {
        // As the node and the library do. Without it Nagle's algorithm holds a small write back
        // until the previous one is acknowledged, and the kernel delays that acknowledgement on
        // a real-time timer: on the paused clock the runtime would look idle meanwhile, and jump
        // to the next timer with bytes still on their way.
        stream.set_nodelay(true).unwrap();
        let mut codec = MessageCodec::new(Network::Regtest);
        codec.set_peer_max_recv(2 * 1024 * 1024);
        Node {
            stream,
            codec,
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, m: &Message) {
        let b = self.codec.encode_to_bytes(m).unwrap();
        self.stream.write_all(&b).await.unwrap();
    }

    async fn recv(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(m);
            }
            match timeout(WAIT, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                Err(_) => panic!("scripted node waited {WAIT:?} for a message"),
            }
        }
    }

    async fn recv_command(&mut self) -> String {
        self.recv()
            .await
            .map(|m| m.command().to_string())
            .unwrap_or_else(|| "<closed>".into())
    }

    /// Reads until the socket closes, returning what arrived meanwhile.
    async fn until_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(m) = self.recv().await {
            seen.push(m.command().to_string());
        }
        seen
    }

    /// The node side of an inbound handshake, as docs/PROTOCOL.md §2.5 describes it.
    async fn accept_handshake(&mut self, agent: &str) -> VersionMessage {
        let Some(Message::Version(ours)) = self.recv().await else {
            panic!("expected our version first")
        };
        self.send(&Message::Version(node_version(agent))).await;
        self.send(&Message::Verack).await;
        self.send(&Message::Protoconf(Protoconf::new(
            2 * 1024 * 1024,
            "BlockPriority,Default",
        )))
        .await;
        assert_eq!(self.recv_command().await, "verack");
        self.send(&Message::AuthCh(AuthChallenge {
            version: 1,
            challenge: bytes::Bytes::from_static(&[7; 32]),
        }))
        .await;
        self.send(&Message::SendHeaders).await;
        self.send(&Message::SendCmpct(SendCmpct {
            announce: false,
            version: 1,
        }))
        .await;
        ours
    }
}

fn node_version(agent: &str) -> VersionMessage {
    VersionMessage {
        version: 70016,
        services: 0x21,
        timestamp: 1_700_000_000,
        receiver: NetAddress::UNSPECIFIED,
        sender: NetAddress::UNSPECIFIED,
        nonce: 0xdead_beef,
        user_agent: agent.into(),
        start_height: 200,
        relay: true,
        association_id: Some(crate::p2p::messages::AssociationId::Empty),
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

async fn accept(l: &TcpListener) -> Node {
    let (s, _) = timeout(WAIT, l.accept()).await.unwrap().unwrap();
    Node::new(s)
}

async fn next_event(
    rx: &mut broadcast::Receiver<ControlEvent>,
    want: impl Fn(&ControlEvent) -> bool,
) -> ControlEvent {
    timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(e) if want(&e) => return e,
                Ok(_) => continue,
                Err(e) => panic!("event channel: {e}"),
            }
        }
    })
    .await
    .expect("event in time")
}

async fn status(h: &Harness, p: &Peer) -> PeerStatus {
    h.store.read(p.id).await.unwrap().unwrap().status
}

/// Waits until the harness has applied reports that give `p` the status `want`.
async fn until_status(h: &mut Harness, p: &Peer, want: PeerStatus) {
    timeout(WAIT, async {
        loop {
            h.applied.borrow_and_update();
            if status(h, p).await == want {
                return;
            }
            h.applied.changed().await.expect("harness running");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("peer never became {want:?}"));
}

/// The peer's status once the harness has applied the ban it was told of.
async fn banned_status(h: &mut Harness, p: &Peer) -> PeerStatus {
    next_event(&mut h.control, |e| {
        matches!(e, ControlEvent::PeerBanned { .. })
    })
    .await;
    status(h, p).await
}

#[tokio::test(start_paused = true)]
async fn outbound_handshake_follows_node_order_and_marks_the_peer_valid() {
    let mut h = harness(config());
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    let mut node = accept(&l).await;
    let ours = node.accept_handshake("/Bitcoin SV:1.2.2/").await;
    assert_eq!(ours.version, 70016);
    assert_eq!(ours.user_agent, "/bitcoinsv-rs:test/");
    assert_eq!(
        ours.association_id,
        Some(crate::p2p::messages::AssociationId::Empty)
    );
    // After our verack: our protoconf (never before), then sendheaders, then our first ping.
    let Some(Message::Protoconf(p)) = node.recv().await else {
        panic!("expected protoconf")
    };
    assert_eq!(p.max_recv_payload_length, 2 * 1024 * 1024);
    assert_eq!(node.recv_command().await, "sendheaders");
    assert_eq!(node.recv_command().await, "ping");
    next_event(&mut h.control, |e| {
        matches!(e, ControlEvent::HandshakeComplete { .. })
    })
    .await;
    let e = next_event(&mut h.control, |e| {
        matches!(e, ControlEvent::ConnectionEstablished { .. })
    })
    .await;
    assert_eq!(
        e,
        ControlEvent::ConnectionEstablished {
            peer_id: peer.id,
            is_inbound: false
        }
    );
    until_status(&mut h, &peer, PeerStatus::Valid).await;
    let snap = handle.stats().snapshot();
    assert_eq!(snap.state, ConnectionState::Connected);
    let d = snap.details.unwrap();
    assert_eq!(d.user_agent, "/Bitcoin SV:1.2.2/");
    assert_eq!(d.start_height, 200);
    handle.disconnect();
    let out = handle.join().await;
    assert_eq!(out.reason, DisconnectReason::Requested);
    assert_eq!(out.state, ConnectionState::Disconnected);
}

#[tokio::test(start_paused = true)]
async fn pings_are_answered_and_pongs_give_an_rtt_and_preferences_are_recorded() {
    let h = harness(config());
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer, h.ctx.clone());
    let mut node = accept(&l).await;
    node.accept_handshake("/Bitcoin SV:1.2.2/").await;
    node.send(&Message::FeeFilter(250)).await;
    let mut our_ping = None;
    while our_ping.is_none() {
        if let Some(Message::Ping(n)) = node.recv().await {
            our_ping = Some(n);
        }
    }
    let nonce = our_ping.unwrap();
    assert_ne!(nonce, 0);
    node.send(&Message::Pong(nonce)).await;
    node.send(&Message::Ping(77)).await;
    assert_eq!(node.recv().await, Some(Message::Pong(77)));
    let snap = handle.stats().snapshot();
    assert!(snap.rtt.is_some(), "rtt recorded");
    let d = snap.details.unwrap();
    assert!(d.wants_headers);
    assert_eq!(d.compact_blocks, Some((false, 1)));
    assert_eq!(d.fee_filter, Some(250));
    assert_eq!(d.max_recv_payload, Some(2 * 1024 * 1024));
    handle.disconnect();
    handle.join().await;
}

#[tokio::test(start_paused = true)]
async fn other_messages_reach_the_message_channel_and_authch_does_not() {
    let mut h = harness(config());
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    let mut node = accept(&l).await;
    node.accept_handshake("/Bitcoin SV:1.2.2/").await;
    let inv = Message::Inv(vec![InvVect::tx(Hash([9; 32]))]);
    node.send(&inv).await;
    let e = timeout(WAIT, h.messages.recv()).await.unwrap().unwrap();
    assert_eq!(e.peer_id, peer.id);
    assert_eq!(
        e.message, inv,
        "authch, sendheaders and sendcmpct were consumed"
    );
    handle.disconnect();
    handle.join().await;
}

/// Regression: a `pong` answering a `ping` the application sent (through `send_message`) used
/// to be swallowed with the connection's own keepalive pongs, so the application never saw it.
/// Only the pong of the connection's own outstanding ping is consumed.
#[tokio::test(start_paused = true)]
async fn a_pong_to_an_application_ping_reaches_the_message_channel() {
    let mut h = harness(config());
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    let mut node = accept(&l).await;
    node.accept_handshake("/Bitcoin SV:1.2.2/").await;
    // The connection's own first ping: answer it; that pong is the connection's.
    let own = loop {
        if let Some(Message::Ping(n)) = node.recv().await {
            break n;
        }
    };
    node.send(&Message::Pong(own)).await;
    // The application's ping, and the node's answer.
    handle.send_message(Message::Ping(4242)).await.unwrap();
    assert_eq!(node.recv().await, Some(Message::Ping(4242)));
    node.send(&Message::Pong(4242)).await;
    let e = timeout(WAIT, h.messages.recv()).await.unwrap().unwrap();
    assert_eq!(e.peer_id, peer.id);
    assert_eq!(
        e.message,
        Message::Pong(4242),
        "the keepalive pong was consumed, the application's was delivered"
    );
    handle.disconnect();
    handle.join().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_over_the_peers_protoconf_limit_is_refused_and_nothing_is_written() {
    let h = harness(config());
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer, h.ctx.clone());
    let mut node = accept(&l).await;
    node.accept_handshake("/Bitcoin SV:1.2.2/").await;
    for expected in ["protoconf", "sendheaders", "ping"] {
        assert_eq!(node.recv_command().await, expected);
    }
    // The node advertised 2 MiB: 58,255 inv entries are one too many.
    let too_big = Message::Inv(vec![InvVect::tx(Hash::ZERO); 58_255]);
    let err = handle.send_message(too_big).await.unwrap_err();
    assert!(err.to_string().contains("refusing to send inv"), "{err}");
    handle
        .send_message(Message::Inv(vec![InvVect::tx(Hash::ZERO); 58_254]))
        .await
        .unwrap();
    match node.recv().await {
        Some(Message::Inv(v)) => {
            assert_eq!(v.len(), 58_254, "the oversized one never reached the wire")
        }
        other => panic!("expected the allowed inv, got {other:?}"),
    }
    handle.disconnect();
    handle.join().await;
}

#[tokio::test(start_paused = true)]
async fn bch_user_agent_is_banned_with_its_reason() {
    let mut h = harness(config());
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    let mut node = accept(&l).await;
    let Some(Message::Version(_)) = node.recv().await else {
        panic!()
    };
    node.send(&Message::Version(node_version("/Bitcoin ABC:0.22.0/")))
        .await;
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert_eq!(out.state, ConnectionState::Rejected);
    let e = next_event(&mut h.control, |e| {
        matches!(e, ControlEvent::PeerBanned { .. })
    })
    .await;
    let reason = BanReason::BannedUserAgent {
        user_agent: "/Bitcoin ABC:0.22.0/".into(),
    };
    assert_eq!(
        e,
        ControlEvent::PeerBanned {
            peer_id: peer.id,
            ip: addr.ip(),
            reason: reason.clone()
        }
    );
    assert!(
        matches!(status(&h, &peer).await, PeerStatus::Banned { reason: r, until: Some(_) } if r == reason)
    );
}

#[tokio::test(start_paused = true)]
async fn another_networks_magic_is_banned_as_network_mismatch() {
    let mut h = harness(config());
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    let mut node = accept(&l).await;
    node.recv().await;
    let mut wrong = MessageCodec::new(Network::Testnet);
    let bytes = wrong
        .encode_to_bytes(&Message::Version(node_version("/Bitcoin SV:1.2.2/")))
        .unwrap();
    node.stream.write_all(&bytes).await.unwrap();
    let _ = &mut wrong;
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert_eq!(out.state, ConnectionState::Rejected);
    match banned_status(&mut h, &peer).await {
        PeerStatus::Banned {
            reason: BanReason::NetworkMismatch { expected, received },
            ..
        } => {
            assert_eq!(expected, Network::Regtest);
            assert_eq!(received, "testnet");
        }
        other => panic!("expected a network-mismatch ban, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn garbage_bytes_are_banned_as_another_blockchain() {
    let mut h = harness(config());
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    let mut node = accept(&l).await;
    node.recv().await;
    node.stream.write_all(&[0x42; 64]).await.unwrap();
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert!(
        matches!(
            out.reason,
            DisconnectReason::Handshake(super::HandshakeFailure::BlockchainMismatch { .. })
        ),
        "{:?}",
        out.reason
    );
    assert!(matches!(
        banned_status(&mut h, &peer).await,
        PeerStatus::Banned {
            reason: BanReason::BlockchainMismatch { .. },
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn an_oversized_header_is_banned_before_any_payload_arrives() {
    let mut h = harness(config());
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    let mut node = accept(&l).await;
    node.recv().await;
    let mut header = frame_bytes(Network::Regtest.magic(), "inv", &[]).to_vec();
    header[16..20].copy_from_slice(&(3u32 * 1024 * 1024).to_le_bytes());
    node.stream.write_all(&header).await.unwrap();
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert!(
        matches!(out.reason, DisconnectReason::Oversized(_)),
        "{:?}",
        out.reason
    );
    assert!(matches!(
        banned_status(&mut h, &peer).await,
        PeerStatus::Banned {
            reason: BanReason::Misbehavior { score: 100, .. },
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_times_out_the_handshake_at_the_handshake_timeout_and_becomes_inaccessible() {
    let mut h = harness(config());
    let handshake_timeout = h.ctx.config.handshake_timeout;
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    let _node = accept(&l).await; // accepts, never answers
    let accepted = Instant::now();
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert_at(accepted.elapsed(), handshake_timeout);
    assert_eq!(out.state, ConnectionState::Failed);
    assert!(matches!(out.reason, DisconnectReason::Handshake(_)));
    assert_eq!(out.peer_status(), Some(PeerStatus::Inaccessible));
    let e = next_event(&mut h.control, |e| {
        matches!(e, ControlEvent::ConnectionFailed { .. })
    })
    .await;
    assert_eq!(
        e,
        ControlEvent::ConnectionFailed {
            peer_id: peer.id,
            reason: DisconnectReason::Handshake(super::HandshakeFailure::Timeout(
                handshake_timeout
            )),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn refused_connections_are_retried_with_backoff_then_the_peer_is_inaccessible() {
    let mut h = harness(ConnectionConfig {
        max_retries: 3,
        initial_backoff: Duration::from_secs(5),
        max_backoff: Duration::from_secs(15),
        ..config()
    });
    // A port with nothing listening.
    let addr = {
        let (l, a) = listener().await;
        drop(l);
        a
    };
    let peer = stored_peer(&h, addr).await;
    let started = Instant::now();
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    // The first attempt, then a retry after 5 s, 10 s, and 15 s (20 s capped by max_backoff).
    let mut failed_at = Vec::new();
    for _ in 0..4 {
        next_event(&mut h.control, |e| {
            matches!(e, ControlEvent::ConnectionFailed { .. })
        })
        .await;
        failed_at.push(started.elapsed());
    }
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert_at(started.elapsed(), Duration::from_secs(30));
    for (at, expected) in failed_at.iter().zip([0, 5, 15, 30]) {
        assert_at(*at, Duration::from_secs(expected));
    }
    assert_eq!(out.state, ConnectionState::Failed);
    assert!(matches!(out.reason, DisconnectReason::ConnectFailed(_)));
    assert_eq!(out.peer_status(), Some(PeerStatus::Inaccessible));
    assert!(
        !matches!(
            h.control.try_recv(),
            Ok(ControlEvent::ConnectionFailed { .. })
        ),
        "the first attempt and three retries, no more"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_restarts_at_once_and_gives_up_after_max_restarts() {
    let mut h = harness(ConnectionConfig {
        max_restarts: 2,
        ..config()
    });
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    let mut restarts_seen = 0;
    let mut lost_at = None;
    for _ in 0..3 {
        let mut node = accept(&l).await;
        if let Some(t) = lost_at {
            assert_eq!(
                Instant::now(),
                t,
                "redialled at once, without waiting on any timer"
            );
        }
        node.accept_handshake("/Bitcoin SV:1.2.2/").await;
        next_event(&mut h.control, |e| {
            matches!(e, ControlEvent::ConnectionEstablished { .. })
        })
        .await;
        drop(node);
        next_event(&mut h.control, |e| {
            matches!(e, ControlEvent::ConnectionLost { .. })
        })
        .await;
        lost_at = Some(Instant::now());
        if restarts_seen < 2 {
            next_event(&mut h.control, |e| {
                matches!(e, ControlEvent::ConnectionRestarting { .. })
            })
            .await;
            restarts_seen += 1;
        }
    }
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert_eq!(Instant::now(), lost_at.unwrap(), "gave up at once");
    assert_eq!(out.state, ConnectionState::Failed);
    assert_eq!(out.reason, DisconnectReason::PeerClosed);
    assert_eq!(out.peer_status(), Some(PeerStatus::Inaccessible));
}

#[tokio::test(start_paused = true)]
async fn restarts_are_counted_per_restart_window() {
    let window = Duration::from_secs(600);
    let mut h = harness(ConnectionConfig {
        max_restarts: 1,
        restart_window: window,
        ..config()
    });
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    // Two drops a whole window apart: each restart is the only one in its window.
    for wait in [Duration::ZERO, window] {
        let mut node = accept(&l).await;
        node.accept_handshake("/Bitcoin SV:1.2.2/").await;
        next_event(&mut h.control, |e| {
            matches!(e, ControlEvent::ConnectionEstablished { .. })
        })
        .await;
        tokio::time::sleep(wait).await;
        drop(node);
        next_event(&mut h.control, |e| {
            matches!(e, ControlEvent::ConnectionRestarting { .. })
        })
        .await;
    }
    // A third drop within the window of the second restart: the budget is spent.
    let mut node = accept(&l).await;
    node.accept_handshake("/Bitcoin SV:1.2.2/").await;
    next_event(&mut h.control, |e| {
        matches!(e, ControlEvent::ConnectionEstablished { .. })
    })
    .await;
    tokio::time::sleep(window - Duration::from_secs(1)).await;
    drop(node);
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert_eq!(out.state, ConnectionState::Failed);
    assert_eq!(out.reason, DisconnectReason::PeerClosed);
    assert!(
        !matches!(
            h.control.try_recv(),
            Ok(ControlEvent::ConnectionRestarting { .. })
        ),
        "no third restart"
    );
}

#[tokio::test(start_paused = true)]
async fn keepalive_pings_every_interval_and_a_silent_peer_is_dropped_at_the_ping_timeout() {
    let h = harness(config());
    let (interval, ping_timeout) = (h.ctx.config.ping_interval, h.ctx.config.ping_timeout);
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer, h.ctx.clone());
    let mut node = accept(&l).await;
    node.accept_handshake("/Bitcoin SV:1.2.2/").await;
    for expected in ["protoconf", "sendheaders"] {
        assert_eq!(node.recv_command().await, expected);
    }
    // The first ping at once; answered, the next one an interval later.
    let Some(Message::Ping(first)) = node.recv().await else {
        panic!("expected the first ping")
    };
    let answered = Instant::now();
    node.send(&Message::Pong(first)).await;
    let Some(Message::Ping(second)) = node.recv().await else {
        panic!("expected the second ping")
    };
    assert_at(answered.elapsed(), interval);
    assert_ne!(second, first, "a fresh nonce");
    // Unanswered: no other ping while it is outstanding, and the connection is closed when it
    // has been outstanding (with no byte from the peer) for the ping timeout.
    let sent = Instant::now();
    assert_eq!(node.until_closed().await, Vec::<String>::new());
    assert_at(sent.elapsed(), ping_timeout);
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert_eq!(out.state, ConnectionState::Failed);
    match out.reason {
        DisconnectReason::PingTimeout(waited) => assert_at(waited, ping_timeout),
        other => panic!("expected a ping timeout, got {other:?}"),
    }
    assert_eq!(out.peer_status(), Some(PeerStatus::Inaccessible));
}

#[tokio::test(start_paused = true)]
async fn inbound_connection_handshakes_and_counts_as_inbound() {
    let mut h = harness(config());
    let (l, addr) = listener().await;
    let client = TcpStream::connect(addr).await.unwrap();
    let (server, from) = l.accept().await.unwrap();
    server.set_nodelay(true).unwrap(); // as the manager's listener does
    let peer = stored_peer(&h, from).await;
    let handle = PeerConnection::inbound(peer.clone(), server, h.ctx.clone());
    let mut node = Node::new(client);
    node.send(&Message::Version(node_version("/Bitcoin SV:1.2.2/")))
        .await;
    assert_eq!(node.recv_command().await, "version");
    assert_eq!(node.recv_command().await, "verack");
    node.send(&Message::Verack).await;
    let e = next_event(&mut h.control, |e| {
        matches!(e, ControlEvent::ConnectionEstablished { .. })
    })
    .await;
    assert_eq!(
        e,
        ControlEvent::ConnectionEstablished {
            peer_id: peer.id,
            is_inbound: true
        }
    );
    drop(node);
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert_eq!(out.reason, DisconnectReason::PeerClosed);
    assert_eq!(
        out.state,
        ConnectionState::Disconnected,
        "inbound connections never redial"
    );
}

#[tokio::test(start_paused = true)]
async fn over_capacity_inbound_gets_the_handshake_then_reject_then_close() {
    let mut h = harness(config());
    let (l, addr) = listener().await;
    let client = TcpStream::connect(addr).await.unwrap();
    let (server, from) = l.accept().await.unwrap();
    server.set_nodelay(true).unwrap(); // as the manager's listener does
    let peer = stored_peer(&h, from).await;
    let handle = PeerConnection::over_capacity(peer.clone(), server, h.ctx.clone());
    let mut node = Node::new(client);
    node.send(&Message::Version(node_version("/Bitcoin SV:1.2.2/")))
        .await;
    assert_eq!(node.recv_command().await, "version");
    assert_eq!(node.recv_command().await, "verack");
    node.send(&Message::Verack).await;
    match node.recv().await {
        Some(Message::Reject(r)) => assert_eq!(r.reason, "connection limit reached"),
        other => panic!("expected reject, got {other:?}"),
    }
    assert_eq!(node.until_closed().await, Vec::<String>::new());
    let out = timeout(WAIT, handle.join()).await.unwrap();
    assert_eq!(out.state, ConnectionState::Rejected);
    assert!(!out.was_connected);
    let e = next_event(&mut h.control, |e| {
        matches!(e, ControlEvent::ConnectionRejectedCapacity { .. })
    })
    .await;
    assert_eq!(
        e,
        ControlEvent::ConnectionRejectedCapacity {
            peer_id: peer.id,
            address: from
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_makes_senders_wait_instead_of_growing_memory() {
    let mut h = harness(config());
    h.ctx.send_queue_bytes = 1024 * 1024;
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer, h.ctx.clone());
    let mut node = accept(&l).await;
    node.accept_handshake("/Bitcoin SV:1.2.2/").await;
    // The node stops reading. Each 1 MiB-ish inv fills the queue; the socket buffers take a few
    // more; then send_message must wait.
    let big = Message::Inv(vec![InvVect::tx(Hash([1; 32])); 58_000]);
    let mut sent = 0usize;
    // Paused time only moves when every task waits on a timer, so the timeout below fires only
    // once the send is really stuck (the writer waiting on the full socket, the queue full).
    let blocked = loop {
        match timeout(Duration::from_secs(1), handle.send_message(big.clone())).await {
            Ok(r) => {
                r.unwrap();
                sent += 1;
                assert!(
                    sent < 200,
                    "sending never blocked: memory would grow without bound"
                );
            }
            Err(_) => break true,
        }
    };
    assert!(blocked);
    handle.disconnect();
    timeout(WAIT, handle.join()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_new_outbound_connection_counts_as_connecting_before_its_task_runs() {
    // The manager counts connections by state; a link that looked `Disconnected` until its task
    // first ran let the supervisor dial past the target (regression).
    let h = harness(config());
    let (_l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer, h.ctx.clone());
    assert_eq!(handle.stats().state(), ConnectionState::Connecting);
    handle.disconnect();
    handle.join().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_before_verack_is_reported_as_misbehaviour() {
    let mut h = harness(config());
    let (l, addr) = listener().await;
    let peer = stored_peer(&h, addr).await;
    let handle = PeerConnection::outbound(peer.clone(), h.ctx.clone());
    let mut node = accept(&l).await;
    node.recv().await; // our version
    node.send(&Message::Version(node_version("/Bitcoin SV:1.2.2/")))
        .await;
    node.send(&Message::Ping(1)).await; // before its verack: +1, as the node counts it
    let e = next_event(&mut h.control, |e| {
        matches!(e, ControlEvent::PeerMisbehavior { .. })
    })
    .await;
    assert_eq!(
        e,
        ControlEvent::PeerMisbehavior {
            peer_id: peer.id,
            score: 1,
            reason: Misbehavior::MissingVerack
        }
    );
    handle.disconnect();
    handle.join().await;
}
