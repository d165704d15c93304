//! `bsvp2p getblock`: download one block from one peer as a stream
//! (`Manager::get_block_stream_with`), which verifies that it is the block asked for (its header
//! hashes to HASH, its transactions hash to the header's merkle root, the frame checksum) as
//! the bytes pass, so a block of any size takes bounded memory; the command also checks its
//! proof of work, shows a progress bar on a terminal (bytes, MB/s, transactions), prints a
//! summary, and optionally writes the raw bytes (`--out`) or prints each txid (`--txids`).
//!
//! `--timeout` bounds the whole command, handshake included. A node sends nothing at all for a
//! block it does not have (no `notfound`, docs/PROTOCOL.md §3.4), so silence is reported as
//! that; anything else the peer did (a malformed block, `notfound`, too busy, a corrupt block)
//! is reported as what it was.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bitcoinsv::bitcoin::{Block, Decode, Hash, Transaction};
use bitcoinsv::p2p::{
    AttemptOutcome, BlockFetchOptions, BlockPart, BlockStream, BlockStreamFailure, BlockStreamMode,
    ManagerConfig, P2pError,
};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::AsyncWriteExt;
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
    /// Write the raw block (wire serialization) to this file as it arrives, verified on the
    /// fly (any size, in bounded memory).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print each transaction id as it arrives (no transaction is kept in memory).
    #[arg(long)]
    pub txids: bool,
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

/// What the command learned while the block streamed past.
struct Streamed {
    hash: Hash,
    header: bitcoinsv::bitcoin::BlockHeader,
    transactions: u64,
    size: u64,
    height: Option<u64>,
    took: Duration,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let config = args.config.load()?;
    let b = super::runtime()?.block_on(fetch(config, &args))?;
    let mb_per_s = b.size as f64 / 1e6 / b.took.as_secs_f64().max(1e-9);
    if args.json {
        let v = json!({
            "hash": b.hash,
            "height": b.height,
            "prev_hash": b.header.prev_hash,
            "time": b.header.time,
            "transactions": b.transactions,
            "size": b.size,
            "merkle_root": b.header.merkle_root,
            "merkle_root_valid": true,
            "proof_of_work_valid": true,
            "seconds": b.took.as_secs_f64(),
            "out": args.out.as_ref().map(|p| p.display().to_string()),
        });
        crate::output::line(&v.to_string());
    } else {
        let mut lines = vec![
            format!("hash          {}", b.hash),
            format!(
                "height        {}",
                b.height.map_or_else(|| "unknown".into(), |h| h.to_string())
            ),
            format!("prev hash     {}", b.header.prev_hash),
            format!("transactions  {}", b.transactions),
            format!("size          {} bytes", b.size),
            format!("merkle root   {} (verified)", b.header.merkle_root),
            "proof of work verified".to_string(),
            format!("streamed in   {:.2?} ({mb_per_s:.1} MB/s)", b.took),
        ];
        if let Some(p) = &args.out {
            lines.push(format!("written to    {}", p.display()));
        }
        crate::output::line(&lines.join("\n"));
    }
    Ok(())
}

/// Connects (within `--timeout`) and streams the block with `Manager::get_block_stream_with`,
/// which verifies it as it passes (checksum, merkle root); the rest of `--timeout` bounds the
/// wait for the first byte. Memory stays bounded whatever the block's size: `--out` writes the
/// raw bytes as they arrive, `--txids` prints each txid, and otherwise only counts are kept.
async fn fetch(config: ManagerConfig, args: &Args) -> Result<Streamed, CliError> {
    let deadline = Instant::now() + args.timeout;
    let connected = fixed_peers::connect(config, vec![args.address], deadline).await?;
    let manager = connected.manager;
    let left = deadline.saturating_duration_since(Instant::now());
    let options = BlockFetchOptions {
        timeout: Some(left),
        attempt_timeout: Some(left),
        preferred_peer: None,
    };
    let mode = if args.out.is_some() {
        BlockStreamMode::Raw
    } else if args.txids {
        BlockStreamMode::TxIds
    } else {
        BlockStreamMode::Transactions
    };
    let started = Instant::now();
    let result = match manager
        .get_block_stream_with(args.hash, mode, options)
        .await
    {
        Ok(stream) => consume(stream, args).await,
        Err(e) => Err(CliError::Other(explain(&e, args))),
    };
    let _ = manager.shutdown().await;
    let mut streamed = result?;
    streamed.took = started.elapsed();
    Ok(streamed)
}

