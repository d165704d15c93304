//! Block-fetching overhead (issue: services), on loopback, in release mode: the time of
//! `Manager::get_block` (peer choice, the hub, verification of the merkle root, a copy for the
//! caller) against a raw `getdata`/`block` exchange over a `PeerClient` to the same simnet
//! node, in the same run, interleaved round by round so both see the same machine load.
//!
//! Two chains: small blocks (a coinbase only) where the fixed cost shows, and blocks of 1,000
//! filler transactions where the per-byte cost does. The simnet runs in a child process (this
//! binary re-executed) so its work is not ours. Run with:
//!
//! ```text
//! cargo bench -p bitcoinsv --bench transfer
//! ```
//!
//! Results are printed as Markdown table rows for `docs/BENCHMARKS.md`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::{BlockLocator, Hash, InvVect};
use bitcoinsv::p2p::{InMemoryPeerStore, Manager, ManagerConfig, Message, Network, PeerClient};

use support::{ChildSpec, SimnetProcess, Summary};

/// Blocks fetched per round by each method.
const BLOCKS: usize = 100;
/// Rounds (each: every block raw, then every block through `get_block`).
const ROUNDS: usize = 5;

fn config() -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    c
}

/// The hashes of the node's chain after genesis, asked with `getheaders`.
async fn chain_hashes(client: &mut PeerClient) -> Vec<Hash> {
    client
        .send(Message::GetHeaders(BlockLocator {
            version: 70016,
            hashes: vec![Network::Regtest.genesis_hash()],
            stop_hash: Hash::ZERO,
        }))
        .await
        .expect("getheaders");
    loop {
        match client.recv().await.expect("headers") {
            Message::Headers(h) => return h.iter().map(|h| h.hash()).collect(),
            _ => continue,
        }
    }
}

/// One raw exchange: `getdata` for `hash`, then the `block`.
async fn raw_fetch(client: &mut PeerClient, hash: Hash) -> usize {
    client
        .send(Message::GetData(vec![InvVect::block(hash)]))
        .await
        .expect("getdata");
    loop {
        match client.recv().await.expect("block") {
            Message::Block(b) if b.hash() == hash => return b.transactions.len(),
            _ => continue,
        }
    }
}

async fn compare(txs_per_block: u32) -> String {
    let net = SimnetProcess::start(&ChildSpec {
        nodes: 1,
        blocks: BLOCKS as u32 + 1,
        txs_per_block,
        ..ChildSpec::default()
    });
    let addr = net.addresses[0];
    let mut client = PeerClient::connect(&config(), addr).await.expect("client");
    client.established().await.expect("handshake");
    let hashes: Vec<Hash> = chain_hashes(&mut client)
        .await
        .into_iter()
        .take(BLOCKS)
        .collect();
    let manager =
        Manager::with_fixed_peers(config(), Arc::new(InMemoryPeerStore::new()), vec![addr]);
    manager.start().await.expect("manager");
    manager
        .wait_for_connections(1, Duration::from_secs(10))
        .await
        .expect("connected");
    // Warm up both paths once.
    raw_fetch(&mut client, hashes[0]).await;
    manager.get_block(hashes[0]).await.expect("get_block");

    let mut raw = Vec::new();
    let mut service = Vec::new();
    let mut bytes = 0usize;
    for _ in 0..ROUNDS {
        for h in &hashes {
            let t = Instant::now();
            raw_fetch(&mut client, *h).await;
            raw.push(t.elapsed());
        }
        for h in &hashes {
            let t = Instant::now();
            let b = manager.get_block(*h).await.expect("get_block");
            service.push(t.elapsed());
            bytes = bitcoinsv::bitcoin::Encode::encoded_len(&b);
        }
    }
    manager.shutdown().await.expect("shutdown");
    drop(client);
    drop(net);
    let (r, s) = (Summary::new(raw), Summary::new(service));
    let ratio = s.pct(50.0).as_secs_f64() / r.pct(50.0).as_secs_f64();
    format!(
        "| blocks of {} tx ({} B) | {} fetches each, interleaved by round | raw median {:?} (p90 {:?}); get_block median {:?} (p90 {:?}); **ratio {:.2}** |",
        txs_per_block + 1,
        bytes,
        BLOCKS * ROUNDS,
        r.pct(50.0),
        r.pct(90.0),
        s.pct(50.0),
        s.pct(90.0),
        ratio
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(support::CHILD_FLAG) {
        support::child_main(&args[1..]);
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        println!("| blocks | work | result |");
        println!("|---|---|---|");
        println!("{}", compare(0).await);
        println!("{}", compare(1000).await);
    });
}
