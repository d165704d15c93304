//! Our misbehaviour catalogue ([`Misbehavior`]) against the official node. For every rule a peer
//! can provoke, a fresh raw connection (our public [`MessageCodec`] over a plain [`TcpStream`],
//! the handshake done by hand) sends the offending input, and the node's log must show exactly
//! the charges the catalogue predicts, `Misbehaving: IP:PORT peer=N (a -> b) reason: R` with
//! `b - a == X.score()` and `R == X.node_reason()`, and nothing else.
//!
//! A loopback peer whose score reaches the threshold (100) is disconnected, not banned ("not
//! banning local peer"); a direct ban (an oversized header) does ban loopback, and its test lifts
//! the ban again before it lets go of the node.
//!
//! What these tests taught the catalogue (each now followed by `PeerProtocol`):
//! * `dsdetected` has two reasons: "Invalid double-spend Detected message received" for a message
//!   that does not parse (`MalformedDsDetected`) and "... detected ..." (lower-case d) for one
//!   that fails the structural checks (`InvalidDsDetected`).
//! * `authch` and `revokemid` are charged only by a node with a miner-ID database (`-minerid`,
//!   which `regtest.sh start` does not enable); without one the node never rate-limits `authch`
//!   and ignores `revokemid`, and so does the library. Their tests ask the node
//!   (`dumpminerids`) and assert whichever applies.
//! * A message the node does not process before the handshake is dropped unread: one that does
//!   not parse costs `missing-version` (no `reject`, not `Over-long size message protection`),
//!   and an unparsable `reject` is neither answered nor charged (`PeerProtocol::premature`).
//! * Bad checksums: the node's run starts when the connection does, and a bad checksum more than
//!   500 ms after the previous event resets the count to zero: after a pause the 102nd costs the
//!   first point (`ChecksumRun` counts the same way).
//!
//! Not provokable on this node: `oversized-bloom-filter` and `invalid-filteradd` (the node does
//! not offer `NODE_BLOOM`, so any `filterload`/`filteradd` is `no-bloom-version` first).

use std::net::SocketAddr;
use std::time::Duration;

use bitcoinsv::bitcoin::{
    BlockHeader, Hash, MerkleProof, MerkleProofTx, NetAddress, OutPoint, TimestampedNetAddress,
    Transaction, TxIn, TxOut,
};
use bitcoinsv::p2p::codec::frame_bytes;
use bitcoinsv::p2p::limits::{AUTH_MESSAGE_BURST, INVALID_CHECKSUM_FREQUENCY, NODE_BLOOM};
use bitcoinsv::p2p::messages::{
    AuthChallenge, AuthResponse, BlockTxn, CompactBlock, DsBlockDetails, DsDetected, FilterLoad,
    GetBlockTxn, PrefilledTx, RevokeMid,
};
use bitcoinsv::p2p::{Message, MessageCodec, Misbehavior, Reject, RejectCode, VersionMessage};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{
    node, spendable_coinbase_height, unique_user_agent, Guard, Node, MINER_ADDRESS,
    NODE_PROTOCOL_VERSION, STEP,
};

/// The node's ban threshold (`-banscore`).
const THRESHOLD: u32 = 100;

/// A connection to the node driven message by message.
struct RawPeer {
    stream: TcpStream,
    codec: MessageCodec,
    buf: BytesMut,
    /// Our address as the node logs it (`127.0.0.1:PORT`).
    local: SocketAddr,
    /// When the TCP connection was made.
    connected_at: Instant,
    /// The node's `version`.
    node_version: Option<VersionMessage>,
    /// Our `verack` has gone out: we answer the node's pings from then on (before it, a `pong`
    /// would itself be an offence).
    established: bool,
    /// Every `reject` the node sent us.
    rejects: Vec<Reject>,
}

impl RawPeer {
    /// A TCP connection to the node; nothing sent yet.
    async fn connect(node: &Node) -> RawPeer {
        let stream = tokio::time::timeout(STEP, TcpStream::connect(node.addr))
            .await
            .expect("connecting to the node in time")
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", node.addr));
        stream.set_nodelay(true).unwrap();
        let local = stream.local_addr().unwrap();
        RawPeer {
            stream,
            codec: MessageCodec::new(node.network),
            buf: BytesMut::with_capacity(64 * 1024),
            local,
            connected_at: Instant::now(),
            node_version: None,
            established: false,
            rejects: Vec::new(),
        }
    }

    /// Connects and completes the handshake: our `version`, the node's `version` and `verack`
    /// (its `protoconf` follows), our `verack`.
    async fn handshaken(node: &Node) -> RawPeer {
        let mut p = RawPeer::connect(node).await;
        p.send_version(node).await;
        p.await_version_and_verack().await;
        p.send_verack().await;
        p
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("writing to the node");
    }

