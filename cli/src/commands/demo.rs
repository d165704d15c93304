//! `bsvp2p demo`: the project in one minute, on this machine, with no internet.
//!
//! Starts a simulated BSV network (24 nodes by default, on their own loopback addresses, one of
//! them running a BCH user agent), runs the connection manager against it with a listener, then
//! crawls the network and shows the library's services at work: the header chain syncing, a
//! block fetched and verified, a fork the simnet resolves into a reorganisation the chain
//! reports, a large synthetic block (64 MiB by default) streamed and verified in bounded memory
//! with the process's peak memory beside it, and a transaction broadcast with its per-peer
//! report (one node, dialling in, rejects it). Each step is narrated, and a summary table ends the run. `--json` prints the
//! same account as JSON lines.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::{Hash, Network};
use bitcoinsv::p2p::text::printable;
use bitcoinsv::p2p::{
    BlockFetchOptions, BlockStreamMode, BroadcastOptions, ChainEvent, ControlEvent, HeaderChain,
    InMemoryPeerStore, Manager, ManagerConfig, Peer, PeerStore,
};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig, SyntheticSpec};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::error::CliError;

/// Arguments of `bsvp2p demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Simulated nodes to start.
    #[arg(long, default_value_t = 24)]
    pub nodes: usize,
    /// Blocks in the simulated chain.
    #[arg(long, default_value_t = 200)]
    pub blocks: u32,
    /// Outbound connections the manager keeps.
    #[arg(long, default_value_t = 8)]
    pub target: usize,
    /// Size of the large synthetic block streamed through the manager, in MiB (0: skip; 256 or
    /// more shows best in a release build, where generating and streaming it takes seconds).
    #[arg(long, default_value_t = 64)]
    pub big_block_mib: u64,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    if args.nodes < 3 {
        return Err(CliError::Usage("--nodes must be at least 3".into()));
    }
    if args.target == 0 || args.target >= args.nodes {
        return Err(CliError::Usage(format!(
            "--target must be between 1 and {} (nodes − 1)",
            args.nodes - 1
        )));
    }
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Other(format!("starting the runtime: {e}")))?;
    rt.block_on(demo(args))
}

/// Prints the account, as text or JSON lines.
struct Narrator {
    json: bool,
    start: Instant,
}

impl Narrator {
    fn say(&self, step: &str, text: &str, data: Value) {
        let t = self.start.elapsed().as_secs_f64();
        if self.json {
            let mut v = json!({ "time": t, "step": step, "text": text });
            if let (Some(o), Value::Object(d)) = (v.as_object_mut(), data) {
                o.extend(d);
            }
            crate::output::line(&v.to_string());
        } else {
            // The text can quote a peer (its user agent, a ban reason).
            let text = bitcoinsv::p2p::text::printable(text);
            crate::output::line(&format!("[{t:6.2}s] {step:<9} {text}"));
        }
    }

    fn heading(&self, text: &str) {
        if !self.json {
            crate::output::line(text);
        }
    }
}

fn other(e: impl std::fmt::Display) -> CliError {
    CliError::Other(e.to_string())
}

