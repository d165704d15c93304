//! The peer model: a known network address, what we know about it ([`PeerStatus`]) and why it may
//! be banned ([`BanReason`]).
//!
//! A [`Peer`] is an entry of the peer store, not a connection: it exists before we ever connect
//! and outlives every connection. Its status moves `Unknown` → `Valid` (a handshake succeeded),
//! `Inaccessible` (repeated failures or timeouts) or `Banned` (wrong chain or misbehaviour), and a
//! ban with an end time returns to `Unknown` once it lapses. Times are whole seconds since the
//! Unix epoch, which keeps the store file and the SQLite rows readable and portable.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bitcoin::Network;

/// Seconds since the Unix epoch, the unit of every peer timestamp.
pub type UnixTime = u64;

/// The current time in seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A peer the library knows about: its address and what we learned about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Stable identity of the entry, used by the manager's API and in events.
    pub id: Uuid,
    /// The peer's IP address (IPv4 or IPv6).
    pub ip: IpAddr,
    /// The peer's listening port.
    pub port: u16,
    /// What we know about the peer.
    pub status: PeerStatus,
    /// When `status` last changed (or when the peer was first stored), in Unix seconds.
    /// [`Peer::new`] and [`Peer::set_status`] stamp it; stores keep the value they are given, so
    /// an imported peer keeps its history.
    pub status_timestamp: UnixTime,
}

impl Peer {
    /// A new `Unknown` peer with a fresh random id, stamped now.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack listener reports IPv4
    /// clients) is stored as the IPv4 address, so the same node is never stored twice.
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Peer {
            id: Uuid::new_v4(),
            ip: ip.to_canonical(),
            port,
            status: PeerStatus::Unknown,
            status_timestamp: unix_now(),
        }
    }

    /// The peer's address as a socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// Sets the status, stamping `status_timestamp` with the current time if it changed.
    /// Returns whether it changed.
    pub fn set_status(&mut self, status: PeerStatus) -> bool {
        self.set_status_at(status, unix_now())
    }

    /// Sets the status, stamping `status_timestamp` with `now` if it changed. Returns whether it
    /// changed. Setting the same status again keeps the old timestamp, so "how long has this
    /// peer been in this state" stays true.
    pub fn set_status_at(&mut self, status: PeerStatus, now: UnixTime) -> bool {
        if self.status == status {
            return false;
        }
        self.status = status;
        self.status_timestamp = now;
        true
    }

    /// Whether the peer is banned at time `now` (a permanent ban, or one that has not lapsed).
    pub fn is_banned_at(&self, now: UnixTime) -> bool {
        match &self.status {
            PeerStatus::Banned { until: None, .. } => true,
            PeerStatus::Banned {
                until: Some(until), ..
            } => now < *until,
            _ => false,
        }
    }

    /// Whether the peer is banned with an end time that has passed at `now`, so the ban should be
    /// lifted.
    pub fn ban_expired(&self, now: UnixTime) -> bool {
        matches!(&self.status, PeerStatus::Banned { until: Some(until), .. } if now >= *until)
    }
}

/// What we know about a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerStatus {
    /// Not tried yet (learned from DNS, `addr` or an inbound connection).
    Unknown,
    /// A handshake succeeded.
    Valid,
    /// Too many failed connection attempts, or a handshake or ping timeout.
    Inaccessible,
    /// Banned: never connected to, inbound connections from its IP are dropped.
    Banned {
        /// Why it was banned.
        reason: BanReason,
        /// When the ban ends (Unix seconds); `None` is a permanent ban.
        until: Option<UnixTime>,
    },
}

impl PeerStatus {
    /// The status without its details, for queries and counts.
    pub fn kind(&self) -> PeerStatusKind {
        match self {
            PeerStatus::Unknown => PeerStatusKind::Unknown,
            PeerStatus::Valid => PeerStatusKind::Valid,
            PeerStatus::Inaccessible => PeerStatusKind::Inaccessible,
            PeerStatus::Banned { .. } => PeerStatusKind::Banned,
        }
    }
}

