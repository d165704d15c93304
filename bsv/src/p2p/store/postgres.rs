//! [`PostgresPeerStore`]: peers in a PostgreSQL database shared by several instances (cargo
//! feature `postgres`).
//!
//! Several managers, in one process or on many hosts, can use one database (and schema): every
//! instance sees the same peers, and a ban made by one reaches the others' managers within
//! milliseconds. The store follows the same rules as the others (the conformance suite,
//! `bsv/tests/store_conformance.rs`), enforced by the database so that they hold across
//! instances:
//!
//! * one peer per (IP, port): a unique constraint; the typed errors `DuplicatePeer` and
//!   `DuplicatePeerId` come from it, so two instances racing for an address get one winner;
//! * the bound (`max_peers`): `create` takes a transaction-scoped advisory lock, counts, evicts
//!   (oldest `Unknown`, then oldest `Inaccessible`) and inserts in one transaction, so
//!   concurrent creates from every instance respect it;
//! * bans are single statements (`ban_ip` is one `UPDATE ... WHERE ip = $1`, `expire_bans` one
//!   `UPDATE ... WHERE ban_until <= now`), never read-modify-write, so an instance lifting a
//!   lapsed ban cannot erase a fresh one made meanwhile by another;
//! * every write that bans also sends `pg_notify` on the store's channel in the same
//!   transaction; each store keeps one session `LISTEN`ing (`listen`) and hands the bans
//!   other instances made to [`PeerStore::ban_notifications`] subscribers (the manager, which
//!   closes its connections from that address; its listener already refuses the address, since
//!   it reads bans from the store).
//!
//! The schema is versioned (`schema`): connecting migrates it, once, under an advisory lock.
//! A store can live in its own PostgreSQL schema ([`PostgresOptions::schema`]), so one database
//! can hold several independent stores (and the tests run in parallel, one schema each).
//!
//! A lost server is survived (`pool`): while it is unreachable calls fail at once with
//! [`P2pError::StoreUnavailable`]; the first call after it is back reconnects, and the ban
//! listener reconnects by itself and re-announces the bans it may have missed. Sessions are
//! unencrypted (`NoTls`): keep the database on a trusted network or a local socket.

mod listen;
mod pool;
mod schema;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;
use uuid::Uuid;

use super::{BanNotice, BanOutcome, PeerStore};
use crate::p2p::bans::Whitelist;
use crate::p2p::config::{ManagerConfig, DEFAULT_MAX_STORED_PEERS};
use crate::p2p::error::{P2pError, Result};
use crate::p2p::limits::{
    BAN_NOTICE_CAPACITY, DEFAULT_POSTGRES_CONNECTIONS, POSTGRES_CONNECT_TIMEOUT,
};
use crate::p2p::peer::{unix_now, BanReason, Peer, PeerStatus, PeerStatusKind, UnixTime};

/// The columns of a peer, in the order `read_row` reads them.
macro_rules! columns {
    () => {
        "id, ip, port, status, ban_reason, ban_until, status_timestamp"
    };
}

/// How to connect a [`PostgresPeerStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The PostgreSQL schema holding the store's tables, created if missing: a plain lowercase
    /// identifier (letters, digits, `_`). Instances that share peers use the same schema.
    /// Default `public`.
    pub schema: String,
    /// The most peers the store holds (`max_stored_peers`). Default 10,000.
    pub max_peers: usize,
    /// The most sessions the store opens for its calls (besides the ban listener's); further
    /// calls wait for a free one. Default [`DEFAULT_POSTGRES_CONNECTIONS`].
    pub max_connections: usize,
    /// Whether to keep a session `LISTEN`ing for bans made by other instances (what
    /// [`PeerStore::ban_notifications`] returns). Default `true`.
    pub listen_for_bans: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "public".to_string(),
            max_peers: DEFAULT_MAX_STORED_PEERS,
            max_connections: DEFAULT_POSTGRES_CONNECTIONS,
            listen_for_bans: true,
        }
    }
}

