//! Per-connection statistics, readable at any time without asking the actor: the actor updates
//! atomics and a small mutex-protected record, and [`ConnectionStats::snapshot`] copies them.
//!
//! Messages are counted per command, but only for the commands this library knows; every other
//! command name a peer sends is counted under [`OTHER_COMMANDS`], as the node counts them under
//! `"*other*"` (`src/net/net.cpp`, `allNetMessageTypes`). A peer inventing command names
//! therefore cannot grow the per-command maps: they hold at most one key per known command plus
//! one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use uuid::Uuid;

use super::ConnectionState;
use crate::p2p::messages::commands;

/// The key under which messages with a command this library does not know are counted (the
/// node's `NET_MESSAGE_COMMAND_OTHER`).
pub const OTHER_COMMANDS: &str = "*other*";

/// Every command [`crate::p2p::Message`] has a variant for (`extmsg` is a header marker, not a
/// command: an extended frame is counted under the command it carries).
const KNOWN_COMMANDS: [&str; 38] = [
    commands::VERSION,
    commands::VERACK,
    commands::PING,
    commands::PONG,
    commands::ADDR,
    commands::GETADDR,
    commands::INV,
    commands::GETDATA,
    commands::NOTFOUND,
    commands::GETBLOCKS,
    commands::GETHEADERS,
    commands::HEADERS,
    commands::BLOCK,
    commands::TX,
    commands::REJECT,
    commands::SENDHEADERS,
    commands::FEEFILTER,
    commands::SENDCMPCT,
    commands::CMPCTBLOCK,
    commands::GETBLOCKTXN,
    commands::BLOCKTXN,
    commands::PROTOCONF,
    commands::MEMPOOL,
    commands::AUTHCH,
    commands::AUTHRESP,
    commands::CREATESTREAM,
    commands::STREAMACK,
    commands::GETHDRSEN,
    commands::HDRSEN,
    commands::SENDHDRSEN,
    commands::DSDETECTED,
    commands::REVOKEMID,
    commands::DATAREFTX,
    commands::MERKLEBLOCK,
    commands::FILTERLOAD,
    commands::FILTERADD,
    commands::FILTERCLEAR,
    commands::ALERT,
];

/// Whether `command` is one this library has a [`crate::p2p::Message`] variant for.
#[cfg(test)]
pub(crate) fn is_known_command(command: &str) -> bool {
    KNOWN_COMMANDS.contains(&command)
}

/// How many keys commands are counted under: the known commands plus [`OTHER_COMMANDS`].
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) const COMMAND_KEYS: usize = KNOWN_COMMANDS.len() + 1;

/// The index of the key `command` is counted under, among the [`COMMAND_KEYS`] keys.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn command_index(command: &str) -> usize {
    KNOWN_COMMANDS
        .iter()
        .position(|c| *c == command)
        .unwrap_or(KNOWN_COMMANDS.len())
}

/// The key of an index from [`command_index`].
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn command_at(index: usize) -> &'static str {
    KNOWN_COMMANDS.get(index).copied().unwrap_or(OTHER_COMMANDS)
}

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// We dialled the peer.
    Outbound,
    /// The peer dialled us.
    Inbound,
}

impl Direction {
    /// `"inbound"` or `"outbound"`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Message and byte counts for one command in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommandCount {
    /// Messages.
    pub messages: u64,
    /// Bytes including headers.
    pub bytes: u64,
}

/// What we learned from the peer's `version` and afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerDetails {
    /// Protocol version.
    pub version: i32,
    /// User agent.
    pub user_agent: String,
    /// Service bits.
    pub services: u64,
    /// Best height at connection time.
    pub start_height: i32,
    /// Whether it wants transaction relay.
    pub relay: bool,
    /// Its `protoconf` receive limit, once received.
    pub max_recv_payload: Option<u64>,
    /// It sent `sendheaders`.
    pub wants_headers: bool,
    /// Its `sendcmpct` (announce, version), if sent.
    pub compact_blocks: Option<(bool, u64)>,
    /// Its `feefilter` (sat/kB), if sent.
    pub fee_filter: Option<i64>,
}

#[derive(Debug)]
struct Record {
    state: ConnectionState,
    details: Option<PeerDetails>,
    rtt: Option<Duration>,
    connected_since: Option<SystemTime>,
    handshake_duration: Option<Duration>,
    recv: Counts,
    sent: Counts,
}

