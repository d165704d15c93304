//! Network crawler: breadth-first discovery of a network's nodes through `getaddr`.
//!
//! The crawler starts from seed addresses, probes each address once, and follows the addresses
//! every BSV peer advertises, until no address is left, `max_nodes` addresses have been found, or
//! the overall deadline passes. It reports every node it tried: reachable or not, its user agent,
//! protocol version, services, height, round-trip time, and which chain it is on.
//!
//! A probe is a one-shot exchange on a [`FramedStream`] (the framing the connection actor reads
//! with) driven by the library's own `Handshake` machine, not on the connection actor: the
//! crawler must *see* peers that the actor would refuse (a BCH user agent, another network's
//! magic) in order to report them, and it needs no peer store, bans, retries or keepalive. One
//! probe:
//!
//! 1. connects (`connect_timeout`) and sends our `version`;
//! 2. reads until the handshake completes (`handshake_timeout`), answering the peer's `version`
//!    with `verack` as the handshake machine says. The first frame's magic and the `version`'s
//!    user agent classify the peer (docs/PROTOCOL.md §6, [`Chain`]); a peer that is not on our
//!    chain is reported and left at once, and its addresses are not followed;
//! 3. sends `ping` and `getaddr` in one write, and waits at most `addr_timeout` for an `addr` that
//!    names anyone other than the peer itself (a node advertising its own address sends a
//!    one-entry `addr` of itself, which is not the answer). The `pong` gives the round-trip time;
//!    without one, the time from our `version` to the peer's is used.
//!
//! Concurrency is bounded by `concurrency` probes at once (each a task of a [`JoinSet`], so the
//! deadline cancels them all by dropping the set); addresses are deduplicated, and at most
//! `max_nodes` distinct addresses are ever queued, so a peer flooding `addr` cannot make the crawl
//! unbounded.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Serialize, Serializer};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};

use crate::bitcoin::{Magic, NetAddress, Network};
use crate::p2p::bans::UserAgentBanList;
use crate::p2p::codec::{FramedStream, MessageCodec, ReadError, RecvLimits};
use crate::p2p::config::default_user_agent;
use crate::p2p::connection::{Handshake, HandshakeFlow, HandshakeOutput, NonceRegistry};
use crate::p2p::error::{P2pError, Result};
use crate::p2p::limits::{DEFAULT_MAX_RECV_PAYLOAD, PROTOCOL_VERSION};
use crate::p2p::messages::{AssociationId, VersionMessage};
use crate::p2p::peer::unix_now;
use crate::p2p::text::printable;
use crate::p2p::Message;

/// Probes run at once by default: enough to crawl the BSV network (a few hundred listening
/// nodes) in minutes without looking like a flood to any one of them.
pub const DEFAULT_CRAWL_CONCURRENCY: usize = 32;
/// TCP connect deadline per probe: the node's `DEFAULT_CONNECT_TIMEOUT` (5 s).
pub const DEFAULT_CRAWL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshake deadline per probe. A live node answers `version` at once; the connection
/// manager's 60 s allows for loaded peers, a crawler prefers to move on.
pub const DEFAULT_CRAWL_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a probe waits for the `getaddr` answer. The node sends it after a Poisson delay
/// averaging 30 s (docs/PROTOCOL.md §3.3), so 10 s catches about a quarter of the answers; with every
/// node returning up to 1000 addresses that is plenty for discovery, and it keeps a crawl short.
pub const DEFAULT_ADDR_TIMEOUT: Duration = Duration::from_secs(10);
/// Overall crawl deadline by default.
pub const DEFAULT_CRAWL_DEADLINE: Duration = Duration::from_secs(600);
/// Distinct addresses a crawl queues at most by default: many times the size of the BSV network.
pub const DEFAULT_MAX_NODES: usize = 10_000;
/// Addresses kept from one peer: the most a node answers `getaddr` with (2500, docs/PROTOCOL.md §3.3).
pub const MAX_ADDRS_PER_PEER: usize = 2500;
/// BTC's wire magic (`f9beb4d9`), which is BSV mainnet's disk magic and never on the BSV wire.
pub const BTC_MAGIC: Magic = [0xf9, 0xbe, 0xb4, 0xd9];

