//! `bsvp2p monitor`: run the manager and watch it. On a terminal, a table of connected peers is
//! redrawn in place every second above a scrolling list of events; otherwise every event and a
//! periodic one-line status are printed as plain lines (for logs and pipes). `--metrics-addr`
//! serves the library's metrics in Prometheus' text format on `/metrics`, and a configured
//! `telemetry_endpoint` gets them over OTLP ([`crate::telemetry`]). Ctrl-C shuts the manager
//! down cleanly, saves the peer store and flushes the metrics.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bitcoinsv::p2p::text::printable;
use bitcoinsv::p2p::{ConnectionSnapshot, ControlEvent, InMemoryPeerStore, Manager};
use tokio::sync::broadcast;

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
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            e = events.recv() => match e {
                Ok(e) => {
                    let line = describe(&e, &manager.connected_peers());
                    if live {
                        recent.push(line);
                        let excess = recent.len().saturating_sub(12);
                        recent.drain(..excess);
                    } else {
                        crate::output::line(&line);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => crate::output::line(&format!("# {n} events skipped")),
                Err(_) => break,
            },
            _ = tick.tick() => {
                ticks += 1;
                let peers = manager.connected_peers();
                if live {
                    draw(&peers, &recent);
                } else if ticks.is_multiple_of(10) {
                    crate::output::line(&format!("# {} connected", peers.len()));
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

fn draw(peers: &[ConnectionSnapshot], recent: &[String]) {
    // Our own escape sequences (home, clear) first; everything below is escaped text.
    let out = format!("\x1b[H\x1b[2J{}", table(peers, recent));
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
