//! The peer-to-peer layer.
//!
//! * [`messages`]: every command of the bitcoin-sv 1.2.2 node as a typed [`Message`].
//! * [`codec`]: framing with the node's limits, usable with or without tokio.
//! * [`limits`]: every protocol constant, with the node constant it mirrors.
//! * [`connection`]: one actor per peer (handshake, keepalive, retries) built on pure state
//!   machines.
//! * [`events`]: what connections report ([`ControlEvent`], [`BitcoinMessageEvent`]) and the
//!   commands they obey.
//! * [`text`]: peer-supplied text (user agents, reject reasons) made safe to print.
//! * [`sink`]: what the services see, published into a message bus (docs/FLEET.md).
//!
//! Peers and what we know about them ([`Peer`], [`PeerStatus`], [`BanReason`]) live in a
//! [`PeerStore`] shared by the manager's tasks as `Arc<dyn PeerStore>`; [`InMemoryPeerStore`]
//! keeps them in memory with an optional crash-safe file, and `SqlitePeerStore` (cargo feature
//! `sqlite`) in an embedded database, and `PostgresPeerStore` (cargo feature `postgres`) in a
//! PostgreSQL database shared by several instances. [`ManagerConfig`] and [`ConnectionConfig`] hold every
//! setting and its default; every fallible operation returns [`P2pError`].

pub mod bans;
pub mod client;
pub mod codec;
pub mod config;
pub mod connection;
pub mod crawler;
pub mod discovery;
pub mod error;
pub mod events;
// Entry points for the fuzz targets (`fuzz/`, docs/FUZZING.md); not a public API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod lossless;
pub mod manager;
pub mod messages;
pub mod metrics;
pub mod peer;
pub(crate) mod services;
pub mod sink;
pub mod store;
#[cfg(feature = "otlp")]
pub mod telemetry;
pub mod text;

pub use crate::bitcoin::Network;
pub use bans::{UserAgentBanList, UserAgentPattern, Whitelist};
pub use client::{PeerClient, PeerClientOptions};
pub use codec::{CodecError, MessageCodec, RawFrame, RecvLimits};
pub use config::{
    AddressConfig, BlockFetchConfig, ConnectionConfig, HeaderChainConfig, ManagerConfig,
    TransactionConfig,
};
pub use connection::{
    ConnectionSnapshot, ConnectionState, Direction, DisconnectReason, HandshakeFailure,
    Misbehavior, PeerHandle, PeerLink, ProtocolViolation,
};
pub use crawler::{Chain, CrawlConfig, CrawlProgress, CrawlReport, Crawler, NodeReport};
pub use discovery::{DiscoveryReport, DnsDiscovery};
pub use error::{P2pError, Result};
pub use events::{
    BitcoinMessageEvent, ControlEvent, InboundRejection, MessageSinks, PeerConnectionCommand,
};
pub use lossless::MessageReceiver;
pub use manager::{LogLevelHandler, Manager, Mode};
pub use messages::{Message, Reject, RejectCode, VersionMessage};
pub use peer::{BanReason, Peer, PeerStatus, PeerStatusKind, UnixTime};
pub use services::blocks::{
    Attempt, AttemptOutcome, BlockFetchError, BlockFetchOptions, BlockPart, BlockStream,
    BlockStreamFailure, BlockStreamMode, BlockStreamingConfig, FetchedBlock,
};
pub use services::chain::{ChainEvent, ChainHeader, ChainTip, Checkpoint, HeaderChain};
pub use services::txs::{
    BroadcastOptions, BroadcastReport, Delivery, PeerReport, TransactionError, TransactionEvent,
    TxRejection,
};
pub use store::BanNotice;
#[cfg(feature = "sqlite")]
pub use store::SqlitePeerStore;
pub use store::{BanOutcome, InMemoryPeerStore, PeerStore};
#[cfg(feature = "postgres")]
pub use store::{PostgresOptions, PostgresPeerStore};