    async fn send(&mut self, m: &Message) {
        let bytes = self.codec.encode_to_bytes(m).expect("encoding a message");
        self.send_bytes(&bytes).await;
    }

    /// The frame of `command` with `payload`, built by hand (for payloads our types would not
    /// produce), with the network's magic.
    fn frame(&self, command: &str, payload: &[u8]) -> BytesMut {
        let verack = self.codec.encode_to_bytes(&Message::Verack).unwrap();
        let magic = [verack[0], verack[1], verack[2], verack[3]];
        BytesMut::from(&frame_bytes(magic, command, payload)[..])
    }

    async fn send_version(&mut self, node: &Node) {
        let v = VersionMessage {
            version: NODE_PROTOCOL_VERSION,
            services: 0,
            timestamp: unix_now() as i64,
            receiver: NetAddress::new(node.addr, 0),
            sender: NetAddress::UNSPECIFIED,
            nonce: rand::random::<u64>() | 1,
            user_agent: unique_user_agent(),
            start_height: 0,
            relay: true,
            association_id: None,
        };
        self.send(&Message::Version(v)).await;
    }

    async fn await_version_and_verack(&mut self) {
        let mut verack = false;
        while !(verack && self.node_version.is_some()) {
            match self.recv_or_closed("the node's version and verack").await {
                Message::Version(v) => {
                    self.codec.set_peer_version(v.version);
                    self.node_version = Some(v);
                }
                Message::Verack => verack = true,
                _ => {}
            }
        }
    }

    async fn send_verack(&mut self) {
        self.send(&Message::Verack).await;
        self.established = true;
    }

    /// The next message from the node, or `None` once it has closed the connection. Pings are
    /// answered once we are established; `reject`s are recorded.
    async fn recv(&mut self, deadline: Instant) -> Option<Message> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(m)) => {
                    match &m {
                        Message::Ping(n) if self.established => {
                            self.send(&Message::Pong(*n)).await;
                        }
                        Message::Protoconf(p) => self
                            .codec
                            .set_peer_max_recv(u64::from(p.max_recv_payload_length)),
                        Message::Reject(r) => self.rejects.push(r.clone()),
                        _ => {}
                    }
                    return Some(m);
                }
                Ok(None) => {}
                Err(e) => panic!("an undecodable message from the node: {e}"),
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .expect("the node answered in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn recv_or_closed(&mut self, what: &str) -> Message {
        self.recv(Instant::now() + STEP)
            .await
            .unwrap_or_else(|| panic!("the node closed the connection while we waited for {what}"))
    }

    /// A ping answered: the node has processed everything we sent before it (it handles a
    /// peer's messages in order), so its verdicts are in its log.
    async fn round_trip(&mut self) {
        let nonce = rand::random::<u64>() | 1;
        self.send(&Message::Ping(nonce)).await;
        while self.recv_or_closed("our pong").await != Message::Pong(nonce) {}
    }

    /// Reads until the node closes the connection.
    async fn closed_by_node(&mut self) {
        let deadline = Instant::now() + STEP;
        while self.recv(deadline).await.is_some() {}
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One `Misbehaving` line of the node's log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Charge {
    peer: String,
    before: u32,
    after: u32,
    reason: String,
    threshold: bool,
}

/// `Misbehaving: 127.0.0.1:PORT peer=N (a -> b) reason: R[ BAN THRESHOLD EXCEEDED]`.
fn parse_charge(line: &str) -> Option<Charge> {
    let rest = &line[line.find("Misbehaving: ")? + "Misbehaving: ".len()..];
    let peer = rest.split(' ').next()?.to_string();
    let open = rest.find(" (")?;
    let close = open + rest[open..].find(") reason: ")?;
    let (before, after) = rest[open + 2..close].split_once(" -> ")?;
    let reason = &rest[close + ") reason: ".len()..];
    let (reason, threshold) = match reason.strip_suffix(" BAN THRESHOLD EXCEEDED") {
        Some(r) => (r, true),
        None => (reason, false),
    };
    Some(Charge {
        peer,
        before: before.trim().parse().ok()?,
        after: after.trim().parse().ok()?,
        reason: reason.to_string(),
        threshold,
    })
}

/// The verdicts the node logged since `guard` began, parsed; every one must be about `peer`.
fn charges_of(guard: &Guard<'_>, peer: &RawPeer) -> Vec<Charge> {
    let ours = peer.local.to_string();
    guard
        .charges()
        .iter()
        .map(|line| {
            let c = parse_charge(line).unwrap_or_else(|| panic!("an unparsable verdict: {line}"));
            assert_eq!(c.peer, ours, "a verdict about another peer: {line}");
            c
        })
        .collect()
}