/// How a crawl runs.
#[derive(Debug, Clone)]
pub struct CrawlConfig {
    /// The network to crawl: its magic is spoken and expected.
    pub network: Network,
    /// Where the crawl starts.
    pub seeds: Vec<SocketAddr>,
    /// Probes at once (at least 1).
    pub concurrency: usize,
    /// TCP connect deadline per probe.
    pub connect_timeout: Duration,
    /// Deadline for the peer's `version` and `verack`, from the connect.
    pub handshake_timeout: Duration,
    /// How long to wait for the peer's `addr` after the handshake.
    pub addr_timeout: Duration,
    /// The whole crawl ends by then; probes still running are abandoned.
    pub deadline: Duration,
    /// Most distinct addresses found (and so probed); later ones are ignored.
    pub max_nodes: usize,
    /// The user agent we announce.
    pub user_agent: String,
    /// User agents that mark a BCH node (the node's default ban list: `abc`, `cash`, `bch`).
    pub bch_user_agents: UserAgentBanList,
}

impl CrawlConfig {
    /// The defaults for `network`, starting from `seeds`.
    pub fn new(network: Network, seeds: Vec<SocketAddr>) -> Self {
        CrawlConfig {
            network,
            seeds,
            concurrency: DEFAULT_CRAWL_CONCURRENCY,
            connect_timeout: DEFAULT_CRAWL_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_CRAWL_HANDSHAKE_TIMEOUT,
            addr_timeout: DEFAULT_ADDR_TIMEOUT,
            deadline: DEFAULT_CRAWL_DEADLINE,
            max_nodes: DEFAULT_MAX_NODES,
            user_agent: default_user_agent(),
            bch_user_agents: UserAgentBanList::default(),
        }
    }

    /// Checks the settings, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(P2pError::InvalidConfiguration(m));
        if self.seeds.is_empty() {
            return bad("crawl: no seed address to start from".into());
        }
        if self.concurrency == 0 {
            return bad("crawl: concurrency must be at least 1".into());
        }
        if self.max_nodes == 0 {
            return bad("crawl: max_nodes must be at least 1".into());
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("addr_timeout", self.addr_timeout),
            ("deadline", self.deadline),
        ] {
            if d.is_zero() {
                return bad(format!("crawl: {name} must be greater than zero"));
            }
        }
        Ok(())
    }
}

/// Which chain a peer is on, as far as the wire tells (docs/PROTOCOL.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Chain {
    /// A Bitcoin SV node of the network crawled.
    Bsv,
    /// A Bitcoin Cash node: BSV mainnet's magic, a user agent with a BCH pattern.
    Bch,
    /// A Bitcoin (BTC) node: frames with magic `f9beb4d9`.
    Btc,
    /// A node of another BSV network (its frames carry that network's magic).
    OtherNetwork(Network),
    /// Frames with a magic no network we know uses.
    Other,
    /// Nothing was learned (unreachable, or no `version` in time).
    Unknown,
}

impl Chain {
    /// Classifies a peer by the magic of its first frame and its user agent, as the node does:
    /// BTC's magic → [`Chain::Btc`]; another BSV network's magic → [`Chain::OtherNetwork`]; any
    /// other foreign magic → [`Chain::Other`]; our magic with a user agent matching `bch_agents`
    /// → [`Chain::Bch`]; otherwise [`Chain::Bsv`].
    pub fn classify(
        expected: Network,
        magic: Magic,
        user_agent: &str,
        bch_agents: &UserAgentBanList,
    ) -> Chain {
        if magic != expected.magic() {
            return match Network::from_magic(magic) {
                Some(n) => Chain::OtherNetwork(n),
                None if magic == BTC_MAGIC => Chain::Btc,
                None => Chain::Other,
            };
        }
        if bch_agents.is_banned(user_agent) {
            Chain::Bch
        } else {
            Chain::Bsv
        }
    }

