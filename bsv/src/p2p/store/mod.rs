//! Peer stores: where the addresses the manager knows, and what it learned about them, live.
//!
//! [`PeerStore`] is the async interface the manager uses, always as `Arc<dyn PeerStore>`, so an
//! application can bring its own. These ship:
//!
//! * [`InMemoryPeerStore`]: a map by id with an index by (IP, port), optionally saved to a JSON
//!   file atomically (a crash leaves the old file or the new one, never a torn one).
//! * `SqlitePeerStore` (cargo feature `sqlite`): one SQLite table in WAL mode where every write
//!   is on disk when the call returns.
//! * `PostgresPeerStore` (cargo feature `postgres`): one PostgreSQL table shared by several
//!   instances (processes or hosts); a ban made by one reaches the others' managers within
//!   milliseconds as a [`BanNotice`] (`LISTEN`/`NOTIFY`).
//!
//! Every store follows the same rules, checked by one shared conformance suite
//! (`bsv/tests/store_conformance.rs`): one peer per (IP, port); updating a missing peer fails;
//! the store is bounded and, when full, evicts the oldest `Unknown` peer, then the oldest
//! `Inaccessible` one, and never `Valid` or `Banned` peers. Ban handling (ban an IP on every
//! port, lift lapsed bans, never ban a whitelisted address) is written once here as provided
//! methods on top of the basic operations.

mod file;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::net::IpAddr;

use async_trait::async_trait;
use uuid::Uuid;

pub use memory::InMemoryPeerStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresPeerStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqlitePeerStore;

use super::bans::Whitelist;
use super::error::Result;
use super::peer::{unix_now, BanReason, Peer, PeerStatus, PeerStatusKind, UnixTime};

/// What [`PeerStore::ban_ip`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanOutcome {
    /// The IP is whitelisted; nothing was banned.
    Whitelisted,
    /// These stored peers (every port of the IP) are now banned.
    Banned(Vec<Peer>),
}

/// A ban made elsewhere: by another instance sharing the same database (see
/// [`PeerStore::ban_notifications`]).
///
/// The ban is already in the store when the notice arrives (it is sent in the same transaction
/// that wrote it), so reading the store agrees with the notice. A manager that receives one
/// closes every connection from `ip` (unless whitelisted) and does not write the store again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BanNotice {
    /// The banned address (every port).
    pub ip: IpAddr,
    /// Why it was banned.
    pub reason: BanReason,
    /// When the ban ends (Unix seconds); `None` is a permanent ban.
    pub until: Option<UnixTime>,
}

/// Storage of known peers, shared by the manager's tasks as `Arc<dyn PeerStore>`.
///
/// Invariants every implementation keeps: at most one peer per (IP, port); `create` of a taken
/// address fails with `DuplicatePeer`; `update` of a missing id fails with `PeerNotFound` and an
/// update moving a peer onto another peer's address with `DuplicatePeer`; when the store is full,
/// `create` evicts the oldest `Unknown` peer, then the oldest `Inaccessible` one (by
/// `status_timestamp`), and fails with `StoreFull` if only `Valid` and `Banned` peers are left.
#[async_trait]
pub trait PeerStore: Send + Sync {
    /// Adds a peer.
    async fn create(&self, peer: Peer) -> Result<()>;

    /// The peer with this id, if stored.
    async fn read(&self, id: Uuid) -> Result<Option<Peer>>;

    /// Replaces the stored peer that has `peer.id` with `peer`. A store shared by several
    /// instances may refuse to replace a ban in force with another status (`BanInForce`): the
    /// caller's read is older than another instance's ban.
    async fn update(&self, peer: Peer) -> Result<()>;

    /// Removes the peer with this id; returns whether it was stored.
    async fn delete(&self, id: Uuid) -> Result<bool>;

    /// Every stored peer, in no particular order.
    async fn list_all(&self) -> Result<Vec<Peer>>;

    /// The peers whose status is of this kind.
    async fn find_by_status(&self, kind: PeerStatusKind) -> Result<Vec<Peer>>;

    /// The peer at this address, if stored.
    async fn find_by_ip_port(&self, ip: IpAddr, port: u16) -> Result<Option<Peer>>;

    /// How many peers have a status of this kind.
    async fn count_by_status(&self, kind: PeerStatusKind) -> Result<usize>;

