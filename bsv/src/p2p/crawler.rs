//! Network crawler: breadth-first discovery through `getaddr` (SPEC §11, PROTOCOL.md §3.3, §6).
//!
//! Each address gets a one-shot probe on its own socket: our `version`, the peer's
//! `version`/`verack`, our `verack`, a `getaddr` (nodes answer it only on connections *we*
//! opened, once), a `ping` for the round-trip time, and a close. The probe does not use the
//! connection actor on purpose: a crawler must *report* a BCH node or another chain, not ban it
//! and look away, and it needs no store. Every address a peer advertises is queued once;
//! concurrency, per-peer waits, the total time and the number of nodes are all bounded.
//!
//! Chains are told apart as the node does (PROTOCOL.md §6): BTC's magic is another blockchain;
//! another BSV network's magic is another network; a user agent matching the BCH ban patterns is
//! BCH (it shares BSV's mainnet magic); anything else that completes the handshake is BSV.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rand::Rng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

use crate::bitcoin::{NetAddress, Network};
use crate::p2p::bans::UserAgentBanList;
use crate::p2p::codec::{CodecError, MessageCodec};
use crate::p2p::limits::PROTOCOL_VERSION;
use crate::p2p::messages::{AssociationId, VersionMessage};
use crate::p2p::Message;

/// What chain a node is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// Bitcoin SV on the crawled network.
    Bsv,
    /// Bitcoin Cash (same magic as BSV mainnet; told apart by user agent).
    Bch,
    /// BTC (its magic `f9beb4d9`).
    Btc,
    /// Another BSV network (its magic) or something unidentifiable.
    Other,
    /// Never answered.
    Unknown,
}

/// Settings of a crawl.
#[derive(Debug, Clone)]
pub struct CrawlConfig {
    /// The network to crawl.
    pub network: Network,
    /// Where to start.
    pub seeds: Vec<SocketAddr>,
    /// Probes at once.
    pub concurrency: usize,
    /// TCP connect deadline per address.
    pub connect_timeout: Duration,
    /// Handshake deadline per address.
    pub handshake_timeout: Duration,
    /// How long to wait for `addr` after `getaddr`.
    pub addr_wait: Duration,
    /// Deadline for the whole crawl.
    pub total_timeout: Duration,
    /// Stop queueing new addresses past this many.
    pub max_nodes: usize,
    /// User agents reported as BCH.
    pub bch_agents: UserAgentBanList,
}

impl CrawlConfig {
    /// Defaults for `network`, with no seeds.
    pub fn new(network: Network) -> Self {
        CrawlConfig {
            network,
            seeds: Vec::new(),
            concurrency: 32,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            addr_wait: Duration::from_secs(5),
            total_timeout: Duration::from_secs(300),
            max_nodes: 10_000,
            bch_agents: UserAgentBanList::default(),
        }
    }
}

/// What the crawl learned about one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    /// The address.
    pub address: SocketAddr,
    /// Whether the handshake completed.
    pub reachable: bool,
    /// Its user agent.
    pub user_agent: Option<String>,
    /// Its protocol version.
    pub version: Option<i32>,
    /// Its service bits.
    pub services: Option<u64>,
    /// Its best height.
    pub start_height: Option<i32>,
    /// Ping round trip.
    pub rtt_ms: Option<u64>,
    /// Its chain.
    pub chain: Chain,
    /// Addresses it advertised.
    pub advertised: usize,
    /// Why the probe failed, if it did.
    pub error: Option<String>,
}

/// Progress counters, passed to the callback as the crawl goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CrawlProgress {
    /// Addresses known.
    pub found: usize,
    /// Addresses probed.
    pub tried: usize,
    /// Probes that completed a handshake.
    pub reachable: usize,
    /// Probes under way.
    pub in_flight: usize,
}

/// The result of a crawl.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CrawlReport {
    /// Every address probed, in the order probes finished.
    pub nodes: Vec<NodeReport>,
    /// Whether the total deadline cut the crawl short.
    pub timed_out: bool,
}

/// Breadth-first crawler.
pub struct Crawler;

impl Crawler {
    /// Crawls from `config.seeds`, calling `progress` after every probe.
    pub async fn run(
        config: CrawlConfig,
        mut progress: impl FnMut(CrawlProgress),
    ) -> crate::p2p::Result<CrawlReport> {
        let config = Arc::new(config);
        let deadline = Instant::now() + config.total_timeout;
        let mut seen: HashSet<SocketAddr> = HashSet::new();
        let mut queue: VecDeque<SocketAddr> = VecDeque::new();
        for s in &config.seeds {
            if seen.insert(*s) {
                queue.push_back(*s);
            }
        }
        let mut report = CrawlReport::default();
        let mut tasks: JoinSet<(NodeReport, Vec<SocketAddr>)> = JoinSet::new();
        let mut p = CrawlProgress {
            found: seen.len(),
            ..CrawlProgress::default()
        };
        loop {
            while tasks.len() < config.concurrency.max(1) {
                let Some(addr) = queue.pop_front() else { break };
                let c = config.clone();
                tasks.spawn(async move { probe(&c, addr, deadline).await });
            }
            p.in_flight = tasks.len();
            if tasks.is_empty() {
                break;
            }
            let joined = match timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(j)) => j,
                Ok(None) => break,
                Err(_) => {
                    report.timed_out = true;
                    tasks.abort_all();
                    break;
                }
            };
            let Ok((node, advertised)) = joined else {
                continue;
            };
            p.tried += 1;
            if node.reachable {
                p.reachable += 1;
            }
            for a in advertised {
                if seen.len() >= config.max_nodes {
                    break;
                }
                if seen.insert(a) {
                    queue.push_back(a);
                }
            }
            p.found = seen.len();
            p.in_flight = tasks.len();
            report.nodes.push(node);
            progress(p);
        }
        Ok(report)
    }
}

