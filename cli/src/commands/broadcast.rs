//! `bsvp2p broadcast`: hand a transaction to peers the way a node does (docs/PROTOCOL.md §9.11) and
//! report, per peer, whether it asked for the transaction and whether it rejected it.
//!
//! To each peer, in parallel: announce the txid with `inv` (MSG_TX); answer the peer's `getdata`
//! with the `tx`; if the peer has not asked by the end of `--wait`, push the `tx` unasked and
//! listen a little longer. A `reject` naming the txid is reported with its code and reason. The
//! node never reports "already in mempool" or "conflict", so no reject means no *reported*
//! failure, not proof of acceptance.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bitcoinsv::bitcoin::{Hash, InvType, InvVect, Transaction};
use bitcoinsv::p2p::{ManagerConfig, Message, Reject};
use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use super::{parse_address, parse_seconds};
use crate::config_file::ConfigArgs;
use crate::error::CliError;
use crate::session::{RecvEnd, Session};

/// After pushing a transaction nobody asked for, how long to listen for its `reject`.
const PUSH_GRACE: Duration = Duration::from_secs(2);
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
    /// How long each peer has to ask for the transaction, and to reject it, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub wait: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How the transaction reached a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The peer asked for it with `getdata` and got it.
    OnRequest,
    /// The peer never asked; it was pushed unasked.
    Pushed,
    /// It was not sent (the peer could not be reached or left).
    NotSent,
}

/// What happened with one peer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerOutcome {
    /// The peer.
    pub peer: SocketAddr,
    /// Whether the peer asked for the transaction.
    pub requested: bool,
    /// How the transaction was delivered.
    pub delivery: Delivery,
    /// The peer's `reject` for this transaction, if any.
    pub reject: Option<Reject>,
    /// What went wrong with the connection, if anything.
    pub error: Option<String>,
}

impl PeerOutcome {
    fn accepted(&self) -> bool {
        self.delivery != Delivery::NotSent && self.reject.is_none()
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let config = args.config.load()?;
    let tx = read_tx(&args.tx)?;
    let txid = tx.txid();
    let outcomes = super::runtime()?.block_on(async {
        let peers = if args.peers.is_empty() {
            let mut all = super::dns_seed_addresses(&config, "pass --peer ADDR").await?;
            all.truncate(DNS_PEERS);
            all
        } else {
            args.peers.clone()
        };
        let tasks: Vec<_> = peers
            .into_iter()
            .map(|p| {
                let (c, t, wait) = (config.clone(), tx.clone(), args.wait);
                tokio::spawn(async move { to_peer(&c, p, t, wait).await })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(tasks.len());
        for t in tasks {
            if let Ok(o) = t.await {
                outcomes.push(o);
            }
        }
        Ok::<_, CliError>(outcomes)
    })?;
    print(&args, txid, &outcomes);
    if outcomes.iter().any(PeerOutcome::accepted) {
        return Ok(());
    }
    let why: Vec<String> = outcomes
        .iter()
        .map(|o| match (&o.reject, &o.error) {
            (Some(r), _) => format!("{} rejected it ({} {})", o.peer, r.code, r.reason),
            (None, Some(e)) => e.clone(),
            (None, None) => format!("{} did not take it", o.peer),
        })
        .collect();
    Err(CliError::Other(format!(
        "no peer took transaction {txid}: {}",
        why.join("; ")
    )))
}

fn print(args: &Args, txid: Hash, outcomes: &[PeerOutcome]) {
    if args.json {
        let v = serde_json::json!({ "txid": txid, "peers": outcomes });
        crate::output::line(&v.to_string());
        return;
    }
    let mut lines = vec![format!("transaction {txid}")];
    for o in outcomes {
        let delivery = match o.delivery {
            Delivery::OnRequest => "requested and sent",
            Delivery::Pushed => "not requested, pushed",
            Delivery::NotSent => "not sent",
        };
        let mut line = format!("{:<22} {delivery}", o.peer.to_string());
        if let Some(r) = &o.reject {
            line.push_str(&format!(", rejected: {} {:?}", r.code, r.reason));
        }
        if let Some(e) = &o.error {
            line.push_str(&format!(", {e}"));
        }
        lines.push(line);
    }
    crate::output::line(&lines.join("\n"));
}

/// Announces, serves or pushes `tx` to one peer and collects its answer.
async fn to_peer(
    config: &ManagerConfig,
    peer: SocketAddr,
    tx: Transaction,
    wait: Duration,
) -> PeerOutcome {
    let txid = tx.txid();
    let mut o = PeerOutcome {
        peer,
        requested: false,
        delivery: Delivery::NotSent,
        reject: None,
        error: None,
    };
    let mut session = match Session::open(config, peer).await {
        Ok(s) => s,
        Err(e) => {
            o.error = Some(e.to_string());
            return o;
        }
    };
    if let Err(e) = session.send(Message::Inv(vec![InvVect::tx(txid)])).await {
        o.error = Some(e.to_string());
        session.close().await;
        return o;
    }
    let mut deadline = Instant::now() + wait;
    loop {
        match session.recv(deadline).await {
            Ok(Message::GetData(items))
                if items
                    .iter()
                    .any(|i| i.inv_type == InvType::Tx && i.hash == txid) =>
            {
                o.requested = true;
                if o.delivery == Delivery::NotSent {
                    match session.send(Message::Tx(tx.clone())).await {
                        Ok(()) => o.delivery = Delivery::OnRequest,
                        Err(e) => {
                            o.error = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
            Ok(Message::Reject(r)) if r.hash == Some(txid) => {
                o.reject = Some(r);
                break;
            }
            Ok(_) => {}
            Err(RecvEnd::Timeout) if o.delivery == Delivery::NotSent => {
                match session.send(Message::Tx(tx.clone())).await {
                    Ok(()) => o.delivery = Delivery::Pushed,
                    Err(e) => {
                        o.error = Some(e.to_string());
                        break;
                    }
                }
                deadline = Instant::now() + PUSH_GRACE.min(wait);
            }
            Err(RecvEnd::Timeout) => break,
            Err(RecvEnd::Closed(why)) => {
                o.error = Some(why);
                break;
            }
        }
    }
    session.close().await;
    o
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
