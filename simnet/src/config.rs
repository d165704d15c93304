//! [`SimNetConfig`]: how many nodes, on which ports, with which chain, and how each behaves.
//!
//! Defaults mirror the official node (user agent `/Bitcoin SV:1.2.2/`, ping every 120 s, 60 s
//! handshake timeout, 24 h bans) and a regtest chain of 200 generated blocks. Tests shorten the
//! timers they exercise with the builder-style setters, e.g.
//! `SimNetConfig::default().nodes(3).ping_interval(Duration::from_millis(200))`.

use std::time::Duration;

use bitcoinsv::p2p::Network;

use crate::Misbehaviour;

/// The user agent the official node 1.2.2 advertises (docs/PROTOCOL.md §2.3).
pub const DEFAULT_USER_AGENT: &str = "/Bitcoin SV:1.2.2/";

/// Configuration of a simulated network.
#[derive(Debug, Clone)]
pub struct SimNetConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Port of node 0; node `i` listens on `base_port + i`. 0 picks a free port per node.
    pub base_port: u16,
    /// The network whose magic the nodes speak. The chain is a regtest chain whatever this is.
    pub network: Network,
    /// Generated blocks after genesis.
    pub blocks: u32,
    /// Filler transactions in each generated block, after its coinbase.
    pub txs_per_block: u32,
    /// Seed of the chain (and of nothing else): the same seed gives the same block hashes.
    pub seed: u64,
    /// The user agent every node advertises (a node in [`Misbehaviour::BchUserAgent`] mode
    /// advertises the BCH one instead).
    pub user_agent: String,
    /// Interval between the node's pings on a connection (`PING_INTERVAL`, 120 s).
    pub ping_interval: Duration,
    /// A ping unanswered this long closes the connection (`-p2ptimeout`, 20 min).
    pub ping_timeout: Duration,
    /// A peer that has not completed the handshake this long after connecting is disconnected
    /// (`-p2phandshaketimeout`, 60 s).
    pub handshake_timeout: Duration,
    /// How long a banned IP is refused (`-bantime`, 24 h).
    pub ban_duration: Duration,
    /// Unreachable addresses appended to every `getaddr` answer: loopback addresses on which
    /// nothing listens (`127.0.0.2` and up, with the ports of the simnet's nodes, which are
    /// bound to 127.0.0.1 only and so refuse connections on other loopback IPs).
    pub unreachable_addrs: usize,
    /// Addresses appended to every `getaddr` answer as given (after the unreachable ones), e.g.
    /// the listener of the library under test, to check it never stores itself.
    pub extra_addrs: Vec<std::net::SocketAddr>,
    /// Misbehaviour modes by node index (later entries for the same node win).
    pub misbehaviour: Vec<(usize, Misbehaviour)>,
    /// Give every node its own loopback address (127.1.x.y) instead of 127.0.0.1, and dial from
    /// it. Bans apply to a whole IP, so this is what lets a test or demo ban one simulated node
    /// without banning all of them. With a `base_port`, every node then listens on that same
    /// port, as real nodes on the default port do.
    pub distinct_ips: bool,
}

impl Default for SimNetConfig {
    fn default() -> Self {
        SimNetConfig {
            nodes: 8,
            base_port: 0,
            network: Network::Regtest,
            blocks: 200,
            txs_per_block: 0,
            seed: 0,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            ping_interval: Duration::from_secs(120),
            ping_timeout: Duration::from_secs(20 * 60),
            handshake_timeout: Duration::from_secs(60),
            ban_duration: Duration::from_secs(24 * 60 * 60),
            unreachable_addrs: 0,
            extra_addrs: Vec::new(),
            misbehaviour: Vec::new(),
            distinct_ips: false,
        }
    }
}

impl SimNetConfig {
    /// Gives every node its own loopback address (see [`SimNetConfig::distinct_ips`]).
    pub fn distinct_ips(mut self, yes: bool) -> Self {
        self.distinct_ips = yes;
        self
    }

    /// The loopback address of node `index`: 127.0.0.1, or its own 127.1.x.y.
    pub fn node_ip(&self, index: usize) -> std::net::IpAddr {
        if self.distinct_ips {
            let i = index as u32;
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                127,
                1,
                ((i / 250) % 256) as u8,
                (i % 250 + 1) as u8,
            ))
        } else {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
    }

    /// Sets the number of nodes.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// Sets the first port (0 = free ports).
    pub fn base_port(mut self, port: u16) -> Self {
        self.base_port = port;
        self
    }

    /// Sets the network whose magic the nodes speak.
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Sets the number of generated blocks.
    pub fn blocks(mut self, blocks: u32) -> Self {
        self.blocks = blocks;
        self
    }

    /// Sets the filler transactions per generated block.
    pub fn txs_per_block(mut self, n: u32) -> Self {
        self.txs_per_block = n;
        self
    }

    /// Sets the chain seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the advertised user agent.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// Sets the ping interval.
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }

    /// Sets the ping timeout.
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.ping_timeout = d;
        self
    }

    /// Sets the handshake timeout.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Sets the ban duration.
    pub fn ban_duration(mut self, d: Duration) -> Self {
        self.ban_duration = d;
        self
    }

    /// Appends `count` unreachable loopback addresses to every `getaddr` answer.
    pub fn include_unreachable_addrs(mut self, count: usize) -> Self {
        self.unreachable_addrs = count;
        self
    }

    /// Appends these addresses to every `getaddr` answer.
    pub fn advertise(mut self, addrs: Vec<std::net::SocketAddr>) -> Self {
        self.extra_addrs = addrs;
        self
    }

    /// Makes node `index` misbehave from the start.
    pub fn with_misbehaviour(mut self, index: usize, mode: Misbehaviour) -> Self {
        self.misbehaviour.push((index, mode));
        self
    }

    /// The starting mode of node `index`.
    pub(crate) fn misbehaviour_of(&self, index: usize) -> Misbehaviour {
        self.misbehaviour
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}