    /// How many peers are stored.
    async fn count(&self) -> Result<usize> {
        let mut total = 0;
        for kind in PeerStatusKind::ALL {
            total += self.count_by_status(kind).await?;
        }
        Ok(total)
    }

    /// The peers at this IP, on any port.
    async fn find_by_ip(&self, ip: IpAddr) -> Result<Vec<Peer>> {
        let mut peers = self.list_all().await?;
        peers.retain(|p| p.ip == ip);
        Ok(peers)
    }

    /// Loads persisted peers, if the store has a backing file; returns how many were loaded.
    /// The manager calls it once at start. Stores that live in a database have nothing to do.
    async fn load(&self) -> Result<usize> {
        Ok(0)
    }

    /// Makes every change durable. The in-memory store saves its file (if it has one); stores
    /// that write through, like SQLite, have nothing to do. The manager calls it periodically
    /// and on shutdown.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Bans every stored peer at `ip` (bans apply to the address, on every port) until `until`
    /// (Unix seconds; `None` is permanent), unless `ip` is whitelisted.
    ///
    /// Read-modify-write through the basic operations: a concurrent update of the same peer may
    /// win, which the manager avoids by banning from one task. Stores shared between processes
    /// override it with one atomic write.
    async fn ban_ip(
        &self,
        ip: IpAddr,
        reason: BanReason,
        until: Option<UnixTime>,
        whitelist: &Whitelist,
    ) -> Result<BanOutcome> {
        if whitelist.contains(ip) {
            tracing::info!(%ip, %reason, "Not banning whitelisted address");
            return Ok(BanOutcome::Whitelisted);
        }
        let now = unix_now();
        let status = PeerStatus::Banned { reason, until };
        let mut banned = Vec::new();
        for mut peer in self.find_by_ip(ip).await? {
            peer.set_status_at(status.clone(), now);
            self.update(peer.clone()).await?;
            banned.push(peer);
        }
        tracing::warn!(%ip, %status, peer_count = banned.len(), "Banned address");
        Ok(BanOutcome::Banned(banned))
    }

    /// Lifts the ban of every stored peer at `ip`, returning them to `Unknown`; returns the
    /// peers that were banned.
    async fn unban_ip(&self, ip: IpAddr) -> Result<Vec<Peer>> {
        let now = unix_now();
        let mut unbanned = Vec::new();
        for mut peer in self.find_by_ip(ip).await? {
            if peer.status.kind() == PeerStatusKind::Banned {
                peer.set_status_at(PeerStatus::Unknown, now);
                self.update(peer.clone()).await?;
                unbanned.push(peer);
            }
        }
        tracing::info!(%ip, peer_count = unbanned.len(), "Unbanned address");
        Ok(unbanned)
    }

    /// Whether a stored peer at `ip` (any port) is banned at time `now`. Inbound connections
    /// from such an address are dropped.
    async fn is_ip_banned(&self, ip: IpAddr, now: UnixTime) -> Result<bool> {
        Ok(self
            .find_by_ip(ip)
            .await?
            .iter()
            .any(|p| p.is_banned_at(now)))
    }

    /// Bans made by other instances sharing this store, as they happen, for stores shared
    /// between processes; `None` (the default) for stores only this process writes.
    ///
    /// The manager subscribes when it starts and closes its connections from each banned
    /// address. Bans made through this same store value are not announced back to it (its own
    /// manager has already acted on them). Each call returns a new receiver; a receiver that
    /// falls behind by more than the channel's capacity loses the oldest notices
    /// (`RecvError::Lagged`).
    fn ban_notifications(&self) -> Option<tokio::sync::broadcast::Receiver<BanNotice>> {
        None
    }

    /// Returns every peer whose ban has lapsed at `now` to `Unknown`, and returns those peers.
    async fn expire_bans(&self, now: UnixTime) -> Result<Vec<Peer>> {
        let mut expired = Vec::new();
        for mut peer in self.find_by_status(PeerStatusKind::Banned).await? {
            if peer.ban_expired(now) {
                peer.set_status_at(PeerStatus::Unknown, now);
                self.update(peer.clone()).await?;
                tracing::info!(peer_id = %peer.id, ip = %peer.ip, port = peer.port, "Ban expired");
                expired.push(peer);
            }
        }
        Ok(expired)
    }
}