fn empty_report(address: SocketAddr) -> NodeReport {
    NodeReport {
        address,
        reachable: false,
        user_agent: None,
        version: None,
        services: None,
        start_height: None,
        rtt_ms: None,
        chain: Chain::Unknown,
        advertised: 0,
        error: None,
    }
}

async fn probe(
    config: &CrawlConfig,
    address: SocketAddr,
    deadline: Instant,
) -> (NodeReport, Vec<SocketAddr>) {
    let mut r = empty_report(address);
    let mut advertised = Vec::new();
    if let Err(e) = probe_inner(config, &mut r, &mut advertised, deadline).await {
        r.error = Some(e);
    }
    r.advertised = advertised.len();
    (r, advertised)
}

async fn probe_inner(
    config: &CrawlConfig,
    r: &mut NodeReport,
    advertised: &mut Vec<SocketAddr>,
    deadline: Instant,
) -> Result<(), String> {
    let connect_by = (Instant::now() + config.connect_timeout).min(deadline);
    let mut stream = timeout_at(connect_by, TcpStream::connect(r.address))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect failed: {e}"))?;
    let mut codec = MessageCodec::new(config.network);
    let ours = VersionMessage {
        version: PROTOCOL_VERSION,
        services: 0,
        timestamp: crate::p2p::peer::unix_now() as i64,
        receiver: NetAddress::new(r.address, 0),
        sender: NetAddress::UNSPECIFIED,
        nonce: rand::thread_rng().gen_range(1..=u64::MAX),
        user_agent: crate::p2p::config::default_user_agent(),
        start_height: 0,
        relay: false,
        association_id: Some(AssociationId::Empty),
    };
    send(&mut stream, &codec, &Message::Version(ours)).await?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let handshake_by = (Instant::now() + config.handshake_timeout).min(deadline);
    let (mut got_version, mut got_verack) = (false, false);
    while !(got_version && got_verack) {
        match next(&mut stream, &mut codec, &mut buf, handshake_by).await {
            Ok(Message::Version(v)) => {
                got_version = true;
                r.user_agent = Some(v.user_agent.clone());
                r.version = Some(v.version);
                r.services = Some(v.services);
                r.start_height = Some(v.start_height);
                r.chain = if config.bch_agents.is_banned(&v.user_agent) {
                    Chain::Bch
                } else {
                    Chain::Bsv
                };
                send(&mut stream, &codec, &Message::Verack).await?;
            }
            Ok(Message::Verack) => got_verack = true,
            Ok(_) => {}
            Err(Failure::Magic(received)) => {
                r.chain = if Network::from_magic(received).is_some() {
                    Chain::Other
                } else {
                    Chain::Btc
                };
                return Err(format!("wrong magic {}", hex::encode(received)));
            }
            Err(Failure::Other(e)) => return Err(e),
        }
    }
    r.reachable = true;
    let ping_nonce = rand::thread_rng().gen_range(1..=u64::MAX);
    let ping_sent = Instant::now();
    send(&mut stream, &codec, &Message::GetAddr).await?;
    send(&mut stream, &codec, &Message::Ping(ping_nonce)).await?;
    let addr_by = (Instant::now() + config.addr_wait).min(deadline);
    let mut got_addr = false;
    while !(got_addr && r.rtt_ms.is_some()) {
        match next(&mut stream, &mut codec, &mut buf, addr_by).await {
            Ok(Message::Pong(n)) if n == ping_nonce => {
                r.rtt_ms = Some(ping_sent.elapsed().as_millis() as u64)
            }
            Ok(Message::Ping(n)) => send(&mut stream, &codec, &Message::Pong(n)).await?,
            Ok(Message::Addr(list)) => {
                advertised.extend(list.iter().map(|a| a.addr.socket_addr()));
                // A single entry is usually the node advertising itself; keep waiting for the
                // getaddr answer.
                got_addr = got_addr || list.len() > 1;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown().await;
    Ok(())
}

enum Failure {
    Magic([u8; 4]),
    Other(String),
}

async fn send(stream: &mut TcpStream, codec: &MessageCodec, m: &Message) -> Result<(), String> {
    let b = codec.encode_to_bytes(m).map_err(|e| e.to_string())?;
    stream
        .write_all(&b)
        .await
        .map_err(|e| format!("write failed: {e}"))
}

async fn next(
    stream: &mut TcpStream,
    codec: &mut MessageCodec,
    buf: &mut BytesMut,
    by: Instant,
) -> Result<Message, Failure> {
    loop {
        match codec.decode(buf) {
            Ok(Some(m)) => return Ok(m),
            Ok(None) => {}
            Err(CodecError::BadMagic { received, .. }) => return Err(Failure::Magic(received)),
            Err(e) if e.is_fatal() => return Err(Failure::Other(e.to_string())),
            Err(_) => continue,
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(16 * 1024);
        }
        match timeout_at(by, stream.read_buf(buf)).await {
            Err(_) => return Err(Failure::Other("timed out".into())),
            Ok(Ok(0)) => return Err(Failure::Other("peer closed the connection".into())),
            Ok(Err(e)) => return Err(Failure::Other(format!("read failed: {e}"))),
            Ok(Ok(_)) => {}
        }
    }
}
