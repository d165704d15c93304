//! The node's misbehaviour catalogue under fire (issue 14, item 2; docs/SECURITY.md, "Every
//! scored rule under fire"): a raw-socket attacker provokes each rule the library can detect
//! from the wire against a manager's listener, and the test checks the node's outcome from the
//! outside:
//!
//! * each offence's points in `ControlEvent::PeerMisbehavior` (the typed rule and the running
//!   total) and in `Manager::connected_peers()` while the peer is connected;
//! * at 100 the ban: `ControlEvent::PeerBanned` with `BanReason::Misbehavior` and the node's
//!   reason string, a ban record in the peer store ending 24 h later (the default
//!   `ban_duration`), the listener refusing the address afterwards, and the connection's end
//!   typed as `DisconnectReason::Misbehavior`; rules worth less than 100 are repeated until
//!   the ban;
//! * the same attacks from whitelisted addresses: scored past 100, never banned, still
//!   connected (the direct bans only disconnect them), and exempt from the per-IP cap;
//! * both sides of the flood limits (`addr` 1,000/1,001 entries, `headers` 2,000/2,001,
//!   `inv` 58,254/58,255 at the 2 MiB payload limit);
//! * with the `metrics` feature, the `bsv_p2p.misbehavior` and `bsv_p2p.bans` counters agree
//!   with the events.
//!
//! Alone in its binary because it installs the global meter provider; the attacks run
//! concurrently, each from its own loopback address. It prints the table docs/SECURITY.md
//! records.

#[path = "chaos/raw.rs"]
mod raw;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoinsv::bitcoin::{
    Block, BlockHeader, Hash, InvType, InvVect, OutPoint, Transaction, TxIn, TxOut,
};
use bitcoinsv::p2p::connection::{
    DisconnectReason, HandshakeFailure, Misbehavior, ProtocolViolation,
};
use bitcoinsv::p2p::limits::{BAN_SCORE_THRESHOLD, DEFAULT_BAN_SECONDS, NODE_BLOOM};
use bitcoinsv::p2p::messages::{AuthResponse, CompactBlock, DsDetected, FilterLoad};
use bitcoinsv::p2p::{
    BanReason, BitcoinMessageEvent, BlockFetchOptions, ControlEvent, InMemoryPeerStore,
    InboundRejection, Manager, ManagerConfig, Message, MessageCodec, Network, PeerStatus,
    VersionMessage, Whitelist,
};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{sleep, timeout, Instant};

/// The bound on every wait for something the manager does in reply.
const WAIT: Duration = Duration::from_secs(15);
/// How long a whitelisted attacker must stay connected after its last offence to count as kept.
const KEPT: Duration = Duration::from_millis(500);
/// The whitelisted range of the manager under test; attackers outside it are 127.2.x.y.
const WHITELIST: &str = "127.9.0.0/16";

fn whitelisted_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 9, (n / 250) as u8, (n % 250 + 1) as u8))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// --- The attacker ------------------------------------------------------------------------

/// A raw socket from its own address, with a task that decodes what the manager sends it.
struct Attacker {
    ip: IpAddr,
    write: OwnedWriteHalf,
    inbox: mpsc::UnboundedReceiver<Message>,
    closed: watch::Receiver<bool>,
}