    /// A short stable name: `bsv`, `bch`, `btc`, `bsv-testnet` (another BSV network),
    /// `other`, `unknown`.
    pub fn name(self) -> String {
        match self {
            Chain::Bsv => "bsv".into(),
            Chain::Bch => "bch".into(),
            Chain::Btc => "btc".into(),
            Chain::OtherNetwork(n) => format!("bsv-{n}"),
            Chain::Other => "other".into(),
            Chain::Unknown => "unknown".into(),
        }
    }
}

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Chain {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a probe learned about one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    /// The address probed.
    pub address: SocketAddr,
    /// Whether the peer answered with a `version` (whatever its chain).
    pub reachable: bool,
    /// Its user agent.
    pub user_agent: Option<String>,
    /// Its protocol version.
    pub version: Option<i32>,
    /// Its service bits.
    pub services: Option<u64>,
    /// The height it announced.
    pub start_height: Option<i32>,
    /// Round-trip time: ping to pong, or our `version` to the peer's when no pong came.
    #[serde(rename = "rtt_ms", serialize_with = "millis")]
    pub rtt: Option<Duration>,
    /// The chain it is on.
    pub chain: Chain,
    /// Addresses it advertised (followed only for peers on our chain).
    pub addresses: usize,
    /// What went wrong, if anything (unreachable, timed out, another chain, …).
    pub error: Option<String>,
}

fn millis<S: Serializer>(d: &Option<Duration>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0),
        None => s.serialize_none(),
    }
}

impl NodeReport {
    fn new(address: SocketAddr) -> Self {
        NodeReport {
            address,
            reachable: false,
            user_agent: None,
            version: None,
            services: None,
            start_height: None,
            rtt: None,
            chain: Chain::Unknown,
            addresses: 0,
            error: None,
        }
    }
}

/// A probe's report and the addresses the peer advertised.
#[derive(Debug, Clone)]
pub struct Probe {
    /// What was learned.
    pub report: NodeReport,
    /// The addresses advertised, deduplicated, in the order received (empty unless the peer is
    /// on our chain).
    pub advertised: Vec<SocketAddr>,
}

/// Where a crawl stands, passed to the progress callback after every change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CrawlProgress {
    /// Distinct addresses found (seeds included).
    pub found: usize,
    /// Probes finished.
    pub tried: usize,
    /// Probes that got a `version`.
    pub reachable: usize,
    /// Probes running now.
    pub in_flight: usize,
}

/// The result of a crawl.
#[derive(Debug, Clone, Serialize)]
pub struct CrawlReport {
    /// Every address probed, sorted by address.
    pub nodes: Vec<NodeReport>,
    /// Distinct addresses found.
    pub found: usize,
    /// Addresses found but not probed because the deadline passed.
    pub untried: usize,
    /// Whether the deadline ended the crawl.
    pub deadline_reached: bool,
    /// How long the crawl took.
    #[serde(rename = "elapsed_ms", serialize_with = "elapsed_millis")]
    pub elapsed: Duration,
}

fn elapsed_millis<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl CrawlReport {
    /// The reports of nodes on `chain`.
    pub fn on_chain(&self, chain: Chain) -> impl Iterator<Item = &NodeReport> {
        self.nodes.iter().filter(move |n| n.chain == chain)
    }

    /// How many nodes answered.
    pub fn reachable(&self) -> usize {
        self.nodes.iter().filter(|n| n.reachable).count()
    }
}

/// Breadth-first crawler (see the module documentation).
#[derive(Debug)]
pub struct Crawler;

