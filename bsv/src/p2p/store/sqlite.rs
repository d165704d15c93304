//! [`SqlitePeerStore`]: peers in an embedded SQLite database (cargo feature `sqlite`).
//!
//! One table, `peers`, with a unique index on (ip, port) that enforces "one peer per address"
//! in the database itself, and an index on (status, status_timestamp, id) that serves status
//! queries and picks eviction victims without a scan. The database runs in WAL mode with
//! `synchronous=FULL`, so every write is on disk when the call returns and a crash loses nothing
//! that was acknowledged. The schema version lives in `PRAGMA user_version` and is checked on
//! open: an older database is migrated, a newer one refused.
//!
//! SQLite calls block, so each runs on tokio's blocking pool holding the one connection's mutex;
//! the async runtime never waits on disk. The store assumes it is the only writer of its file.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use super::PeerStore;
use crate::p2p::config::{ManagerConfig, DEFAULT_MAX_STORED_PEERS};
use crate::p2p::error::{P2pError, Result};
use crate::p2p::peer::{BanReason, Peer, PeerStatus, PeerStatusKind};

/// The schema version this release creates and reads.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS peers (
    id               TEXT    PRIMARY KEY NOT NULL,
    ip               TEXT    NOT NULL,
    port             INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    ban_reason       TEXT,
    ban_until        INTEGER,
    status_timestamp INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS peers_ip_port ON peers (ip, port);
CREATE INDEX IF NOT EXISTS peers_status ON peers (status, status_timestamp, id);
";

const COLUMNS: &str = "id, ip, port, status, ban_reason, ban_until, status_timestamp";

/// The connection and what the store caches about the table, changed together under one lock.
struct Db {
    conn: Connection,
    /// Rows in `peers`. `COUNT(*)` walks a whole index (about a millisecond at 100,000 rows), and
    /// every `create` needs the count to enforce the bound; the store is the database's only
    /// writer, so it keeps the count itself.
    peer_count: usize,
}

/// A peer store in a SQLite database file.
#[derive(Clone)]
pub struct SqlitePeerStore {
    db: Arc<Mutex<Db>>,
    path: Arc<PathBuf>,
    max_peers: usize,
}

impl fmt::Debug for SqlitePeerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlitePeerStore")
            .field("path", &self.path)
            .field("max_peers", &self.max_peers)
            .finish()
    }
}