impl Attacker {
    async fn connect(ip: IpAddr, to: SocketAddr) -> Attacker {
        let stream = raw::connect_from(ip, to)
            .await
            .expect("the attacker connects");
        let (mut read, write) = stream.into_split();
        let (tx, inbox) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(false);
        tokio::spawn(async move {
            let mut codec = MessageCodec::new(Network::Regtest);
            let mut buf = BytesMut::new();
            let mut chunk = vec![0u8; 64 * 1024];
            'read: loop {
                match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(m)) => {
                            let _ = tx.send(m);
                        }
                        Ok(None) => break,
                        Err(e) if e.is_fatal() => break 'read,
                        Err(_) => {}
                    }
                }
            }
            let _ = closed_tx.send(true);
        });
        Attacker {
            ip,
            write,
            inbox,
            closed,
        }
    }

    /// Writes `bytes`; the manager may already have closed the socket.
    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.write.write_all(bytes).await;
    }

    /// The next message satisfying `wanted`, discarding others.
    async fn wait_for(&mut self, wanted: impl Fn(&Message) -> bool) -> Option<Message> {
        timeout(WAIT, async {
            while let Some(m) = self.inbox.recv().await {
                if wanted(&m) {
                    return Some(m);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    /// Sends our `version` and completes the handshake.
    async fn handshake(&mut self, nonce: u64) {
        self.handshake_as(raw::version(nonce)).await;
    }

    /// Completes the handshake with this `version`.
    async fn handshake_as(&mut self, version: Message) {
        self.send(&raw::frame(&version)).await;
        self.finish_handshake().await;
    }

    /// Waits for the manager's `version` and `verack`, then sends ours.
    async fn finish_handshake(&mut self) {
        let (mut version, mut verack) = (false, false);
        while !(version && verack) {
            match self
                .wait_for(|m| matches!(m, Message::Version(_) | Message::Verack))
                .await
            {
                Some(Message::Version(_)) => version = true,
                Some(_) => verack = true,
                None => panic!("{}: no version/verack from the manager", self.ip),
            }
        }
        self.send(&raw::frame(&Message::Verack)).await;
    }

    /// Whether the manager closes the socket within `within`.
    async fn closed_within(&mut self, within: Duration) -> bool {
        timeout(within, self.closed.wait_for(|c| *c)).await.is_ok()
    }
}

// --- What the manager said -----------------------------------------------------------------

/// Every control event of one manager.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<ControlEvent>>,
}

impl Recorder {
    fn start(manager: &Manager) -> Arc<Recorder> {
        let rec = Arc::new(Recorder::default());
        let mut rx = manager.subscribe_control_events();
        let r = rec.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => r.events.lock().unwrap().push(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        panic!("the recorder lost {n} control events")
                    }
                    Err(_) => break,
                }
            }
        });
        rec
    }

    fn ids(&self, ip: IpAddr) -> HashSet<uuid::Uuid> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ControlEvent::InboundConnectionAccepted { peer_id, address }
                    if address.ip() == ip =>
                {
                    Some(*peer_id)
                }
                _ => None,
            })
            .collect()
    }

    /// The offences charged to connections from `ip`, in order, with the running totals.
    fn offences(&self, ip: IpAddr) -> Vec<(Misbehavior, u32)> {
        let ids = self.ids(ip);
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ControlEvent::PeerMisbehavior {
                    peer_id,
                    score,
                    reason,
                } if ids.contains(peer_id) => Some((*reason, *score)),
                _ => None,
            })
            .collect()
    }

    fn bans(&self, ip: IpAddr) -> Vec<BanReason> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ControlEvent::PeerBanned { ip: i, reason, .. } if *i == ip => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    fn ends(&self, ip: IpAddr) -> Vec<DisconnectReason> {
        let ids = self.ids(ip);
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ControlEvent::ConnectionLost { peer_id, reason }
                | ControlEvent::ConnectionFailed { peer_id, reason }
                    if ids.contains(peer_id) =>
                {
                    Some(reason.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn rejections(&self, ip: IpAddr) -> Vec<InboundRejection> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ControlEvent::InboundConnectionRejected { address, reason }
                    if address.ip() == ip =>
                {
                    Some(*reason)
                }
                _ => None,
            })
            .collect()
    }

    /// Waits until `f` holds of the events.
    async fn until(&self, what: &str, f: impl Fn(&Recorder) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The score the manager shows for the established connection from `ip`, once it equals
/// `want` (or whatever it is at the deadline).
async fn score_seen(manager: &Manager, ip: IpAddr, want: u32) -> Option<u32> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = manager
            .connected_peers()
            .into_iter()
            .find(|p| p.address.ip() == ip)
            .map(|p| p.misbehavior_score);
        if seen == Some(want) || Instant::now() >= deadline {
            return seen;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// The ban the peer store holds for `ip`, as (reason, seconds left).
async fn stored_ban(manager: &Manager, ip: IpAddr) -> Option<(BanReason, u64)> {
    let now = unix_now();
    manager
        .get_peers()
        .await
        .expect("the store answers")
        .into_iter()
        .find_map(|p| match p.status {
            PeerStatus::Banned { reason, until } if p.ip == ip => {
                Some((reason, until.unwrap_or(u64::MAX).saturating_sub(now)))
            }
            _ => None,
        })
}

// --- The rules -----------------------------------------------------------------------------

/// Where in the connection's life the offending messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Before our `version`.
    BeforeVersion,
    /// After our `version`, before our `verack`.
    BeforeVerack,
    /// After the handshake.
    Established,
}

/// One scored rule and how to provoke it.
struct Rule {
    offence: Misbehavior,
    stage: Stage,
    /// Offending messages that cost nothing before the first charge (the first `sendheaders`,
    /// the first 100 bad checksums of a run, the `authresp` bucket's burst).
    free: usize,
    /// Messages per charge (every tenth unconnecting announcement costs 20).
    per_charge: usize,
    /// Needs a manager offering `NODE_BLOOM`.
    bloom: bool,
    /// The `i`th offending message.
    message: fn(usize) -> Vec<u8>,
    /// What the attack sends, for the table.
    what: &'static str,
    /// Each offence is answered with a `reject` (0x12 to a second `version`, 0x01 to an
    /// over-long var int); every other rule is silent.
    rejected: bool,
}

fn regtest_header(prev: Hash, salt: u32) -> BlockHeader {
    BlockHeader {
        version: 1,
        prev_hash: prev,
        merkle_root: Hash([salt as u8; 32]),
        time: 1_700_000_000 + salt,
        bits: 0x207f_ffff,
        nonce: 0,
    }
}

/// A header on `prev` meeting regtest's target (`0x207fffff`: a hash whose top byte is below
/// 0x7f does; about one nonce in two).
fn mined(prev: Hash, salt: u32) -> BlockHeader {
    let mut h = regtest_header(prev, salt);
    while h.hash().0[31] >= 0x7f {
        h.nonce += 1;
    }
    h
}

/// A header on `prev` that misses regtest's target (top byte of the hash 0x80 or above).
fn unmined(prev: Hash, salt: u32) -> BlockHeader {
    let mut h = regtest_header(prev, salt);
    while h.hash().0[31] < 0x80 {
        h.nonce += 1;
    }
    h
}

/// `n` headers, each on the one before, the first on `prev`.
fn chain(prev: Hash, n: usize, mine: bool) -> Vec<BlockHeader> {
    let mut out: Vec<BlockHeader> = Vec::with_capacity(n);
    let mut prev = prev;
    for i in 0..n {
        let h = if mine {
            mined(prev, i as u32)
        } else {
            regtest_header(prev, i as u32)
        };
        prev = h.hash();
        out.push(h);
    }
    out
}

/// The attacker's `version`, changed by `edit`.
fn version_with(nonce: u64, edit: impl FnOnce(&mut VersionMessage)) -> Message {
    match raw::version(nonce) {
        Message::Version(mut v) => {
            edit(&mut v);
            Message::Version(v)
        }
        other => other,
    }
}

/// An `inv` whose count is the var int 2^33 (above the node's `MAX_SIZE`).
fn over_long_inv() -> Vec<u8> {
    let mut payload = vec![0xFF];
    payload.extend_from_slice(&(1u64 << 33).to_le_bytes());
    raw::raw_frame("inv", &payload)
}

fn f(m: Message) -> Vec<u8> {
    raw::frame(&m)
}

fn rules() -> Vec<Rule> {
    use Misbehavior::*;
    use Stage::*;
    let rule = |offence, stage, message: fn(usize) -> Vec<u8>, what| Rule {
        offence,
        stage,
        free: 0,
        per_charge: 1,
        bloom: false,
        message,
        what,
        rejected: false,
    };
    vec![
        rule(
            MissingVersion,
            BeforeVersion,
            |i| f(Message::Ping(i as u64)),
            "`ping` before `version`",
        ),
        rule(
            MissingVersion,
            BeforeVersion,
            |_| over_long_inv(),
            "`inv` with an over-long count before `version` (dropped unread: no `reject`)",
        ),
        rule(
            MissingVerack,
            BeforeVerack,
            |i| f(Message::Ping(i as u64)),
            "`ping` between `version` and `verack`",
        ),
        Rule {
            rejected: true,
            ..rule(
                MultipleVersion,
                Established,
                |i| f(raw::version(1000 + i as u64)),
                "`version` after the handshake",
            )
        },
        Rule {
            free: 1,
            ..rule(
                InvalidSendHeaders,
                Established,
                |_| f(Message::SendHeaders),
                "`sendheaders` again",
            )
        },
        Rule {
            free: 1,
            ..rule(
                InvalidSendHdrsEn,
                Established,
                |_| f(Message::SendHdrsEn),
                "`sendhdrsen` again",
            )
        },
        Rule {
            free: 100,
            ..rule(
                InvalidChecksum,
                Established,
                |_| raw::bad_checksum_frame(),
                "`ping` frames with a wrong checksum, back to back",
            )
        },
        Rule {
            rejected: true,
            ..rule(
                OverLongSize,
                Established,
                |_| over_long_inv(),
                "`inv` whose count is a var int of 2^33",
            )
        },
        rule(
            OversizedAddr,
            Established,
            |i| f(raw::addr(1001, i as u8)),
            "`addr` of 1,001 entries",
        ),
        rule(
            TooManyHeaders,
            Established,
            |i| {
                let h = regtest_header(Network::Regtest.genesis_hash(), i as u32);
                f(Message::Headers(vec![h; 2001]))
            },
            "`headers` of 2,001",
        ),
        rule(
            DisconnectedHeader,
            Established,
            |i| {
                let g = Network::Regtest.genesis_hash();
                f(Message::Headers(vec![
                    regtest_header(g, 2 * i as u32),
                    regtest_header(g, 2 * i as u32 + 1),
                ]))
            },
            "`headers` of two that do not chain",
        ),
        Rule {
            per_charge: 10,
            ..rule(
                TooManyUnconnectedHeaders,
                Established,
                |i| {
                    f(Message::Headers(vec![regtest_header(
                        Hash([0x5A; 32]),
                        i as u32,
                    )]))
                },
                "`headers` announcement of one header on an unknown parent",
            )
        },
        rule(
            HighHash,
            Established,
            |i| {
                f(Message::Headers(vec![unmined(
                    Network::Regtest.genesis_hash(),
                    i as u32,
                )]))
            },
            "`headers` of one header on genesis missing its target",
        ),
        rule(
            PrevBlkNotFound,
            Established,
            |i| {
                let mut prev = [0x5B; 32];
                prev[0] = i as u8;
                f(Message::Headers(chain(Hash(prev), 9, false)))
            },
            "`headers` of 9 chained headers on an unknown parent",
        ),
        Rule {
            free: 6,
            ..rule(
                AuthRespRateLimit,
                Established,
                |i| {
                    f(Message::AuthResp(AuthResponse {
                        public_key: Bytes::from_static(&[2; 33]),
                        nonce: i as u64,
                        signature: Bytes::from_static(&[0x30; 71]),
                    }))
                },
                "`authresp` beyond the bucket's burst of 6",
            )
        },
        rule(
            InvalidDsDetected,
            Established,
            |_| {
                f(Message::DsDetected(DsDetected {
                    version: 1,
                    blocks: Vec::new(),
                }))
            },
            "`dsdetected` with no blocks",
        ),
        rule(
            MalformedDsDetected,
            Established,
            |_| raw::raw_frame("dsdetected", &[1]),
            "`dsdetected` of one byte",
        ),
        rule(
            NoBloomVersion,
            Established,
            |_| {
                f(Message::FilterLoad(FilterLoad {
                    filter: Bytes::from_static(&[0; 8]),
                    hash_funcs: 1,
                    tweak: 0,
                    flags: 0,
                }))
            },
            "`filterload` to a manager without `NODE_BLOOM`",
        ),
        Rule {
            bloom: true,
            ..rule(
                OversizedBloomFilter,
                Established,
                |_| {
                    f(Message::FilterLoad(FilterLoad {
                        filter: Bytes::from(vec![0; 36_001]),
                        hash_funcs: 1,
                        tweak: 0,
                        flags: 0,
                    }))
                },
                "`filterload` of 36,001 bytes to a manager offering `NODE_BLOOM`",
            )
        },
        Rule {
            bloom: true,
            ..rule(
                InvalidFilterAdd,
                Established,
                |_| f(Message::FilterAdd(Bytes::from(vec![0; 521]))),
                "`filteradd` of 521 bytes to a manager offering `NODE_BLOOM`",
            )
        },
        rule(
            InvalidCmpctBlock,
            Established,
            |i| {
                f(Message::CmpctBlock(CompactBlock {
                    header: regtest_header(Network::Regtest.genesis_hash(), i as u32),
                    nonce: 1,
                    short_ids: Vec::new(),
                    prefilled: Vec::new(),
                }))
            },
            "`cmpctblock` with no transactions",
        ),
    ]
}

/// What one attack observed, for the table and the checks.
#[derive(Debug)]
struct Outcome {
    rule: String,
    what: String,
    whitelisted: bool,
    messages: usize,
    offences: Vec<(Misbehavior, u32)>,
    /// The score `connected_peers()` showed while the peer was connected.
    visible: Option<u32>,
    bans: Vec<BanReason>,
    stored_ban: Option<(BanReason, u64)>,
    ends: Vec<DisconnectReason>,
    closed: bool,
    refused_after: Vec<InboundRejection>,
    /// `reject`s the attacker received.
    rejects: usize,
}

impl Outcome {
    fn row(&self) -> String {
        let last = self.offences.last().map_or(0, |o| o.1);
        let per = self.offences.first().map_or(0, |o| o.1);
        let ban = match (&self.bans.first(), &self.stored_ban) {
            (Some(b), Some((_, left))) => {
                format!("banned: {b}; store: {:.2} h left", *left as f64 / 3600.0)
            }
            (Some(b), None) => format!("banned: {b}; not in the store"),
            (None, Some(_)) => "in the store without an event".to_string(),
            (None, None) => "not banned".to_string(),
        };
        let end = self
            .ends
            .first()
            .map_or("still connected".to_string(), |e| format!("ended: {e}"));
        format!(
            "| {}{} | {} | {} | +{} each, {} charges, total {} | {} | {} | {} | {} |",
            self.rule,
            if self.whitelisted {
                " (whitelisted)"
            } else {
                ""
            },
            self.what,
            self.messages,
            per,
            self.offences.len(),
            last,
            self.visible.map_or("—".to_string(), |s| s.to_string()),
            ban,
            end,
            if self.refused_after.is_empty() {
                "—".to_string()
            } else {
                format!("{:?}", self.refused_after)
            }
        )
    }
}

/// Provokes `rule` from `ip` until the ban (or, whitelisted, one charge past it) and records
/// what the manager did.
async fn provoke(
    rule: &Rule,
    ip: IpAddr,
    whitelisted: bool,
    manager: &Manager,
    rec: &Recorder,
    nonce: u64,
) -> Outcome {
    let listen = manager.listener_address().expect("listening");
    let per = rule.offence.score();
    let to_ban = BAN_SCORE_THRESHOLD.div_ceil(per) as usize;
    let charges = if whitelisted { to_ban + 1 } else { to_ban };
    let total = rule.free + rule.per_charge * charges;
    let mut a = Attacker::connect(ip, listen).await;
    match rule.stage {
        Stage::BeforeVersion => {}
        Stage::BeforeVerack => a.send(&raw::frame(&raw::version(nonce))).await,
        Stage::Established => a.handshake(nonce).await,
    }
    let mut visible = None;
    let mut sent = 0;
    // A charge below the threshold must show in `connected_peers()` while the peer is
    // connected. Not for the checksum run: a pause of 500 ms would restart it.
    if rule.stage == Stage::Established
        && to_ban > 1
        && rule.offence != Misbehavior::InvalidChecksum
    {
        let first = rule.free + rule.per_charge;
        let mut batch = Vec::new();
        for i in 0..first {
            batch.extend((rule.message)(i));
        }
        a.send(&batch).await;
        sent = first;
        visible = score_seen(manager, ip, per).await;
        assert_eq!(
            visible,
            Some(per),
            "{}: one charge shows in connected_peers()",
            rule.offence
        );
    }
    let mut batch = Vec::new();
    for i in sent..total {
        batch.extend((rule.message)(i));
    }
    a.send(&batch).await;
    let expected_total = per * charges as u32;
    let closed;
    if whitelisted {
        if rule.stage != Stage::Established {
            // Scored past the threshold during its handshake, and still let in.
            if rule.stage == Stage::BeforeVersion {
                a.handshake(nonce).await;
            } else {
                a.finish_handshake().await;
            }
        }
        visible = score_seen(manager, ip, expected_total).await;
        closed = a.closed_within(KEPT).await;
    } else {
        closed = a.closed_within(WAIT).await;
        rec.until("the ban event", |r| !r.bans(ip).is_empty()).await;
        rec.until("the end of the connection", |r| !r.ends(ip).is_empty())
            .await;
    }
    // The events reach the recorder through the control channel, after the score the
    // connection's statistics show.
    rec.until("every charge", |r| r.offences(ip).len() >= charges)
        .await;
    let stored = stored_ban(manager, ip).await;
    // Banned addresses are refused by the listener before any handshake.
    let mut refused_after = Vec::new();
    if !whitelisted {
        let mut again = Attacker::connect(ip, listen).await;
        assert!(
            again.closed_within(WAIT).await,
            "{}: a banned address is refused",
            rule.offence
        );
        rec.until("the refusal", |r| !r.rejections(ip).is_empty())
            .await;
        refused_after = rec.rejections(ip);
    }
    let mut rejects = 0;
    while let Ok(m) = a.inbox.try_recv() {
        rejects += usize::from(matches!(m, Message::Reject(_)));
    }
    Outcome {
        rejects,
        rule: rule.offence.to_string(),
        what: rule.what.to_string(),
        whitelisted,
        messages: total,
        offences: rec.offences(ip),
        visible,
        bans: rec.bans(ip),
        stored_ban: stored,
        ends: rec.ends(ip),
        closed,
        refused_after,
    }
}

/// The node's outcome for one rule, checked.
fn check_rule(rule: &Rule, o: &Outcome) {
    let name = format!(
        "{}{}",
        rule.offence,
        if o.whitelisted { " (whitelisted)" } else { "" }
    );
    let per = rule.offence.score();
    let charges = o.offences.len() as u32;
    assert!(
        o.offences.iter().all(|(m, _)| *m == rule.offence),
        "{name}: every charge is the rule's: {:?}",
        o.offences
    );
    let totals: Vec<u32> = o.offences.iter().map(|(_, s)| *s).collect();
    let want: Vec<u32> = (1..=charges).map(|k| k * per).collect();
    assert_eq!(totals, want, "{name}: +{per} per charge");
    let to_ban = BAN_SCORE_THRESHOLD.div_ceil(per);
    if rule.rejected {
        assert!(o.rejects > 0, "{name}: answered with reject");
    } else {
        assert_eq!(o.rejects, 0, "{name}: no reject");
    }
    if o.whitelisted {
        assert_eq!(charges, to_ban + 1, "{name}: scored past the threshold");
        assert_eq!(
            o.visible,
            Some((to_ban + 1) * per),
            "{name}: the score shows in connected_peers()"
        );
        assert!(o.bans.is_empty(), "{name}: never banned: {:?}", o.bans);
        assert!(o.stored_ban.is_none(), "{name}: no ban in the store");
        assert!(!o.closed, "{name}: still connected");
        assert!(o.ends.is_empty(), "{name}: still connected: {:?}", o.ends);
        return;
    }
    let total = to_ban * per;
    assert_eq!(charges, to_ban, "{name}: charged until the ban");
    let ban = BanReason::Misbehavior {
        score: total,
        reason: rule.offence.node_reason().to_string(),
    };
    assert_eq!(
        o.bans,
        std::slice::from_ref(&ban),
        "{name}: banned once, for the rule"
    );
    let (stored, left) = o.stored_ban.clone().expect("a ban in the store");
    assert_eq!(stored, ban, "{name}: the store's ban");
    assert!(
        (DEFAULT_BAN_SECONDS - 120..=DEFAULT_BAN_SECONDS).contains(&left),
        "{name}: banned for 24 h ({left} s left)"
    );
    assert!(o.closed, "{name}: disconnected");
    assert_eq!(
        o.ends,
        [DisconnectReason::Misbehavior {
            score: total,
            reason: rule.offence
        }],
        "{name}: the end is typed"
    );
    assert_eq!(
        o.refused_after,
        [InboundRejection::Banned],
        "{name}: the listener refuses the address"
    );
}

// --- Direct bans, a corrupt block -----------------------------------------------------------

/// What a direct-ban attack sent, and how to recognise its ban and its end.
type DirectBan = (
    &'static str,
    fn(&BanReason) -> bool,
    fn(&DisconnectReason) -> bool,
);

/// A ban that bypasses the score, provoked from `ip`; checks the outcome and returns the row.
async fn direct_ban(
    kind: &'static str,
    ip: IpAddr,
    whitelisted: bool,
    manager: &Manager,
    rec: &Recorder,
) -> String {
    let listen = manager.listener_address().expect("listening");
    let mut a = Attacker::connect(ip, listen).await;
    let (what, ban_ok, end_ok): DirectBan = match kind {
        "oversized-header" => {
            a.handshake(7).await;
            a.send(&raw::header("inv", u64::from(u32::MAX), false))
                .await;
            (
                "`inv` header declaring 4 GiB after the handshake",
                |b| {
                    matches!(b, BanReason::Misbehavior { score: 100, reason }
                        if reason == Misbehavior::OversizedHeader.node_reason())
                },
                |e| matches!(e, DisconnectReason::Oversized(_)),
            )
        }
        "banned-user-agent" => {
            let v = version_with(8, |v| v.user_agent = "/Bitcoin ABC:0.22.0/".into());
            a.send(&raw::frame(&v)).await;
            (
                "`version` with user agent `/Bitcoin ABC:0.22.0/`",
                |b| matches!(b, BanReason::BannedUserAgent { user_agent } if user_agent == "/Bitcoin ABC:0.22.0/"),
                |e| {
                    matches!(
                        e,
                        DisconnectReason::Handshake(HandshakeFailure::BannedUserAgent { .. })
                    )
                },
            )
        }
        "wrong-magic" => {
            a.handshake(9).await;
            let mut ping = raw::frame(&Message::Ping(1));
            ping[..4].copy_from_slice(&[0xf9, 0xbe, 0xb4, 0xd9]);
            a.send(&ping).await;
            (
                "`ping` framed with BTC's magic after the handshake",
                |b| matches!(b, BanReason::BlockchainMismatch { received } if received == "f9beb4d9"),
                |e| matches!(e, DisconnectReason::BadFrame(_)),
            )
        }
        other => unreachable!("{other}"),
    };
    let closed = a.closed_within(WAIT).await;
    assert!(closed, "{kind}: disconnected");
    rec.until("the end of the connection", |r| !r.ends(ip).is_empty())
        .await;
    if !whitelisted {
        rec.until("the ban event", |r| !r.bans(ip).is_empty()).await;
    } else {
        // The manager decides and reports the ban before closing; give a wrong ban time to
        // show.
        sleep(KEPT).await;
    }
    let bans = rec.bans(ip);
    let ends = rec.ends(ip);
    let stored = stored_ban(manager, ip).await;
    assert!(
        ends.iter().all(end_ok),
        "{kind}: the end is typed: {ends:?}"
    );
    if whitelisted {
        assert!(
            bans.is_empty(),
            "{kind} (whitelisted): not banned: {bans:?}"
        );
        assert!(stored.is_none(), "{kind} (whitelisted): no ban stored");
        // And it may come back.
        let mut again = Attacker::connect(ip, listen).await;
        again.handshake(10).await;
        assert!(
            score_seen(manager, ip, 0).await == Some(0),
            "{kind} (whitelisted): connects again"
        );
    } else {
        assert!(bans.len() == 1 && ban_ok(&bans[0]), "{kind}: {bans:?}");
        let (_, left) = stored.clone().expect("a ban in the store");
        assert!((DEFAULT_BAN_SECONDS - 120..=DEFAULT_BAN_SECONDS).contains(&left));
    }
    format!(
        "| {kind}{} | {what} | {} | {} | {} |",
        if whitelisted { " (whitelisted)" } else { "" },
        bans.first()
            .map_or("not banned".to_string(), |b| format!("banned: {b}")),
        stored.map_or("—".to_string(), |(_, left)| format!(
            "{:.2} h",
            left as f64 / 3600.0
        )),
        ends.first().map_or("—".to_string(), |e| e.to_string()),
    )
}

/// A block whose transactions do not hash to its header's merkle root, served when the
/// manager's `get_block` asks the attacker for it.
async fn corrupt_block(
    ip: IpAddr,
    whitelisted: bool,
    manager: &Arc<Manager>,
    rec: &Recorder,
) -> String {
    let listen = manager.listener_address().expect("listening");
    let mut a = Attacker::connect(ip, listen).await;
    // A peer that says it serves blocks (`NODE_NETWORK`): the only kind `get_block` asks.
    a.handshake_as(version_with(11, |v| v.services = 1)).await;
    score_seen(manager, ip, 0).await;
    let peer_id = manager
        .connected_peers()
        .into_iter()
        .find(|p| p.address.ip() == ip)
        .map(|p| p.peer_id)
        .expect("connected");
    let mut header = regtest_header(Network::Regtest.genesis_hash(), 77 + whitelisted as u32);
    header.merkle_root = Hash([0xAB; 32]);
    let hash = header.hash();
    let fetch = {
        let manager = manager.clone();
        tokio::spawn(async move {
            manager
                .get_block_with(
                    hash,
                    BlockFetchOptions {
                        timeout: Some(Duration::from_secs(3)),
                        attempt_timeout: Some(Duration::from_secs(2)),
                        preferred_peer: Some(peer_id),
                    },
                )
                .await
        })
    };
    let asked = a
        .wait_for(|m| {
            matches!(m, Message::GetData(v) if v.iter().any(|i| i.hash == hash && i.inv_type == InvType::Block))
        })
        .await;
    assert!(asked.is_some(), "the manager asks the preferred peer");
    let tx = Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint::NULL,
            script_sig: Bytes::from_static(&[1, 2, 3]),
            sequence: u32::MAX,
        }],
        vec![TxOut {
            value: 0,
            script_pubkey: Bytes::new(),
        }],
        0,
    );
    a.send(&raw::frame(&Message::Block(Block {
        header,
        transactions: vec![tx],
    })))
    .await;
    let result = fetch.await.expect("the fetch task");
    assert!(result.is_err(), "a corrupt block is never handed out");
    let row;
    if whitelisted {
        assert_eq!(score_seen(manager, ip, 100).await, Some(100));
        assert!(!a.closed_within(KEPT).await, "whitelisted: still connected");
        assert!(rec.bans(ip).is_empty());
        assert!(stored_ban(manager, ip).await.is_none());
        row = "| bad-txnmrklroot (whitelisted) | `block` answering our `getdata`, merkle root wrong | not banned (+100, 100 in `connected_peers()`) | — | still connected |".to_string();
    } else {
        assert!(a.closed_within(WAIT).await, "disconnected");
        rec.until("the ban event", |r| !r.bans(ip).is_empty()).await;
        rec.until("the end", |r| !r.ends(ip).is_empty()).await;
        let bans = rec.bans(ip);
        assert_eq!(
            bans,
            [BanReason::Misbehavior {
                score: 100,
                reason: "bad-txnmrklroot".into()
            }]
        );
        let ends = rec.ends(ip);
        assert_eq!(
            ends,
            [DisconnectReason::Misbehavior {
                score: 100,
                reason: Misbehavior::BadTxnMerkleRoot
            }]
        );
        let (_, left) = stored_ban(manager, ip).await.expect("stored");
        assert!((DEFAULT_BAN_SECONDS - 120..=DEFAULT_BAN_SECONDS).contains(&left));
        row = format!(
            "| bad-txnmrklroot | `block` answering our `getdata`, merkle root wrong | banned: {} | {:.2} h | {} |",
            bans[0],
            left as f64 / 3600.0,
            ends[0]
        );
    }
    rec.until("the charge", |r| !r.offences(ip).is_empty())
        .await;
    assert_eq!(
        rec.offences(ip),
        [(Misbehavior::BadTxnMerkleRoot, 100)],
        "charged once"
    );
    row
}