/// Waits until the node has logged `want.len()` charges for `peer`, then asserts they are exactly
/// `want` (delta, reason), in order, as running totals from zero, with the threshold flagged
/// exactly where the total reaches it.
async fn assert_charged_as(guard: &Guard<'_>, peer: &RawPeer, want: &[(u32, &str)]) {
    let deadline = Instant::now() + STEP;
    let mut got = charges_of(guard, peer);
    while got.len() < want.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = charges_of(guard, peer);
    }
    let observed: Vec<(u32, &str)> = got
        .iter()
        .map(|c| (c.after - c.before, c.reason.as_str()))
        .collect();
    assert_eq!(
        observed, want,
        "the node's charges (delta, reason) differ; its verdicts:\n{got:#?}"
    );
    let mut total = 0;
    for c in &got {
        assert_eq!(c.before, total, "{got:#?}");
        total = c.after;
        assert_eq!(c.threshold, total >= THRESHOLD, "{got:#?}");
    }
}

/// The node charged exactly `rules`, in order, with the catalogue's scores and reasons.
async fn assert_charged(guard: &Guard<'_>, peer: &RawPeer, rules: &[Misbehavior]) {
    let want: Vec<(u32, &str)> = rules.iter().map(|r| (r.score(), r.node_reason())).collect();
    assert_charged_as(guard, peer, &want).await;
}

/// The node has processed everything (call after [`RawPeer::round_trip`]) and charged nothing.
fn assert_not_charged(guard: &Guard<'_>, peer: &RawPeer) {
    let got = charges_of(guard, peer);
    assert!(got.is_empty(), "the node charged us: {got:#?}");
}

/// At the threshold a loopback peer is disconnected, not banned.
async fn assert_disconnected_not_banned(guard: &Guard<'_>, peer: &mut RawPeer) {
    peer.closed_by_node().await;
    guard
        .node
        .wait_for_log_line(
            guard.log_start,
            &[&format!("not banning local peer {}!", peer.local)],
        )
        .await;
    let banned = guard.node.cli_json(&["listbanned"]).await;
    assert_eq!(
        banned,
        serde_json::json!([]),
        "the node banned a loopback peer"
    );
}

/// The node's id for our connection, from its log.
async fn node_peer_id(guard: &Guard<'_>, peer: &RawPeer) -> u64 {
    let line = guard
        .node
        .wait_for_log_line(
            guard.log_start,
            &["receive version message: [", &format!("{}]", peer.local)],
        )
        .await;
    let id = line.rsplit("peer=").next().unwrap();
    id.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no peer id in {line}"))
}

/// The regtest proof of work (`bits` 0x207fffff): about one nonce in two will do.
fn mine(mut header: BlockHeader) -> BlockHeader {
    while !header.check_proof_of_work() {
        header.nonce += 1;
    }
    header
}

/// A valid header on the node's tip, of a block the node does not have.
async fn header_on_tip(node: &Node) -> BlockHeader {
    let tip = node.best_block_hash().await;
    let info = node.cli_json(&["getblockheader", &tip.to_string()]).await;
    let after_tip = info["time"].as_u64().unwrap() as u32 + 1;
    mine(BlockHeader {
        version: 0x2000_0000,
        prev_hash: tip,
        merkle_root: Hash(rand::random()),
        time: (unix_now() as u32).max(after_tip),
        bits: 0x207f_ffff,
        nonce: 0,
    })
}

/// A transaction of no consequence, different each time.
fn some_transaction() -> Transaction {
    Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint {
                txid: Hash(rand::random()),
                vout: 0,
            },
            script_sig: Bytes::from_static(&[0x51]),
            sequence: u32::MAX,
        }],
        vec![TxOut {
            value: 50,
            script_pubkey: Bytes::from_static(&[0x51]),
        }],
        0,
    )
}

/// An `addr` of 1001 entries, one over the node's limit.
fn oversized_addr() -> Message {
    let entries = (0..1001u32)
        .map(|i| TimestampedNetAddress {
            time: 1_700_000_000,
            addr: NetAddress::new(
                SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 8333)),
                1,
            ),
        })
        .collect();
    Message::Addr(entries)
}

/// A `ping` frame whose checksum is wrong.
fn bad_checksum_frame(peer: &RawPeer) -> BytesMut {
    let mut f = peer.frame("ping", &7u64.to_le_bytes());
    f[20] ^= 0xff;
    f
}

/// `n` bad-checksum frames in one write.
async fn send_bad_checksums(peer: &mut RawPeer, n: u32) {
    let frame = bad_checksum_frame(peer);
    let mut all = BytesMut::with_capacity(frame.len() * n as usize);
    for _ in 0..n {
        all.put_slice(&frame);
    }
    peer.send_bytes(&all).await;
}