impl PostgresOptions {
    /// The defaults, bounded by the configuration's `max_stored_peers`.
    pub fn from_config(config: &ManagerConfig) -> Self {
        PostgresOptions {
            max_peers: config.max_stored_peers,
            ..PostgresOptions::default()
        }
    }
}

/// A peer store in a PostgreSQL database, shareable by several instances. Cheap to clone:
/// clones share the sessions and the ban listener, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct PostgresPeerStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: pool::Pool,
    /// The database without credentials, for logs and errors.
    label: Arc<str>,
    schema: String,
    /// The notification channel (one per schema).
    channel: String,
    /// The advisory lock `create` takes (one per schema).
    create_lock: String,
    max_peers: usize,
    /// This store's id in the notifications it sends, so its listener skips them.
    origin: Uuid,
    notices: Option<broadcast::Sender<BanNotice>>,
    /// Stops the ban listener when the store is dropped.
    _listener: Option<DropGuard>,
}

impl fmt::Debug for PostgresPeerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresPeerStore")
            .field("store", &self.inner.label)
            .field("max_peers", &self.inner.max_peers)
            .finish()
    }
}

impl PostgresPeerStore {
    /// The schema version this release creates and reads (rows of the `schema_version` table).
    pub const SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

    /// Connects to the database at `url` (a libpq URL or key-value string, e.g.
    /// `postgres://user:password@127.0.0.1:5432/peers`), migrates the schema to
    /// [`SCHEMA_VERSION`](Self::SCHEMA_VERSION) and, unless disabled, starts listening for bans.
    ///
    /// Fails with `InvalidConfiguration` for a malformed URL or schema name,
    /// `StoreUnavailable` if the server cannot be reached (within the URL's `connect_timeout`,
    /// 5 s by default), `UnsupportedStoreSchema` if the database was migrated by a newer release,
    /// and `StoreDatabase` if the server refuses a statement (e.g. missing privileges).
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self> {
        schema::validate_schema_name(&options.schema)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| P2pError::InvalidConfiguration(format!("postgres URL: {e}")))?;
        let label: Arc<str> = describe(&config, &options.schema).into();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POSTGRES_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("bitcoinsv");
        }
        // Every session works in the store's schema: unqualified names resolve there.
        let session_options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} -c search_path={}", options.schema),
            _ => format!("-c search_path={}", options.schema),
        };
        config.options(&session_options);
        tracing::debug!(store = %label, "Connecting peer store database");

        let pool = pool::Pool::new(config.clone(), options.max_connections, label.clone());
        {
            let mut conn = pool.get().await.inspect_err(|error| {
                tracing::error!(store = %label, %error, "Cannot connect to the peer store database");
            })?;
            schema::migrate(&mut conn, &options.schema, &label).await?;
        }

        let origin = Uuid::new_v4();
        let channel = format!("bsv_p2p_bans_{}", options.schema);
        let (notices, guard) = if options.listen_for_bans {
            let (tx, _) = broadcast::channel(BAN_NOTICE_CAPACITY);
            let cancel = CancellationToken::new();
            let listener = listen::Listener {
                config,
                channel: channel.clone(),
                origin,
                label: label.clone(),
                notices: tx.clone(),
                cancel: cancel.clone(),
            };
            // The first LISTEN before returning: no ban committed after `connect` is missed.
            let first = listener
                .listen()
                .await
                .map_err(|e| pool::unavailable(&label, e))?;
            tokio::spawn(listener.run(Some(first)).in_current_span());
            (Some(tx), Some(cancel.drop_guard()))
        } else {
            (None, None)
        };
        tracing::info!(store = %label, max_peers = options.max_peers, listen_for_bans = options.listen_for_bans, "Peer store database connected");
        Ok(PostgresPeerStore {
            inner: Arc::new(Inner {
                pool,
                label,
                create_lock: format!("bitcoinsv.peer_store.create.{}", options.schema),
                schema: options.schema,
                channel,
                max_peers: options.max_peers,
                origin,
                notices,
                _listener: guard,
            }),
        })
    }

    /// The most peers the store holds.
    pub fn max_peers(&self) -> usize {
        self.inner.max_peers
    }

    /// The PostgreSQL schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The highest migration recorded in the database's `schema_version` table.
    pub async fn schema_version(&self) -> Result<i64> {
        let rows = self
            .inner
            .pool
            .get()
            .await?
            .query_retrying("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?;
        rows.first()
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()
            .map_err(|e| pool::classify(&self.inner.label, e))
            .map(|v| v.unwrap_or(0))
    }

    fn malformed(&self, message: String) -> P2pError {
        P2pError::StoreDatabase {
            store: self.inner.label.to_string(),
            source: format!("malformed row: {message}").into(),
        }
    }

    fn unwritable(&self, message: String) -> P2pError {
        P2pError::StoreDatabase {
            store: self.inner.label.to_string(),
            source: format!("cannot store peer: {message}").into(),
        }
    }

    fn peers(&self, rows: &[Row]) -> Result<Vec<Peer>> {
        rows.iter()
            .map(|r| read_row(r).map_err(|m| self.malformed(m)))
            .collect()
    }

    /// A read that may be repeated on a new session if the first turns out to be closed.
    async fn read_query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        self.inner
            .pool
            .get()
            .await?
            .query_retrying(sql, params)
            .await
    }

    /// Queues the notification of a ban in the current transaction.
    async fn notify_ban(
        &self,
        conn: &mut pool::Conn<'_>,
        ip: IpAddr,
        reason: &BanReason,
        until: Option<UnixTime>,
    ) -> Result<()> {
        let payload = listen::payload(self.inner.origin, ip, reason, until);
        conn.query("SELECT pg_notify($1, $2)", &[&self.inner.channel, &payload])
            .await?;
        Ok(())
    }

    async fn create_in(&self, conn: &mut pool::Conn<'_>, peer: &Peer, row: &PeerRow) -> Result<()> {
        // Serializes creates (of every instance) so that count, eviction and insert agree.
        conn.query(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&self.inner.create_lock],
        )
        .await?;
        let rows = conn
            .query(
                "SELECT EXISTS (SELECT 1 FROM peers WHERE ip = $1 AND port = $2), \
                        EXISTS (SELECT 1 FROM peers WHERE id = $3), \
                        (SELECT COUNT(*) FROM peers)",
                &[&row.ip, &row.port, &row.id],
            )
            .await?;
        let (address_taken, id_taken, count) = rows
            .first()
            .map(|r| -> std::result::Result<_, tokio_postgres::Error> {
                Ok((
                    r.try_get::<_, bool>(0)?,
                    r.try_get::<_, bool>(1)?,
                    r.try_get::<_, i64>(2)?,
                ))
            })
            .transpose()
            .map_err(|e| pool::classify(&self.inner.label, e))?
            .unwrap_or((false, false, 0));
        if address_taken {
            tracing::warn!(ip = %peer.ip, port = peer.port, "Refusing duplicate peer address");
            return Err(P2pError::DuplicatePeer {
                ip: peer.ip,
                port: peer.port,
            });
        }
        if id_taken {
            tracing::warn!(peer_id = %peer.id, "Refusing duplicate peer id");
            return Err(P2pError::DuplicatePeerId { peer_id: peer.id });
        }
        if usize::try_from(count).unwrap_or(usize::MAX) >= self.inner.max_peers {
            self.evict_one(conn, count).await?;
        }
        conn.query(
            concat!(
                "INSERT INTO peers (",
                columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            &[
                &row.id,
                &row.ip,
                &row.port,
                &row.status,
                &row.ban_reason,
                &row.ban_until,
                &row.status_timestamp,
            ],
        )
        .await
        .map_err(|e| duplicate(e, peer))?;
        if let PeerStatus::Banned { reason, until } = &peer.status {
            self.notify_ban(conn, peer.ip, reason, *until).await?;
        }
        Ok(())
    }

    /// Deletes the first peer in eviction order, or fails with `StoreFull`.
    async fn evict_one(&self, conn: &mut pool::Conn<'_>, count: i64) -> Result<()> {
        let mut kinds: Vec<PeerStatusKind> = PeerStatusKind::ALL
            .into_iter()
            .filter(|k| k.eviction_rank().is_some())
            .collect();
        kinds.sort_by_key(|k| k.eviction_rank());
        for kind in kinds {
            let evicted = conn
                .query(
                    "DELETE FROM peers WHERE id = (SELECT id FROM peers WHERE status = $1 \
                     ORDER BY status_timestamp, id LIMIT 1) RETURNING id",
                    &[&kind.as_str()],
                )
                .await?;
            if let Some(r) = evicted.first() {
                let id: Option<Uuid> = r.try_get(0).ok();
                tracing::debug!(peer_id = ?id, status = %kind, "Evicted peer to make room");
                return Ok(());
            }
        }
        tracing::warn!(
            peer_count = count,
            "Peer store full of Valid and Banned peers"
        );
        Err(P2pError::StoreFull {
            capacity: self.inner.max_peers,
        })
    }

    /// Runs `r`'s transaction to its end: commit on success, roll back on failure.
    async fn finish<T>(&self, conn: &mut pool::Conn<'_>, r: Result<T>) -> Result<T> {
        match r {
            Ok(v) => {
                conn.commit().await?;
                Ok(v)
            }
            Err(e) => {
                conn.rollback().await;
                Err(e)
            }
        }
    }
}