/// A first `version` that does not parse: `reject` 0x60 and a disconnect, no score, no ban (as
/// the node does, `a_version_that_does_not_parse_is_refused_without_a_charge` in
/// `bsv/tests/real_node/rules.rs`).
async fn malformed_version(ip: IpAddr, manager: &Manager, rec: &Recorder) -> String {
    let listen = manager.listener_address().expect("listening");
    let mut a = Attacker::connect(ip, listen).await;
    // The 80 bytes before the user agent, then a user agent whose length is the var int 2^33.
    let mut payload = vec![0u8; 80];
    payload.push(0xFF);
    payload.extend_from_slice(&(1u64 << 33).to_le_bytes());
    a.send(&raw::raw_frame("version", &payload)).await;
    assert!(a.closed_within(WAIT).await, "disconnected");
    rec.until("the end", |r| !r.ends(ip).is_empty()).await;
    let ends = rec.ends(ip);
    assert_eq!(
        ends,
        [DisconnectReason::Protocol(
            ProtocolViolation::MalformedVersion
        )]
    );
    let reply = a.wait_for(|m| matches!(m, Message::Reject(_))).await;
    assert!(
        matches!(&reply, Some(Message::Reject(r)) if r.code == bitcoinsv::p2p::RejectCode::StreamSetup),
        "{reply:?}"
    );
    assert!(rec.offences(ip).is_empty(), "no score");
    assert!(rec.bans(ip).is_empty(), "no ban");
    format!(
        "| malformed first `version` | `version` whose user agent length is the var int 2^33 | not banned, not scored; `reject` 0x60 | — | {} |",
        ends[0]
    )
}

