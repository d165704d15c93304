//! Configuration of the manager ([`ManagerConfig`]) and of each connection
//! ([`ConnectionConfig`]), with every default in one place and the reason for it.
//!
//! Both load from TOML (or any serde format): every field has a default, so a file holds only
//! what it changes, and durations are written the way people say them (`"60s"`, `"20m"`, `"1h"`).
//! The values that depend on the network (DNS seeds, default and listener port) follow the file's
//! `network` unless the file sets them. `validate()` checks the whole configuration before it is
//! used, both at start and on `update_config`, and says exactly which setting is wrong and why.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::p2p::services::addrs::AddressConfig;
pub use crate::p2p::services::blocks::{BlockFetchConfig, BlockStreamingConfig};
pub use crate::p2p::services::chain::HeaderChainConfig;
pub use crate::p2p::services::txs::TransactionConfig;

use super::bans::{UserAgentBanList, Whitelist, DEFAULT_BANNED_USER_AGENTS, MAX_USER_AGENT_LENGTH};
use super::error::{P2pError, Result};
use crate::bitcoin::Network;

/// Outbound connections kept open: the node's `DEFAULT_MAX_OUTBOUND_CONNECTIONS`.
pub const DEFAULT_TARGET_CONNECTIONS: usize = 8;
/// Total connections (inbound + outbound): the node's `DEFAULT_MAX_PEER_CONNECTIONS`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 125;
/// How often DNS seeds are queried again; addresses change slowly.
pub const DEFAULT_DNS_DISCOVERY_INTERVAL: Duration = Duration::from_secs(3600);
/// How often the peer store is saved; losing five minutes of address updates costs nothing.
pub const DEFAULT_SAVE_INTERVAL: Duration = Duration::from_secs(300);
/// How long a ban lasts: the node's `DEFAULT_MISBEHAVING_BANTIME` (24 h).
pub const DEFAULT_BAN_DURATION: Duration =
    Duration::from_secs(crate::p2p::limits::DEFAULT_BAN_SECONDS);
/// Capacity of each broadcast channel (control events and bitcoin messages), from the seed.
pub const DEFAULT_EVENT_CHANNEL_CAPACITY: usize = 1000;
/// Peers kept in the store; enough for the whole BSV network many times over.
pub const DEFAULT_MAX_STORED_PEERS: usize = 10_000;
/// How long an `Inaccessible` peer rests before it may be tried again.
pub const DEFAULT_INACCESSIBLE_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// The OpenTelemetry service name.
pub const DEFAULT_SERVICE_NAME: &str = "bsv-p2p-manager";
/// The log level at start.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Log levels `log_level` accepts (case-insensitive).
pub const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Handshake deadline: the node's `DEFAULT_P2P_HANDSHAKE_TIMEOUT_INTERVAL`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// TCP connect deadline: the node's `DEFAULT_CONNECT_TIMEOUT` (5000 ms).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Ping period: the node's `PING_INTERVAL`.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);
/// Ping deadline: the node's `DEFAULT_P2P_TIMEOUT_INTERVAL` (20 min); a pong may queue behind a
/// large block.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(1200);
/// First reconnection delay.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(5);
/// Growth of the reconnection delay per failed attempt.
pub const DEFAULT_BACKOFF_MULTIPLIER: f64 = 2.0;
/// Longest reconnection delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Random spread of each delay (±20 %), so peers that failed together do not retry together.
pub const DEFAULT_BACKOFF_JITTER: f64 = 0.2;
/// Failed attempts before a peer is marked `Inaccessible`.
pub const DEFAULT_MAX_RETRIES: u32 = 10;
/// Reconnections after network failures allowed per `restart_window`.
pub const DEFAULT_MAX_RESTARTS: u32 = 3;
/// The window `max_restarts` is counted over.
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(3600);
pub use crate::p2p::limits::{DEFAULT_MAX_BLOCK_SIZE, DEFAULT_MAX_RECV_PAYLOAD};
/// Smallest receive limit the node accepts (`LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH`, 1 MiB).
pub const MIN_MAX_RECV_PAYLOAD: u64 = crate::p2p::limits::LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH;
/// Largest receive limit the node accepts (`-maxprotocolrecvpayloadlength`, 1,000,000,000).
pub const MAX_MAX_RECV_PAYLOAD: u64 = 1_000_000_000;