/// Adds one message to a per-command counter; a command we do not know counts under
/// [`OTHER_COMMANDS`], so the map never has more than `KNOWN_COMMANDS.len() + 1` keys. The keys
/// are the static names, so counting allocates nothing per command (only the map's node, once).
fn bump(map: &mut Counts, command: &str, bytes: usize) {
    let key = command_key(command);
    if let Some((_, c)) = map.iter_mut().find(|(k, _)| *k == key) {
        c.messages += 1;
        c.bytes += bytes as u64;
        return;
    }
    map.push((
        key,
        CommandCount {
            messages: 1,
            bytes: bytes as u64,
        },
    ));
}

/// Counts by command: a short list (a connection sees a dozen commands at most, often fewer),
/// smaller than a map's node (docs/BENCHMARKS.md, "10,000 connections").
type Counts = Vec<(&'static str, CommandCount)>;

/// The static key `command` is counted under.
fn command_key(command: &str) -> &'static str {
    KNOWN_COMMANDS
        .iter()
        .find(|c| **c == command)
        .copied()
        .unwrap_or(OTHER_COMMANDS)
}

/// A per-command map with owned keys, as [`ConnectionSnapshot`] has it.
fn owned(map: &Counts) -> BTreeMap<String, CommandCount> {
    map.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
}

/// Live statistics of one connection.
#[derive(Debug)]
pub struct ConnectionStats {
    peer_id: Uuid,
    address: SocketAddr,
    direction: Direction,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    score: std::sync::atomic::AtomicU32,
    record: Mutex<Record>,
}

/// A copy of a connection's statistics at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionSnapshot {
    /// The peer's id in the store.
    pub peer_id: Uuid,
    /// Its address.
    pub address: SocketAddr,
    /// Who dialled.
    pub direction: Direction,
    /// Lifecycle state.
    pub state: ConnectionState,
    /// What the peer told us.
    pub details: Option<PeerDetails>,
    /// Last ping round trip.
    pub rtt: Option<Duration>,
    /// The peer's misbehaviour score on this connection (the node bans at 100).
    pub misbehavior_score: u32,
    /// When the handshake completed.
    pub connected_since: Option<SystemTime>,
    /// How long the handshake took.
    pub handshake_duration: Option<Duration>,
    /// Bytes received (headers included).
    pub bytes_in: u64,
    /// Bytes sent (headers included).
    pub bytes_out: u64,
    /// Received messages by command; unknown commands together under [`OTHER_COMMANDS`].
    pub received: BTreeMap<String, CommandCount>,
    /// Sent messages by command; unknown commands together under [`OTHER_COMMANDS`].
    pub sent: BTreeMap<String, CommandCount>,
}

impl ConnectionSnapshot {
    /// Messages received in total.
    pub fn messages_in(&self) -> u64 {
        self.received.values().map(|c| c.messages).sum()
    }

    /// Messages sent in total.
    pub fn messages_out(&self) -> u64 {
        self.sent.values().map(|c| c.messages).sum()
    }
}

impl ConnectionStats {
    /// Fresh statistics for a connection about to start.
    pub fn new(peer_id: Uuid, address: SocketAddr, direction: Direction) -> Self {
        ConnectionStats {
            peer_id,
            address,
            direction,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            score: std::sync::atomic::AtomicU32::new(0),
            record: Mutex::new(Record {
                state: ConnectionState::Disconnected,
                details: None,
                rtt: None,
                connected_since: None,
                handshake_duration: None,
                recv: Counts::new(),
                sent: Counts::new(),
            }),
        }
    }

    /// The peer's id.
    pub fn peer_id(&self) -> Uuid {
        self.peer_id
    }