/// `DuplicatePeer` / `DuplicatePeerId` for a unique violation by `peer` (another instance won a
/// race), else the error itself.
fn duplicate(e: P2pError, peer: &Peer) -> P2pError {
    let constraint = match &e {
        P2pError::StoreDatabase { source, .. } => source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
            .filter(|d| d.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            .and_then(|d| d.constraint().map(str::to_string)),
        _ => None,
    };
    match constraint.as_deref() {
        Some("peers_ip_port") => P2pError::DuplicatePeer {
            ip: peer.ip,
            port: peer.port,
        },
        Some("peers_pkey") => P2pError::DuplicatePeerId { peer_id: peer.id },
        _ => e,
    }
}

/// `host:port/dbname (schema s)`: the database without user or password.
fn describe(config: &tokio_postgres::Config, schema: &str) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db} (schema {schema})")
}

/// A peer as column values, in [`columns!`] order.
struct PeerRow {
    id: Uuid,
    ip: String,
    port: i32,
    status: &'static str,
    ban_reason: Option<serde_json::Value>,
    ban_until: Option<i64>,
    status_timestamp: i64,
}

impl PeerRow {
    fn from_peer(peer: &Peer) -> std::result::Result<Self, String> {
        let (ban_reason, ban_until) = match &peer.status {
            PeerStatus::Banned { reason, until } => (
                Some(serde_json::to_value(reason).map_err(|e| e.to_string())?),
                // Bit for bit, as the SQLite store: every u64 survives.
                until.map(|t| t as i64),
            ),
            _ => (None, None),
        };
        Ok(PeerRow {
            id: peer.id,
            ip: peer.ip.to_string(),
            port: i32::from(peer.port),
            status: peer.status.kind().as_str(),
            ban_reason,
            ban_until,
            // Eviction orders by this column: refuse what would not keep its order.
            status_timestamp: i64::try_from(peer.status_timestamp).map_err(|_| {
                format!(
                    "status_timestamp {} is beyond the range PostgreSQL can order",
                    peer.status_timestamp
                )
            })?,
        })
    }
}