/// The user agent we announce: `/bitcoinsv-rs:<crate version>/`, free of every banned pattern.
pub fn default_user_agent() -> String {
    format!("/bitcoinsv-rs:{}/", env!("CARGO_PKG_VERSION"))
}

/// Settings of each peer connection (timeouts, keepalive, reconnection, message limits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Deadline for the version/verack handshake, from entering `AwaitingHandshake`.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Deadline for the TCP connect.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How often we ping a connected peer.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How long we wait for a pong (with no bytes received) before closing.
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// Delay before the first reconnection attempt.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Factor applied to the delay after each failed attempt (at least 1).
    pub backoff_multiplier: f64,
    /// Upper bound of the reconnection delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Random spread of each delay as a fraction, in `[0, 1)`.
    pub backoff_jitter: f64,
    /// Failed connection attempts before the peer is marked `Inaccessible`.
    pub max_retries: u32,
    /// Immediate reconnections after network failures allowed per `restart_window`.
    pub max_restarts: u32,
    /// The window `max_restarts` is counted over.
    #[serde(with = "humantime_serde")]
    pub restart_window: Duration,
    /// Largest non-block message we accept, in bytes; advertised in our `protoconf`.
    pub max_recv_payload: u64,
    /// Largest block message we accept, in bytes.
    pub max_block_size: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            backoff_multiplier: DEFAULT_BACKOFF_MULTIPLIER,
            max_backoff: DEFAULT_MAX_BACKOFF,
            backoff_jitter: DEFAULT_BACKOFF_JITTER,
            max_retries: DEFAULT_MAX_RETRIES,
            max_restarts: DEFAULT_MAX_RESTARTS,
            restart_window: DEFAULT_RESTART_WINDOW,
            max_recv_payload: DEFAULT_MAX_RECV_PAYLOAD,
            max_block_size: DEFAULT_MAX_BLOCK_SIZE,
        }
    }
}

impl ConnectionConfig {
    /// Checks every setting, returning [`P2pError::InvalidConfiguration`] naming the first bad
    /// one.
    pub fn validate(&self) -> Result<()> {
        tracing::debug!(
            handshake_timeout = ?self.handshake_timeout,
            ping_timeout = ?self.ping_timeout,
            max_retries = self.max_retries,
            "Validating connection configuration"
        );
        self.check().map_err(invalid)?;
        tracing::trace!("Connection configuration is valid");
        Ok(())
    }

    fn check(&self) -> std::result::Result<(), String> {
        for (name, value) in [
            ("handshake_timeout", self.handshake_timeout),
            ("connect_timeout", self.connect_timeout),
            ("ping_interval", self.ping_interval),
            ("ping_timeout", self.ping_timeout),
            ("initial_backoff", self.initial_backoff),
            ("max_backoff", self.max_backoff),
            ("restart_window", self.restart_window),
        ] {
            nonzero_duration(name, value)?;
        }
        // `!(x >= 1.0)` also catches NaN, which would make every delay NaN.
        if !(self.backoff_multiplier >= 1.0 && self.backoff_multiplier.is_finite()) {
            return Err(format!(
                "backoff_multiplier is {}: it must be a finite number of at least 1.0",
                self.backoff_multiplier
            ));
        }
        if !(0.0..1.0).contains(&self.backoff_jitter) {
            return Err(format!(
                "backoff_jitter is {}: it must be at least 0 and below 1",
                self.backoff_jitter
            ));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(format!(
                "initial_backoff ({}) is longer than max_backoff ({})",
                humantime_serde::re::humantime::format_duration(self.initial_backoff),
                humantime_serde::re::humantime::format_duration(self.max_backoff)
            ));
        }
        if !(MIN_MAX_RECV_PAYLOAD..=MAX_MAX_RECV_PAYLOAD).contains(&self.max_recv_payload) {
            return Err(format!(
                "max_recv_payload is {} bytes: it must be between {MIN_MAX_RECV_PAYLOAD} (1 MiB) \
                 and {MAX_MAX_RECV_PAYLOAD}, the node's limits",
                self.max_recv_payload
            ));
        }
        if self.max_block_size == 0 {
            return Err("max_block_size must be greater than zero".to_string());
        }
        Ok(())
    }
}

