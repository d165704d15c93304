//! `bsvp2p headers`: the best header chain of one peer, followed with the library's
//! `HeaderChain` (docs/GUIDE.md "Follow the chain"; docs/PROTOCOL.md §3.5, §9.9), which checks
//! that each header links to the one before and meets its proof-of-work target.
//!
//! A manager with that one peer syncs the chain (`getheaders` with our locator, again from the
//! last hash while a batch is full), then the command prints the best chain's hashes after
//! `--from` (by default genesis) to stdout (or JSON lines with `--json`) and a summary to
//! stderr. A node in initial block download does not answer `getheaders` at all, so the sync
//! fails when the chain stops growing for `--timeout` and the error says so.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::Hash;
use bitcoinsv::p2p::{
    ControlEvent, HeaderChain, InMemoryPeerStore, Manager, ManagerConfig, P2pError, Peer, PeerStore,
};
use serde_json::json;
use tokio::sync::broadcast;

use super::{parse_address, parse_seconds};
use crate::config_file::ConfigArgs;
use crate::error::CliError;

/// Arguments of `bsvp2p headers`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The peer, as ip:port.
    #[arg(value_parser = parse_address)]
    pub address: SocketAddr,
    /// Start after this block hash [default: the network's genesis block].
    #[arg(long, value_name = "HASH")]
    pub from: Option<Hash>,
    /// Stop after this many headers [default: up to the peer's tip].
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print one JSON object per header instead of bare hashes.
    #[arg(long)]
    pub json: bool,
    /// How long the chain may go without growing (each `headers` reply), in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let mut config = args.config.load()?;
    config.header_chain.sync_timeout = args.timeout;
    super::runtime()?.block_on(async {
        let manager = start(config, args.address).await?;
        let result = download(&args, &manager).await;
        let _ = manager.shutdown().await;
        result
    })
}

/// A manager with `address` as its one peer, connected; or one line saying why not.
async fn start(mut config: ManagerConfig, address: SocketAddr) -> Result<Manager, CliError> {
    config.dns_seeds.clear();
    config.enable_listener = false;
    config.peer_store_path = None;
    config.connection.max_retries = 0;
    config.target_connections = 1;
    let store = Arc::new(InMemoryPeerStore::new());
    store
        .create(Peer::new(address.ip(), address.port()))
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    let limit = config.connection.connect_timeout + config.connection.handshake_timeout;
    let manager = Manager::with_fixed_peers(config, store, vec![address]);
    let mut events = manager.subscribe_control_events();
    manager
        .start()
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let connected = tokio::time::timeout(limit + Duration::from_secs(1), async {
        loop {
            match events.recv().await {
                Ok(ControlEvent::HandshakeComplete { .. }) => return Ok(()),
                Ok(ControlEvent::ConnectionFailed { reason, .. })
                | Ok(ControlEvent::ConnectionLost { reason, .. }) => {
                    return Err(match reason {
                        bitcoinsv::p2p::DisconnectReason::Handshake(f) if f.is_ban() => {
                            format!("refused {address}: {f}")
                        }
                        r => format!("cannot connect to {address}: {r}"),
                    })
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(format!("cannot connect to {address}: manager stopped"))
                }
            }
        }
    })
    .await;
    match connected {
        Ok(Ok(())) => Ok(manager),
        Ok(Err(why)) => {
            let _ = manager.shutdown().await;
            Err(CliError::Other(why))
        }
        Err(_) => {
            let _ = manager.shutdown().await;
            Err(CliError::Other(format!(
                "no handshake with {address} within {limit:?}"
            )))
        }
    }
}

/// Syncs, allowing `timeout` between signs of progress.
async fn sync(args: &Args, chain: &HeaderChain) -> Result<(), CliError> {
    let bar =
        crate::progress::spinner("{spinner} {elapsed_precise} {pos} headers ({per_sec}), {msg}");
    let mut events = chain.subscribe();
    loop {
        tokio::select! {
            r = chain.sync(args.timeout) => {
                bar.finish_and_clear();
                return match r {
                    Ok(_) => Ok(()),
                    Err(P2pError::Timeout { .. }) => Err(CliError::Other(format!(
                        "no headers after {} from {} within {:?}: the peer may be in initial \
                         block download (it does not answer getheaders then)",
                        chain.tip().hash,
                        args.address,
                        args.timeout
                    ))),
                    Err(e) => Err(CliError::Other(e.to_string())),
                };
            }
            // Progress restarts the wait.
            e = events.recv() => {
                if e.is_ok() {
                    bar.set_position(u64::from(chain.tip().height));
                }
            }
        }
    }
}

async fn download(args: &Args, manager: &Manager) -> Result<(), CliError> {
    let started = Instant::now();
    let chain = manager.header_chain();
    sync(args, &chain).await?;
    let genesis = chain
        .header_at(0)
        .map(|h| h.hash)
        .unwrap_or_else(|| manager.config().network.genesis_hash());
    let from = args.from.unwrap_or(genesis);
    let Some(start) = chain.header(&from).filter(|h| h.best) else {
        return Err(CliError::Other(format!(
            "{from} is not on {}'s best chain",
            args.address
        )));
    };
    // Heights are shown only when counting from genesis (as before the header chain).
    let show_height = from == genesis;
    let limit = args.count.unwrap_or(u64::MAX);
    let mut total: u64 = 0;
    let mut last = from;
    let mut height = start.height;
    let mut lines = Vec::new();
    while total < limit {
        let Some(h) = chain.header_at(height.saturating_add(1)) else {
            break;
        };
        height = h.height;
        last = h.hash;
        total += 1;
        lines.push(if args.json {
            let hd = h.header;
            let mut v = json!({
                "hash": h.hash,
                "prev_hash": hd.prev_hash,
                "merkle_root": hd.merkle_root,
                "version": hd.version,
                "time": hd.time,
                "bits": hd.bits,
                "nonce": hd.nonce,
            });
            if show_height {
                v["height"] = json!(h.height);
            }
            v.to_string()
        } else {
            h.hash.to_string()
        });
        if lines.len() >= 2000 {
            crate::output::line(&lines.join("\n"));
            lines.clear();
        }
    }
    if !lines.is_empty() {
        crate::output::line(&lines.join("\n"));
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{total} header{} from {from}, last {last}{} in {secs:.2}s ({:.0} headers/s)",
        if total == 1 { "" } else { "s" },
        if show_height {
            format!(" (height {height})")
        } else {
            String::new()
        },
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}
