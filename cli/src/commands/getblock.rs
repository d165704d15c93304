//! `bsvp2p getblock`: download one block from one peer through the library's block fetching
//! (`Manager::get_block_with`), which verifies that it is the block asked for (its header
//! hashes to HASH and its transactions hash to the header's merkle root); the command also
//! checks its proof of work, prints a summary, and optionally saves the raw bytes.
//!
//! `--timeout` bounds the whole command, handshake included. A node sends nothing at all for a
//! block it does not have (no `notfound`, docs/PROTOCOL.md §3.4), so silence is reported as
//! that; anything else the peer did (a malformed block, `notfound`, too busy, a corrupt block)
//! is reported as what it was.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::{Block, Encode, Hash};
use bitcoinsv::p2p::{AttemptOutcome, BlockFetchOptions, ManagerConfig, P2pError};
use bytes::BytesMut;
use serde_json::json;
use tokio::time::Instant;

use super::{fixed_peers, parse_address, parse_seconds};
use crate::config_file::ConfigArgs;
use crate::error::CliError;

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
    /// How long the whole command may take, handshake included, in seconds.
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
    let block = super::runtime()?.block_on(fetch(config, &args))?;
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

/// Connects (within `--timeout`) and fetches the block with `Manager::get_block_with`,
/// which verifies it; the rest of `--timeout` bounds the fetch.
async fn fetch(config: ManagerConfig, args: &Args) -> Result<Block, CliError> {
    let deadline = Instant::now() + args.timeout;
    let connected = fixed_peers::connect(config, vec![args.address], deadline).await?;
    let manager = connected.manager;
    let left = deadline.saturating_duration_since(Instant::now());
    let options = BlockFetchOptions {
        timeout: Some(left),
        attempt_timeout: Some(left),
        preferred_peer: None,
    };
    let result = manager.get_block_with(args.hash, options).await;
    let _ = manager.shutdown().await;
    let fetched = result.map_err(|e| CliError::Other(explain(&e, args)))?;
    // Proof of work too (the service checks the hash and the merkle root).
    fetched.block.validate().map_err(|e| {
        CliError::Other(format!("block {} from {}: {e}", args.hash, fetched.address))
    })?;
    Ok(Arc::try_unwrap(fetched.block).unwrap_or_else(|b| (*b).clone()))
}

/// The error as the user needs it: what the peer actually did.
fn explain(e: &P2pError, args: &Args) -> String {
    let P2pError::BlockFetch(f) = e else {
        return e.to_string();
    };
    let Some(last) = f.tried().last() else {
        return e.to_string();
    };
    match &last.outcome {
        AttemptOutcome::Silent { after } => format!(
            "no block {} from {} within {after:?}: a node sends nothing for a block it does \
             not have; check the hash and the network",
            args.hash, last.address
        ),
        AttemptOutcome::TooBusy => format!(
            "{} is too busy to send the block (reject 0x44); try again in a few seconds",
            last.address
        ),
        AttemptOutcome::NotFound => {
            format!(
                "{} does not have block {} (notfound)",
                last.address, args.hash
            )
        }
        other => format!("block {} from {}: {other}", args.hash, last.address),
    }
}