/// Settings of the manager: network, connection limits, discovery, persistence, listener, bans,
/// what we announce, events and observability. `connection` holds the per-connection settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManagerConfig {
    /// The network to join.
    pub network: Network,
    /// Connections (inbound + outbound) below which outbound connections are opened.
    pub target_connections: usize,
    /// Most connections (inbound + outbound); at least `target_connections`.
    pub max_connections: usize,
    /// Host names queried for peer addresses (from `network` by default).
    pub dns_seeds: Vec<String>,
    /// Port given to addresses learned from DNS (from `network` by default).
    pub default_port: u16,
    /// DNS servers to query (`ip:port`); `None` uses the system's resolver.
    pub dns_nameservers: Option<Vec<SocketAddr>>,
    /// How often DNS seeds are queried again.
    #[serde(with = "humantime_serde")]
    pub dns_discovery_interval: Duration,
    /// File the peer store is saved to; `None` keeps peers in memory only.
    pub peer_store_path: Option<PathBuf>,
    /// How often the peer store is saved.
    #[serde(with = "humantime_serde")]
    pub save_interval: Duration,
    /// Whether to accept inbound connections.
    pub enable_listener: bool,
    /// Address the listener binds.
    pub listener_address: IpAddr,
    /// Port the listener binds (the network's default port by default).
    pub listener_port: u16,
    /// User-agent ban patterns: case-insensitive substrings, or `*` wildcards over the whole
    /// user agent. Setting any replaces the defaults `abc`, `cash`, `bch`, as the node does.
    pub banned_user_agents: Vec<String>,
    /// How long a ban lasts unless it is permanent.
    #[serde(with = "humantime_serde")]
    pub ban_duration: Duration,
    /// IPs and CIDR ranges that are never banned.
    pub whitelist: Whitelist,
    /// The user agent we announce; must not contain a banned pattern.
    pub user_agent: String,
    /// Service bits we announce (0: a pure client, no `NODE_NETWORK`).
    pub services: u64,
    /// Whether peers should relay transactions to us (`relay` in our `version`).
    pub relay: bool,
    /// The block height we announce.
    pub start_height: i32,
    /// Capacity of each broadcast channel (control events, bitcoin messages).
    pub event_channel_capacity: usize,
    /// Log level: trace, debug, info, warn, error or off.
    pub log_level: String,
    /// Whether to export metrics over OTLP even without `telemetry_endpoint` (then to
    /// OpenTelemetry's `OTEL_EXPORTER_OTLP_ENDPOINT`, or `http://localhost:4318`). Read by
    /// `p2p::telemetry` (feature `otlp`), not by the manager.
    pub enable_telemetry: bool,
    /// OTLP/HTTP endpoint to export metrics to: a collector's base URL (`/v1/metrics` is
    /// appended) or the full URL. Read by `p2p::telemetry` (feature `otlp`).
    pub telemetry_endpoint: Option<String>,
    /// Service name reported to OpenTelemetry (the resource's `service.name`).
    pub service_name: String,
    /// Most peers kept in the store.
    pub max_stored_peers: usize,
    /// How long an `Inaccessible` peer rests before it may be tried again.
    #[serde(with = "humantime_serde")]
    pub inaccessible_retry_delay: Duration,
    /// Settings of each connection.
    pub connection: ConnectionConfig,
    /// The header chain (`Manager::header_chain`).
    pub header_chain: HeaderChainConfig,
    /// Block fetching (`Manager::get_block`).
    pub block_fetch: BlockFetchConfig,
    /// Blocks of any size as streams (`Manager::get_block_stream`).
    pub block_streaming: BlockStreamingConfig,
    /// Transaction broadcast and stream.
    pub transactions: TransactionConfig,
    /// Peer learning from `addr`.
    pub addresses: AddressConfig,
    /// What peers can make us hold, and who gets an inbound slot (docs/SECURITY.md).
    pub limits: LimitsConfig,
}

impl Default for ManagerConfig {
    /// The configuration for mainnet.
    fn default() -> Self {
        ManagerConfig::new(Network::Mainnet)
    }
}