/// Lifts every ban of the node when dropped, failing test or not: a direct ban spares no
/// address, loopback included, and would refuse every later test's connection.
struct LiftBans<'a>(&'a Node);

impl Drop for LiftBans<'_> {
    fn drop(&mut self) {
        let (sh, dir) = self.0.control();
        let _ = std::process::Command::new(sh)
            .arg("cli")
            .arg(dir)
            .arg("clearbanned")
            .output();
    }
}

/// The test's node, or a return from the test after the skip line and marker. The markers
/// carry the names the test binary lists (`rules::NAME`), which `.ci/run` looks for.
macro_rules! node_or_skip {
    ($test:literal) => {
        match node(&listed!($test), true) {
            Some(n) => n,
            None => return,
        }
    };
}

#[tokio::test]
async fn rule_missing_version() {
    let node = node_or_skip!("rule_missing_version");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::connect(&node).await;
    // A ping before our version: +1, dropped; the handshake then completes.
    p.send(&Message::Ping(7)).await;
    p.send_version(&node).await;
    p.await_version_and_verack().await;
    p.send_verack().await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::MissingVersion]).await;
}

#[tokio::test]
async fn rule_missing_version_for_a_message_that_does_not_parse() {
    let node = node_or_skip!("rule_missing_version_for_a_message_that_does_not_parse");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::connect(&node).await;
    // An `inv` whose count is an over-long var int, before our version: dropped unread at +1
    // `missing-version`, no `reject` and no `Over-long size message protection`
    // (`PeerProtocol::premature`).
    let mut payload = vec![0xff];
    payload.extend_from_slice(&0x1_0000_0000u64.to_le_bytes());
    let frame = p.frame("inv", &payload);
    p.send_bytes(&frame).await;
    p.send_version(&node).await;
    p.await_version_and_verack().await;
    p.send_verack().await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::MissingVersion]).await;
    assert!(p.rejects.is_empty(), "{:?}", p.rejects);
}

#[tokio::test]
async fn an_unparsable_reject_is_neither_answered_nor_charged() {
    let node = node_or_skip!("an_unparsable_reject_is_neither_answered_nor_charged");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    // A `reject` whose command string claims 5 bytes and has none.
    let frame = p.frame("reject", &[0x05]);
    p.send_bytes(&frame).await;
    p.round_trip().await;
    assert_not_charged(&guard, &p);
    assert!(p.rejects.is_empty(), "{:?}", p.rejects);
}

#[tokio::test]
async fn rule_missing_verack() {
    let node = node_or_skip!("rule_missing_verack");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::connect(&node).await;
    p.send_version(&node).await;
    p.await_version_and_verack().await;
    p.send(&Message::Ping(7)).await;
    p.send_verack().await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::MissingVerack]).await;
}

#[tokio::test]
async fn rule_multiple_version() {
    let node = node_or_skip!("rule_multiple_version");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    p.send_version(&node).await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::MultipleVersion]).await;
    assert_eq!(p.rejects.len(), 1, "{:?}", p.rejects);
    let r = &p.rejects[0];
    assert_eq!(
        (r.message.as_str(), r.code, r.reason.as_str()),
        (
            "version",
            RejectCode::Duplicate,
            "Duplicate version message"
        )
    );
}

#[tokio::test]
async fn rule_invalid_send_headers() {
    let node = node_or_skip!("rule_invalid_send_headers");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    p.send(&Message::SendHeaders).await;
    p.round_trip().await;
    assert_not_charged(&guard, &p);
    p.send(&Message::SendHeaders).await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::InvalidSendHeaders]).await;
}

#[tokio::test]
async fn rule_invalid_send_hdrs_en() {
    let node = node_or_skip!("rule_invalid_send_hdrs_en");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    p.send(&Message::SendHdrsEn).await;
    p.round_trip().await;
    assert_not_charged(&guard, &p);
    p.send(&Message::SendHdrsEn).await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::InvalidSendHdrsEn]).await;
}

#[tokio::test]
async fn rule_over_long_size() {
    let node = node_or_skip!("rule_over_long_size");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    // An `inv` whose count is the var int 0x1_0000_0000, above the node's MAX_SIZE.
    let mut payload = vec![0xff];
    payload.extend_from_slice(&0x1_0000_0000u64.to_le_bytes());
    let frame = p.frame("inv", &payload);
    p.send_bytes(&frame).await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::OverLongSize]).await;
    assert_eq!(p.rejects.len(), 1, "{:?}", p.rejects);
    let r = &p.rejects[0];
    assert_eq!(
        (r.message.as_str(), r.code, r.reason.as_str()),
        ("inv", RejectCode::Malformed, "error parsing message")
    );
}

#[tokio::test]
async fn rule_oversized_addr() {
    let node = node_or_skip!("rule_oversized_addr");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    p.send(&oversized_addr()).await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::OversizedAddr]).await;
}