// --- Flood limits, the per-IP cap ----------------------------------------------------------

/// Sends a one-entry `notfound` as a marker and returns what the message stream delivered
/// from the attacker's connection up to it: a connection delivers in the order it reads, so
/// whatever the attacker sent before the marker and is not here was dropped.
async fn delivered_until_marker(
    a: &mut Attacker,
    stream: &mut broadcast::Receiver<BitcoinMessageEvent>,
    n: u8,
) -> Vec<Message> {
    let marker = Message::NotFound(vec![InvVect {
        inv_type: InvType::Tx,
        hash: Hash([n; 32]),
    }]);
    a.send(&raw::frame(&marker)).await;
    timeout(WAIT, async {
        let mut seen = Vec::new();
        loop {
            match stream.recv().await {
                Ok(e) if e.message == marker => return seen,
                Ok(e) => seen.push(e.message),
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("the stream lost {n}"),
                Err(_) => return seen,
            }
        }
    })
    .await
    .expect("the marker is delivered")
}

/// `inv` entries that fill the 2 MiB payload limit exactly: a 5-byte count and 36 bytes each.
const INV_AT_LIMIT: usize = (2 * 1024 * 1024 - 5) / 36;

async fn flood_limits(manager: &Manager, rec: &Recorder, ips: [IpAddr; 3]) -> Vec<String> {
    let listen = manager.listener_address().expect("listening");
    let mut rows = Vec::new();

    // `addr`: 1,000 entries pass, 1,001 cost 20 (`oversized-addr`) and are dropped.
    let ip = ips[0];
    let mut a = Attacker::connect(ip, listen).await;
    a.handshake(21).await;
    let mut stream = manager.subscribe_bitcoin_messages();
    a.send(&raw::frame(&raw::addr(1000, 40))).await;
    let seen = delivered_until_marker(&mut a, &mut stream, 1).await;
    assert!(
        rec.offences(ip).is_empty(),
        "an addr of 1,000 is not scored"
    );
    assert!(seen
        .iter()
        .any(|m| matches!(m, Message::Addr(v) if v.len() == 1000)));
    rows.push("| `addr` of 1,000 entries (the limit) | not scored; delivered |".to_string());
    a.send(&raw::frame(&raw::addr(1001, 41))).await;
    let seen = delivered_until_marker(&mut a, &mut stream, 2).await;
    // The first charge of this connection is the 1,001's: the 1,000 cost nothing (a
    // connection's events arrive in order).
    rec.until("the charge", |r| !r.offences(ip).is_empty())
        .await;
    assert_eq!(rec.offences(ip), [(Misbehavior::OversizedAddr, 20)]);
    assert!(
        !seen.iter().any(|m| matches!(m, Message::Addr(_))),
        "dropped"
    );
    rows.push(
        "| `addr` of 1,001 entries | +20 `oversized-addr`, not delivered; still connected (the fifth bans) |"
            .to_string(),
    );

    // `headers`: 2,000 pass (a mined chain from genesis, so that nothing else objects), 2,001
    // cost 20 (`too-many-headers`) and are dropped.
    let ip = ips[1];
    let mut a = Attacker::connect(ip, listen).await;
    a.handshake(22).await;
    let headers = chain(Network::Regtest.genesis_hash(), 2000, true);
    let last = headers.last().map(BlockHeader::hash).expect("2000 headers");
    a.send(&raw::frame(&Message::Headers(headers))).await;
    let seen = delivered_until_marker(&mut a, &mut stream, 3).await;
    let chain_handle = manager.header_chain();
    let deadline = Instant::now() + WAIT;
    while chain_handle.header(&last).is_none() {
        assert!(Instant::now() < deadline, "the 2,000 headers are accepted");
        sleep(Duration::from_millis(20)).await;
    }
    assert!(
        rec.offences(ip).is_empty(),
        "2,000 headers are not scored: {:?}",
        rec.offences(ip)
    );
    let headers_delivered = seen
        .iter()
        .any(|m| matches!(m, Message::Headers(v) if v.len() == 2000));
    rows.push(format!(
        "| `headers` of 2,000 (the limit), chained from genesis | not scored; the header chain takes them{} |",
        if headers_delivered { " and the application gets them" } else { "" }
    ));
    let h = regtest_header(Network::Regtest.genesis_hash(), 9999);
    a.send(&raw::frame(&Message::Headers(vec![h; 2001]))).await;
    let seen = delivered_until_marker(&mut a, &mut stream, 4).await;
    rec.until("the charge", |r| !r.offences(ip).is_empty())
        .await;
    assert_eq!(rec.offences(ip), [(Misbehavior::TooManyHeaders, 20)]);
    assert!(
        !seen.iter().any(|m| matches!(m, Message::Headers(_))),
        "dropped"
    );
    rows.push(
        "| `headers` of 2,001 | +20 `too-many-headers`, not delivered; still connected |"
            .to_string(),
    );

    // `inv`: no entry limit of its own; 58,254 entries fill the 2 MiB payload limit and pass,
    // one more is an oversized message, a direct ban. (The node's old 50,000 `MAX_INV_SZ` is
    // gone, docs/PROTOCOL.md §3.4.)
    let ip = ips[2];
    let mut a = Attacker::connect(ip, listen).await;
    a.handshake(23).await;
    a.send(&raw::frame(&raw::inv(INV_AT_LIMIT, 50))).await;
    let seen = delivered_until_marker(&mut a, &mut stream, 5).await;
    assert!(rec.offences(ip).is_empty(), "a full inv is not scored");
    assert!(
        seen.iter()
            .any(|m| matches!(m, Message::Inv(v) if v.len() == INV_AT_LIMIT)),
        "the full inv reaches the application"
    );
    rows.push(format!(
        "| `inv` of {INV_AT_LIMIT} entries (2 MiB payload, the limit) | not scored; delivered |"
    ));
    a.send(&raw::frame(&raw::inv(INV_AT_LIMIT + 1, 51))).await;
    assert!(a.closed_within(WAIT).await, "an oversized inv disconnects");
    rec.until("the ban", |r| !r.bans(ip).is_empty()).await;
    // Anything the full `inv` had cost would have come before the ban.
    assert!(rec.offences(ip).is_empty(), "a full inv is not scored");
    assert_eq!(
        rec.bans(ip),
        [BanReason::Misbehavior {
            score: 100,
            reason: Misbehavior::OversizedHeader.node_reason().into()
        }]
    );
    rows.push(format!(
        "| `inv` of {} entries | banned: score 100 `Oversized header detected` (a direct ban, before the payload is read) |",
        INV_AT_LIMIT + 1
    ));
    rows
}