    /// The peer's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Who dialled.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.record
            .lock()
            .map(|r| r.state)
            .unwrap_or(ConnectionState::Failed)
    }

    pub(crate) fn set_state(&self, s: ConnectionState) {
        if let Ok(mut r) = self.record.lock() {
            r.state = s;
            if s != ConnectionState::Connected {
                r.connected_since = None;
            }
        }
    }

    pub(crate) fn set_connected(&self, details: PeerDetails, handshake: Duration) {
        if let Ok(mut r) = self.record.lock() {
            r.state = ConnectionState::Connected;
            r.details = Some(details);
            r.connected_since = Some(SystemTime::now());
            r.handshake_duration = Some(handshake);
        }
    }

    /// What the peer told us, once the handshake completed.
    pub fn details(&self) -> Option<PeerDetails> {
        self.record.lock().ok()?.details.clone()
    }

    pub(crate) fn update_details(&self, f: impl FnOnce(&mut PeerDetails)) {
        if let Ok(mut r) = self.record.lock() {
            f(r.details.get_or_insert_with(PeerDetails::default));
        }
    }

    pub(crate) fn set_rtt(&self, rtt: Duration) {
        if let Ok(mut r) = self.record.lock() {
            r.rtt = Some(rtt);
        }
    }

    pub(crate) fn set_score(&self, score: u32) {
        self.score.store(score, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_received(&self, command: &str, bytes: usize) {
        if let Ok(mut r) = self.record.lock() {
            bump(&mut r.recv, command, bytes);
        }
    }

    pub(crate) fn count_sent(&self, command: &str, bytes: usize) {
        if let Ok(mut r) = self.record.lock() {
            bump(&mut r.sent, command, bytes);
        }
    }

    /// A consistent copy of everything.
    pub fn snapshot(&self) -> ConnectionSnapshot {
        let (state, details, rtt, connected_since, handshake_duration, received, sent) =
            match self.record.lock() {
                Ok(r) => (
                    r.state,
                    r.details.clone(),
                    r.rtt,
                    r.connected_since,
                    r.handshake_duration,
                    owned(&r.recv),
                    owned(&r.sent),
                ),
                Err(_) => (
                    ConnectionState::Failed,
                    None,
                    None,
                    None,
                    None,
                    BTreeMap::new(),
                    BTreeMap::new(),
                ),
            };
        ConnectionSnapshot {
            peer_id: self.peer_id,
            address: self.address,
            direction: self.direction,
            state,
            details,
            rtt,
            misbehavior_score: self.score.load(Ordering::Relaxed),
            connected_since,
            handshake_duration,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            received,
            sent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::Message;
    use bytes::Bytes;

    fn stats() -> ConnectionStats {
        ConnectionStats::new(
            Uuid::nil(),
            "127.0.0.1:8333".parse().unwrap(),
            Direction::Outbound,
        )
    }

    #[test]
    fn ten_thousand_unknown_commands_share_one_other_key() {
        let s = stats();
        s.count_received(commands::PING, 32);
        for i in 0..10_000 {
            let command = format!("x{i:07}");
            s.count_received(&command, 24);
            s.count_sent(&command, 24);
        }
        let snap = s.snapshot();
        for map in [&snap.received, &snap.sent] {
            assert!(map.len() <= KNOWN_COMMANDS.len() + 1, "{} keys", map.len());
            let other = map[OTHER_COMMANDS];
            assert_eq!(other.messages, 10_000);
            assert_eq!(other.bytes, 240_000);
        }
        assert_eq!(snap.received.len(), 2);
        assert_eq!(snap.received[commands::PING].messages, 1);
        assert_eq!(snap.messages_in(), 10_001);
    }

    #[test]
    fn every_known_command_keeps_its_own_key() {
        let s = stats();
        for c in KNOWN_COMMANDS {
            s.count_received(c, 24);
        }
        let snap = s.snapshot();
        assert_eq!(snap.received.len(), KNOWN_COMMANDS.len());
        assert!(!snap.received.contains_key(OTHER_COMMANDS));
    }

    #[test]
    fn no_known_command_decodes_as_unknown() {
        // A known name never decodes to `Message::Unknown` (it may fail on an empty payload).
        for c in KNOWN_COMMANDS {
            let decoded = Message::decode_payload(c, Bytes::new());
            assert!(
                !matches!(decoded, Ok(Message::Unknown { .. })),
                "{c} decodes as unknown"
            );
        }
        assert!(!is_known_command(commands::EXTMSG));
        assert!(!is_known_command("getheadersen"));
        assert!(!is_known_command(OTHER_COMMANDS));
        assert!(matches!(
            Message::decode_payload("getheadersen", Bytes::new()),
            Ok(Message::Unknown { .. })
        ));
    }
}
