//! What the examples share: where to connect, parsed from the command line, and a one-line
//! summary of a message. Not an example itself (Cargo only builds `examples/*.rs` and
//! `examples/*/main.rs`).
//!
//! Every example accepts the same arguments:
//!
//! * nothing: start a simulated network ([`bitcoinsv_simnet`]) in-process on loopback and run
//!   against it; needs no network access and finishes in a few seconds;
//! * `IP:PORT ...`: these peers of a real network (mainnet unless `--network` says otherwise);
//! * `--network NAME` (`mainnet`, `testnet`, `stn`): that real network, with peers found
//!   through its DNS seeds;
//! * `--seconds N`: how long the long-running examples run (monitoring, waiting for replies).

// Each example uses only part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{InMemoryPeerStore, Message, Network, Peer, PeerStore};

/// Where an example connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No arguments: an in-process simulated network on loopback.
    SimNet,
    /// These peers of a real network.
    Peers {
        /// The network they are on.
        network: Network,
        /// Their addresses.
        peers: Vec<SocketAddr>,
    },
    /// A real network, with peers from its DNS seeds.
    Dns {
        /// The network.
        network: Network,
    },
}

/// The parsed command line.
#[derive(Debug, Clone)]
pub struct Args {
    /// Where to connect.
    pub target: Target,
    /// `--seconds N`, if given.
    pub seconds: Option<u64>,
}

impl Args {
    /// Parses `std::env::args()`; prints the usage and exits on `--help` or a bad argument.
    pub fn parse(example: &str) -> Args {
        match Self::try_parse(std::env::args().skip(1)) {
            Ok(a) => a,
            Err(e) => {
                if !e.is_empty() {
                    eprintln!("{example}: {e}");
                }
                eprintln!(
                    "usage: cargo run -p bitcoinsv --example {example} -- \
                     [--network mainnet|testnet|stn] [--seconds N] [IP:PORT ...]\n\
                     With no arguments it runs against an in-process simulated network."
                );
                std::process::exit(if e.is_empty() { 0 } else { 2 });
            }
        }
    }

    fn try_parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut network = None;
        let mut seconds = None;
        let mut peers = Vec::new();
        let mut args = args;
        while let Some(a) = args.next() {
            match a.as_str() {
                "-h" | "--help" => return Err(String::new()),
                "--network" => {
                    let v = args.next().ok_or("--network needs a value")?;
                    network = Some(v.parse::<Network>().map_err(|e| e.to_string())?);
                }
                "--seconds" => {
                    let v = args.next().ok_or("--seconds needs a value")?;
                    seconds = Some(v.parse().map_err(|_| format!("bad --seconds {v:?}"))?);
                }
                other => peers.push(
                    other
                        .parse::<SocketAddr>()
                        .map_err(|_| format!("{other:?} is not an IP:PORT address"))?,
                ),
            }
        }
        let target = match (network, peers.is_empty()) {
            (None, true) => Target::SimNet,
            (Some(network), true) => Target::Dns { network },
            (network, false) => Target::Peers {
                network: network.unwrap_or(Network::Mainnet),
                peers,
            },
        };
        Ok(Args { target, seconds })
    }

    /// Whether the example runs against the in-process simnet.
    pub fn is_simnet(&self) -> bool {
        self.target == Target::SimNet
    }

    /// `--seconds`, or `simnet` against the simnet and `real` against a real network.
    pub fn duration(&self, simnet: Duration, real: Duration) -> Duration {
        match self.seconds {
            Some(s) => Duration::from_secs(s),
            None if self.is_simnet() => simnet,
            None => real,
        }
    }
}

/// A peer store holding `addrs` as `Unknown` peers, ready for a manager to dial.
pub async fn store_with(addrs: &[SocketAddr]) -> Arc<InMemoryPeerStore> {
    let store = Arc::new(InMemoryPeerStore::new());
    for a in addrs {
        // Only a duplicate can fail, and a duplicate is already there.
        let _ = store.create(Peer::new(a.ip(), a.port())).await;
    }
    store
}

/// Resolves the network's DNS seeds with the system resolver (for examples that need
/// addresses themselves rather than through the manager's discovery).
pub async fn resolve_seeds(network: Network) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for seed in network.dns_seeds() {
        match tokio::net::lookup_host((*seed, network.default_port())).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => eprintln!("resolving {seed}: {e}"),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A one-line description of a message, for printing.
pub fn summary(m: &Message) -> String {
    match m {
        Message::Inv(v) => match v.first() {
            Some(first) => format!(
                "inv of {} item(s), first {:?} {}",
                v.len(),
                first.inv_type,
                first.hash
            ),
            None => "inv (empty)".into(),
        },
        Message::Headers(h) => match h.last() {
            Some(last) => format!("headers: {} header(s), last {}", h.len(), last.hash()),
            None => "headers (empty)".into(),
        },
        Message::Block(b) => format!(
            "block {} with {} transaction(s)",
            b.hash(),
            b.transactions.len()
        ),
        Message::Tx(t) => format!("tx {} ({} bytes)", t.txid(), t.size()),
        Message::Addr(a) => format!("addr with {} address(es)", a.len()),
        Message::Ping(n) => format!("ping {n}"),
        Message::Pong(n) => format!("pong {n}"),
        Message::Reject(r) => format!("reject of {}: {} ({})", r.message, r.reason, r.code.name()),
        Message::NotFound(v) => format!("notfound: {} item(s)", v.len()),
        other => other.command().to_string(),
    }
}