async fn demo(args: Args) -> Result<(), CliError> {
    let n = Narrator {
        json: args.json,
        start: Instant::now(),
    };
    n.heading(
        "bitcoinsv P2P demo: a simulated Bitcoin SV network on this machine, no internet needed.\n",
    );
    let bch = args.nodes - 1;
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(args.nodes)
            .blocks(args.blocks)
            .txs_per_block(20)
            .distinct_ips(true)
            .with_misbehaviour(bch, Misbehaviour::BchUserAgent),
    )
    .await
    .map_err(other)?;
    let addrs = net.addresses();
    n.say(
        "network",
        &format!(
            "started {} simulated nodes (regtest, {} .. {}), chain height {}; node {} claims to be Bitcoin ABC",
            args.nodes,
            addrs[0],
            addrs[args.nodes - 1],
            net.chain().tip_height(),
            addrs[bch]
        ),
        json!({ "nodes": args.nodes, "height": net.chain().tip_height() }),
    );

    // The manager: Normal mode, a listener, and a store seeded with the honest nodes' addresses
    // (on the real network they come from DNS seeds).
    let store = Arc::new(InMemoryPeerStore::new());
    for a in &addrs[..bch] {
        store
            .create(Peer::new(a.ip(), a.port()))
            .await
            .map_err(other)?;
    }
    let mut config = ManagerConfig::new(Network::Regtest);
    config.dns_seeds.clear();
    config.target_connections = args.target;
    config.enable_listener = true;
    config.listener_address = "127.0.0.1".parse().map_err(other)?;
    config.listener_port = 0;
    let manager = Manager::new(config, store.clone());
    let mut events = manager.subscribe_control_events();
    manager.start().await.map_err(other)?;
    let listen = manager
        .listener_address()
        .ok_or_else(|| other("the listener did not start"))?;
    n.say(
        "manager",
        &format!(
            "Normal mode: keeping {} outbound connections, listening on {listen}",
            args.target
        ),
        json!({ "target": args.target, "listener": listen.to_string() }),
    );

    n.say(
        "handshake",
        "each connection: we send version; the node answers version, verack, protoconf; we send verack, then our protoconf and sendheaders (the node's order, docs/PROTOCOL.md §2.5)",
        json!({}),
    );
    let mut summary: BTreeMap<&str, String> = BTreeMap::new();
    let mut bans = Vec::new();
    // Watch the handshakes until the pool is full.
    let deadline = Instant::now() + STEP_TIMEOUT;
    while manager.connection_count() < args.target {
        if Instant::now() > deadline {
            return Err(other(format!(
                "only {} connections after {STEP_TIMEOUT:?}",
                manager.connection_count()
            )));
        }
        if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            narrate_event(&n, &manager, &e, &mut bans);
        }
    }
    n.say(
        "pool",
        &format!(
            "{} connections established (target {})",
            manager.connection_count(),
            args.target
        ),
        json!({ "connections": manager.connection_count() }),
    );

    // The BCH node dials our listener: the handshake sees its user agent and bans its address.
    net.node(bch).dial(listen).await.map_err(other)?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while bans.is_empty() {
        if Instant::now() > deadline {
            return Err(other("the BCH node was not banned"));
        }
        if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            narrate_event(&n, &manager, &e, &mut bans);
        }
    }

    // Crawl: breadth-first through getaddr from a single node.
    let crawl = crawl_step(&n, addrs[0]).await?;
    summary.insert("crawl", crawl);

    // The services: the header chain syncs, the tip's block is fetched and verified.
    let chain = manager.header_chain();
    let mut chain_events = chain.subscribe();
    let (height, tip_hash) = sync_headers(&n, &chain).await?;
    let (txs, size) = download_block(&n, &manager, tip_hash, height).await?;
    if args.big_block_mib > 0 {
        let streamed = big_block_step(&n, &net, &manager, args.big_block_mib).await?;
        summary.insert("big block", streamed);
    }

    // A fork: the simnet replaces its last two blocks with three others; the chain reorganises.
    let reorg = reorg_step(&n, &net, &mut chain_events, height).await?;

    // A broadcast: a node that rejects every transaction dials in, then every peer is offered
    // one; the report says who asked, who rejected and who announced it back.
    let rejecter = args.nodes - 2;
    net.node(rejecter)
        .set_misbehaviour(Misbehaviour::RejectAllTx);
    net.node(rejecter).dial(listen).await.map_err(other)?;
    wait_for_peers(&manager, "the rejecting node never connected", |snaps| {
        snaps
            .iter()
            .any(|s| s.direction == bitcoinsv::p2p::Direction::Inbound)
    })
    .await?;
    // Every outbound peer too, past its handshake: one the reorg or the big block kept busy may
    // be re-dialling, and only established peers are offered the transaction.
    wait_for_peers(
        &manager,
        "not every peer established before the broadcast",
        |snaps| {
            snaps
                .iter()
                .filter(|s| s.state == bitcoinsv::p2p::ConnectionState::Connected)
                .count()
                > args.target
        },
    )
    .await?;
    let broadcast = broadcast_step(&n, &manager).await?;
    // Summary.
    let snaps = manager.connected_peers();
    let inbound = snaps
        .iter()
        .filter(|s| s.direction == bitcoinsv::p2p::Direction::Inbound)
        .count();
    let bytes_in: u64 = snaps.iter().map(|s| s.bytes_in).sum();
    summary.insert("simulated nodes", args.nodes.to_string());
    summary.insert(
        "connections",
        format!("{} outbound, {inbound} inbound", snaps.len() - inbound),
    );
    summary.insert("bans", format!("{} ({})", bans.len(), bans.join(", ")));
    summary.insert(
        "headers synced",
        format!("{height} (tip {})", short(&tip_hash)),
    );
    summary.insert(
        "block downloaded",
        format!("{txs} transactions, {size} bytes, merkle root verified"),
    );
    summary.insert("reorg", reorg);
    summary.insert("broadcast", broadcast);
    summary.insert("bytes received", bytes_in.to_string());
    summary.insert("time", format!("{:.2}s", n.start.elapsed().as_secs_f64()));
    manager.shutdown().await.map_err(other)?;
    net.shutdown().await;
    if n.json {
        n.say("summary", "done", json!({ "summary": summary }));
    } else {
        crate::output::line("\nSummary");
        for key in [
            "simulated nodes",
            "connections",
            "bans",
            "crawl",
            "headers synced",
            "block downloaded",
            "big block",
            "reorg",
            "broadcast",
            "bytes received",
            "time",
        ] {
            if let Some(v) = summary.get(key) {
                crate::output::line(&format!("  {key:<18} {v}"));
            }
        }
    }
    Ok(())
}

