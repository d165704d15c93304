//! `bsvp2p getblock`: download one block from one peer with `getdata` (MSG_BLOCK), verify that
//! it is the block asked for (its header hashes to HASH, meets its proof of work, and its
//! transactions hash to the header's merkle root), print a summary, and optionally save the raw
//! bytes.
//!
//! A node sends nothing at all for a block it does not have (no `notfound`, docs/PROTOCOL.md §3.4),
//! so the wait is bounded and the timeout message says what it most likely means.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bitcoinsv::bitcoin::{Block, Encode, Hash, InvVect};
use bitcoinsv::p2p::{Message, RejectCode};
use bytes::BytesMut;
use serde_json::json;

use super::{parse_address, parse_seconds};
use crate::config_file::ConfigArgs;
use crate::error::CliError;
use crate::session::{RecvEnd, Session};

/// Arguments of `bsvp2p getblock`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The peer, as ip:port.
    #[arg(value_parser = parse_address)]
    pub address: SocketAddr,
    /// The block hash (64 hex digits, as explorers show it).
    #[arg(value_parser = parse_hash)]
    pub hash: Hash,
    /// Write the raw block (wire serialization) to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the block, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds)]
    pub timeout: Duration,
}

fn parse_hash(s: &str) -> Result<Hash, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a block hash: expected 64 hexadecimal digits"))
}

/// The height a block's coinbase declares (BIP34, block version 2 and later): the first push of
/// its input script, a small-integer opcode or a little-endian number of up to 8 bytes.
pub fn coinbase_height(block: &Block) -> Option<u64> {
    if block.header.version < 2 {
        return None;
    }
    let script = &block.transactions.first()?.inputs().first()?.script_sig;
    match *script.first()? {
        0x00 => Some(0),
        op @ 0x51..=0x60 => Some(u64::from(op - 0x50)),
        n @ 0x01..=0x08 => {
            let bytes = script.get(1..1 + usize::from(n))?;
            // Sign-magnitude: a set top bit means negative, which no height is.
            if bytes.last()? & 0x80 != 0 {
                return None;
            }
            Some(
                bytes
                    .iter()
                    .rev()
                    .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
            )
        }
        _ => None,
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let config = args.config.load()?;
    let block = super::runtime()?.block_on(async {
        let mut session = Session::open(&config, args.address).await?;
        let result = fetch(&args, &mut session).await;
        session.close().await;
        result
    })?;
    let mut raw = BytesMut::with_capacity(block.encoded_len());
    block.encode(&mut raw);
    if let Some(path) = &args.out {
        std::fs::write(path, &raw).map_err(|source| CliError::File {
            path: path.display().to_string(),
            source,
        })?;
    }
    let height = coinbase_height(&block);
    if args.json {
        let v = json!({
            "hash": block.hash(),
            "height": height,
            "prev_hash": block.header.prev_hash,
            "time": block.header.time,
            "transactions": block.transactions.len(),
            "size": raw.len(),
            "merkle_root": block.header.merkle_root,
            "merkle_root_valid": true,
            "proof_of_work_valid": true,
            "out": args.out.as_ref().map(|p| p.display().to_string()),
        });
        crate::output::line(&v.to_string());
    } else {
        let mut lines = vec![
            format!("hash          {}", block.hash()),
            format!(
                "height        {}",
                height.map_or_else(|| "unknown".into(), |h| h.to_string())
            ),
            format!("prev hash     {}", block.header.prev_hash),
            format!("transactions  {}", block.transactions.len()),
            format!("size          {} bytes", raw.len()),
            format!("merkle root   {} (verified)", block.header.merkle_root),
            "proof of work verified".to_string(),
        ];
        if let Some(p) = &args.out {
            lines.push(format!("written to    {}", p.display()));
        }
        crate::output::line(&lines.join("\n"));
    }
    Ok(())
}

async fn fetch(args: &Args, session: &mut Session) -> Result<Block, CliError> {
    session
        .send(Message::GetData(vec![InvVect::block(args.hash)]))
        .await?;
    let deadline = tokio::time::Instant::now() + args.timeout;
    loop {
        match session.recv(deadline).await {
            Ok(Message::Block(block)) => {
                let got = block.hash();
                if got != args.hash {
                    return Err(CliError::Other(format!(
                        "{} sent block {got}, not {}",
                        session.address(),
                        args.hash
                    )));
                }
                block.validate().map_err(|e| {
                    CliError::Other(format!("block {got} from {}: {e}", session.address()))
                })?;
                return Ok(block);
            }
            Ok(Message::Reject(r)) if r.code == RejectCode::TooBusy => {
                return Err(CliError::Other(format!(
                    "{} is too busy to send the block ({}); try again in a few seconds",
                    session.address(),
                    r.reason
                )))
            }
            Ok(Message::NotFound(items)) if items.iter().any(|i| i.hash == args.hash) => {
                return Err(CliError::Other(format!(
                    "{} does not have block {}",
                    session.address(),
                    args.hash
                )))
            }
            Ok(_) => {}
            Err(RecvEnd::Timeout) => {
                return Err(CliError::Other(format!(
                    "no block {} from {} within {:?}: a node sends nothing for a block it does \
                     not have; check the hash and the network",
                    args.hash,
                    session.address(),
                    args.timeout
                )))
            }
            Err(RecvEnd::Closed(why)) => return Err(CliError::Other(why)),
        }
    }
}
