//! [`InMemoryPeerStore`]: peers in memory, indexed by id and by (IP, port), optionally saved to
//! a JSON file.
//!
//! Lookups take a shared lock on plain hash maps, so they cost one or two hash lookups and a
//! clone. A third index, the evictable peers ordered by (status, `status_timestamp`, id), makes
//! eviction from a full store a single ordered-set pop instead of a scan. The lock is never held
//! across an `.await`; saving clones the peers under the lock and does the serialization and file
//! I/O on tokio's blocking pool, so neither blocks the runtime.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use uuid::Uuid;

use super::file;
use super::PeerStore;
use crate::p2p::config::{ManagerConfig, DEFAULT_MAX_STORED_PEERS};
use crate::p2p::error::{P2pError, Result};
use crate::p2p::peer::{Peer, PeerStatusKind, UnixTime};

/// Position of a peer in the eviction order: rank of its status kind, then oldest first, then id
/// so that ties have a fixed order.
type EvictionKey = (u8, UnixTime, Uuid);

fn eviction_key(peer: &Peer) -> Option<EvictionKey> {
    peer.status
        .kind()
        .eviction_rank()
        .map(|rank| (rank, peer.status_timestamp, peer.id))
}

/// The three indexes, always changed together under one lock.
#[derive(Default)]
struct Index {
    peers: HashMap<Uuid, Peer>,
    by_addr: HashMap<(IpAddr, u16), Uuid>,
    evictable: BTreeSet<EvictionKey>,
}

impl Index {
    /// Inserts a peer whose id and address the caller has checked are free.
    fn insert(&mut self, peer: Peer) {
        self.by_addr.insert((peer.ip, peer.port), peer.id);
        if let Some(key) = eviction_key(&peer) {
            self.evictable.insert(key);
        }
        self.peers.insert(peer.id, peer);
    }

    fn remove(&mut self, id: &Uuid) -> Option<Peer> {
        let peer = self.peers.remove(id)?;
        self.by_addr.remove(&(peer.ip, peer.port));
        if let Some(key) = eviction_key(&peer) {
            self.evictable.remove(&key);
        }
        Some(peer)
    }

    /// Replaces the stored peer that has `peer.id`, whose new address the caller has checked is
    /// free (or unchanged). Touches only the indexes whose key changed: an update that keeps the
    /// address and the eviction position is a single map write.
    fn replace(&mut self, peer: Peer) {
        let Some(slot) = self.peers.get_mut(&peer.id) else {
            return;
        };
        if (slot.ip, slot.port) != (peer.ip, peer.port) {
            self.by_addr.remove(&(slot.ip, slot.port));
            self.by_addr.insert((peer.ip, peer.port), peer.id);
        }
        let (old_key, new_key) = (eviction_key(slot), eviction_key(&peer));
        if old_key != new_key {
            if let Some(key) = old_key {
                self.evictable.remove(&key);
            }
            if let Some(key) = new_key {
                self.evictable.insert(key);
            }
        }
        *slot = peer;
    }

    /// Removes and returns the first peer in eviction order, if any peer may be evicted.
    fn evict_one(&mut self) -> Option<Peer> {
        let (_, _, id) = self.evictable.pop_first()?;
        self.remove(&id)
    }
}

/// A peer store in memory, optionally persisted to a JSON file with [`save_to_file`] and
/// [`load_from_file`].
///
/// [`save_to_file`]: InMemoryPeerStore::save_to_file
/// [`load_from_file`]: InMemoryPeerStore::load_from_file
pub struct InMemoryPeerStore {
    index: RwLock<Index>,
    max_peers: usize,
    path: Option<PathBuf>,
    /// Serializes saves, so an older snapshot never lands after a newer one.
    save_lock: tokio::sync::Mutex<()>,
}