impl ManagerConfig {
    /// The default configuration for `network`, with its DNS seeds and ports.
    pub fn new(network: Network) -> Self {
        ManagerConfig {
            network,
            target_connections: DEFAULT_TARGET_CONNECTIONS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            dns_seeds: network.dns_seeds().iter().map(|s| s.to_string()).collect(),
            default_port: network.default_port(),
            dns_nameservers: None,
            dns_discovery_interval: DEFAULT_DNS_DISCOVERY_INTERVAL,
            peer_store_path: None,
            save_interval: DEFAULT_SAVE_INTERVAL,
            enable_listener: false,
            listener_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listener_port: network.default_port(),
            banned_user_agents: DEFAULT_BANNED_USER_AGENTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ban_duration: DEFAULT_BAN_DURATION,
            whitelist: Whitelist::default(),
            user_agent: default_user_agent(),
            services: 0,
            relay: true,
            start_height: 0,
            event_channel_capacity: DEFAULT_EVENT_CHANNEL_CAPACITY,
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            enable_telemetry: false,
            telemetry_endpoint: None,
            service_name: DEFAULT_SERVICE_NAME.to_string(),
            max_stored_peers: DEFAULT_MAX_STORED_PEERS,
            inaccessible_retry_delay: DEFAULT_INACCESSIBLE_RETRY_DELAY,
            connection: ConnectionConfig::default(),
            header_chain: HeaderChainConfig::default(),
            block_fetch: BlockFetchConfig::default(),
            block_streaming: BlockStreamingConfig::default(),
            transactions: TransactionConfig::default(),
            addresses: AddressConfig::default(),
            limits: LimitsConfig::default(),
        }
    }

    /// The address the listener binds.
    pub fn listener_socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.listener_address, self.listener_port)
    }

    /// The parsed `banned_user_agents`.
    pub fn user_agent_ban_list(&self) -> Result<UserAgentBanList> {
        UserAgentBanList::parse(&self.banned_user_agents)
    }

    /// Checks every setting, including `connection`, returning
    /// [`P2pError::InvalidConfiguration`] naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        tracing::debug!(
            target = self.target_connections,
            max = self.max_connections,
            network = %self.network,
            "Validating Manager configuration"
        );
        self.check().map_err(invalid)?;
        self.connection.validate()?;
        tracing::trace!("Manager configuration is valid");
        Ok(())
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".to_string());
        }
        if self.target_connections > self.max_connections {
            return Err(format!(
                "target_connections ({}) is greater than max_connections ({})",
                self.target_connections, self.max_connections
            ));
        }
        if self.event_channel_capacity == 0 {
            return Err("event_channel_capacity must be at least 1".to_string());
        }
        if self.max_stored_peers == 0 {
            return Err("max_stored_peers must be at least 1".to_string());
        }
        if self.default_port == 0 {
            return Err("default_port must not be 0".to_string());
        }
        if self.dns_nameservers.as_ref().is_some_and(|n| n.is_empty()) {
            return Err(
                "dns_nameservers is an empty list: leave it out to use the system resolver"
                    .to_string(),
            );
        }
        for (name, value) in [
            ("dns_discovery_interval", self.dns_discovery_interval),
            ("save_interval", self.save_interval),
            ("ban_duration", self.ban_duration),
            ("inaccessible_retry_delay", self.inaccessible_retry_delay),
        ] {
            nonzero_duration(name, value)?;
        }
        let bans = self.user_agent_ban_list().map_err(|e| match e {
            P2pError::InvalidConfiguration(msg) => msg,
            other => other.to_string(),
        })?;
        if self.user_agent.len() > MAX_USER_AGENT_LENGTH {
            return Err(format!(
                "user_agent is {} bytes, longer than the {MAX_USER_AGENT_LENGTH} the node reads",
                self.user_agent.len()
            ));
        }
        if let Some(pattern) = bans.matching_pattern(&self.user_agent) {
            return Err(format!(
                "user_agent {:?} contains the banned pattern {:?}: peers would ban us",
                self.user_agent,
                pattern.as_str()
            ));
        }
        if !LOG_LEVELS
            .iter()
            .any(|l| l.eq_ignore_ascii_case(&self.log_level))
        {
            return Err(format!(
                "log_level {:?} is not one of {}",
                self.log_level,
                LOG_LEVELS.join(", ")
            ));
        }
        self.header_chain.check()?;
        self.block_fetch.check()?;
        self.block_streaming.check()?;
        self.transactions.check()?;
        self.addresses.check()?;
        self.limits.check()?;
        if self
            .telemetry_endpoint
            .as_ref()
            .is_some_and(|e| e.trim().is_empty())
        {
            return Err("telemetry_endpoint is empty: leave it out to disable export".to_string());
        }
        Ok(())
    }
}