fn short(h: &Hash) -> String {
    let s = h.to_string();
    format!("{}…{}", &s[..8], &s[56..])
}

fn narrate_event(n: &Narrator, manager: &Manager, e: &ControlEvent, bans: &mut Vec<String>) {
    match e {
        ControlEvent::ConnectionEstablished {
            peer_id,
            is_inbound,
        } => {
            if let Some(s) = manager
                .connected_peers()
                .into_iter()
                .find(|s| s.peer_id == *peer_id)
            {
                let d = s.details.unwrap_or_default();
                n.say(
                    "connect",
                    &format!(
                        "{} {} handshake complete: {} protocol {} height {}",
                        s.address,
                        if *is_inbound { "(inbound)" } else { "(outbound)" },
                        d.user_agent,
                        d.version,
                        d.start_height
                    ),
                    json!({ "peer": s.address.to_string(), "user_agent": d.user_agent, "height": d.start_height }),
                );
            }
        }
        ControlEvent::PeerBanned { ip, reason, .. } => {
            bans.push(format!("{ip}: {reason}"));
            n.say(
                "ban",
                &format!("{ip} banned for 24 h: {reason}"),
                json!({ "ip": ip.to_string(), "reason": reason.to_string() }),
            );
        }
        ControlEvent::InboundConnectionAccepted { address, .. } => {
            n.say(
                "listener",
                &format!("inbound connection from {address}"),
                json!({ "peer": address.to_string() }),
            );
        }
        ControlEvent::ConnectionFailed { reason, .. } => {
            n.say("failed", &reason.to_string(), json!({}))
        }
        _ => {}
    }
}

