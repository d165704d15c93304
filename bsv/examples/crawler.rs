//! # crawler: discover a network's nodes through `getaddr`
//!
//! A breadth-first crawl built only from the library's public API, one short-lived
//! [`PeerClient`] per node: connect and handshake, send `getaddr`, keep the addresses of the
//! `addr` answer in an [`InMemoryPeerStore`] (new ones as `Unknown`), queue the new ones,
//! disconnect. Every node is visited once, a few at a time. At the end it prints each node it
//! reached (address, user agent, protocol version, height, services, handshake time, how many
//! addresses it gave) and what the store holds: as the owner of its store, the crawler marks
//! the nodes it reached `Valid` and those it could not reach `Inaccessible`.
//!
//! It shows how to talk to single peers without a [`Manager`](bitcoinsv::p2p::Manager):
//! [`PeerClient::connect`] with a [`ManagerConfig`], then `send` and `recv`.
//!
//! ```text
//! # against an in-process simulated network of 8 nodes that also hands out 4 addresses where
//! # nothing listens (no network access, about a second):
//! cargo run -p bitcoinsv --example crawler
//! # mainnet, starting from its DNS seeds, at most 200 nodes:
//! cargo run -p bitcoinsv --example crawler -- --network mainnet
//! # starting from given nodes (mainnet unless --network says otherwise):
//! cargo run -p bitcoinsv --example crawler -- 203.0.113.7:8333
//! ```
//!
//! A real node answers `getaddr` only after a delay (about 30 s) and only once per connection,
//! so against a real network each visit waits up to `--seconds` (default 40) for the answer.

mod common;

use std::collections::{HashSet, VecDeque};
use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::connection::PeerDetails;
use bitcoinsv::p2p::{
    InMemoryPeerStore, ManagerConfig, Message, Network, Peer, PeerClient, PeerStatus,
    PeerStatusKind, PeerStore,
};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use tokio::task::JoinSet;

use common::{Args, Target};

/// Nodes visited at once.
const CONCURRENCY: usize = 16;
/// Most nodes visited against a real network.
const MAX_VISITS_REAL: usize = 200;

/// What one visit found.
#[derive(Debug)]
struct Visit {
    address: SocketAddr,
    /// What the node said in its `version`, if the handshake completed.
    details: Option<PeerDetails>,
    /// How long the handshake took.
    handshake: Option<Duration>,
    /// Addresses from its `addr` answers.
    addrs: Vec<SocketAddr>,
    /// Why the visit ended without a handshake, if it did.
    error: Option<String>,
}