/// Scores add up: five oversized `addr`s (+20 each) reach the threshold, and the node drops the
/// loopback peer without banning it.
#[tokio::test]
async fn five_oversized_addrs_reach_the_threshold() {
    let node = node_or_skip!("five_oversized_addrs_reach_the_threshold");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    for _ in 0..5 {
        p.send(&oversized_addr()).await;
    }
    assert_disconnected_not_banned(&guard, &mut p).await;
    assert_charged(&guard, &p, &[Misbehavior::OversizedAddr; 5]).await;
}

#[tokio::test]
async fn rule_too_many_headers() {
    let node = node_or_skip!("rule_too_many_headers");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    let genesis = node.network.genesis_hash();
    let headers = (0..2001u32)
        .map(|i| BlockHeader {
            version: 1,
            prev_hash: genesis,
            merkle_root: Hash::ZERO,
            time: i,
            bits: 0x207f_ffff,
            nonce: 0,
        })
        .collect();
    p.send(&Message::Headers(headers)).await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::TooManyHeaders]).await;
}

#[tokio::test]
async fn rule_disconnected_header() {
    let node = node_or_skip!("rule_disconnected_header");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    // The first header builds on one the node knows (otherwise the announcement is merely
    // unconnecting), the second on nothing.
    let first = BlockHeader {
        version: 1,
        prev_hash: node.network.genesis_hash(),
        merkle_root: Hash(rand::random()),
        time: 1_296_688_603,
        bits: 0x207f_ffff,
        nonce: 0,
    };
    let second = BlockHeader {
        prev_hash: Hash(rand::random()),
        ..first
    };
    p.send(&Message::Headers(vec![first, second])).await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::DisconnectedHeader]).await;
}

#[tokio::test]
async fn rule_too_many_unconnected_headers() {
    let node = node_or_skip!("rule_too_many_unconnected_headers");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    // Announcements of one header each whose parent the node does not know: it asks for the
    // missing headers every time and charges every tenth.
    for i in 1..=10 {
        let h = BlockHeader {
            version: 1,
            prev_hash: Hash(rand::random()),
            merkle_root: Hash::ZERO,
            time: 1_700_000_000,
            bits: 0x207f_ffff,
            nonce: 0,
        };
        p.send(&Message::Headers(vec![h])).await;
        p.round_trip().await;
        if i < 10 {
            assert_not_charged(&guard, &p);
        }
    }
    assert_charged(&guard, &p, &[Misbehavior::TooManyUnconnectedHeaders]).await;
}

/// The burst the catalogue allows, one at a time, costs nothing; each `authresp` beyond it +10.
#[tokio::test]
async fn rule_authresp_rate_limit() {
    let node = node_or_skip!("rule_authresp_rate_limit");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    for i in 1..=AUTH_MESSAGE_BURST + 2 {
        p.send(&Message::AuthResp(AuthResponse {
            public_key: Bytes::from(vec![2; 33]),
            nonce: u64::from(i),
            signature: Bytes::from(vec![0x30; 71]),
        }))
        .await;
        p.round_trip().await;
        if i <= AUTH_MESSAGE_BURST {
            assert_not_charged(&guard, &p);
        }
    }
    assert_charged(&guard, &p, &[Misbehavior::AuthRespRateLimit; 2]).await;
}

/// Whether the node keeps a miner-ID database (`-minerid`; `regtest.sh start` does not enable
/// it): without one it neither rate-limits `authch` nor reads `revokemid`.
async fn has_miner_id_database(node: &Node) -> bool {
    let (sh, dir) = node.control();
    let mut cmd = std::process::Command::new(sh);
    cmd.arg("cli").arg(dir).arg("dumpminerids");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("running regtest.sh cli dumpminerids");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("Miner ID database unavailable"),
        "dumpminerids: {stderr}"
    );
    out.status.success()
}

