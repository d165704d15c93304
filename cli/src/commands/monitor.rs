//! `bsvp2p monitor`: run the manager and watch it. On a terminal, a table of connected peers is
//! redrawn in place every second above a scrolling list of events; otherwise every event and a
//! periodic one-line status are printed as plain lines (for logs and pipes). Chain activity is
//! shown as it happens: the header chain ([`bitcoinsv::p2p::HeaderChain`]) is followed from the
//! start, every new tip is a line with its height, hash and the peer that told us first, every
//! reorganisation a line with its fork height and depth, and the status gives blocks and
//! transactions (distinct txids announced) per minute. `--metrics-addr`
//! serves the library's metrics in Prometheus' text format on `/metrics`, and a configured
//! `telemetry_endpoint` gets them over OTLP ([`crate::telemetry`]). Ctrl-C shuts the manager
//! down cleanly, saves the peer store and flushes the metrics.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bitcoinsv::bitcoin::{Hash, InvType};
use bitcoinsv::p2p::text::printable;
use bitcoinsv::p2p::{
    ChainEvent, ConnectionSnapshot, ControlEvent, InMemoryPeerStore, Manager, Message,
};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::error::CliError;
use crate::interrupt::Interrupt;

/// Arguments of `bsvp2p monitor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: crate::config_file::ConfigArgs,
    /// Connect only to these peers (Fixed Peer List mode); repeat for several.
    #[arg(long = "peer", value_name = "ADDR")]
    pub peers: Vec<SocketAddr>,
    /// Accept inbound peers on this address.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics (needs the `metrics` feature, on by
    /// default).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Where the peer store is kept (default: `bsvp2p-peers-<network>.json`).
    #[arg(long, value_name = "FILE")]
    pub store: Option<PathBuf>,
    /// Outbound connections to keep in Normal mode.
    #[arg(long)]
    pub target: Option<usize>,
    /// Print plain lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Other(format!("starting the runtime: {e}")))?;
    rt.block_on(monitor(args))
}