fn nonzero_duration(name: &str, value: Duration) -> std::result::Result<(), String> {
    if value.is_zero() {
        Err(format!("{name} must be greater than zero"))
    } else {
        Ok(())
    }
}

fn invalid(message: String) -> P2pError {
    tracing::error!(error = %message, "Invalid configuration");
    P2pError::InvalidConfiguration(message)
}

/// The file form of [`ManagerConfig`]: the same fields, but the network-dependent ones are
/// optional so that a file saying only `network = "testnet"` gets testnet's seeds and ports
/// rather than mainnet's.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ManagerConfigFile {
    network: Network,
    target_connections: usize,
    max_connections: usize,
    dns_seeds: Option<Vec<String>>,
    default_port: Option<u16>,
    dns_nameservers: Option<Vec<SocketAddr>>,
    #[serde(with = "humantime_serde")]
    dns_discovery_interval: Duration,
    peer_store_path: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    save_interval: Duration,
    enable_listener: bool,
    listener_address: IpAddr,
    listener_port: Option<u16>,
    banned_user_agents: Vec<String>,
    #[serde(with = "humantime_serde")]
    ban_duration: Duration,
    whitelist: Whitelist,
    user_agent: String,
    services: u64,
    relay: bool,
    start_height: i32,
    event_channel_capacity: usize,
    log_level: String,
    enable_telemetry: bool,
    telemetry_endpoint: Option<String>,
    service_name: String,
    max_stored_peers: usize,
    #[serde(with = "humantime_serde")]
    inaccessible_retry_delay: Duration,
    connection: ConnectionConfig,
    header_chain: HeaderChainConfig,
    block_fetch: BlockFetchConfig,
    block_streaming: BlockStreamingConfig,
    transactions: TransactionConfig,
    addresses: AddressConfig,
    limits: LimitsConfig,
}

impl Default for ManagerConfigFile {
    fn default() -> Self {
        let d = ManagerConfig::default();
        ManagerConfigFile {
            network: d.network,
            target_connections: d.target_connections,
            max_connections: d.max_connections,
            dns_seeds: None,
            default_port: None,
            dns_nameservers: d.dns_nameservers,
            dns_discovery_interval: d.dns_discovery_interval,
            peer_store_path: d.peer_store_path,
            save_interval: d.save_interval,
            enable_listener: d.enable_listener,
            listener_address: d.listener_address,
            listener_port: None,
            banned_user_agents: d.banned_user_agents,
            ban_duration: d.ban_duration,
            whitelist: d.whitelist,
            user_agent: d.user_agent,
            services: d.services,
            relay: d.relay,
            start_height: d.start_height,
            event_channel_capacity: d.event_channel_capacity,
            log_level: d.log_level,
            enable_telemetry: d.enable_telemetry,
            telemetry_endpoint: d.telemetry_endpoint,
            service_name: d.service_name,
            max_stored_peers: d.max_stored_peers,
            inaccessible_retry_delay: d.inaccessible_retry_delay,
            connection: d.connection,
            header_chain: d.header_chain,
            block_fetch: d.block_fetch,
            block_streaming: d.block_streaming,
            transactions: d.transactions,
            addresses: d.addresses,
            limits: d.limits,
        }
    }
}

