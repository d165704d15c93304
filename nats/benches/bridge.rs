//! The NATS bridge's throughput and latency against a real `nats-server` (docs/BENCHMARKS.md,
//! "NATS bridge"):
//!
//! 1. raw: the same transaction messages (same subjects, headers and `Nats-Msg-Id`s) published
//!    straight to JetStream from this process, 256 acknowledgements outstanding: the limit;
//! 2. bridge: the same number of transactions injected into a 2-node simnet (at most 800 not
//!    yet acknowledged, as the simnet drops announcements past its per-connection queue),
//!    announced to a bridge (manager, transaction stream, pump, `NatsSink`) and acknowledged
//!    by JetStream;
//! 3. latency: from a block being mined on the simnet (its last byte is in the nodes' hands) to
//!    a JetStream consumer receiving its `.block` message, per block.
//!
//! Run: `BSV_TEST_NATS_SERVER=$(command -v nats-server) cargo bench -p bitcoinsv-nats --bench
//! bridge` (without the variable, `nats-server` from PATH). Each part uses a fresh server.

#[path = "../tests/common/mod.rs"]
mod common;

use std::future::IntoFuture;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::Publish;
use bitcoinsv::bitcoin::Network;
use bitcoinsv::p2p::sink::PumpOptions;
use bitcoinsv_nats::{NatsSink, NatsSinkConfig};
use bitcoinsv_simnet::{sample_transaction, SimNet, SimNetConfig};
use common::{Bridge, NatsServer};
use futures::stream::{FuturesUnordered, StreamExt};

const TXS: u32 = 20_000;
/// Transactions injected and not yet acknowledged at most: the simnet drops announcements
/// past 1,024 queued per connection (`EVENT_QUEUE`, simnet/src/shared.rs).
const WINDOW: u64 = 800;
const IN_FLIGHT: usize = 256;
const BLOCKS: usize = 20;

fn server_bin() -> PathBuf {
    std::env::var_os("BSV_TEST_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

async fn raw(bin: PathBuf) -> f64 {
    let nats = NatsServer::start(bin).await;
    // The sink only creates the stream here; publishing bypasses it.
    let sink = NatsSink::connect(&nats.url(), NatsSinkConfig::new(Network::Regtest))
        .await
        .expect("sink");
    let js = async_nats::jetstream::new(sink.client().clone());
    let txs: Vec<_> = (0..TXS).map(sample_transaction).collect();
    let start = Instant::now();
    let mut acks: FuturesUnordered<_> = FuturesUnordered::new();
    for tx in &txs {
        if acks.len() >= IN_FLIGHT {
            let ack: Result<_, _> = acks.next().await.expect("an ack");
            ack.expect("acknowledged");
        }
        let publish = Publish::build()
            .payload(tx.raw().clone())
            .message_id(tx.txid().to_string())
            .header("Bsv-Kind", "tx");
        let ack = js
            .send_publish("bsv.regtest.tx", publish)
            .await
            .expect("published");
        acks.push(IntoFuture::into_future(ack));
    }
    while let Some(a) = acks.next().await {
        a.expect("acknowledged");
    }
    TXS as f64 / start.elapsed().as_secs_f64()
}

async fn bridge(bin: PathBuf) -> (f64, Vec<Duration>) {
    let nats = NatsServer::start(bin).await;
    let net = SimNet::start(SimNetConfig::default().nodes(2).blocks(1))
        .await
        .expect("simnet");
    let options = PumpOptions {
        tx_queue: 4096,
        ..PumpOptions::default()
    };
    let b = Bridge::start(&nats.url(), "bench", net.addresses(), options).await;
    for n in net.nodes() {
        n.wait_for_stats(Duration::from_secs(30), |s| s.handshakes >= 1)
            .await
            .expect("handshake");
    }
    let txs: Vec<_> = (0..TXS)
        .map(|n| sample_transaction(1_000_000 + n))
        .collect();
    let start = Instant::now();
    for (i, tx) in txs.iter().enumerate() {
        while (i as u64).saturating_sub(b.pump.stats().transactions) >= WINDOW {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        net.inject_tx(i % 2, tx.clone()).expect("injected");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while b.pump.stats().transactions < u64::from(TXS) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stats = b.pump.stats();
    let tps = stats.transactions as f64 / start.elapsed().as_secs_f64();
    if stats.transactions < u64::from(TXS) {
        println!(
            "INCOMPLETE: {} of {TXS} transactions in 120 s: {stats:?}",
            stats.transactions
        );
    }
    net.mine_block();

    // Latency: a core subscriber sees what JetStream stored on the subject.
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let mut blocks = client
        .subscribe("bsv.regtest.block")
        .await
        .expect("subscribed");
    client.flush().await.expect("flushed");
    let mut latencies = Vec::new();
    for _ in 0..BLOCKS {
        let mined = Instant::now();
        let block = net.mine_block();
        let want = block.hash().to_string();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), blocks.next())
                .await
                .expect("a block message in time")
                .expect("subscription open");
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_string());
            if id.as_deref() == Some(want.as_str()) {
                latencies.push(mined.elapsed());
                break;
            }
        }
    }
    b.pump.shutdown().await;
    let _ = b.manager.shutdown().await;
    net.shutdown().await;
    (tps, latencies)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bin = server_bin();
    let raw_tps = rt.block_on(raw(bin.clone()));
    println!("raw JetStream publish, {TXS} tx messages, {IN_FLIGHT} in flight: {raw_tps:.0} tx/s");
    let (bridge_tps, mut lat) = rt.block_on(bridge(bin));
    println!(
        "simnet peers -> bridge -> JetStream, {TXS} transactions: {bridge_tps:.0} tx/s ({:.0}% of raw)",
        100.0 * bridge_tps / raw_tps
    );
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if let (Some(min), Some(max)) = (lat.first(), lat.last()) {
        println!(
            "block mined -> consumer, {} small blocks: median {:.1} ms, min {:.1} ms, max {:.1} ms",
            lat.len(),
            ms(lat[lat.len() / 2]),
            ms(*min),
            ms(*max)
        );
    }
}
