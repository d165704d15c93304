//! `bsvp2p connect`: handshake with one peer and print every message it sends, like the old
//! `p2pcat`; then disconnect cleanly. Fails with a clear message when the peer cannot be reached,
//! the handshake fails, or validation bans the peer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitcoinsv::p2p::{
    BlockStream, BlockStreamMode, ConnectionState, ControlEvent, PeerClient, PeerClientOptions,
};
use serde_json::json;
use tokio::sync::broadcast;

use bitcoinsv::p2p::text::printable;

use super::summary::summary;
use crate::config_file::ConfigArgs;
use crate::error::CliError;
use crate::interrupt::Interrupt;

/// Arguments of `bsvp2p connect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The peer, as ip:port.
    #[arg(value_parser = super::parse_address)]
    pub address: SocketAddr,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Disconnect after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Give up after this many seconds, the TCP connect and the handshake included: without a
    /// handshake by then the command fails; after one, it ends there as `--duration` does.
    #[arg(long, value_name = "SECONDS", value_parser = super::parse_seconds)]
    pub timeout: Option<Duration>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Other(format!("starting the runtime: {e}")))?;
    rt.block_on(connect(args))
}

async fn connect(args: Args) -> Result<(), CliError> {
    let mut config = args.config.load()?;
    // One attempt: a tool should say at once that the peer is unreachable.
    config.connection.max_retries = 0;
    config.connection.max_restarts = 0;
    let options = PeerClientOptions {
        tap_capacity: Some(10_000),
        // A block above the streaming threshold is read and verified as it arrives, never
        // held whole: the tool prints its hash, size and transaction count at the end.
        block_stream_mode: BlockStreamMode::TxIds,
        ..PeerClientOptions::default()
    };
    let mut client = PeerClient::start(&config, args.address, options)
        .map_err(|e| CliError::Other(e.to_string()))?;
    let mut control = client.events();
    let mut streams = client.block_streams();
    let mut readers = tokio::task::JoinSet::new();
    let Some(mut tap) = client.take_tap() else {
        return Err(CliError::Other("no message tap".into()));
    };
    // Subscribed once, before the loop, so no Ctrl-C is lost (`crate::interrupt`).
    let mut interrupt = Interrupt::install()
        .map_err(|e| CliError::Other(format!("cannot listen for Ctrl-C: {e}")))?;
    let started = Instant::now();
    let deadline = async {
        match args.duration {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let bound = async {
        match args.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(bound);
    let mut failure: Option<String> = None;
    let mut established = false;
    let mut timed_out = false;
    loop {
        tokio::select! {
            m = tap.recv() => match m {
                Ok(e) => print_message(&args, started, &e.message),
                Err(broadcast::error::RecvError::Lagged(n)) => eprintln!("warning: {n} messages not shown (output too slow)"),
                Err(_) => break,
            },
            e = control.recv() => match e {
                Ok(ControlEvent::ConnectionEstablished { .. }) => {
                    established = true;
                    if !args.json {
                        crate::output::line(&format!("# connected to {} ({})", args.address, config.network));
                    }
                }
                Ok(ControlEvent::PeerBanned { reason, .. }) => failure = Some(format!("peer {} banned: {reason}", args.address)),
                Ok(ControlEvent::ConnectionFailed { reason, .. }) => {
                    failure.get_or_insert(format!("cannot connect to {}: {reason}", args.address));
                }
                Ok(ControlEvent::ConnectionLost { reason, .. }) => {
                    failure.get_or_insert(format!("connection to {} lost: {reason}", args.address));
                }
                _ => {}
            },
            s = async {
                match streams.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => match s {
                Some(stream) => {
                    readers.spawn(read_stream(args.json, args.address, started, stream));
                }
                None => streams = None,
            },
            _ = &mut deadline => break,
            _ = &mut bound => {
                timed_out = !established;
                break;
            }
            _ = interrupt.recv() => break,
        }
        if client.is_closed() {
            break;
        }
    }
    let outcome = client.close().await;
    // The connection is closed: each stream ends at once (failed if it was cut short).
    while readers.join_next().await.is_some() {}
    while let Ok(e) = tap.try_recv() {
        print_message(&args, started, &e.message);
    }
    while let Ok(e) = control.try_recv() {
        match e {
            ControlEvent::PeerBanned { reason, .. } => {
                failure = Some(format!("peer {} banned: {reason}", args.address))
            }
            ControlEvent::ConnectionFailed { reason, .. } => {
                failure.get_or_insert(format!("cannot connect to {}: {reason}", args.address));
            }
            _ => {}
        }
    }
    if timed_out {
        return Err(CliError::Other(format!(
            "no handshake with {} within --timeout {:?}",
            args.address,
            args.timeout.unwrap_or_default()
        )));
    }
    match outcome.state {
        ConnectionState::Disconnected if established && failure.is_none() => Ok(()),
        ConnectionState::Disconnected if !established => Err(CliError::Other(format!(
            "no handshake with {} before stopping; is it a {} node?",
            args.address, config.network
        ))),
        _ => Err(CliError::Other(failure.unwrap_or_else(|| {
            format!("connection to {} ended: {}", args.address, outcome.reason)
        }))),
    }
}

/// Reads a streamed block to its end and prints one line about it.
async fn read_stream(json: bool, peer: SocketAddr, started: Instant, mut stream: BlockStream) {
    let (hash, len) = (stream.hash(), stream.len());
    let mut transactions = 0u64;
    let mut failure = None;
    while let Some(part) = stream.next().await {
        match part {
            Ok(_) => transactions += 1,
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let t = started.elapsed().as_secs_f64();
    if json {
        let line = json!({
            "time": t,
            "peer": peer.to_string(),
            "streamed_block": { "hash": hash.to_string(), "bytes": len,
                "transactions": transactions, "verified": failure.is_none(), "error": failure },
        });
        crate::output::line(&line.to_string());
    } else {
        let verdict = failure.map_or("verified".to_string(), |e| format!("failed: {e}"));
        crate::output::line(&format!(
            "{t:9.3}s {:<12} {hash} streamed: {len} bytes, {transactions} transactions, {verdict}",
            "block"
        ));
    }
}

fn print_message(args: &Args, started: Instant, m: &bitcoinsv::p2p::Message) {
    let t = started.elapsed().as_secs_f64();
    if args.json {
        let line = json!({ "time": t, "peer": args.address.to_string(), "message": m });
        crate::output::line(&line.to_string());
    } else {
        // The command name of an unknown message is the peer's choice too.
        crate::output::line(&printable(&format!(
            "{t:9.3}s {:<12} {}",
            m.command(),
            summary(m)
        )));
    }
}