impl fmt::Display for PeerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerStatus::Banned {
                reason,
                until: Some(until),
            } => write!(f, "banned until {until} ({reason})"),
            PeerStatus::Banned {
                reason,
                until: None,
            } => write!(f, "banned permanently ({reason})"),
            other => f.write_str(other.kind().as_str()),
        }
    }
}

/// The kind of a [`PeerStatus`], without its details: what the store is queried and counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerStatusKind {
    /// [`PeerStatus::Unknown`].
    Unknown,
    /// [`PeerStatus::Valid`].
    Valid,
    /// [`PeerStatus::Inaccessible`].
    Inaccessible,
    /// [`PeerStatus::Banned`].
    Banned,
}

impl PeerStatusKind {
    /// Every kind, in a fixed order.
    pub const ALL: [PeerStatusKind; 4] = [
        PeerStatusKind::Unknown,
        PeerStatusKind::Valid,
        PeerStatusKind::Inaccessible,
        PeerStatusKind::Banned,
    ];

    /// The lowercase name, as stored in files and databases.
    pub const fn as_str(self) -> &'static str {
        match self {
            PeerStatusKind::Unknown => "unknown",
            PeerStatusKind::Valid => "valid",
            PeerStatusKind::Inaccessible => "inaccessible",
            PeerStatusKind::Banned => "banned",
        }
    }

    /// The order in which a full store evicts peers of this kind (lower first), or `None` if it
    /// never evicts them: untried addresses are the cheapest to lose, then unreachable ones;
    /// peers known to work and bans (which protect us) are kept.
    pub const fn eviction_rank(self) -> Option<u8> {
        match self {
            PeerStatusKind::Unknown => Some(0),
            PeerStatusKind::Inaccessible => Some(1),
            PeerStatusKind::Valid | PeerStatusKind::Banned => None,
        }
    }
}

impl fmt::Display for PeerStatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PeerStatusKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        PeerStatusKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown peer status {s:?}"))
    }
}

/// Why a peer was banned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BanReason {
    /// The peer speaks another BSV network (its frames carry that network's magic).
    NetworkMismatch {
        /// Our network.
        expected: Network,
        /// What the peer sent: the other network's name, or the magic in hex.
        received: String,
    },
    /// The peer is on another blockchain (a magic no BSV network uses, e.g. BTC's `f9beb4d9`).
    BlockchainMismatch {
        /// What identified the other chain, e.g. the magic in hex.
        received: String,
    },
    /// The peer's user agent matches a banned pattern (BCH and other chains; docs/PROTOCOL.md §6).
    BannedUserAgent {
        /// The user agent the peer sent.
        user_agent: String,
    },
    /// The peer misbehaved (protocol violations with a score, as the node counts them).
    Misbehavior {
        /// The accumulated misbehaviour score.
        score: u32,
        /// What the peer did, e.g. "oversized-addr".
        reason: String,
    },
    /// Banned by the application or an operator.
    Manual {
        /// Free text from whoever banned it.
        note: String,
    },
}

impl BanReason {
    /// A short stable name of the variant (its serialized `kind`), for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            BanReason::NetworkMismatch { .. } => "network_mismatch",
            BanReason::BlockchainMismatch { .. } => "blockchain_mismatch",
            BanReason::BannedUserAgent { .. } => "banned_user_agent",
            BanReason::Misbehavior { .. } => "misbehavior",
            BanReason::Manual { .. } => "manual",
        }
    }
}