/// Connects to `peer`, asks for addresses and waits for them at most `wait` after the
/// handshake, then disconnects.
async fn visit(peer: Peer, config: ManagerConfig, wait: Duration) -> Visit {
    let mut out = Visit {
        address: peer.socket_addr(),
        details: None,
        handshake: None,
        addrs: Vec::new(),
        error: None,
    };
    // The connection's own connect and handshake timeouts bound the wait for the handshake.
    let mut client = match PeerClient::connect(&config, peer.socket_addr()).await {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    if let Err(e) = client.send(Message::GetAddr).await {
        out.error = Some(e.to_string());
    }
    let deadline = tokio::time::Instant::now() + wait;
    while out.error.is_none() {
        match client.recv_until(deadline).await {
            Ok(Some(Message::Addr(list))) => {
                out.addrs.extend(list.iter().map(|a| a.addr.socket_addr()));
                // One address alone is the node announcing itself; the answer is a list.
                if list.len() > 1 {
                    break;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => out.error = Some("connection closed".into()),
            Err(_) => out.error = Some("no addr answer in time".into()),
        }
    }
    let snapshot = client.snapshot();
    out.details = snapshot.details;
    out.handshake = snapshot.handshake_duration;
    client.close().await;
    out
}

/// The peer stored for `addr`, stored now as `Unknown` if it is new.
async fn stored(store: &InMemoryPeerStore, addr: SocketAddr) -> Peer {
    if let Ok(Some(p)) = store.find_by_ip_port(addr.ip(), addr.port()).await {
        return p;
    }
    let p = Peer::new(addr.ip(), addr.port());
    let _ = store.create(p.clone()).await;
    p
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .init();
    let args = Args::parse("crawler");
    let wait = args.duration(Duration::from_secs(2), Duration::from_secs(40));

    let mut simnet = None;
    let (network, start, max_visits) = match &args.target {
        Target::SimNet => {
            let net = SimNet::start(
                SimNetConfig::default()
                    .nodes(8)
                    .blocks(10)
                    .include_unreachable_addrs(4),
            )
            .await?;
            // Start from one node: the crawl finds the rest.
            let start = vec![net.node(0).address()];
            simnet = Some(net);
            (Network::Regtest, start, usize::MAX)
        }
        Target::Peers { network, peers } => (*network, peers.clone(), MAX_VISITS_REAL),
        Target::Dns { network } => (
            *network,
            common::resolve_seeds(*network).await,
            MAX_VISITS_REAL,
        ),
    };

    // One attempt per node, quick to give up: a crawler has many more nodes to try.
    let mut config = ManagerConfig::new(network);
    config.connection.max_retries = 0;
    config.connection.connect_timeout = Duration::from_secs(3);
    config.connection.handshake_timeout = Duration::from_secs(10);
    let store = Arc::new(InMemoryPeerStore::new());

    let mut queue: VecDeque<SocketAddr> = start.into_iter().collect();
    let mut seen: HashSet<SocketAddr> = queue.iter().copied().collect();
    let mut running = JoinSet::new();
    let mut visits = Vec::new();
    println!("crawling {network} from {} address(es)", queue.len());
    loop {
        while running.len() < CONCURRENCY && visits.len() + running.len() < max_visits {
            let Some(addr) = queue.pop_front() else { break };
            let peer = stored(&store, addr).await;
            running.spawn(visit(peer, config.clone(), wait));
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let v = done?;
        let mut reached = stored(&store, v.address).await;
        let status = if v.details.is_some() {
            PeerStatus::Valid
        } else {
            PeerStatus::Inaccessible
        };
        if reached.set_status(status) {
            store.update(reached).await?;
        }
        for a in &v.addrs {
            stored(&store, *a).await;
            if seen.insert(*a) {
                queue.push_back(*a);
            }
        }
        match &v.details {
            Some(d) => println!(
                "reached {} ({}), {} address(es)",
                v.address,
                d.user_agent,
                v.addrs.len()
            ),
            None => println!(
                "could not reach {}: {}",
                v.address,
                v.error.as_deref().unwrap_or("?")
            ),
        }
        visits.push(v);
    }

    visits.sort_by_key(|v| v.address);
    println!();
    println!(
        "{:<22} {:<22} {:>7} {:>8} {:>10} {:>12} {:>6}",
        "address", "user agent", "version", "height", "services", "handshake", "addrs"
    );
    for v in visits.iter().filter(|v| v.details.is_some()) {
        let d = v.details.as_ref().expect("filtered");
        println!(
            "{:<22} {:<22} {:>7} {:>8} {:>10x} {:>12?} {:>6}",
            v.address.to_string(),
            d.user_agent,
            d.version,
            d.start_height,
            d.services,
            v.handshake.unwrap_or_default(),
            v.addrs.len()
        );
    }
    let reachable = visits.iter().filter(|v| v.details.is_some()).count();
    println!();
    println!(
        "store: {} peers ({} valid, {} inaccessible, {} unknown)",
        store.list_all().await?.len(),
        store.count_by_status(PeerStatusKind::Valid).await?,
        store.count_by_status(PeerStatusKind::Inaccessible).await?,
        store.count_by_status(PeerStatusKind::Unknown).await?,
    );
    println!(
        "crawler: visited {}, reachable {}, unreachable {}, addresses known {}",
        visits.len(),
        reachable,
        visits.len() - reachable,
        seen.len()
    );
    if let Some(net) = simnet {
        net.shutdown().await;
    }
    Ok(())
}