/// A whitelisted address may open more connections than the per-IP cap; another may not.
async fn per_ip_cap(
    manager: &Manager,
    rec: &Recorder,
    listed: IpAddr,
    other: IpAddr,
) -> Vec<String> {
    let listen = manager.listener_address().expect("listening");
    let cap = manager.config().limits.max_inbound_per_ip;
    let count = |ip: IpAddr| {
        manager
            .connected_peers()
            .iter()
            .filter(|p| p.address.ip() == ip)
            .count()
    };
    let mut kept = Vec::new();
    for i in 0..cap + 2 {
        let mut a = Attacker::connect(listed, listen).await;
        a.handshake(3000 + i as u64).await;
        kept.push(a);
    }
    let deadline = Instant::now() + WAIT;
    while count(listed) < cap + 2 {
        assert!(
            Instant::now() < deadline,
            "every whitelisted connection is established"
        );
        sleep(Duration::from_millis(20)).await;
    }
    assert!(rec.rejections(listed).is_empty());
    for i in 0..cap {
        let mut a = Attacker::connect(other, listen).await;
        a.handshake(4000 + i as u64).await;
        kept.push(a);
    }
    let mut over = Attacker::connect(other, listen).await;
    assert!(
        over.closed_within(WAIT).await,
        "one over the cap is refused"
    );
    rec.until("the refusal", |r| !r.rejections(other).is_empty())
        .await;
    assert_eq!(rec.rejections(other), [InboundRejection::PerIpCap]);
    let row = vec![
        format!(
            "| {} connections from one whitelisted address (cap {cap}) | all established |",
            cap + 2
        ),
        format!(
            "| {} connections from one other address | {cap} established, the next refused: {} |",
            cap + 1,
            InboundRejection::PerIpCap
        ),
    ];
    drop(kept);
    row
}