async fn monitor(args: Args) -> Result<(), CliError> {
    let mut config = args.config.load()?;
    let network = config.network;
    if let Some(t) = args.target {
        config.target_connections = t;
    }
    if let Some(l) = args.listen {
        config.enable_listener = true;
        config.listener_address = l.ip();
        config.listener_port = l.port();
    }
    let path = args
        .store
        .clone()
        .or_else(|| config.peer_store_path.clone())
        .unwrap_or_else(|| PathBuf::from(format!("bsvp2p-peers-{network}.json")));
    config.peer_store_path = Some(path.clone());
    config
        .validate()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    // The meter provider goes in before the manager, which takes its instruments from it.
    #[cfg(feature = "metrics")]
    let (telemetry, metrics_listener) = {
        let listener = match args.metrics_addr {
            Some(addr) => Some(crate::telemetry::bind(addr).await?),
            None => None,
        };
        (
            crate::telemetry::Telemetry::install(&config, listener.is_some())?,
            listener,
        )
    };
    #[cfg(not(feature = "metrics"))]
    if args.metrics_addr.is_some() {
        return Err(CliError::Usage(
            "--metrics-addr: this bsvp2p was built without the `metrics` feature".into(),
        ));
    }
    let store = Arc::new(InMemoryPeerStore::with_file(&path));
    let manager = Arc::new(if args.peers.is_empty() {
        Manager::new(config, store)
    } else {
        Manager::with_fixed_peers(config, store, args.peers.clone())
    });
    let mut events = manager.subscribe_control_events();
    let mut messages = manager.subscribe_bitcoin_messages();
    let chain = manager.header_chain();
    let mut chain_events = chain.subscribe();
    let mut activity = Activity::default();
    // Subscribed once, before anything runs, so no Ctrl-C is lost (see `crate::interrupt`).
    let mut interrupt = Interrupt::install()
        .map_err(|e| CliError::Other(format!("cannot listen for Ctrl-C: {e}")))?;
    manager
        .start()
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    #[cfg(feature = "metrics")]
    if let Some(listener) = metrics_listener {
        register_monitor_gauges(&manager);
        telemetry.serve_prometheus(listener);
    }
    let live = !args.plain && std::io::stdout().is_terminal();
    let mode = if args.peers.is_empty() {
        "normal"
    } else {
        "fixed"
    };
    crate::output::line(&format!(
        "# monitoring {} ({mode} mode{}); store {}; Ctrl-C to stop",
        network,
        manager
            .listener_address()
            .map(|a| format!(", listening on {a}"))
            .unwrap_or_default(),
        path.display()
    ));
    let mut recent: Vec<String> = Vec::new();
    let show = |line: String, recent: &mut Vec<String>| {
        if live {
            recent.push(line);
            let excess = recent.len().saturating_sub(12);
            recent.drain(..excess);
        } else {
            crate::output::line(&line);
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            e = events.recv() => match e {
                Ok(e) => show(describe(&e, &manager.connected_peers()), &mut recent),
                Err(broadcast::error::RecvError::Lagged(n)) => crate::output::line(&format!("# {n} events skipped")),
                Err(_) => break,
            },
            e = chain_events.recv() => match e {
                Ok(e) => {
                    activity.on_chain_event(&e);
                    let from = match &e {
                        ChainEvent::NewTip { hash, .. } => chain.announced_by(hash),
                        _ => None,
                    };
                    let peer = from.and_then(|id| {
                        manager.connected_peers().into_iter().find(|p| p.peer_id == id)
                    });
                    show(printable(&describe_chain(&e, from, peer.as_ref())), &mut recent);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => crate::output::line(&format!("# {n} chain events skipped")),
                Err(_) => {}
            },
            m = messages.recv() => {
                if let Ok(m) = m {
                    if let Message::Inv(items) = &m.message {
                        activity.on_announced(items.iter().filter(|i| i.inv_type == InvType::Tx).map(|i| i.hash));
                    }
                }
            }
            _ = tick.tick() => {
                ticks += 1;
                let peers = manager.connected_peers();
                let status = activity.status(&chain.tip());
                if live {
                    draw(&peers, &status, &recent);
                } else if ticks.is_multiple_of(10) {
                    crate::output::line(&format!("# {} connected; {status}", peers.len()));
                }
            }
        }
    }
    crate::output::line("# shutting down (Ctrl-C again to quit without saving)");
    tokio::select! {
        done = manager.shutdown() => done.map_err(|e| CliError::Other(e.to_string()))?,
        _ = interrupt.recv() => {
            return Err(CliError::Other(format!(
                "interrupted again while shutting down; peer store {} may not be saved",
                path.display()
            )))
        }
    }
    #[cfg(feature = "metrics")]
    telemetry.shutdown().await?;
    crate::output::line(&format!(
        "# stopped; peer store saved to {}",
        path.display()
    ));
    Ok(())
}

/// One plain line for an event, escaped as a whole: reasons can quote a peer's user agent or
/// `reject` text.
fn describe(e: &ControlEvent, peers: &[ConnectionSnapshot]) -> String {
    printable(&describe_raw(e, peers))
}

fn describe_raw(e: &ControlEvent, peers: &[ConnectionSnapshot]) -> String {
    let t = humantime_now();
    match e {
        ControlEvent::ConnectionEstablished {
            peer_id,
            is_inbound,
        } => {
            let who = peers
                .iter()
                .find(|p| p.peer_id == *peer_id)
                .map(|p| {
                    let agent = p
                        .details
                        .as_ref()
                        .map(|d| d.user_agent.clone())
                        .unwrap_or_default();
                    format!(" {} {agent}", p.address)
                })
                .unwrap_or_default();
            format!(
                "{t} connected {peer_id} ({}){who}",
                if *is_inbound { "inbound" } else { "outbound" }
            )
        }
        ControlEvent::ConnectionFailed { peer_id, reason } => {
            format!("{t} failed {peer_id}: {reason}")
        }
        ControlEvent::ConnectionLost { peer_id, reason } => format!("{t} lost {peer_id}: {reason}"),
        ControlEvent::ConnectionRestarting { peer_id, reason } => {
            format!("{t} restarting {peer_id}: {reason}")
        }
        ControlEvent::HandshakeComplete { peer_id } => format!("{t} handshake complete {peer_id}"),
        ControlEvent::PeerMisbehavior {
            peer_id,
            score,
            reason,
        } => format!("{t} misbehaviour {peer_id}: {reason} (score {score})"),
        ControlEvent::PeerBanned {
            peer_id,
            ip,
            reason,
        } => format!("{t} banned {ip} ({peer_id}): {reason}"),
        ControlEvent::PeerUnbanned { ip } => format!("{t} unbanned {ip}"),
        ControlEvent::InboundConnectionAccepted { address, .. } => {
            format!("{t} inbound from {address}")
        }
        ControlEvent::InboundConnectionRejected { address, reason } => {
            format!("{t} refused {address}: {reason}")
        }
        ControlEvent::ConnectionRejectedCapacity { address, .. } => {
            format!("{t} refused {address}: at capacity")
        }
        ControlEvent::ListenerBindFailed { address, error } => {
            format!("{t} cannot listen on {address}: {error}")
        }
        ControlEvent::ConfigUpdated => format!("{t} configuration updated"),
        ControlEvent::StoreSaveFailed { error } => {
            format!("{t} saving the peer store failed (will retry): {error}")
        }
        ControlEvent::PeerEvicted {
            peer_id, address, ..
        } => format!("{t} evicted {peer_id} {address} to make room"),
    }
}

/// One line for a chain event: a new tip with the peer that announced it first, or a reorg.
fn describe_chain(
    e: &ChainEvent,
    from: Option<uuid::Uuid>,
    peer: Option<&ConnectionSnapshot>,
) -> String {
    let t = humantime_now();
    match e {
        ChainEvent::NewTip { height, hash } => {
            let who = match (from, peer) {
                (_, Some(p)) => {
                    let agent = p
                        .details
                        .as_ref()
                        .map(|d| d.user_agent.clone())
                        .unwrap_or_default();
                    format!(" first from {} {agent}", p.address)
                }
                (Some(id), None) => format!(" first from {id}"),
                (None, None) => String::new(),
            };
            format!("{t} new tip {height} {hash}{who}")
        }
        ChainEvent::Reorg {
            old_tip,
            new_tip,
            fork_height,
            depth,
        } => format!("{t} reorg at height {fork_height}, depth {depth}: {old_tip} -> {new_tip}"),
    }
}

/// Blocks and transactions of the last minute, for the status line.
#[derive(Default)]
struct Activity {
    /// When each new tip of the last minute arrived.
    tips: std::collections::VecDeque<Instant>,
    /// Distinct transaction ids announced this minute (capped: past the cap the count goes on
    /// without deduplication).
    txids: std::collections::HashSet<Hash>,
    /// Announcements this minute beyond the cap.
    overflow: u64,
    /// The count of the last complete minute (none until one completes) and when the current
    /// one began.
    last_minute_txs: Option<u64>,
    minute_start: Option<Instant>,
    reorgs: u64,
}

/// Most transaction ids remembered per minute for deduplication (32 bytes each).
const MAX_TXIDS_PER_MINUTE: usize = 1_000_000;

impl Activity {
    fn on_chain_event(&mut self, e: &ChainEvent) {
        match e {
            ChainEvent::NewTip { .. } => self.tips.push_back(Instant::now()),
            ChainEvent::Reorg { .. } => self.reorgs += 1,
        }
    }

    fn on_announced(&mut self, txids: impl Iterator<Item = Hash>) {
        self.roll();
        for txid in txids {
            if self.txids.len() < MAX_TXIDS_PER_MINUTE {
                self.txids.insert(txid);
            } else if !self.txids.contains(&txid) {
                self.overflow += 1;
            }
        }
    }

    /// Starts a new minute when the current one is over.
    fn roll(&mut self) {
        let now = Instant::now();
        let start = *self.minute_start.get_or_insert(now);
        if now.duration_since(start) >= Duration::from_secs(60) {
            self.last_minute_txs = Some(self.txids.len() as u64 + self.overflow);
            self.txids.clear();
            self.overflow = 0;
            self.minute_start = Some(now);
        }
    }

    fn status(&mut self, tip: &bitcoinsv::p2p::ChainTip) -> String {
        self.roll();
        let now = Instant::now();
        while self
            .tips
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.tips.pop_front();
        }
        // The current minute's count until the first minute completes, then the last one's.
        let txs = self
            .last_minute_txs
            .unwrap_or(self.txids.len() as u64 + self.overflow);
        format!(
            "tip {} {}; {} blocks/min, {txs} tx/min announced, {} reorgs",
            tip.height,
            tip.hash,
            self.tips.len(),
            self.reorgs
        )
    }
}