impl Crawler {
    /// Crawls from `config.seeds` and returns a report of every address tried. `progress` is
    /// called after every change (a probe started or finished). Fails only on an invalid
    /// configuration: unreachable peers are part of the report.
    pub async fn run(
        config: CrawlConfig,
        mut progress: impl FnMut(CrawlProgress),
    ) -> Result<CrawlReport> {
        config.validate()?;
        let started = Instant::now();
        let deadline = started + config.deadline;
        let config = Arc::new(config);
        let mut seen: HashSet<SocketAddr> = HashSet::new();
        let mut queue: VecDeque<SocketAddr> = VecDeque::new();
        for s in &config.seeds {
            if seen.len() < config.max_nodes && seen.insert(*s) {
                queue.push_back(*s);
            }
        }
        let mut tasks: JoinSet<Probe> = JoinSet::new();
        let mut nodes: Vec<NodeReport> = Vec::new();
        let mut state = CrawlProgress {
            found: seen.len(),
            ..CrawlProgress::default()
        };
        progress(state);
        let mut deadline_reached = false;
        loop {
            while tasks.len() < config.concurrency {
                let Some(addr) = queue.pop_front() else { break };
                let c = Arc::clone(&config);
                tasks.spawn(async move { probe(addr, &c).await });
            }
            state.in_flight = tasks.len();
            progress(state);
            if tasks.is_empty() {
                break;
            }
            let joined = match timeout_at(deadline, tasks.join_next()).await {
                Err(_) => {
                    deadline_reached = true;
                    break;
                }
                Ok(None) => break,
                Ok(Some(j)) => j,
            };
            // A probe never panics; if one did, its address is simply not reported.
            let Ok(probe) = joined else { continue };
            state.tried += 1;
            if probe.report.reachable {
                state.reachable += 1;
            }
            for a in probe.advertised {
                if seen.len() >= config.max_nodes {
                    break;
                }
                if seen.insert(a) {
                    queue.push_back(a);
                }
            }
            state.found = seen.len();
            nodes.push(probe.report);
        }
        let untried = queue.len() + tasks.len();
        // Dropping the set aborts the probes still running (and closes their sockets).
        tasks.shutdown().await;
        state.in_flight = 0;
        progress(state);
        nodes.sort_by_key(|n| n.address);
        Ok(CrawlReport {
            nodes,
            found: seen.len(),
            untried,
            deadline_reached,
            elapsed: started.elapsed(),
        })
    }
}

fn our_version(config: &CrawlConfig, peer: SocketAddr) -> VersionMessage {
    VersionMessage {
        version: PROTOCOL_VERSION,
        services: 0,
        timestamp: unix_now() as i64,
        receiver: NetAddress::new(peer, 0),
        sender: NetAddress::UNSPECIFIED,
        nonce: rand::thread_rng().gen_range(1..=u64::MAX),
        user_agent: config.user_agent.clone(),
        start_height: 0,
        // A crawler wants no transaction announcements.
        relay: false,
        association_id: Some(AssociationId::Empty),
    }
}

/// Whether an advertised address could ever be dialled.
fn dialable(a: SocketAddr) -> bool {
    a.port() != 0 && !a.ip().is_unspecified() && !a.ip().is_multicast()
}

/// Probes one address (see the module documentation). Never fails: what went wrong is in the
/// report's `error`.
pub async fn probe(address: SocketAddr, config: &CrawlConfig) -> Probe {
    let mut report = NodeReport::new(address);
    let mut advertised = Vec::new();
    if let Err(e) = probe_into(address, config, &mut report, &mut advertised).await {
        // Errors can quote bytes from the peer (a garbage command name): keep them printable.
        report.error = Some(printable(&e));
    }
    if report.chain != Chain::Bsv {
        advertised.clear();
    }
    report.addresses = advertised.len();
    Probe { report, advertised }
}