/// With a miner-ID database the burst the catalogue allows costs nothing and each `authch`
/// beyond it +10, as catalogued. Discrepancy: a node without one (the default) never charges
/// `authch`, twice the burst included.
#[tokio::test]
async fn rule_authch_rate_limit() {
    let node = node_or_skip!("rule_authch_rate_limit");
    let guard = Guard::new(&node).await;
    let miner_id = has_miner_id_database(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    let sent = if miner_id {
        AUTH_MESSAGE_BURST + 2
    } else {
        2 * AUTH_MESSAGE_BURST
    };
    for i in 1..=sent {
        p.send(&Message::AuthCh(AuthChallenge {
            version: 1,
            challenge: Bytes::from(vec![i as u8; 32]),
        }))
        .await;
        p.round_trip().await;
        if i <= AUTH_MESSAGE_BURST {
            assert_not_charged(&guard, &p);
        }
    }
    if miner_id {
        assert_charged(&guard, &p, &[Misbehavior::AuthChRateLimit; 2]).await;
    } else {
        assert_not_charged(&guard, &p);
    }
}

/// A `revokemid` of version 1 (only 0 exists): +10 as catalogued by a node with a miner-ID
/// database. Discrepancy: a node without one (the default) ignores `revokemid` altogether.
#[tokio::test]
async fn rule_invalid_revoke_mid() {
    let node = node_or_skip!("rule_invalid_revoke_mid");
    let guard = Guard::new(&node).await;
    let miner_id = has_miner_id_database(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    p.send(&Message::RevokeMid(RevokeMid {
        version: 1,
        revocation_key: [2; 33],
        miner_id: [2; 33],
        revocation_message: [2; 33],
        signatures: Bytes::from(vec![0x30; 10]),
    }))
    .await;
    p.round_trip().await;
    if miner_id {
        assert_charged(&guard, &p, &[Misbehavior::InvalidRevokeMid]).await;
    } else {
        assert_not_charged(&guard, &p);
    }
}

/// A `dsdetected` that does not parse (version 2): +10 "Invalid double-spend Detected message
/// received" (capital D), as catalogued.
#[tokio::test]
async fn rule_invalid_ds_detected_unparsable() {
    let node = node_or_skip!("rule_invalid_ds_detected_unparsable");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    p.send(&Message::DsDetected(DsDetected {
        version: 2,
        blocks: Vec::new(),
    }))
    .await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::MalformedDsDetected]).await;
}

/// A `dsdetected` that parses but fails the structural checks (its forks share no parent): +10
/// "Invalid double-spend detected message received" (lower-case d), as catalogued.
#[tokio::test]
async fn rule_invalid_ds_detected_structure() {
    let node = node_or_skip!("rule_invalid_ds_detected_structure");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    // Random contents: the node ignores a message it has seen before, and the suite may run
    // twice against one node.
    let fork = || {
        let header = BlockHeader {
            version: 1,
            prev_hash: Hash(rand::random()),
            merkle_root: Hash(rand::random()),
            time: 1_700_000_000,
            bits: 0x207f_ffff,
            nonce: 0,
        };
        DsBlockDetails {
            headers: vec![header],
            proof: MerkleProof {
                flags: 5,
                index: 1,
                tx: MerkleProofTx::Full(some_transaction()),
                target: header.merkle_root,
                nodes: vec![(0, Hash(rand::random()))],
            },
        }
    };
    p.send(&Message::DsDetected(DsDetected {
        version: 1,
        blocks: vec![fork(), fork()],
    }))
    .await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::InvalidDsDetected]).await;
}

/// The node offers no `NODE_BLOOM`, so a `filterload` is +100 (which is also why
/// `oversized-bloom-filter` and `invalid-filteradd` cannot be provoked on it).
#[tokio::test]
async fn rule_no_bloom_version_filterload() {
    let node = node_or_skip!("rule_no_bloom_version_filterload");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    assert_eq!(p.node_version.as_ref().unwrap().services & NODE_BLOOM, 0);
    p.send(&Message::FilterLoad(FilterLoad {
        filter: Bytes::from(vec![0; 16]),
        hash_funcs: 1,
        tweak: 0,
        flags: 0,
    }))
    .await;
    assert_disconnected_not_banned(&guard, &mut p).await;
    assert_charged(&guard, &p, &[Misbehavior::NoBloomVersion]).await;
}

#[tokio::test]
async fn rule_no_bloom_version_filteradd() {
    let node = node_or_skip!("rule_no_bloom_version_filteradd");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    p.send(&Message::FilterAdd(Bytes::from_static(&[1; 32])))
        .await;
    assert_disconnected_not_banned(&guard, &mut p).await;
    assert_charged(&guard, &p, &[Misbehavior::NoBloomVersion]).await;
}

#[tokio::test]
async fn rule_invalid_cmpct_block() {
    let node = node_or_skip!("rule_invalid_cmpct_block");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    // A header the node takes (on its tip, with proof of work) for a block of no transactions.
    let header = header_on_tip(&node).await;
    p.send(&Message::CmpctBlock(CompactBlock {
        header,
        nonce: 1,
        short_ids: Vec::new(),
        prefilled: Vec::new(),
    }))
    .await;
    assert_disconnected_not_banned(&guard, &mut p).await;
    assert_charged(&guard, &p, &[Misbehavior::InvalidCmpctBlock]).await;
}