fn humantime_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let s = secs % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn draw(peers: &[ConnectionSnapshot], status: &str, recent: &[String]) {
    // Our own escape sequences (home, clear) first; everything below is escaped text.
    let out = format!("\x1b[H\x1b[2J{status}\n\n{}", table(peers, recent));
    crate::output::line(out.trim_end());
}

/// The live table and the recent (already escaped) event lines, as text with no control
/// character but newlines: user agents are escaped before they are cut to the column.
fn table(peers: &[ConnectionSnapshot], recent: &[String]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<22} {:<9} {:<26} {:>8} {:>8} {:>10} {:>10} {:>9}\n",
        "ADDRESS", "DIRECTION", "USER AGENT", "HEIGHT", "RTT", "BYTES IN", "BYTES OUT", "FOR"
    ));
    for p in peers {
        let d = p.details.clone().unwrap_or_default();
        let agent: String = printable(&d.user_agent).chars().take(26).collect();
        let rtt = p
            .rtt
            .map(|r| format!("{}ms", r.as_millis()))
            .unwrap_or_else(|| "-".into());
        let since = p
            .connected_since
            .and_then(|t| t.elapsed().ok())
            .map(|d| format!("{}s", d.as_secs()))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<22} {:<9} {:<26} {:>8} {:>8} {:>10} {:>10} {:>9}\n",
            p.address.to_string(),
            p.direction.as_str(),
            agent,
            d.start_height,
            rtt,
            p.bytes_in,
            p.bytes_out,
            since
        ));
    }
    out.push_str(&format!("\n{} connected — recent events:\n", peers.len()));
    for l in recent {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Monitor's own figure beside the library's instruments: the mean ping round-trip time of the
/// peers connected now (the library's `bsv_p2p.ping.rtt` histogram covers every ping since the
/// start).
#[cfg(feature = "metrics")]
fn register_monitor_gauges(manager: &Arc<Manager>) {
    let manager = Arc::downgrade(manager);
    opentelemetry::global::meter("bsvp2p")
        .f64_observable_gauge("bsvp2p.monitor.ping.rtt.mean")
        .with_description("Mean ping round-trip time of the peers connected now")
        .with_unit("s")
        .with_callback(move |o| {
            let Some(manager) = manager.upgrade() else {
                return;
            };
            let rtts: Vec<f64> = manager
                .connected_peers()
                .iter()
                .filter_map(|p| p.rtt.map(|r| r.as_secs_f64()))
                .collect();
            if !rtts.is_empty() {
                o.observe(rtts.iter().sum::<f64>() / rtts.len() as f64, &[]);
            }
        })
        .build();
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoinsv::p2p::connection::PeerDetails;
    use bitcoinsv::p2p::{ConnectionState, Direction};

    #[test]
    fn the_live_table_shows_a_hostile_user_agent_escaped() {
        let peer = ConnectionSnapshot {
            peer_id: uuid::Uuid::new_v4(),
            address: "127.0.0.1:18444".parse().unwrap(),
            direction: Direction::Outbound,
            state: ConnectionState::Connected,
            details: Some(PeerDetails {
                // An OSC title and a CSI attribute, short enough for the 26-character column.
                user_agent: "/\u{1b}]0;t\u{7}\u{1b}[1m".into(),
                ..PeerDetails::default()
            }),
            rtt: None,
            misbehavior_score: 0,
            connected_since: None,
            handshake_duration: None,
            bytes_in: 0,
            bytes_out: 0,
            received: Default::default(),
            sent: Default::default(),
        };
        let t = table(&[peer], &[]);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'), "{t:?}");
        assert!(t.contains("/\\u{1b}]0;t\\u{7}\\u{1b}[1m"), "{t}");
    }
}