async fn crawl_step(n: &Narrator, seed: SocketAddr) -> Result<String, CliError> {
    use bitcoinsv::p2p::crawler::{Chain, CrawlConfig, Crawler};
    let config = CrawlConfig {
        // The simnet answers getaddr at once; real nodes take ~30 s.
        addr_timeout: Duration::from_secs(3),
        ..CrawlConfig::new(Network::Regtest, vec![seed])
    };
    let started = Instant::now();
    let mut printed = 0;
    let report = Crawler::run(config, |p| {
        // A line every eight probes: enough to see the crawl spread without flooding.
        if p.tried > printed && p.tried % 8 == 0 {
            printed = p.tried;
            n.say(
                "crawl",
                &format!("progress: found {} tried {} reachable {} in flight {}", p.found, p.tried, p.reachable, p.in_flight),
                json!({ "progress": { "found": p.found, "tried": p.tried, "reachable": p.reachable, "in_flight": p.in_flight } }),
            );
        }
    })
    .await
    .map_err(other)?;
    let reachable = report.nodes.iter().filter(|x| x.reachable).count();
    let bsv = report
        .nodes
        .iter()
        .filter(|x| x.chain == Chain::Bsv)
        .count();
    let bch = report
        .nodes
        .iter()
        .filter(|x| x.chain == Chain::Bch)
        .count();
    let text = format!(
        "{} nodes found from one seed in {:.2}s: {reachable} reachable, {bsv} BSV, {bch} BCH",
        report.nodes.len(),
        started.elapsed().as_secs_f64()
    );
    n.say(
        "crawl",
        &text,
        json!({ "found": report.nodes.len(), "reachable": reachable, "bsv": bsv, "bch": bch }),
    );
    Ok(text)
}

async fn sync_headers(n: &Narrator, chain: &HeaderChain) -> Result<(u32, Hash), CliError> {
    let started = Instant::now();
    let tip = chain.sync(STEP_TIMEOUT).await.map_err(other)?;
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    n.say(
        "headers",
        &format!(
            "header chain synced to height {} ({}) in {:.0} ms ({:.0} headers/s): every header links to the last and meets its proof of work",
            tip.height,
            short(&tip.hash),
            secs * 1000.0,
            f64::from(tip.height) / secs
        ),
        json!({ "headers": tip.height, "tip": tip.hash.to_string(), "headers_per_second": f64::from(tip.height) / secs }),
    );
    Ok((tip.height, tip.hash))
}

async fn download_block(
    n: &Narrator,
    manager: &Manager,
    hash: Hash,
    height: u32,
) -> Result<(usize, usize), CliError> {
    let fetched = tokio::time::timeout(
        STEP_TIMEOUT,
        manager.get_block_with(hash, BlockFetchOptions::default()),
    )
    .await
    .map_err(|_| other("the block did not arrive in time"))?
    .map_err(other)?;
    let block = &fetched.block;
    let size = bitcoinsv::bitcoin::Encode::encoded_len(block.as_ref());
    n.say(
        "block",
        &format!(
            "block #{height} {hash} from {}: {} transactions, {size} bytes, hash and merkle root verified",
            fetched.address,
            block.transactions.len()
        ),
        json!({ "hash": hash.to_string(), "transactions": block.transactions.len(), "bytes": size }),
    );
    Ok((block.transactions.len(), size))
}

/// The process's resident memory now and at its peak, in KiB (`/proc/self/status`).
fn memory_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A synthetic block of `mib` MiB, generated on the fly by a simulated node, streamed through
/// the manager (`get_block_stream`, txid-only) and verified as it passes, in bounded memory.
async fn big_block_step(
    n: &Narrator,
    net: &SimNet,
    manager: &Manager,
    mib: u64,
) -> Result<String, CliError> {
    let spec = SyntheticSpec::new(mib * 1024 * 1024)
        .tx_size(1000)
        .seed(mib);
    let info = net.add_synthetic_block(spec).await.map_err(other)?;
    let before = memory_kib("VmRSS:");
    // Reset the peak to now (Linux `clear_refs` 5), so the peak below is this step's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let mut stream = tokio::time::timeout(
        STEP_TIMEOUT,
        manager.get_block_stream(info.hash, BlockStreamMode::TxIds),
    )
    .await
    .map_err(|_| other("the large block did not start in time"))?
    .map_err(other)?;
    while let Some(part) = stream.next().await {
        part.map_err(other)?;
    }
    let took = started.elapsed();
    let end = stream
        .verified()
        .copied()
        .ok_or_else(|| other("the large block ended without a verdict"))?;
    let peak = memory_kib("VmHWM:");
    let mb_s = end.length as f64 / 1e6 / took.as_secs_f64().max(1e-9);
    let memory = match (before, peak) {
        (Some(b), Some(p)) => format!(
            "process peak memory {} MiB ({} MiB before)",
            p / 1024,
            b / 1024
        ),
        _ => "process memory unknown (no /proc)".to_string(),
    };
    n.say(
        "stream",
        &format!(
            "streamed a {mib} MiB block ({} transactions) from {} in {:.2}s ({mb_s:.0} MB/s), checksum and merkle root verified on the fly; {memory}",
            end.tx_count,
            stream.address(),
            took.as_secs_f64()
        ),
        json!({
            "hash": info.hash.to_string(),
            "bytes": end.length,
            "transactions": end.tx_count,
            "seconds": took.as_secs_f64(),
            "rss_before_kib": before,
            "peak_rss_kib": peak,
        }),
    );
    Ok(format!(
        "{mib} MiB, {} transactions in {:.2}s, {memory}",
        end.tx_count,
        took.as_secs_f64()
    ))
}