// --- The test ------------------------------------------------------------------------------

fn config(bloom: bool) -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().unwrap();
    c.listener_port = 0;
    c.dns_seeds.clear();
    c.target_connections = 0;
    c.max_connections = 200;
    c.event_channel_capacity = 100_000;
    c.header_chain.enabled = !bloom;
    c.whitelist = Whitelist::parse(&[WHITELIST]).unwrap();
    if bloom {
        c.services |= NODE_BLOOM;
    }
    c
}

#[cfg(feature = "metrics")]
struct MetricsPage(
    prometheus::Registry,
    opentelemetry_sdk::metrics::SdkMeterProvider,
);

#[cfg(feature = "metrics")]
fn install_metrics() -> MetricsPage {
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_target_info()
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(exporter)
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());
    MetricsPage(registry, provider)
}

#[cfg(feature = "metrics")]
fn metric(page: &str, name: &str, reason: &str) -> u64 {
    let series = format!("{name}{{");
    let label = format!("reason=\"{reason}\"");
    page.lines()
        .filter(|l| l.starts_with(&series) && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scored_rule_ends_as_the_node_ends_it() {
    let started = Instant::now();
    #[cfg(feature = "metrics")]
    let metrics = install_metrics();
    let main = Arc::new(Manager::new(
        config(false),
        Arc::new(InMemoryPeerStore::new()),
    ));
    let bloom = Arc::new(Manager::new(
        config(true),
        Arc::new(InMemoryPeerStore::new()),
    ));
    let main_rec = Recorder::start(&main);
    let bloom_rec = Recorder::start(&bloom);
    main.start().await.unwrap();
    bloom.start().await.unwrap();

    // Every rule, from an address of its own and from a whitelisted one, all at once.
    let rules = Arc::new(rules());
    let mut attacks = Vec::new();
    for (i, _) in rules.iter().enumerate() {
        for whitelisted in [false, true] {
            let rules = rules.clone();
            let (manager, rec) = if rules[i].bloom {
                (bloom.clone(), bloom_rec.clone())
            } else {
                (main.clone(), main_rec.clone())
            };
            let ip = if whitelisted {
                whitelisted_ip(i as u32)
            } else {
                raw::attacker_ip(i as u32)
            };
            attacks.push(tokio::spawn(async move {
                let rule = &rules[i];
                let o = provoke(rule, ip, whitelisted, &manager, &rec, 100 + i as u64).await;
                check_rule(rule, &o);
                o
            }));
        }
    }
    let mut outcomes = Vec::new();
    for a in attacks {
        outcomes.push(a.await.expect("an attack"));
    }
    eprintln!(
        "\n| rule | attack | messages | charges seen | connected_peers() | ban | end | listener afterwards |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        eprintln!("{}", o.row());
    }

    let mut direct = Vec::new();
    for (k, kind) in ["oversized-header", "banned-user-agent", "wrong-magic"]
        .into_iter()
        .enumerate()
    {
        for whitelisted in [false, true] {
            let ip = if whitelisted {
                whitelisted_ip(100 + k as u32)
            } else {
                raw::attacker_ip(100 + k as u32)
            };
            direct.push(direct_ban(kind, ip, whitelisted, &main, &main_rec).await);
        }
    }
    direct.push(corrupt_block(raw::attacker_ip(110), false, &main, &main_rec).await);
    direct.push(corrupt_block(whitelisted_ip(110), true, &main, &main_rec).await);
    direct.push(malformed_version(raw::attacker_ip(111), &main, &main_rec).await);
    eprintln!("\n| direct ban | attack | ban | ban left | end |");
    eprintln!("|---|---|---|---|---|");
    for r in &direct {
        eprintln!("{r}");
    }

    let mut limits = flood_limits(
        &main,
        &main_rec,
        [
            raw::attacker_ip(120),
            raw::attacker_ip(121),
            raw::attacker_ip(122),
        ],
    )
    .await;
    limits.extend(per_ip_cap(&main, &main_rec, whitelisted_ip(130), raw::attacker_ip(130)).await);
    eprintln!("\n| limit | outcome |");
    eprintln!("|---|---|");
    for r in &limits {
        eprintln!("{r}");
    }

    #[cfg(feature = "metrics")]
    {
        use prometheus::{Encoder, TextEncoder};
        let mut page = Vec::new();
        TextEncoder::new()
            .encode(&metrics.0.gather(), &mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        // Every charge and every ban of both managers, by reason, as the events told them.
        let mut charges: std::collections::HashMap<&'static str, u64> = Default::default();
        let mut bans: std::collections::HashMap<&'static str, u64> = Default::default();
        for rec in [&main_rec, &bloom_rec] {
            for e in rec.events.lock().unwrap().iter() {
                match e {
                    ControlEvent::PeerMisbehavior { reason, .. } => {
                        *charges.entry(reason.node_reason()).or_default() += 1
                    }
                    ControlEvent::PeerBanned { reason, .. } => {
                        *bans.entry(reason.kind()).or_default() += 1
                    }
                    _ => {}
                }
            }
        }
        for (reason, n) in &charges {
            assert_eq!(
                metric(&page, "bsv_p2p_misbehavior_total", reason),
                *n,
                "bsv_p2p.misbehavior{{reason={reason}}}\n{page}"
            );
        }
        for (kind, n) in &bans {
            assert_eq!(
                metric(&page, "bsv_p2p_bans_total", kind),
                *n,
                "bsv_p2p.bans{{reason={kind}}}"
            );
        }
        eprintln!(
            "\nmetrics agree with the events: {} charges under {} reasons, {} bans",
            charges.values().sum::<u64>(),
            charges.len(),
            bans.values().sum::<u64>()
        );
        metrics.1.shutdown().unwrap();
    }

    main.shutdown().await.unwrap();
    bloom.shutdown().await.unwrap();
    eprintln!("rules suite took {:?}", started.elapsed());
}
