//! The error type of the peer-to-peer layer.
//!
//! Every fallible operation of [`crate::p2p`] returns [`Result`]. Each variant carries the context
//! a log line or an operator needs to act on it (which peer, which address, which file), so an
//! error is useful even after it has travelled through several tasks and been turned into a
//! string in an event.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use uuid::Uuid;

/// The result type of the peer-to-peer layer.
pub type Result<T> = std::result::Result<T, P2pError>;

/// Everything that can go wrong in the peer-to-peer layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum P2pError {
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: std::time::Duration,
    },

    /// A frame could not be encoded or decoded (bad magic, checksum, size, payload).
    #[error("codec: {0}")]
    Codec(#[from] crate::p2p::codec::CodecError),

    /// A TCP connection to or from a peer could not be made or broke.
    #[error("connection to {address} failed: {reason}")]
    Connection {
        /// The peer's address (`ip:port`).
        address: SocketAddr,
        /// What went wrong, e.g. "connection refused" or "timed out after 5s".
        reason: String,
    },

    /// A connection to a peer ended (or never got through its handshake), for the typed reason.
    #[error("connection to {address} ended: {reason}")]
    Disconnected {
        /// The peer's address (`ip:port`).
        address: SocketAddr,
        /// Why.
        reason: crate::p2p::connection::DisconnectReason,
    },

    /// The version/verack handshake with a peer failed.
    #[error("handshake with {address} failed: {reason}")]
    Handshake {
        /// The peer's address (`ip:port`).
        address: SocketAddr,
        /// Why the handshake failed, e.g. "timed out after 60s" or "protocol version 209".
        reason: String,
    },

    /// A peer with this IP address and port is already in the store.
    #[error("a peer with address {} is already stored", SocketAddr::new(*ip, *port))]
    DuplicatePeer {
        /// The IP address that is already taken.
        ip: IpAddr,
        /// The port that is already taken.
        port: u16,
    },

    /// A peer with this id is already in the store (creating the same peer twice).
    #[error("a peer with id {peer_id} is already stored")]
    DuplicatePeerId {
        /// The id that is already taken.
        peer_id: Uuid,
    },

    /// No peer with this id is in the store.
    #[error("no peer with id {peer_id} in the store")]
    PeerNotFound {
        /// The id that was looked up.
        peer_id: Uuid,
    },

    /// The store holds `max_stored_peers` peers and none of them may be evicted (only `Valid` and
    /// `Banned` peers are left), so a new peer cannot be added.
    #[error(
        "peer store is full: {capacity} peers, all Valid or Banned, none can be evicted \
         (raise max_stored_peers)"
    )]
    StoreFull {
        /// The store's bound (`max_stored_peers`).
        capacity: usize,
    },

    /// Reading or writing the peer store's file failed.
    #[error("peer store file {}: {source}", path.display())]
    Persistence {
        /// The file (or folder) the operation was on.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// The SQLite peer store's database failed or holds data it cannot read.
    #[error("peer store database {}: {source}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// The underlying error (SQLite's, or a description of a malformed row).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The SQLite database was written by a newer release whose schema this one cannot read.
    #[error(
        "peer store database {}: schema version {found} is newer than the supported {supported}",
        path.display()
    )]
    UnsupportedSchema {
        /// The database file.
        path: PathBuf,
        /// The schema version found in the file.
        found: i64,
        /// The newest schema version this release understands.
        supported: i64,
    },

    /// A configuration value is invalid; the message names the setting and the rule.
    #[error("invalid configuration: {0}")]
    InvalidConfiguration(String),

    /// Resolving a DNS seed failed.
    #[error("DNS seed {seed}: {message}")]
    Dns {
        /// The seed host name.
        seed: String,
        /// What the resolver reported.
        message: String,
    },

    /// The inbound listener could not bind its address.
    #[error("listener could not bind {address}: {error}")]
    ListenerBindFailed {
        /// The address the listener tried to bind.
        address: SocketAddr,
        /// What the operating system reported.
        error: String,
    },

    /// A channel between tasks is closed: the task on the other side has ended.
    #[error("channel {channel} is closed")]
    ChannelClosed {
        /// Which channel, e.g. "commands to peer 3f2a…".
        channel: String,
    },

    /// A bounded channel between tasks is full and the message was not queued.
    #[error("channel {channel} is full")]
    ChannelFull {
        /// Which channel.
        channel: String,
    },

    /// The header chain's file could not be read, written, or does not fit the configuration
    /// (another start point).
    #[error("header chain file {path}: {reason}")]
    HeaderFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The header chain's file belongs to another network.
    #[error("header chain file {path} is for {found}, not {expected}")]
    HeaderFileNetwork {
        /// The file.
        path: PathBuf,
        /// The network named in the file (or its magic in hex if unknown).
        found: String,
        /// The manager's network.
        expected: crate::bitcoin::Network,
    },

    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// A block sent in a basic frame (under 4 GiB) needs its payload's checksum
    /// (`Manager::send_block_stream`).
    #[error("a {length}-byte block goes in a basic frame, which needs the payload's checksum")]
    ChecksumRequired {
        /// The payload length.
        length: u64,
    },

    /// A block could not be fetched (`Manager::get_block`).
    #[error(transparent)]
    BlockFetch(#[from] crate::p2p::services::blocks::BlockFetchError),

    /// A transaction service refused or failed a request (`Manager::request_mempool`, ...).
    #[error(transparent)]
    Transaction(#[from] crate::p2p::services::txs::TransactionError),

    /// A database server behind a peer store (PostgreSQL) cannot be reached: it is down,
    /// restarting, or the connection to it broke. The call was not applied, unless the
    /// connection broke while the server was committing it (then it may have been); later calls
    /// connect again, so the store works again as soon as the server is back.
    #[error("peer store {store} is unavailable: {source}")]
    StoreUnavailable {
        /// The database, without credentials (`host:port/dbname`, schema).
        store: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A database server behind a peer store (PostgreSQL) refused a statement or returned data
    /// the store cannot read.
    #[error("peer store {store}: {source}")]
    StoreDatabase {
        /// The database, without credentials (`host:port/dbname`, schema).
        store: String,
        /// The underlying error (the server's, or a description of a malformed row).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A shared peer store (PostgreSQL) refused an update that would replace a ban in force
    /// with another status: another instance banned the peer after the caller read it. Bans
    /// are lifted with `unban_ip` or when they lapse (`expire_bans`), never by `update`.
    #[error("peer {peer_id} is banned; the update would lift the ban (use unban_ip)")]
    BanInForce {
        /// The peer the update was for.
        peer_id: Uuid,
    },

    /// A database behind a peer store (PostgreSQL) has a schema newer than this release reads.
    #[error("peer store {store}: schema version {found} is newer than the supported {supported}")]
    UnsupportedStoreSchema {
        /// The database, without credentials (`host:port/dbname`, schema).
        store: String,
        /// The newest schema version recorded in the database.
        found: i64,
        /// The newest schema version this release understands.
        supported: i64,
    },
}

impl P2pError {
    /// A [`P2pError::Persistence`] error for `path`.
    pub(crate) fn persistence(path: impl Into<PathBuf>, source: io::Error) -> Self {
        P2pError::Persistence {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_context() {
        let e = P2pError::DuplicatePeer {
            ip: "10.0.0.1".parse().unwrap(),
            port: 8333,
        };
        assert_eq!(
            e.to_string(),
            "a peer with address 10.0.0.1:8333 is already stored"
        );
        let e = P2pError::persistence(
            "/tmp/peers.json",
            io::Error::new(io::ErrorKind::PermissionDenied, "denied"),
        );
        assert_eq!(e.to_string(), "peer store file /tmp/peers.json: denied");
        let e = P2pError::ListenerBindFailed {
            address: "0.0.0.0:8333".parse().unwrap(),
            error: "address in use".into(),
        };
        assert_eq!(
            e.to_string(),
            "listener could not bind 0.0.0.0:8333: address in use"
        );
    }
}