impl fmt::Display for BanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanReason::NetworkMismatch { expected, received } => {
                write!(
                    f,
                    "network mismatch: expected {expected}, received {received}"
                )
            }
            BanReason::BlockchainMismatch { received } => {
                write!(f, "blockchain mismatch: received {received}")
            }
            BanReason::BannedUserAgent { user_agent } => {
                write!(f, "banned user agent {user_agent:?}")
            }
            BanReason::Misbehavior { score, reason } => {
                write!(f, "misbehavior (score {score}): {reason}")
            }
            BanReason::Manual { note } => write!(f, "manual ban: {note}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn banned(until: Option<UnixTime>) -> PeerStatus {
        PeerStatus::Banned {
            reason: BanReason::Manual {
                note: "test".into(),
            },
            until,
        }
    }

    #[test]
    fn new_peer_is_unknown_stamped_now_with_a_fresh_id() {
        let before = unix_now();
        let a = Peer::new("10.0.0.1".parse().unwrap(), 8333);
        let b = Peer::new("10.0.0.1".parse().unwrap(), 8333);
        assert_eq!(a.status, PeerStatus::Unknown);
        assert!(a.status_timestamp >= before && a.status_timestamp <= unix_now());
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.get_version_num(), 4);
        assert_eq!(a.socket_addr(), "10.0.0.1:8333".parse().unwrap());
    }

    #[test]
    fn ipv4_mapped_ipv6_is_stored_as_ipv4() {
        let p = Peer::new("::ffff:10.0.0.1".parse().unwrap(), 8333);
        assert_eq!(p.ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        let p = Peer::new("2001:db8::1".parse().unwrap(), 8333);
        assert_eq!(p.socket_addr().to_string(), "[2001:db8::1]:8333");
    }

    #[test]
    fn set_status_stamps_only_on_change() {
        let mut p = Peer::new("10.0.0.1".parse().unwrap(), 8333);
        p.status_timestamp = 100;
        assert!(!p.set_status_at(PeerStatus::Unknown, 200));
        assert_eq!(p.status_timestamp, 100);
        assert!(p.set_status_at(PeerStatus::Valid, 300));
        assert_eq!(
            (p.status.clone(), p.status_timestamp),
            (PeerStatus::Valid, 300)
        );
        assert!(p.set_status_at(banned(Some(10)), 400));
        assert!(
            p.set_status_at(banned(Some(20)), 500),
            "a new end time is a change"
        );
        assert_eq!(p.status_timestamp, 500);
    }

    #[test]
    fn bans_with_an_end_time_lapse_and_permanent_bans_do_not() {
        let mut p = Peer::new("10.0.0.1".parse().unwrap(), 8333);
        assert!(!p.is_banned_at(0) && !p.ban_expired(0));
        p.status = banned(Some(1000));
        assert!(p.is_banned_at(999) && !p.ban_expired(999));
        assert!(!p.is_banned_at(1000) && p.ban_expired(1000));
        p.status = banned(None);
        assert!(p.is_banned_at(u64::MAX) && !p.ban_expired(u64::MAX));
    }

    #[test]
    fn status_and_reason_display() {
        assert_eq!(PeerStatus::Inaccessible.to_string(), "inaccessible");
        assert_eq!(
            banned(None).to_string(),
            "banned permanently (manual ban: test)"
        );
        let r = BanReason::NetworkMismatch {
            expected: Network::Mainnet,
            received: "testnet".into(),
        };
        assert_eq!(
            r.to_string(),
            "network mismatch: expected mainnet, received testnet"
        );
        let r = BanReason::Misbehavior {
            score: 100,
            reason: "oversized-addr".into(),
        };
        assert_eq!(r.to_string(), "misbehavior (score 100): oversized-addr");
        assert_eq!(
            BanReason::BannedUserAgent {
                user_agent: "/Bitcoin ABC:0.22/".into()
            }
            .to_string(),
            "banned user agent \"/Bitcoin ABC:0.22/\""
        );
    }

    #[test]
    fn peer_serializes_to_readable_json_and_back() {
        let mut p = Peer::new("2001:db8::1".parse().unwrap(), 18333);
        p.status = PeerStatus::Banned {
            reason: BanReason::BlockchainMismatch {
                received: "f9beb4d9".into(),
            },
            until: Some(1_700_000_000),
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""ip":"2001:db8::1""#), "{json}");
        assert!(
            json.contains(r#""status":{"kind":"banned","reason":{"kind":"blockchain_mismatch","received":"f9beb4d9"},"until":1700000000}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Peer>(&json).unwrap(), p);
    }

    #[test]
    fn status_kind_parses_its_own_names() {
        for k in PeerStatusKind::ALL {
            assert_eq!(k.as_str().parse::<PeerStatusKind>(), Ok(k));
        }
        assert!("gone".parse::<PeerStatusKind>().is_err());
    }
}
