//! `bsvp2p broadcast`: hand a transaction to peers through the library's broadcast
//! (`Manager::broadcast_transaction_with`, docs/PROTOCOL.md §9.11) and print its per-peer
//! report: announced or skipped (why), asked for or not, rejected (code and reason), announced
//! back by other peers (evidence it propagated).
//!
//! The node never reports "already in mempool" or "conflict", so no reject means no *reported*
//! failure, not proof of acceptance; a relay-back is the evidence of acceptance.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bitcoinsv::bitcoin::Transaction;
use bitcoinsv::p2p::{BroadcastOptions, BroadcastReport, Message};
use bytes::Bytes;
use tokio::time::Instant;

use super::{fixed_peers, parse_address, parse_seconds};
use crate::config_file::ConfigArgs;
use crate::error::CliError;

/// Peers used when they come from DNS seeds (the manager's default outbound count).
const DNS_PEERS: usize = 8;

/// Arguments of `bsvp2p broadcast`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The transaction as hex, or a file holding hex text or raw bytes.
    pub tx: String,
    /// A peer to send to, as ip:port (repeatable) [default: up to 8 addresses from the network's
    /// DNS seeds].
    #[arg(long = "peer", value_name = "ADDR", value_parser = parse_address)]
    pub peers: Vec<SocketAddr>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// How long to connect and then collect the peers' answers, each, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub wait: Duration,
    /// Push the `tx` unannounced instead of announcing it by `inv`.
    #[arg(long)]
    pub push: bool,
    /// The transaction's fee rate in satoshis per 1000 bytes: peers whose `feefilter` is
    /// higher are skipped.
    #[arg(long, value_name = "SAT_PER_KB")]
    pub fee_rate: Option<i64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let config = args.config.load()?;
    let tx = read_tx(&args.tx)?;
    let txid = tx.txid();
    let (report, failures) = super::runtime()?.block_on(async {
        let peers = if args.peers.is_empty() {
            let mut all = super::dns_seed_addresses(&config, "pass --peer ADDR").await?;
            all.truncate(DNS_PEERS);
            all
        } else {
            args.peers.clone()
        };
        let connected = fixed_peers::connect(config, peers, Instant::now() + args.wait)
            .await
            .map_err(|e| CliError::Other(format!("transaction {txid} not broadcast: {e}")))?;
        let options = BroadcastOptions {
            push: args.push,
            fee_rate: args.fee_rate,
            window: args.wait,
            ..BroadcastOptions::default()
        };
        let report = connected
            .manager
            .broadcast_transaction_with(tx, options)
            .await;
        let _ = connected.manager.shutdown().await;
        let report = report.map_err(|e| CliError::Other(e.to_string()))?;
        Ok::<_, CliError>((report, connected.failures))
    })?;
    print(&args, &report, &failures);
    let took = report
        .peers
        .iter()
        .any(|p| p.sent() && p.rejected.is_none());
    if took {
        return Ok(());
    }
    let why: Vec<String> = report.peers.iter().map(ToString::to_string).collect();
    Err(CliError::Other(format!(
        "no peer took transaction {txid}: {}",
        why.join("; ")
    )))
}

fn print(args: &Args, report: &BroadcastReport, failures: &[String]) {
    if args.json {
        let peers: Vec<_> = report
            .peers
            .iter()
            .map(|p| {
                serde_json::json!({
                    "peer": p.address,
                    "delivery": p.delivery.to_string(),
                    "requested": p.requested,
                    "reject": p.rejected.as_ref().map(|r| serde_json::json!({
                        "code": r.code.to_u8(),
                        "reason": r.reason,
                    })),
                    "announced_back": p.announced_back,
                })
            })
            .collect();
        let v = serde_json::json!({
            "txid": report.txid,
            "peers": peers,
            "connection_failures": failures,
            "completed_early": report.completed_early,
        });
        crate::output::line(&v.to_string());
        return;
    }
    let mut text = report.to_string();
    for f in failures {
        text.push_str(&format!("\nnot connected: {f}"));
    }
    crate::output::line(&text);
}

/// Reads a transaction from hex or from a file holding hex text or raw bytes; the bytes must be
/// exactly one transaction.
fn read_tx(input: &str) -> Result<Transaction, CliError> {
    let path = Path::new(input);
    let bytes = if path.exists() {
        let raw = std::fs::read(path).map_err(|source| CliError::File {
            path: input.to_string(),
            source,
        })?;
        let text: String = String::from_utf8_lossy(&raw).split_whitespace().collect();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(&text).map_err(|e| CliError::Usage(format!("{input}: not hex: {e}")))?
        } else {
            raw
        }
    } else {
        let text: String = input.split_whitespace().collect();
        hex::decode(&text).map_err(|e| {
            CliError::Usage(format!(
                "{} is neither an existing file nor valid hex ({e}); give the raw transaction \
                 as hex or a file",
                shorten(input)
            ))
        })?
    };
    match Message::decode_payload("tx", Bytes::from(bytes)) {
        Ok(Message::Tx(tx)) => Ok(tx),
        Ok(_) => Err(CliError::Other("not a transaction".into())),
        Err(e) => Err(CliError::Usage(format!(
            "{} is not a valid transaction: {e}",
            shorten(input)
        ))),
    }
}

/// The argument as shown in messages: long hex is cut so the error stays one readable line.
fn shorten(s: &str) -> String {
    if s.len() > 40 {
        format!(
            "{:?}…",
            &s[..s.char_indices().nth(32).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        format!("{s:?}")
    }
}