impl InMemoryPeerStore {
    /// An empty store without a file, bounded by the default `max_stored_peers` (10,000).
    pub fn new() -> Self {
        InMemoryPeerStore {
            index: RwLock::new(Index::default()),
            max_peers: DEFAULT_MAX_STORED_PEERS,
            path: None,
            save_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// An empty store that saves to and loads from `path`. Nothing is read until
    /// [`load_from_file`](Self::load_from_file).
    pub fn with_file(path: impl Into<PathBuf>) -> Self {
        InMemoryPeerStore {
            path: Some(path.into()),
            ..InMemoryPeerStore::new()
        }
    }

    /// An empty store with the configuration's `peer_store_path` and `max_stored_peers`.
    pub fn from_config(config: &ManagerConfig) -> Self {
        InMemoryPeerStore {
            path: config.peer_store_path.clone(),
            ..InMemoryPeerStore::new()
        }
        .with_max_peers(config.max_stored_peers)
    }

    /// The same store bounded to `max_peers` peers.
    pub fn with_max_peers(mut self, max_peers: usize) -> Self {
        self.max_peers = max_peers;
        self
    }

    /// The most peers the store holds.
    pub fn max_peers(&self) -> usize {
        self.max_peers
    }

    /// The file the store saves to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        // A panic while holding the lock cannot leave the indexes half-changed (every change is
        // a few infallible map operations), so a poisoned lock is safe to keep using.
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn require_path(&self) -> Result<PathBuf> {
        self.path.clone().ok_or_else(|| {
            P2pError::InvalidConfiguration(
                "this InMemoryPeerStore has no file: create it with with_file(path)".to_string(),
            )
        })
    }

    /// Replaces the store's contents with the peers in its file, and returns how many were
    /// loaded.
    ///
    /// A missing file loads as an empty store. A file that does not parse (corrupt, truncated,
    /// another format or a newer version) is renamed to `<name>.corrupt-<unix time>`, logged at
    /// ERROR, and the store starts empty: a bad file never stops the application from starting.
    /// Only an I/O error reading the file is returned as an error. Peers beyond `max_peers` are
    /// evicted in the usual order. Temporary files left by an interrupted save are removed.
    pub async fn load_from_file(&self) -> Result<usize> {
        let path = self.require_path()?;
        tracing::debug!(path = %path.display(), "Loading peer store");
        let task_path = path.clone();
        let loaded = tokio::task::spawn_blocking(move || load_blocking(&task_path))
            .await
            .map_err(|e| P2pError::persistence(&path, io::Error::other(e.to_string())))
            .and_then(|r| r);
        let peers = match loaded {
            Ok(peers) => peers,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "Failed to read peer store file");
                return Err(error);
            }
        };

        let mut index = Index::default();
        for peer in peers {
            if index.peers.contains_key(&peer.id)
                || index.by_addr.contains_key(&(peer.ip, peer.port))
            {
                tracing::warn!(
                    path = %path.display(), peer_id = %peer.id, ip = %peer.ip, port = peer.port,
                    "Skipping duplicate peer in peer store file"
                );
                continue;
            }
            index.insert(peer);
        }
        while index.peers.len() > self.max_peers {
            if index.evict_one().is_none() {
                tracing::warn!(
                    path = %path.display(), peer_count = index.peers.len(),
                    max_peers = self.max_peers,
                    "Peer store file holds more Valid and Banned peers than max_stored_peers; \
                     keeping them all"
                );
                break;
            }
        }
        let count = index.peers.len();
        *self.write_index() = index;
        tracing::info!(path = %path.display(), peer_count = count, "Peer store loaded");
        Ok(count)
    }

    /// Saves every peer to the store's file atomically: after a crash at any moment the file
    /// holds either the previous save or this one.
    pub async fn save_to_file(&self) -> Result<()> {
        let path = self.require_path()?;
        let _serialized = self.save_lock.lock().await;
        let mut peers: Vec<Peer> = self.read_index().peers.values().cloned().collect();
        let peer_count = peers.len();
        tracing::debug!(path = %path.display(), peer_count, "Saving peer store");
        let task_path = path.clone();
        let saved = tokio::task::spawn_blocking(move || {
            // A stable order keeps successive files diffable.
            peers.sort_unstable_by_key(|p| (p.ip, p.port));
            let bytes = file::encode(&peers)?;
            file::write_atomically(&task_path, &bytes)
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
        match saved {
            Ok(()) => {
                tracing::info!(path = %path.display(), peer_count, "Peer store saved");
                Ok(())
            }
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "Failed to save peer store");
                Err(P2pError::persistence(path, error))
            }
        }
    }
}

/// Reads and decodes the file; sets a bad file aside and returns no peers for it.
fn load_blocking(path: &Path) -> Result<Vec<Peer>> {
    match file::remove_stale_temp_files(path) {
        Ok(0) => {}
        Ok(n) => {
            tracing::debug!(path = %path.display(), removed = n, "Removed temporary files of an interrupted save")
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "Could not remove temporary files of an interrupted save")
        }
    }
    let Some(bytes) = file::read(path).map_err(|e| P2pError::persistence(path, e))? else {
        tracing::debug!(path = %path.display(), "No peer store file yet; starting empty");
        return Ok(Vec::new());
    };
    match file::decode(&bytes) {
        Ok(peers) => Ok(peers),
        Err(error) => {
            match file::set_aside(path) {
                Ok(moved_to) => tracing::error!(
                    path = %path.display(), moved_to = %moved_to.display(), %error,
                    "Peer store file is corrupt; moved it aside and starting empty"
                ),
                Err(rename_error) => tracing::error!(
                    path = %path.display(), %error, %rename_error,
                    "Peer store file is corrupt and could not be moved aside; starting empty \
                     (the next save replaces it)"
                ),
            }
            Ok(Vec::new())
        }
    }
}

impl Default for InMemoryPeerStore {
    fn default() -> Self {
        InMemoryPeerStore::new()
    }
}