impl From<ManagerConfigFile> for ManagerConfig {
    fn from(f: ManagerConfigFile) -> Self {
        let net = ManagerConfig::new(f.network);
        ManagerConfig {
            network: f.network,
            target_connections: f.target_connections,
            max_connections: f.max_connections,
            dns_seeds: f.dns_seeds.unwrap_or(net.dns_seeds),
            default_port: f.default_port.unwrap_or(net.default_port),
            dns_nameservers: f.dns_nameservers,
            dns_discovery_interval: f.dns_discovery_interval,
            peer_store_path: f.peer_store_path,
            save_interval: f.save_interval,
            enable_listener: f.enable_listener,
            listener_address: f.listener_address,
            listener_port: f.listener_port.unwrap_or(net.listener_port),
            banned_user_agents: f.banned_user_agents,
            ban_duration: f.ban_duration,
            whitelist: f.whitelist,
            user_agent: f.user_agent,
            services: f.services,
            relay: f.relay,
            start_height: f.start_height,
            event_channel_capacity: f.event_channel_capacity,
            log_level: f.log_level,
            enable_telemetry: f.enable_telemetry,
            telemetry_endpoint: f.telemetry_endpoint,
            service_name: f.service_name,
            max_stored_peers: f.max_stored_peers,
            inaccessible_retry_delay: f.inaccessible_retry_delay,
            connection: f.connection,
            header_chain: f.header_chain,
            block_fetch: f.block_fetch,
            block_streaming: f.block_streaming,
            transactions: f.transactions,
            addresses: f.addresses,
            limits: f.limits,
        }
    }
}

impl<'de> Deserialize<'de> for ManagerConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        ManagerConfigFile::deserialize(deserializer).map(ManagerConfig::from)
    }
}

/// What peers can make us hold, and who gets an inbound slot (`[limits]` in a configuration
/// file). Every default and its reason is in `p2p::limits` and docs/SECURITY.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Bytes the lossy message channel may hold for its slowest subscriber; a message that
    /// would exceed it is dropped (counted as an overflow).
    pub message_channel_bytes: usize,
    /// Bytes each lossless message subscriber may have queued before the connections feeding
    /// it stop reading.
    pub lossless_queue_bytes: usize,
    /// Inbound connections that may be in their handshake at once.
    pub max_inbound_handshakes: usize,
    /// Age after which an inbound connection still in its handshake may be evicted for a
    /// newcomer.
    #[serde(with = "humantime_serde")]
    pub handshake_evict_age: Duration,
    /// Most inbound connections from one IP (`127.0.0.1`, `::1` and the whitelist exempt);
    /// 0 disables the cap.
    pub max_inbound_per_ip: usize,
    /// Sockets the listener admits per second, sustained.
    pub accept_rate: f64,
    /// Sockets the listener admits at once before `accept_rate` applies.
    pub accept_burst: usize,
    /// When every slot is taken, evict an established inbound peer for a newcomer, in the
    /// manner of the node's `AttemptToEvictConnection` (long-lived, low-latency and useful
    /// peers are protected; the evicted one is from the most crowded address group).
    pub evict_established: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        use crate::p2p::limits::*;
        LimitsConfig {
            message_channel_bytes: DEFAULT_MESSAGE_CHANNEL_BYTES,
            lossless_queue_bytes: DEFAULT_LOSSLESS_QUEUE_BYTES,
            max_inbound_handshakes: DEFAULT_MAX_INBOUND_HANDSHAKES,
            handshake_evict_age: DEFAULT_HANDSHAKE_EVICT_AGE,
            max_inbound_per_ip: DEFAULT_MAX_INBOUND_PER_IP,
            accept_rate: DEFAULT_ACCEPT_RATE,
            accept_burst: DEFAULT_ACCEPT_BURST,
            evict_established: true,
        }
    }
}

impl LimitsConfig {
    fn check(&self) -> std::result::Result<(), String> {
        if self.message_channel_bytes == 0 || self.lossless_queue_bytes == 0 {
            return Err(
                "limits.message_channel_bytes and limits.lossless_queue_bytes must be at least 1"
                    .into(),
            );
        }
        if self.max_inbound_handshakes == 0 {
            return Err("limits.max_inbound_handshakes must be at least 1".into());
        }
        if !(self.accept_rate > 0.0 && self.accept_rate.is_finite()) {
            return Err(format!(
                "limits.accept_rate is {}: it must be a finite number above 0",
                self.accept_rate
            ));
        }
        if self.accept_burst == 0 {
            return Err("limits.accept_burst must be at least 1".into());
        }
        nonzero_duration("limits.handshake_evict_age", self.handshake_evict_age)
    }
}