impl SqlitePeerStore {
    /// Opens (creating if needed) the database at `path`, bounded by the default
    /// `max_stored_peers` (10,000).
    ///
    /// This does blocking I/O; call it at start-up or inside `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        tracing::debug!(path = %path.display(), "Opening peer store database");
        let conn = open_connection(&path).inspect_err(|error| {
            tracing::error!(path = %path.display(), %error, "Failed to open peer store database");
        })?;
        let count: i64 = conn
            .query_row("SELECT COUNT(*) FROM peers", [], |r| r.get(0))
            .map_err(db_err(&path))?;
        let peer_count = usize::try_from(count).unwrap_or(0);
        tracing::info!(path = %path.display(), peer_count, "Peer store database opened");
        Ok(SqlitePeerStore {
            db: Arc::new(Mutex::new(Db { conn, peer_count })),
            path: Arc::new(path),
            max_peers: DEFAULT_MAX_STORED_PEERS,
        })
    }

    /// Opens the database at the configuration's `peer_store_path` with its
    /// `max_stored_peers`.
    pub fn from_config(config: &ManagerConfig) -> Result<Self> {
        let path = config.peer_store_path.as_ref().ok_or_else(|| {
            P2pError::InvalidConfiguration(
                "peer_store_path must be set to use SqlitePeerStore".to_string(),
            )
        })?;
        Ok(SqlitePeerStore::open(path)?.with_max_peers(config.max_stored_peers))
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

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the database on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db, &Path) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || {
            // SQLite rolls back an unfinished transaction itself, and the count changes only
            // after a commit, so a database whose holder panicked is still consistent.
            let mut db = db.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut db, &path)
        })
        .await
        .map_err(|e| P2pError::Database {
            path: self.path.to_path_buf(),
            source: format!("database task failed: {e}").into(),
        })?
    }

    async fn query_peers(&self, sql: String, kind: Option<PeerStatusKind>) -> Result<Vec<Peer>> {
        self.run(move |db, path| {
            let mut stmt = db.conn.prepare_cached(&sql).map_err(db_err(path))?;
            let rows = match kind {
                Some(kind) => stmt.query_map([kind.as_str()], read_row),
                None => stmt.query_map([], read_row),
            }
            .map_err(db_err(path))?;
            rows.map(|r| {
                r.map_err(db_err(path))
                    .and_then(|p| p.map_err(row_err(path)))
            })
            .collect()
        })
        .await
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let err = db_err(path);
    let mut conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(&err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), journal_mode = %mode, "SQLite refused WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&err)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Brings the schema to [`SCHEMA_VERSION`]; each step runs in its own transaction together with
/// the version bump, so an interrupted migration is redone on the next open.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let err = db_err(path);
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(&err)?;
    if found > SCHEMA_VERSION {
        return Err(P2pError::UnsupportedSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < 1 {
        let tx = conn.transaction().map_err(&err)?;
        tx.execute_batch(SCHEMA_V1).map_err(&err)?;
        tx.pragma_update(None, "user_version", 1).map_err(&err)?;
        tx.commit().map_err(&err)?;
        tracing::info!(path = %path.display(), schema_version = 1, "Created peer store schema");
    }
    Ok(())
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> P2pError + '_ {
    move |e| P2pError::Database {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

fn write_err(path: &Path) -> impl Fn(String) -> P2pError + '_ {
    move |message| P2pError::Database {
        path: path.to_path_buf(),
        source: format!("cannot store peer: {message}").into(),
    }
}

fn row_err(path: &Path) -> impl Fn(String) -> P2pError + '_ {
    move |message| P2pError::Database {
        path: path.to_path_buf(),
        source: format!("malformed row: {message}").into(),
    }
}

/// The columns of a peer, in [`COLUMNS`] order.
struct PeerRow {
    id: String,
    ip: String,
    port: u16,
    status: &'static str,
    ban_reason: Option<String>,
    ban_until: Option<i64>,
    status_timestamp: i64,
}

impl PeerRow {
    fn from_peer(peer: &Peer) -> std::result::Result<Self, String> {
        let (ban_reason, ban_until) = match &peer.status {
            PeerStatus::Banned { reason, until } => (
                Some(serde_json::to_string(reason).map_err(|e| e.to_string())?),
                // Stored bit for bit so every u64 survives (a caller may saturate "now +
                // duration" to u64::MAX); SQL never orders or compares this column.
                until.map(|t| t as i64),
            ),
            _ => (None, None),
        };
        Ok(PeerRow {
            id: peer.id.to_string(),
            ip: peer.ip.to_string(),
            port: peer.port,
            status: peer.status.kind().as_str(),
            ban_reason,
            ban_until,
            // Eviction orders by this column, so it must keep its order: refuse what does not
            // fit instead of wrapping it (it would be the year 292 billion).
            status_timestamp: i64::try_from(peer.status_timestamp).map_err(|_| {
                format!(
                    "status_timestamp {} is beyond the range SQLite can order",
                    peer.status_timestamp
                )
            })?,
        })
    }
}

/// A row as a peer. The outer error is SQLite's; the inner one a value that is not a valid peer.
fn read_row(row: &Row<'_>) -> rusqlite::Result<std::result::Result<Peer, String>> {
    let id: String = row.get(0)?;
    let ip: String = row.get(1)?;
    let port: i64 = row.get(2)?;
    let status: String = row.get(3)?;
    let ban_reason: Option<String> = row.get(4)?;
    let ban_until: Option<i64> = row.get(5)?;
    let status_timestamp: i64 = row.get(6)?;
    Ok((|| {
        let bad = |what: &str| format!("peer {id}: {what}");
        let kind: PeerStatusKind = status.parse().map_err(|e: String| bad(&e))?;
        let status = match kind {
            PeerStatusKind::Unknown => PeerStatus::Unknown,
            PeerStatusKind::Valid => PeerStatus::Valid,
            PeerStatusKind::Inaccessible => PeerStatus::Inaccessible,
            PeerStatusKind::Banned => {
                let reason = ban_reason.ok_or_else(|| bad("banned without a reason"))?;
                let reason: BanReason =
                    serde_json::from_str(&reason).map_err(|e| bad(&e.to_string()))?;
                let until = ban_until.map(|t| t as u64);
                PeerStatus::Banned { reason, until }
            }
        };
        Ok(Peer {
            id: id.parse().map_err(|_| bad("invalid id"))?,
            ip: ip.parse().map_err(|_| bad("invalid ip"))?,
            port: u16::try_from(port).map_err(|_| bad("invalid port"))?,
            status,
            status_timestamp: u64::try_from(status_timestamp)
                .map_err(|_| bad("negative status_timestamp"))?,
        })
    })())
}

fn address_taken(
    conn: &Connection,
    ip: &str,
    port: u16,
    except: Option<&str>,
) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT id FROM peers WHERE ip = ?1 AND port = ?2")?
        .query_row(params![ip, port], |r| r.get::<_, String>(0))
        .optional()
        .map(|found| found.is_some_and(|id| Some(id.as_str()) != except))
}

/// Deletes the first peer in eviction order and returns its id, or `None` if only `Valid` and
/// `Banned` peers are left.
fn evict_one(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let mut kinds: Vec<PeerStatusKind> = PeerStatusKind::ALL
        .into_iter()
        .filter(|k| k.eviction_rank().is_some())
        .collect();
    kinds.sort_by_key(|k| k.eviction_rank());
    for kind in kinds {
        let victim: Option<String> = conn
            .prepare_cached(
                "SELECT id FROM peers WHERE status = ?1 ORDER BY status_timestamp, id LIMIT 1",
            )?
            .query_row([kind.as_str()], |r| r.get(0))
            .optional()?;
        if let Some(id) = victim {
            conn.prepare_cached("DELETE FROM peers WHERE id = ?1")?
                .execute([&id])?;
            return Ok(Some(id));
        }
    }
    Ok(None)
}

#[async_trait]
impl PeerStore for SqlitePeerStore {
    async fn create(&self, peer: Peer) -> Result<()> {
        tracing::trace!(
            peer_id = %peer.id, ip = %peer.ip, port = peer.port, status = %peer.status,
            "Creating peer"
        );
        let max_peers = self.max_peers;
        self.run(move |db, path| {
            let err = db_err(path);
            let row = PeerRow::from_peer(&peer).map_err(write_err(path))?;
            let tx = db
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            if address_taken(&tx, &row.ip, row.port, None).map_err(&err)? {
                tracing::warn!(ip = %peer.ip, port = peer.port, "Refusing duplicate peer address");
                return Err(P2pError::DuplicatePeer {
                    ip: peer.ip,
                    port: peer.port,
                });
            }
            let id_taken = tx
                .prepare_cached("SELECT 1 FROM peers WHERE id = ?1")
                .and_then(|mut s| s.exists([&row.id]))
                .map_err(&err)?;
            if id_taken {
                tracing::warn!(peer_id = %peer.id, "Refusing duplicate peer id");
                return Err(P2pError::DuplicatePeerId { peer_id: peer.id });
            }
            let mut evicted = false;
            if db.peer_count >= max_peers {
                match evict_one(&tx).map_err(&err)? {
                    Some(victim) => {
                        evicted = true;
                        tracing::debug!(peer_id = %victim, "Evicted peer to make room")
                    }
                    None => {
                        tracing::warn!(
                            peer_count = db.peer_count,
                            "Peer store full of Valid and Banned peers"
                        );
                        return Err(P2pError::StoreFull {
                            capacity: max_peers,
                        });
                    }
                }
            }
            tx.prepare_cached(&format!(
                "INSERT INTO peers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    row.id,
                    row.ip,
                    row.port,
                    row.status,
                    row.ban_reason,
                    row.ban_until,
                    row.status_timestamp
                ])
            })
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            if !evicted {
                db.peer_count += 1;
            }
            tracing::debug!(peer_id = %peer.id, ip = %peer.ip, port = peer.port, "Peer created successfully");
            Ok(())
        })
        .await
    }

    async fn read(&self, id: Uuid) -> Result<Option<Peer>> {
        let peer = self
            .run(move |db, path| {
                db.conn
                    .prepare_cached(&format!("SELECT {COLUMNS} FROM peers WHERE id = ?1"))
                    .and_then(|mut s| s.query_row([id.to_string()], read_row).optional())
                    .map_err(db_err(path))?
                    .transpose()
                    .map_err(row_err(path))
            })
            .await?;
        if peer.is_none() {
            tracing::trace!(peer_id = %id, "Peer not found");
        }
        Ok(peer)
    }

    async fn update(&self, peer: Peer) -> Result<()> {
        tracing::trace!(peer_id = %peer.id, status = %peer.status, "Updating peer");
        self.run(move |db, path| {
            let err = db_err(path);
            let row = PeerRow::from_peer(&peer).map_err(write_err(path))?;
            let tx = db
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let old: Option<(String, u16)> = tx
                .prepare_cached("SELECT ip, port FROM peers WHERE id = ?1")
                .and_then(|mut s| {
                    s.query_row([&row.id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(&err)?;
            let Some((old_ip, old_port)) = old else {
                tracing::warn!(peer_id = %peer.id, "Update of a peer that does not exist");
                return Err(P2pError::PeerNotFound { peer_id: peer.id });
            };
            if (old_ip.as_str(), old_port) != (row.ip.as_str(), row.port) {
                if address_taken(&tx, &row.ip, row.port, Some(&row.id)).map_err(&err)? {
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
                    peer_id = %peer.id, %old_ip, old_port, ip = %peer.ip, port = peer.port,
                    "Peer address changed"
                );
            }
            tx.prepare_cached(
                "UPDATE peers SET ip = ?2, port = ?3, status = ?4, ban_reason = ?5, \
                 ban_until = ?6, status_timestamp = ?7 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    row.id,
                    row.ip,
                    row.port,
                    row.status,
                    row.ban_reason,
                    row.ban_until,
                    row.status_timestamp
                ])
            })
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            tracing::debug!(peer_id = %peer.id, "Peer updated successfully");
            Ok(())
        })
        .await
    }

    async fn delete(&self, id: Uuid) -> Result<bool> {
        let removed = self
            .run(move |db, path| {
                let deleted = db
                    .conn
                    .prepare_cached("DELETE FROM peers WHERE id = ?1")
                    .and_then(|mut s| s.execute([id.to_string()]))
                    .map_err(db_err(path))?;
                db.peer_count = db.peer_count.saturating_sub(deleted);
                Ok(deleted > 0)
            })
            .await?;
        tracing::debug!(peer_id = %id, removed, "Deleted peer");
        Ok(removed)
    }

    async fn list_all(&self) -> Result<Vec<Peer>> {
        self.query_peers(format!("SELECT {COLUMNS} FROM peers"), None)
            .await
    }

    async fn find_by_status(&self, kind: PeerStatusKind) -> Result<Vec<Peer>> {
        self.query_peers(
            format!("SELECT {COLUMNS} FROM peers WHERE status = ?1"),
            Some(kind),
        )
        .await
    }

    async fn find_by_ip_port(&self, ip: IpAddr, port: u16) -> Result<Option<Peer>> {
        self.run(move |db, path| {
            db.conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM peers WHERE ip = ?1 AND port = ?2"
                ))
                .and_then(|mut s| {
                    s.query_row(params![ip.to_string(), port], read_row)
                        .optional()
                })
                .map_err(db_err(path))?
                .transpose()
                .map_err(row_err(path))
        })
        .await
    }

    async fn count_by_status(&self, kind: PeerStatusKind) -> Result<usize> {
        let count: i64 = self
            .run(move |db, path| {
                db.conn
                    .prepare_cached("SELECT COUNT(*) FROM peers WHERE status = ?1")
                    .and_then(|mut s| s.query_row([kind.as_str()], |r| r.get(0)))
                    .map_err(db_err(path))
            })
            .await?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn count(&self) -> Result<usize> {
        self.run(|db, _| Ok(db.peer_count)).await
    }

    async fn find_by_ip(&self, ip: IpAddr) -> Result<Vec<Peer>> {
        let ip = ip.to_string();
        self.run(move |db, path| {
            let mut stmt = db
                .conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM peers WHERE ip = ?1"))
                .map_err(db_err(path))?;
            let rows = stmt.query_map([ip], read_row).map_err(db_err(path))?;
            rows.map(|r| {
                r.map_err(db_err(path))
                    .and_then(|p| p.map_err(row_err(path)))
            })
            .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.db");
        drop(SqlitePeerStore::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = SqlitePeerStore::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                P2pError::UnsupportedSchema {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn opening_sets_wal_full_sync_and_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.db");
        let store = SqlitePeerStore::open(&path).unwrap();
        let db = store.db.lock().unwrap();
        let conn = &db.conn;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync, version), ("wal", 2, SCHEMA_VERSION));
    }

    #[tokio::test]
    async fn a_malformed_row_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.db");
        let store = SqlitePeerStore::open(&path).unwrap();
        store
            .db
            .lock()
            .unwrap()
            .conn
            .execute(
                "INSERT INTO peers VALUES ('not-a-uuid', 'not-an-ip', 70000, 'valid', NULL, NULL, -1)",
                [],
            )
            .unwrap();
        let err = store.list_all().await.unwrap_err();
        assert!(err.to_string().contains("malformed row"), "{err}");
    }

    #[tokio::test]
    async fn a_status_timestamp_sqlite_cannot_order_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlitePeerStore::open(dir.path().join("peers.db")).unwrap();
        let mut peer = Peer::new("10.0.0.1".parse().unwrap(), 8333);
        peer.status_timestamp = u64::MAX;
        let err = store.create(peer).await.unwrap_err();
        assert!(err.to_string().contains("cannot store peer"), "{err}");
        assert_eq!(store.count().await.unwrap(), 0);
    }
}
