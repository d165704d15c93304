//! `bsvp2p headers`: download block headers from one peer (docs/PROTOCOL.md §3.5, §9.9), checking
//! that each header links to the one before and meets its own proof-of-work target.
//!
//! `getheaders` with a one-hash locator (`--from`, by default the genesis block) returns up to
//! 2000 headers after it; while a batch is full, ask again from its last hash. A node in initial
//! block download does not answer `getheaders` at all, so each request has a timeout and the
//! error says so. Hashes go to stdout as they arrive (or JSON lines with `--json`); the summary
//! goes to stderr.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::{BlockHeader, BlockLocator, Hash};
use bitcoinsv::p2p::limits::{MAX_HEADERS_RESULTS, PROTOCOL_VERSION};
use bitcoinsv::p2p::Message;
use serde_json::json;

use super::{parse_address, parse_seconds};
use crate::config_file::ConfigArgs;
use crate::error::CliError;
use crate::session::{RecvEnd, Session};

/// A node sends at most this many headers to announce new blocks (docs/PROTOCOL.md §3.6); a
/// `headers` this short that does not continue our chain is an announcement, not our reply.
const MAX_ANNOUNCEMENT: usize = 8;

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
    /// How long to wait for each `headers` reply, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// A header that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The header does not point at the one before it.
    #[error("header {hash} does not link: its prev_hash is {prev}, expected {expected}")]
    BrokenLink {
        /// The header's hash.
        hash: Hash,
        /// Its `prev_hash`.
        prev: Hash,
        /// The hash it should point at.
        expected: Hash,
    },
    /// The header's hash does not meet its own target.
    #[error("header {hash} fails its proof of work (bits {bits:#010x})")]
    ProofOfWork {
        /// The header's hash.
        hash: Hash,
        /// Its `bits`.
        bits: u32,
    },
}

/// Checks that `batch` continues from `last` and every header meets its target.
pub fn check_batch(last: Hash, batch: &[BlockHeader]) -> Result<(), ChainError> {
    let mut expected = last;
    for h in batch {
        let hash = h.hash();
        if h.prev_hash != expected {
            return Err(ChainError::BrokenLink {
                hash,
                prev: h.prev_hash,
                expected,
            });
        }
        if !h.check_proof_of_work() {
            return Err(ChainError::ProofOfWork { hash, bits: h.bits });
        }
        expected = hash;
    }
    Ok(())
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let config = args.config.load()?;
    super::runtime()?.block_on(async {
        let mut session = Session::open(&config, args.address).await?;
        let result = download(&args, config.network.genesis_hash(), &mut session).await;
        session.close().await;
        result
    })
}

async fn download(args: &Args, genesis: Hash, session: &mut Session) -> Result<(), CliError> {
    let from = args.from.unwrap_or(genesis);
    // Heights are known only when counting from genesis.
    let mut height: Option<u64> = (from == genesis).then_some(0);
    let limit = args.count.unwrap_or(u64::MAX);
    let mut last = from;
    let mut total: u64 = 0;
    let started = Instant::now();
    let bar =
        crate::progress::spinner("{spinner} {elapsed_precise} {pos} headers ({per_sec}), {msg}");
    bar.set_message(format!("peer at height {}", session.details().start_height));
    while total < limit {
        session
            .send(Message::GetHeaders(BlockLocator {
                version: PROTOCOL_VERSION as u32,
                hashes: vec![last],
                stop_hash: Hash::ZERO,
            }))
            .await?;
        let batch = next_batch(args, session, last).await?;
        let full = batch.len() == MAX_HEADERS_RESULTS;
        check_batch(last, &batch)
            .map_err(|e| CliError::Other(format!("{} sent a bad chain: {e}", session.address())))?;
        let take = batch
            .len()
            .min(usize::try_from(limit - total).unwrap_or(usize::MAX));
        let mut lines = Vec::with_capacity(take);
        for h in &batch[..take] {
            let hash = h.hash();
            height = height.map(|x| x + 1);
            lines.push(if args.json {
                let mut v = json!({
                    "hash": hash,
                    "prev_hash": h.prev_hash,
                    "merkle_root": h.merkle_root,
                    "version": h.version,
                    "time": h.time,
                    "bits": h.bits,
                    "nonce": h.nonce,
                });
                if let Some(n) = height {
                    v["height"] = json!(n);
                }
                v.to_string()
            } else {
                hash.to_string()
            });
        }
        if !lines.is_empty() {
            bar.suspend(|| crate::output::line(&lines.join("\n")));
        }
        total += take as u64;
        bar.set_position(total);
        if let Some(h) = batch[..take].last() {
            last = h.hash();
        }
        if !full {
            break;
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{total} header{} from {from}, last {last}{} in {secs:.2}s ({:.0} headers/s)",
        if total == 1 { "" } else { "s" },
        height.map(|h| format!(" (height {h})")).unwrap_or_default(),
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Waits for the `headers` reply that continues from `last`, skipping announcements and other
/// messages.
async fn next_batch(
    args: &Args,
    session: &mut Session,
    last: Hash,
) -> Result<Vec<BlockHeader>, CliError> {
    let deadline = tokio::time::Instant::now() + args.timeout;
    loop {
        match session.recv(deadline).await {
            Ok(Message::Headers(h)) => {
                let continues = h.first().is_none_or(|f| f.prev_hash == last);
                if continues || h.len() > MAX_ANNOUNCEMENT {
                    return Ok(h);
                }
            }
            Ok(_) => {}
            Err(RecvEnd::Timeout) => {
                return Err(CliError::Other(format!(
                    "no headers after {last} from {} within {:?}: the peer may not have that \
                     block, or be in initial block download (it does not answer getheaders then)",
                    session.address(),
                    args.timeout
                )))
            }
            Err(RecvEnd::Closed(why)) => return Err(CliError::Other(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<BlockHeader> {
        let mut prev = Hash::ZERO;
        (0..n)
            .map(|i| {
                // Regtest difficulty: about one nonce in two meets the target.
                let mut h = BlockHeader {
                    version: 1,
                    prev_hash: prev,
                    merkle_root: Hash([i as u8; 32]),
                    time: 1_700_000_000 + i as u32,
                    bits: 0x207f_ffff,
                    nonce: 0,
                };
                while !h.check_proof_of_work() {
                    h.nonce += 1;
                }
                prev = h.hash();
                h
            })
            .collect()
    }

    #[test]
    fn a_linked_chain_with_valid_work_passes() {
        assert_eq!(check_batch(Hash::ZERO, &chain(5)), Ok(()));
        assert_eq!(check_batch(Hash::ZERO, &[]), Ok(()));
    }

    #[test]
    fn a_header_that_does_not_point_at_its_predecessor_is_a_broken_link() {
        let mut c = chain(4);
        c.swap(1, 2);
        let e = check_batch(Hash::ZERO, &c).unwrap_err();
        assert!(matches!(e, ChainError::BrokenLink { hash, .. } if hash == c[1].hash()));
        let e = check_batch(Hash([1; 32]), &chain(1)).unwrap_err();
        assert!(matches!(e, ChainError::BrokenLink { expected, .. } if expected == Hash([1; 32])));
    }

    #[test]
    fn a_header_above_its_target_fails_proof_of_work() {
        let mut c = chain(1);
        c[0].bits = 0x1d00_ffff; // mainnet's minimum difficulty: a regtest hash cannot meet it
        let e = check_batch(Hash::ZERO, &c).unwrap_err();
        assert!(e
            .to_string()
            .contains("fails its proof of work (bits 0x1d00ffff)"));
    }
}