/// Reads the stream to its end: writes, prints or counts, with a progress bar on a terminal.
async fn consume(mut stream: BlockStream, args: &Args) -> Result<Streamed, CliError> {
    let header = *stream.header();
    if !header.check_proof_of_work() {
        return Err(CliError::Other(format!(
            "block {} from {}: its header does not meet its own proof-of-work target",
            args.hash,
            stream.address()
        )));
    }
    let bar = crate::progress::bar(
        stream.len(),
        "{bytes}/{total_bytes} {bytes_per_sec} {msg} [{elapsed_precise}]",
    );
    let mut file = match &args.out {
        Some(path) => Some(tokio::io::BufWriter::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|source| file_error(path, source))?,
        )),
        None => None,
    };
    // The start of the raw block, to read the coinbase's height from in Raw mode.
    let mut head = BytesMut::new();
    let mut height = None;
    let failed = |e: BlockStreamFailure| {
        CliError::Other(format!("block {} from {}: {e}", args.hash, args.address))
    };
    while let Some(part) = stream.next().await {
        match part.map_err(failed)? {
            BlockPart::Bytes(b) => {
                if head.len() < COINBASE_WINDOW {
                    head.extend_from_slice(&b[..b.len().min(COINBASE_WINDOW - head.len())]);
                }
                if let (Some(f), Some(path)) = (file.as_mut(), &args.out) {
                    f.write_all(&b)
                        .await
                        .map_err(|source| file_error(path, source))?;
                }
                bar.inc(b.len() as u64);
            }
            BlockPart::TxId {
                index,
                txid,
                offset,
                length,
            } => {
                if index == 0 {
                    height =
                        coinbase_from(&head, offset, length).and_then(|tx| height_of(&header, tx));
                }
                if args.txids {
                    crate::output::line(&txid.to_string());
                }
            }
            BlockPart::Transaction { index, tx, .. } => {
                if index == 0 {
                    height = height_of(&header, tx);
                }
            }
        }
        bar.set_message(format!("{} transactions", stream.transactions_seen()));
    }
    if let (Some(mut f), Some(path)) = (file, &args.out) {
        f.flush().await.map_err(|source| file_error(path, source))?;
    }
    bar.finish_and_clear();
    let end = stream
        .verified()
        .copied()
        .ok_or_else(|| CliError::Other(format!("block {} ended without a verdict", args.hash)))?;
    Ok(Streamed {
        hash: stream.hash(),
        header,
        transactions: end.tx_count,
        size: end.length,
        height,
        took: Duration::ZERO,
    })
}

/// Bytes of a raw block kept to find its coinbase in (a coinbase is small).
const COINBASE_WINDOW: usize = 64 * 1024;

fn file_error(path: &std::path::Path, source: std::io::Error) -> CliError {
    CliError::File {
        path: path.display().to_string(),
        source,
    }
}

/// The coinbase parsed from the start of a raw block, when it lies within what was kept.
fn coinbase_from(head: &[u8], offset: u64, length: u64) -> Option<Transaction> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(length).ok()?)?;
    Transaction::decode_exact(head.get(start..end)?).ok()
}

/// The height the coinbase declares (see [`coinbase_height`]).
fn height_of(header: &bitcoinsv::bitcoin::BlockHeader, coinbase: Transaction) -> Option<u64> {
    coinbase_height(&Block {
        header: *header,
        transactions: vec![coinbase],
    })
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