#[tokio::test]
async fn rule_invalid_cmpct_block_txns() {
    let node = node_or_skip!("rule_invalid_cmpct_block_txns");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    // A compact block of two transactions, the first prefilled: the node asks for the second
    // and gets none.
    let header = header_on_tip(&node).await;
    let hash = header.hash();
    p.send(&Message::CmpctBlock(CompactBlock {
        header,
        nonce: 1,
        short_ids: vec![0x1234_5678_9abc],
        prefilled: vec![PrefilledTx {
            index_delta: 0,
            tx: some_transaction(),
        }],
    }))
    .await;
    loop {
        match p.recv_or_closed("the node's getblocktxn").await {
            Message::GetBlockTxn(g) if g.block_hash == hash => {
                assert_eq!(g.index_deltas, vec![1]);
                break;
            }
            _ => {}
        }
    }
    assert_not_charged(&guard, &p);
    p.send(&Message::BlockTxn(BlockTxn {
        block_hash: hash,
        transactions: Vec::new(),
    }))
    .await;
    assert_disconnected_not_banned(&guard, &mut p).await;
    assert_charged(&guard, &p, &[Misbehavior::InvalidCmpctBlockTxns]).await;
}

/// A block the node serves `getblocktxn` for (at most 10 deep) with two transactions at least,
/// and its number of transactions: the tip if it has them, else a new block with a spend of a
/// mature coinbase (and whatever else the mempool held).
async fn recent_block_of_two_transactions(node: &Node) -> (Hash, u64) {
    let tip = node.best_block_hash().await;
    let info = node.cli_json(&["getblock", &tip.to_string()]).await;
    let txs = info["tx"].as_array().unwrap().len() as u64;
    if txs >= 2 {
        return (tip, txs);
    }
    let k = spendable_coinbase_height(node).await;
    let tx = node.regtest_sh("tx", &[&k.to_string()]).await;
    node.cli(&["sendrawtransaction", &tx]).await;
    let mined = node
        .cli_json(&["generatetoaddress", "1", MINER_ADDRESS])
        .await;
    let block: Hash = mined[0].as_str().unwrap().parse().unwrap();
    let info = node.cli_json(&["getblock", &block.to_string()]).await;
    let txs = info["tx"].as_array().unwrap().len() as u64;
    assert!(txs >= 2, "{info}");
    (block, txs)
}

/// A `getblocktxn` index past the end of a recent block. The node answers a request for more
/// than 99 % of a block's transactions with the whole block instead, so the block needs two
/// transactions at least (one index of two is 50 %).
#[tokio::test]
async fn rule_out_of_bound_tx_index() {
    let node = node_or_skip!("rule_out_of_bound_tx_index");
    let guard = Guard::new(&node).await;
    let (block, txs) = recent_block_of_two_transactions(&node).await;

    let mut p = RawPeer::handshaken(&node).await;
    p.send(&Message::GetBlockTxn(GetBlockTxn {
        block_hash: block,
        index_deltas: vec![txs],
    }))
    .await;
    assert_disconnected_not_banned(&guard, &mut p).await;
    assert_charged(&guard, &p, &[Misbehavior::OutOfBoundTxIndex]).await;
}

/// A run of bad checksums right after the handshake: the 101st costs +1, each further one +1
/// more. The node counts the connection's start as the run's first event, so this holds as long
/// as its first bad checksum comes within 500 ms of the connection (a few milliseconds here).
#[tokio::test]
async fn rule_invalid_checksum() {
    let node = node_or_skip!("rule_invalid_checksum");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    send_bad_checksums(&mut p, INVALID_CHECKSUM_FREQUENCY).await;
    let elapsed = p.connected_at.elapsed();
    p.round_trip().await;
    assert_not_charged(&guard, &p);
    send_bad_checksums(&mut p, 2).await;
    p.round_trip().await;
    if elapsed > Duration::from_millis(250) {
        eprintln!("the run began {elapsed:?} after the connection: the node may count one less");
    }
    assert_charged(&guard, &p, &[Misbehavior::InvalidChecksum; 2]).await;
}

/// After a pause of over 500 ms the node's count starts again from zero, so only the 102nd bad
/// checksum of the new run costs +1 (`ChecksumRun` counts the same way).
#[tokio::test]
async fn rule_invalid_checksum_after_a_pause() {
    let node = node_or_skip!("rule_invalid_checksum_after_a_pause");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::handshaken(&node).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    send_bad_checksums(&mut p, INVALID_CHECKSUM_FREQUENCY + 1).await;
    p.round_trip().await;
    assert_not_charged(&guard, &p);
    send_bad_checksums(&mut p, 1).await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::InvalidChecksum]).await;
}

