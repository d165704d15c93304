//! The peer-to-peer layer.
//!
//! Peers and what we know about them ([`Peer`], [`PeerStatus`], [`BanReason`]) live in a
//! [`PeerStore`] shared by the manager's tasks as `Arc<dyn PeerStore>`; [`InMemoryPeerStore`]
//! keeps them in memory with an optional crash-safe file, and `SqlitePeerStore` (cargo feature
//! `sqlite`) in an embedded database. [`ManagerConfig`] and [`ConnectionConfig`] hold every
//! setting and its default; every fallible operation returns [`P2pError`].

// --- peers, config, stores ---
pub mod bans;
pub mod config;
pub mod error;
pub mod peer;
pub mod store;

pub use crate::bitcoin::Network;
pub use bans::{UserAgentBanList, UserAgentPattern, Whitelist};
pub use config::{ConnectionConfig, ManagerConfig};
pub use error::{P2pError, Result};
pub use peer::{BanReason, Peer, PeerStatus, PeerStatusKind, UnixTime};
#[cfg(feature = "sqlite")]
pub use store::SqlitePeerStore;
pub use store::{BanOutcome, InMemoryPeerStore, PeerStore};