async fn probe_into(
    address: SocketAddr,
    config: &CrawlConfig,
    report: &mut NodeReport,
    advertised: &mut Vec<SocketAddr>,
) -> std::result::Result<(), String> {
    let stream = match timeout(config.connect_timeout, TcpStream::connect(address)).await {
        Err(_) => {
            return Err(format!(
                "connect timed out after {:?}",
                config.connect_timeout
            ))
        }
        Ok(Err(e)) => return Err(format!("connect failed: {e}")),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let limits = RecvLimits {
        max_payload: DEFAULT_MAX_RECV_PAYLOAD,
        ..RecvLimits::default()
    };
    // Read any magic, so a foreign peer's first frame can still be classified and its
    // `version` shown; write our network's.
    let mut wire = FramedStream::tcp(
        stream,
        MessageCodec::any_magic().with_recv_limits(limits),
        MessageCodec::new(config.network),
    );
    let sent = Instant::now();
    // The library's own handshake. The crawler classifies user agents itself (it reports other
    // chains rather than banning them), so the machine's ban filter lets every agent through.
    let mut hs = Handshake::new(
        HandshakeFlow::Outbound,
        config.network,
        our_version(config, address),
        NonceRegistry::default(),
        Arc::new(|_: &str| false),
        config.handshake_timeout,
        sent,
    );
    send_outputs(&mut wire, hs.start()).await?;
    let mut got_version = false;
    loop {
        let frame = match wire.next_frame(hs.deadline()).await {
            Ok(f) => f,
            Err(ReadError::Timeout) if got_version => {
                return Err(format!("no verack within {:?}", config.handshake_timeout))
            }
            Err(ReadError::Timeout) => {
                return Err(format!("no version within {:?}", config.handshake_timeout))
            }
            Err(ReadError::Closed) => {
                return Err("closed the connection during the handshake".into())
            }
            Err(ReadError::Codec(e)) => return Err(e.to_string()),
        };
        let magic = frame.header.magic;
        let Ok(msg) = frame.message() else { continue };
        if magic != config.network.magic() {
            report.chain = Chain::classify(config.network, magic, "", &config.bch_user_agents);
            if let Message::Version(v) = &msg {
                record_version(report, v, sent.elapsed());
            }
            report.reachable = true;
            return Err(format!(
                "speaks magic {} ({}), not {}'s",
                hex::encode(magic),
                report.chain,
                config.network
            ));
        }
        match &msg {
            Message::Version(v) if !got_version => {
                got_version = true;
                record_version(report, v, sent.elapsed());
                report.reachable = true;
                report.chain = Chain::classify(
                    config.network,
                    magic,
                    &v.user_agent,
                    &config.bch_user_agents,
                );
                if report.chain != Chain::Bsv {
                    return Err(format!("user agent {:?} is not BSV", v.user_agent));
                }
            }
            Message::Reject(r) => {
                return Err(format!(
                    "rejected our {}: {} {:?}",
                    r.message, r.code, r.reason
                ))
            }
            _ => {}
        }
        if send_outputs(&mut wire, hs.on_message(&msg)).await? {
            break;
        }
    }
    let nonce = rand::thread_rng().gen_range(1..=u64::MAX);
    let ping_sent = Instant::now();
    wire.send_all(&[Message::Ping(nonce), Message::GetAddr])
        .await
        .map_err(|e| format!("sending ping, getaddr: {e}"))?;
    let addr_deadline = Instant::now() + config.addr_timeout;
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    loop {
        let frame = match wire.next_frame(addr_deadline).await {
            Ok(f) => f,
            // No answer in time, or the peer left: report what we have.
            Err(ReadError::Timeout) | Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Codec(e)) => return Err(e.to_string()),
        };
        match frame.message() {
            Ok(Message::Ping(n)) => wire
                .send(&Message::Pong(n))
                .await
                .map_err(|e| format!("sending pong: {e}"))?,
            Ok(Message::Pong(n)) if n == nonce => report.rtt = Some(ping_sent.elapsed()),
            Ok(Message::Addr(list)) => {
                let mut answer = false;
                for a in list.iter().map(|a| a.addr.socket_addr()) {
                    if a != address {
                        answer = true;
                    }
                    if dialable(a) && advertised.len() < MAX_ADDRS_PER_PEER && seen.insert(a) {
                        advertised.push(a);
                    }
                }
                if answer {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
}

/// Sends what the handshake asks for; true once it has completed, an error if it failed.
async fn send_outputs(
    wire: &mut Wire,
    outputs: Vec<HandshakeOutput>,
) -> std::result::Result<bool, String> {
    let mut complete = false;
    for o in outputs {
        match o {
            HandshakeOutput::Send(m) => wire
                .send(&m)
                .await
                .map_err(|e| format!("sending {}: {e}", m.command()))?,
            HandshakeOutput::Complete(_) => complete = true,
            HandshakeOutput::Failed(f) => return Err(f.to_string()),
            // A crawl keeps no score: an early message from a probed peer changes nothing.
            HandshakeOutput::Misbehaving(_) => {}
        }
    }
    Ok(complete)
}

/// One probe's socket.
type Wire = FramedStream<tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf>;

fn record_version(report: &mut NodeReport, v: &VersionMessage, elapsed: Duration) {
    report.user_agent = Some(v.user_agent.clone());
    report.version = Some(v.version);
    report.services = Some(v.services);
    report.start_height = Some(v.start_height);
    report.rtt = Some(elapsed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_the_nodes_rules_magic_first_then_user_agent() {
        let bans = UserAgentBanList::default();
        let main = Network::Mainnet;
        let c = |magic, ua| Chain::classify(main, magic, ua, &bans);
        assert_eq!(c(main.magic(), "/Bitcoin SV:1.2.2/"), Chain::Bsv);
        assert_eq!(c(main.magic(), "/Bitcoin ABC:0.22.0/"), Chain::Bch);
        assert_eq!(c(main.magic(), "/BCH Unlimited:1.9/"), Chain::Bch);
        assert_eq!(c(main.magic(), "/Bitcoin Cash Node:24.0.0/"), Chain::Bch);
        assert_eq!(c(BTC_MAGIC, "/Satoshi:25.0.0/"), Chain::Btc);
        assert_eq!(
            c(Network::Testnet.magic(), "/Bitcoin SV:1.2.2/"),
            Chain::OtherNetwork(Network::Testnet)
        );
        assert_eq!(c([1, 2, 3, 4], "/Bitcoin SV:1.2.2/"), Chain::Other);
    }

    #[test]
    fn chain_names_are_stable() {
        let names: Vec<String> = [
            Chain::Bsv,
            Chain::Bch,
            Chain::Btc,
            Chain::OtherNetwork(Network::Stn),
            Chain::Other,
            Chain::Unknown,
        ]
        .iter()
        .map(|c| c.to_string())
        .collect();
        assert_eq!(names, ["bsv", "bch", "btc", "bsv-stn", "other", "unknown"]);
    }

    #[test]
    fn invalid_settings_are_named() {
        let seed: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut c = CrawlConfig::new(Network::Regtest, vec![seed]);
        assert!(c.validate().is_ok());
        c.concurrency = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("concurrency"));
        let c = CrawlConfig::new(Network::Regtest, vec![]);
        assert!(c.validate().unwrap_err().to_string().contains("seed"));
        let mut c = CrawlConfig::new(Network::Regtest, vec![seed]);
        c.addr_timeout = Duration::ZERO;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("addr_timeout"));
    }

    #[test]
    fn report_serializes_rtt_in_milliseconds_and_chain_by_name() {
        let mut r = NodeReport::new("127.0.0.1:18444".parse().unwrap());
        r.rtt = Some(Duration::from_micros(1500));
        r.chain = Chain::Bch;
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["rtt_ms"], 1.5);
        assert_eq!(v["chain"], "bch");
        assert_eq!(v["address"], "127.0.0.1:18444");
    }
}