/// A header declaring a payload over the command's limit: the node bans the address at once,
/// loopback included, without a score ("Oversized header detected").
#[tokio::test]
async fn oversized_header_is_a_direct_ban() {
    let node = node_or_skip!("oversized_header_is_a_direct_ban");
    let guard = Guard::new(&node).await;
    let _lift = LiftBans(&node);
    let mut p = RawPeer::handshaken(&node).await;
    let id = node_peer_id(&guard, &p).await;
    // A `ping` header declaring 2 MiB + 1 bytes, one past the node's limit; no payload.
    let mut frame = p.frame("ping", &[]);
    frame[16..20].copy_from_slice(&(2 * 1024 * 1024 + 1u32).to_le_bytes());
    p.send_bytes(&frame).await;
    p.closed_by_node().await;
    node.wait_for_log_line(
        guard.log_start,
        &[
            Misbehavior::OversizedHeader.node_reason(),
            &format!("banning peer={id}"),
        ],
    )
    .await;
    let banned = node.cli_json(&["listbanned"]).await;
    let banned = banned.as_array().unwrap();
    assert_eq!(banned.len(), 1, "{banned:?}");
    assert_eq!(banned[0]["address"], "127.0.0.1/32");
    assert_eq!(banned[0]["ban_reason"], "node misbehaving");
    assert_eq!(Misbehavior::OversizedHeader.score(), THRESHOLD);
    // No score: no Misbehaving line.
    assert_not_charged(&guard, &p);
}

/// A `version` payload that does not parse: the 80 bytes before the user agent, then a user
/// agent whose length is the over-long var int 2^33 (or, `truncated`, 10 with 3 bytes).
fn unparsable_version(node: &Node, truncated: bool) -> Vec<u8> {
    let v = VersionMessage {
        version: NODE_PROTOCOL_VERSION,
        services: 0,
        timestamp: unix_now() as i64,
        receiver: NetAddress::new(node.addr, 0),
        sender: NetAddress::UNSPECIFIED,
        nonce: rand::random::<u64>() | 1,
        user_agent: String::new(),
        start_height: 0,
        relay: true,
        association_id: None,
    };
    // version, services, timestamp, two addresses, nonce: 4 + 8 + 8 + 26 + 26 + 8 bytes.
    let mut bad = Message::Version(v).payload_bytes()[..80].to_vec();
    if truncated {
        bad.push(10);
        bad.extend_from_slice(b"abc");
    } else {
        bad.push(0xff);
        bad.extend_from_slice(&(1u64 << 33).to_le_bytes());
    }
    bad
}

#[tokio::test]
async fn a_version_that_does_not_parse_is_refused_without_a_charge() {
    let node = node_or_skip!("a_version_that_does_not_parse_is_refused_without_a_charge");
    for truncated in [true, false] {
        let guard = Guard::new(&node).await;
        let mut p = RawPeer::connect(&node).await;
        let frame = p.frame("version", &unparsable_version(&node, truncated));
        p.send_bytes(&frame).await;
        // `reject` 0x60 with the parser's complaint, then the node hangs up.
        p.closed_by_node().await;
        assert_eq!(p.rejects.len(), 1, "{:?}", p.rejects);
        assert_eq!(
            (p.rejects[0].message.as_str(), p.rejects[0].code),
            ("version", RejectCode::StreamSetup)
        );
        // Not even `Over-long size message protection` (`PeerProtocol::unparsable_version`).
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_not_charged(&guard, &p);
    }
}

#[tokio::test]
async fn a_later_version_that_does_not_parse_is_multiple_version() {
    let node = node_or_skip!("a_later_version_that_does_not_parse_is_multiple_version");
    for before_verack in [true, false] {
        let guard = Guard::new(&node).await;
        let mut p = RawPeer::connect(&node).await;
        p.send_version(&node).await;
        p.await_version_and_verack().await;
        if !before_verack {
            p.send_verack().await;
        }
        let frame = p.frame("version", &unparsable_version(&node, false));
        p.send_bytes(&frame).await;
        if before_verack {
            p.send_verack().await;
        }
        p.round_trip().await;
        assert_charged(&guard, &p, &[Misbehavior::MultipleVersion]).await;
        assert_eq!(p.rejects.len(), 1, "{:?}", p.rejects);
        assert_eq!(p.rejects[0].code, RejectCode::Duplicate);
    }
}

#[tokio::test]
async fn an_unparsable_authresp_before_version_is_missing_version() {
    let node = node_or_skip!("an_unparsable_authresp_before_version_is_missing_version");
    let guard = Guard::new(&node).await;
    let mut p = RawPeer::connect(&node).await;
    // The node reads `authresp` only after the peer's `version`: before it, even one that does
    // not parse is dropped unread at +1 (`read_before_handshake` in `protocol.rs`).
    let frame = p.frame("authresp", &[0x21]);
    p.send_bytes(&frame).await;
    p.send_version(&node).await;
    p.await_version_and_verack().await;
    p.send_verack().await;
    p.round_trip().await;
    assert_charged(&guard, &p, &[Misbehavior::MissingVersion]).await;
    assert!(p.rejects.is_empty(), "{:?}", p.rejects);
}