/// A row of [`columns!`] as a peer, or what is wrong with it.
fn read_row(row: &Row) -> std::result::Result<Peer, String> {
    let id: Uuid = row.try_get(0).map_err(|e| e.to_string())?;
    let bad = |what: &str| format!("peer {id}: {what}");
    let ip: String = row.try_get(1).map_err(|e| bad(&e.to_string()))?;
    let port: i32 = row.try_get(2).map_err(|e| bad(&e.to_string()))?;
    let status: String = row.try_get(3).map_err(|e| bad(&e.to_string()))?;
    let ban_reason: Option<serde_json::Value> = row.try_get(4).map_err(|e| bad(&e.to_string()))?;
    let ban_until: Option<i64> = row.try_get(5).map_err(|e| bad(&e.to_string()))?;
    let status_timestamp: i64 = row.try_get(6).map_err(|e| bad(&e.to_string()))?;
    let kind: PeerStatusKind = status.parse().map_err(|e: String| bad(&e))?;
    let status = match kind {
        PeerStatusKind::Unknown => PeerStatus::Unknown,
        PeerStatusKind::Valid => PeerStatus::Valid,
        PeerStatusKind::Inaccessible => PeerStatus::Inaccessible,
        PeerStatusKind::Banned => {
            let reason = ban_reason.ok_or_else(|| bad("banned without a reason"))?;
            let reason: BanReason =
                serde_json::from_value(reason).map_err(|e| bad(&e.to_string()))?;
            PeerStatus::Banned {
                reason,
                until: ban_until.map(|t| t as u64),
            }
        }
    };
    Ok(Peer {
        id,
        ip: ip.parse().map_err(|_| bad("invalid ip"))?,
        port: u16::try_from(port).map_err(|_| bad("invalid port"))?,
        status,
        status_timestamp: u64::try_from(status_timestamp)
            .map_err(|_| bad("negative status_timestamp"))?,
    })
}