impl fmt::Debug for InMemoryPeerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryPeerStore")
            .field("peer_count", &self.read_index().peers.len())
            .field("max_peers", &self.max_peers)
            .field("path", &self.path)
            .finish()
    }
}

#[async_trait]
impl PeerStore for InMemoryPeerStore {
    async fn create(&self, peer: Peer) -> Result<()> {
        tracing::trace!(
            peer_id = %peer.id, ip = %peer.ip, port = peer.port, status = %peer.status,
            "Creating peer"
        );
        let mut index = self.write_index();
        if index.by_addr.contains_key(&(peer.ip, peer.port)) {
            tracing::warn!(ip = %peer.ip, port = peer.port, "Refusing duplicate peer address");
            return Err(P2pError::DuplicatePeer {
                ip: peer.ip,
                port: peer.port,
            });
        }
        if index.peers.contains_key(&peer.id) {
            tracing::warn!(peer_id = %peer.id, "Refusing duplicate peer id");
            return Err(P2pError::DuplicatePeerId { peer_id: peer.id });
        }
        if index.peers.len() >= self.max_peers {
            match index.evict_one() {
                Some(evicted) => tracing::debug!(
                    peer_id = %evicted.id, ip = %evicted.ip, port = evicted.port,
                    status = %evicted.status, "Evicted peer to make room"
                ),
                None => {
                    tracing::warn!(
                        peer_count = index.peers.len(),
                        "Peer store full of Valid and Banned peers"
                    );
                    return Err(P2pError::StoreFull {
                        capacity: self.max_peers,
                    });
                }
            }
        }
        let (id, ip, port) = (peer.id, peer.ip, peer.port);
        index.insert(peer);
        tracing::debug!(peer_id = %id, %ip, port, "Peer created successfully");
        Ok(())
    }

    async fn read(&self, id: Uuid) -> Result<Option<Peer>> {
        let peer = self.read_index().peers.get(&id).cloned();
        if peer.is_none() {
            tracing::trace!(peer_id = %id, "Peer not found");
        }
        Ok(peer)
    }

    async fn update(&self, peer: Peer) -> Result<()> {
        tracing::trace!(peer_id = %peer.id, status = %peer.status, "Updating peer");
        let mut index = self.write_index();
        let Some(old) = index.peers.get(&peer.id) else {
            tracing::warn!(peer_id = %peer.id, "Update of a peer that does not exist");
            return Err(P2pError::PeerNotFound { peer_id: peer.id });
        };
        if (old.ip, old.port) != (peer.ip, peer.port) {
            if index.by_addr.contains_key(&(peer.ip, peer.port)) {
                tracing::warn!(
                    peer_id = %peer.id, ip = %peer.ip, port = peer.port,
                    "Update would move peer onto another peer's address"
                );
                return Err(P2pError::DuplicatePeer {
                    ip: peer.ip,
                    port: peer.port,
                });
            }
            tracing::debug!(
                peer_id = %peer.id, old_ip = %old.ip, old_port = old.port, ip = %peer.ip,
                port = peer.port, "Peer address changed"
            );
        }
        let id = peer.id;
        index.replace(peer);
        tracing::debug!(peer_id = %id, "Peer updated successfully");
        Ok(())
    }

    async fn delete(&self, id: Uuid) -> Result<bool> {
        let removed = self.write_index().remove(&id).is_some();
        tracing::debug!(peer_id = %id, removed, "Deleted peer");
        Ok(removed)
    }

    async fn list_all(&self) -> Result<Vec<Peer>> {
        Ok(self.read_index().peers.values().cloned().collect())
    }

    async fn find_by_status(&self, kind: PeerStatusKind) -> Result<Vec<Peer>> {
        Ok(self
            .read_index()
            .peers
            .values()
            .filter(|p| p.status.kind() == kind)
            .cloned()
            .collect())
    }

    async fn find_by_ip_port(&self, ip: IpAddr, port: u16) -> Result<Option<Peer>> {
        let index = self.read_index();
        Ok(index
            .by_addr
            .get(&(ip, port))
            .and_then(|id| index.peers.get(id))
            .cloned())
    }

    async fn count_by_status(&self, kind: PeerStatusKind) -> Result<usize> {
        Ok(self
            .read_index()
            .peers
            .values()
            .filter(|p| p.status.kind() == kind)
            .count())
    }

    async fn count(&self) -> Result<usize> {
        Ok(self.read_index().peers.len())
    }

    /// Loads the file only into an empty store: peers the application added before starting
    /// the manager are never replaced by an older file.
    async fn load(&self) -> Result<usize> {
        if self.path().is_some() && self.count().await? == 0 {
            self.load_from_file().await
        } else {
            Ok(0)
        }
    }

    async fn flush(&self) -> Result<()> {
        if self.path.is_some() {
            self.save_to_file().await
        } else {
            Ok(())
        }
    }
}