async fn reorg_step(
    n: &Narrator,
    net: &SimNet,
    events: &mut broadcast::Receiver<ChainEvent>,
    height: u32,
) -> Result<String, CliError> {
    let fork = height.saturating_sub(2);
    net.reorg(fork, 3).map_err(other)?;
    n.say(
        "fork",
        &format!("the simulated network replaces blocks {} and {height} with three blocks on height {fork}", fork + 1),
        json!({ "fork_height": fork }),
    );
    let reorg = tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            match events.recv().await {
                Ok(ChainEvent::Reorg {
                    old_tip,
                    new_tip,
                    fork_height,
                    depth,
                }) => return Ok((old_tip, new_tip, fork_height, depth)),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(other("the header chain stopped"))
                }
            }
        }
    })
    .await
    .map_err(|_| other("no reorganisation was reported in time"))??;
    let (old_tip, new_tip, fork_height, depth) = reorg;
    let text = format!(
        "depth {depth} at height {fork_height}: {} replaced by {}",
        short(&old_tip),
        short(&new_tip)
    );
    n.say(
        "reorg",
        &format!("the header chain reorganised, {text}"),
        json!({ "fork_height": fork_height, "depth": depth, "old_tip": old_tip.to_string(), "new_tip": new_tip.to_string() }),
    );
    Ok(text)
}

/// Waits until `done` holds for the manager's connections, polling them (at most
/// `STEP_TIMEOUT`); `what` names the wait in the error.
async fn wait_for_peers(
    manager: &Manager,
    what: &str,
    done: impl Fn(&[bitcoinsv::p2p::ConnectionSnapshot]) -> bool,
) -> Result<(), CliError> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !done(&manager.connected_peers()) {
        if Instant::now() > deadline {
            return Err(other(what));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn broadcast_step(n: &Narrator, manager: &Manager) -> Result<String, CliError> {
    let tx = bitcoinsv_simnet::sample_transaction(3);
    let options = BroadcastOptions {
        window: Duration::from_secs(5),
        ..BroadcastOptions::default()
    };
    let report = manager
        .broadcast_transaction_with(tx, options)
        .await
        .map_err(other)?;
    for p in &report.peers {
        let outcome = match &p.rejected {
            Some(r) => format!(
                "rejected it: 0x{:02x} {}",
                r.code.to_u8(),
                printable(&r.reason)
            ),
            None if p.announced_back => "asked for it and announced it back".to_string(),
            None if p.requested => "asked for it".to_string(),
            None => format!("{} (no answer)", p.delivery),
        };
        n.say(
            "peer",
            &format!("  {} {outcome}", p.address),
            json!({ "peer": p.address.to_string(), "outcome": p.kind() }),
        );
    }
    let requested = report.requested_by().count();
    let rejected = report.rejected_by().count();
    let back = report.relayed_back_by().count();
    let text = format!(
        "tx {} offered to {} peers: {requested} asked for it, {rejected} rejected it, {back} announced it back",
        short(&report.txid),
        report.peers.len()
    );
    n.say(
        "broadcast",
        &text,
        json!({ "txid": report.txid.to_string(), "peers": report.peers.len(), "requested": requested, "rejected": rejected, "relayed_back": back }),
    );
    Ok(format!(
        "{} peers: {requested} requested, {rejected} rejected, {back} announced back",
        report.peers.len()
    ))
}