/// Columns `ip, ban_reason, ban_until` as a ban notice.
fn ban_from_columns(row: &Row) -> std::result::Result<BanNotice, String> {
    let ip: String = row.try_get(0).map_err(|e| e.to_string())?;
    let reason: Option<serde_json::Value> = row.try_get(1).map_err(|e| e.to_string())?;
    let until: Option<i64> = row.try_get(2).map_err(|e| e.to_string())?;
    let reason = reason.ok_or_else(|| format!("ban of {ip} without a reason"))?;
    Ok(BanNotice {
        ip: ip.parse().map_err(|_| format!("invalid ip {ip:?}"))?,
        reason: serde_json::from_value(reason).map_err(|e| e.to_string())?,
        until: until.map(|t| t as u64),
    })
}

#[async_trait]
impl PeerStore for PostgresPeerStore {
    async fn create(&self, peer: Peer) -> Result<()> {
        tracing::trace!(
            peer_id = %peer.id, ip = %peer.ip, port = peer.port, status = %peer.status,
            "Creating peer"
        );
        let row = PeerRow::from_peer(&peer).map_err(|m| self.unwritable(m))?;
        let mut conn = self.inner.pool.get().await?;
        conn.begin().await?;
        let r = self.create_in(&mut conn, &peer, &row).await;
        self.finish(&mut conn, r).await?;
        tracing::debug!(peer_id = %peer.id, ip = %peer.ip, port = peer.port, "Peer created successfully");
        Ok(())
    }

    async fn read(&self, id: Uuid) -> Result<Option<Peer>> {
        let rows = self
            .read_query(
                concat!("SELECT ", columns!(), " FROM peers WHERE id = $1"),
                &[&id],
            )
            .await?;
        let peer = self.peers(&rows)?.into_iter().next();
        if peer.is_none() {
            tracing::trace!(peer_id = %id, "Peer not found");
        }
        Ok(peer)
    }

    async fn update(&self, peer: Peer) -> Result<()> {
        tracing::trace!(peer_id = %peer.id, status = %peer.status, "Updating peer");
        // The old row is locked and returned, so that a ban can be announced only when it is
        // new. A ban in force is never replaced by another status: the manager reads a peer,
        // sees no ban and writes its new status, and on a shared store another instance may
        // ban the peer in between (`BanInForce`).
        const UPDATE: &str = "WITH old AS (SELECT id, status, ban_reason, ban_until, \
                 (status = 'banned' AND (ban_until IS NULL OR ban_until < 0 OR ban_until > $8)) \
                 AS ban_in_force FROM peers WHERE id = $1 FOR UPDATE), \
             upd AS (UPDATE peers p SET ip = $2, port = $3, status = $4, ban_reason = $5, \
                 ban_until = $6, status_timestamp = $7 FROM old WHERE p.id = old.id \
                 AND NOT (old.ban_in_force AND $4 <> 'banned') RETURNING p.id) \
             SELECT old.status, old.ban_reason, old.ban_until, EXISTS (SELECT 1 FROM upd) \
             FROM old";
        let row = PeerRow::from_peer(&peer).map_err(|m| self.unwritable(m))?;
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 8] = [
            &row.id,
            &row.ip,
            &row.port,
            &row.status,
            &row.ban_reason,
            &row.ban_until,
            &row.status_timestamp,
            &now,
        ];
        let mut conn = self.inner.pool.get().await?;
        // What the statement found: no row (no such peer), or whether the write was applied.
        let applied = |rows: &[Row]| -> Option<bool> {
            rows.first()
                .map(|r| r.try_get::<_, bool>(3).unwrap_or(false))
        };
        let outcome = match &peer.status {
            // A ban: the update and its notification in one transaction.
            PeerStatus::Banned { reason, until } => {
                conn.begin().await?;
                let r = async {
                    let rows = conn.query(UPDATE, &params).await?;
                    let was_same_ban = rows.first().is_some_and(|r| {
                        r.try_get::<_, String>(0).ok().as_deref() == Some("banned")
                            && r.try_get::<_, Option<serde_json::Value>>(1).ok().flatten()
                                == row.ban_reason
                            && r.try_get::<_, Option<i64>>(2).ok().flatten() == row.ban_until
                    });
                    let outcome = applied(&rows);
                    if outcome == Some(true) && !was_same_ban {
                        self.notify_ban(&mut conn, peer.ip, reason, *until).await?;
                    }
                    Ok(outcome)
                }
                .await;
                self.finish(&mut conn, r).await
            }
            // One statement, which may be repeated: the same values land either way.
            _ => conn
                .query_retrying(UPDATE, &params)
                .await
                .map(|rows| applied(&rows)),
        }
        .map_err(|e| duplicate(e, &peer))?;
        match outcome {
            None => {
                tracing::warn!(peer_id = %peer.id, "Update of a peer that does not exist");
                return Err(P2pError::PeerNotFound { peer_id: peer.id });
            }
            Some(false) => {
                tracing::debug!(peer_id = %peer.id, status = %peer.status, "Not lifting a ban in force by an update");
                return Err(P2pError::BanInForce { peer_id: peer.id });
            }
            Some(true) => {}
        }
        tracing::debug!(peer_id = %peer.id, "Peer updated successfully");
        Ok(())
    }

    async fn delete(&self, id: Uuid) -> Result<bool> {
        let rows = self
            .inner
            .pool
            .get()
            .await?
            .query("DELETE FROM peers WHERE id = $1 RETURNING id", &[&id])
            .await?;
        let removed = !rows.is_empty();
        tracing::debug!(peer_id = %id, removed, "Deleted peer");
        Ok(removed)
    }

    async fn list_all(&self) -> Result<Vec<Peer>> {
        let rows = self
            .read_query(concat!("SELECT ", columns!(), " FROM peers"), &[])
            .await?;
        self.peers(&rows)
    }

    async fn find_by_status(&self, kind: PeerStatusKind) -> Result<Vec<Peer>> {
        let rows = self
            .read_query(
                concat!("SELECT ", columns!(), " FROM peers WHERE status = $1"),
                &[&kind.as_str()],
            )
            .await?;
        self.peers(&rows)
    }

    async fn find_by_ip_port(&self, ip: IpAddr, port: u16) -> Result<Option<Peer>> {
        let rows = self
            .read_query(
                concat!(
                    "SELECT ",
                    columns!(),
                    " FROM peers WHERE ip = $1 AND port = $2"
                ),
                &[&ip.to_canonical().to_string(), &i32::from(port)],
            )
            .await?;
        Ok(self.peers(&rows)?.into_iter().next())
    }

    async fn count_by_status(&self, kind: PeerStatusKind) -> Result<usize> {
        let rows = self
            .read_query(
                "SELECT COUNT(*) FROM peers WHERE status = $1",
                &[&kind.as_str()],
            )
            .await?;
        self.count_of(&rows)
    }

    async fn count(&self) -> Result<usize> {
        let rows = self.read_query("SELECT COUNT(*) FROM peers", &[]).await?;
        self.count_of(&rows)
    }

    async fn find_by_ip(&self, ip: IpAddr) -> Result<Vec<Peer>> {
        let rows = self
            .read_query(
                concat!("SELECT ", columns!(), " FROM peers WHERE ip = $1"),
                &[&ip.to_canonical().to_string()],
            )
            .await?;
        self.peers(&rows)
    }

    /// One `UPDATE ... WHERE ip = $1` and its notification, in one transaction: atomic, and
    /// safe against another instance writing the same peers.
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
        let ip = ip.to_canonical();
        let reason_json =
            serde_json::to_value(&reason).map_err(|e| self.unwritable(e.to_string()))?;
        let until_col = until.map(|t| t as i64);
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let mut conn = self.inner.pool.get().await?;
        conn.begin().await?;
        let r = async {
            // As `Peer::set_status_at`: the timestamp moves only if the status changes.
            let rows = conn
                .query(
                    concat!(
                        "UPDATE peers SET status = 'banned', ban_reason = $2, ban_until = $3, \
                         status_timestamp = CASE WHEN status = 'banned' AND ban_reason = $2 \
                         AND ban_until IS NOT DISTINCT FROM $3 THEN status_timestamp ELSE $4 END \
                         WHERE ip = $1 RETURNING ",
                        columns!()
                    ),
                    &[&ip.to_string(), &reason_json, &until_col, &now],
                )
                .await?;
            let peers = self.peers(&rows)?;
            if !peers.is_empty() {
                self.notify_ban(&mut conn, ip, &reason, until).await?;
            }
            Ok(peers)
        }
        .await;
        let banned = self.finish(&mut conn, r).await?;
        tracing::warn!(%ip, %reason, until, peer_count = banned.len(), "Banned address");
        Ok(BanOutcome::Banned(banned))
    }

    /// One `UPDATE ... WHERE ip = $1 AND status = 'banned'`.
    async fn unban_ip(&self, ip: IpAddr) -> Result<Vec<Peer>> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let rows = self
            .inner
            .pool
            .get()
            .await?
            .query(
                concat!(
                    "UPDATE peers SET status = 'unknown', ban_reason = NULL, ban_until = NULL, \
                     status_timestamp = $2 WHERE ip = $1 AND status = 'banned' RETURNING ",
                    columns!()
                ),
                &[&ip.to_canonical().to_string(), &now],
            )
            .await?;
        let unbanned = self.peers(&rows)?;
        tracing::info!(%ip, peer_count = unbanned.len(), "Unbanned address");
        Ok(unbanned)
    }

    /// One `UPDATE`: a ban renewed by another instance since it lapsed is not lifted.
    async fn expire_bans(&self, now: UnixTime) -> Result<Vec<Peer>> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        // `ban_until` below zero is a u64 beyond i64::MAX stored bit for bit: far future.
        let rows = self
            .inner
            .pool
            .get()
            .await?
            .query(
                concat!(
                    "UPDATE peers SET status = 'unknown', ban_reason = NULL, ban_until = NULL, \
                     status_timestamp = $1 WHERE status = 'banned' AND ban_until >= 0 \
                     AND ban_until <= $1 RETURNING ",
                    columns!()
                ),
                &[&now],
            )
            .await?;
        let expired = self.peers(&rows)?;
        for peer in &expired {
            tracing::info!(peer_id = %peer.id, ip = %peer.ip, port = peer.port, "Ban expired");
        }
        Ok(expired)
    }

    fn ban_notifications(&self) -> Option<broadcast::Receiver<BanNotice>> {
        self.inner
            .notices
            .as_ref()
            .map(broadcast::Sender::subscribe)
    }
}

impl PostgresPeerStore {
    fn count_of(&self, rows: &[Row]) -> Result<usize> {
        let n: i64 = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| pool::classify(&self.inner.label, e))?
            .unwrap_or(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }
}
