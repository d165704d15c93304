//! Connection benchmarks (issue 5), on loopback, in release mode, through the public
//! one-peer API ([`PeerClient`]):
//!
//! 1. messages per second through one connection, from the socket to [`PeerClient::recv`], for
//!    small `inv`s (one entry, 61 bytes on the wire) and typical `tx`s (226-byte payload), sent
//!    by a scripted peer (codec + `TcpStream`) into a [`PeerClient::accept`]: once to a lossless
//!    client (every message counted, back-pressured) and once to a lossy one
//!    ([`PeerClientOptions::lossy`]: messages received plus those reported dropped);
//! 2. block download: `getdata` for 100 blocks of 10,000 transactions (about 1.6 MB each) from a
//!    simnet node, bytes per second from the request to the last `block` delivered;
//! 3. handshakes per second over 1,000 sequential [`PeerClient::connect`]s to one simnet node
//!    (dial, handshake, close, wait for the actor to end), with the handshake time;
//! 4. memory per idle connected peer: RSS before and after 1,000 established [`PeerClient`]s
//!    (run first, while the allocator holds nothing from the other measurements).
//!
//! Simnet nodes run in a child process (this binary re-executed) so that their memory and
//! work are not ours. Run with:
//!
//! ```text
//! ulimit -n 20000; cargo bench -p bitcoinsv --bench connections [-- throughput|blocks|handshakes|memory]
//! cargo bench -p bitcoinsv --features metrics --bench connections -- metrics
//! ```
//!
//! Results are printed as Markdown table rows for `docs/BENCHMARKS.md`.

mod support;

use std::net::SocketAddr;
use std::time::Instant;

use bitcoinsv::bitcoin::{BlockLocator, Hash, InvVect, OutPoint, Transaction, TxIn, TxOut};
use bitcoinsv::p2p::{ManagerConfig, Message, Network, PeerClient, PeerClientOptions};
use bytes::Bytes;
use tokio::net::TcpListener;

use support::{ChildSpec, ScriptedPeer, SimnetProcess, Summary};

/// The configuration every client of these benchmarks uses: regtest, otherwise the defaults.
fn config() -> ManagerConfig {
    ManagerConfig::new(Network::Regtest)
}

/// A typical one-input, two-output P2PKH transaction (226 bytes).
fn typical_tx(i: u64) -> Transaction {
    let mut sig = vec![0x48u8; 107];
    sig[..8].copy_from_slice(&i.to_le_bytes());
    Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint {
                txid: Hash([3; 32]),
                vout: 0,
            },
            script_sig: Bytes::from(sig),
            sequence: u32::MAX,
        }],
        vec![
            TxOut {
                value: 5_000,
                script_pubkey: Bytes::from(vec![0x76; 25]),
            },
            TxOut {
                value: 12_345,
                script_pubkey: Bytes::from(vec![0x76; 25]),
            },
        ],
        0,
    )
}

/// Benchmark 1: one inbound connection fed `count` copies of `msg` by a scripted peer.
async fn one_connection(label: &str, msg: Message, count: usize, lossless: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = tokio::spawn(async move { listener.accept().await.expect("accept") });
    // The remote dials and handshakes in its own task while we accept and start our side.
    let remote = tokio::spawn(ScriptedPeer::dial_and_handshake(addr, Network::Regtest));
    let (stream, _) = accept.await.expect("accept task");
    let options = PeerClientOptions {
        capacity: if lossless { 4096 } else { 1_000 },
        lossy: !lossless,
        ..PeerClientOptions::default()
    };
    let mut client = PeerClient::accept(&config(), stream, options).expect("client");
    let remote = remote.await.expect("scripted peer");
    let frame = remote.encode(&msg);
    let bytes = support::repeat(&frame, count);
    let wire_bytes = bytes.len();
    let t0 = Instant::now();
    let blast = tokio::spawn(remote.blast(bytes));
    let mut seen = 0usize;
    // A lossy client counts what it skipped as it finds the gap, so received plus dropped
    // reaches `count` exactly when the last message is received.
    while seen + (client.dropped() as usize) < count {
        match client.recv().await {
            Some(_) => seen += 1,
            None => break,
        }
    }
    let elapsed = t0.elapsed();
    let dropped = client.dropped();
    client.close().await;
    let _ = blast.await;
    let rate = count as f64 / elapsed.as_secs_f64();
    let mb = wire_bytes as f64 / elapsed.as_secs_f64() / 1e6;
    let subscriber = if lossless {
        "lossless client".to_string()
    } else {
        format!("lossy client ({seen} received, {dropped} dropped)")
    };
    format!(
        "| one connection, {label} ({} B frames) → {subscriber} | {count} msgs in {:.2} s | **{:.0} msgs/s** ({mb:.1} MB/s) |",
        frame.len(),
        elapsed.as_secs_f64(),
        rate
    )
}

/// Benchmark 5 (issue 13): the cost of metrics on benchmark 1's lossless `inv` stream. Runs
/// alternate between no meter provider (the library's instruments are OpenTelemetry's no-ops)
/// and an SDK provider that aggregates everything (a `ManualReader`, as an exporter would be fed),
/// five of each, alternating, after a warm-up run, in the same process, and report the medians and their ratio. Needs
/// `--features metrics`.
#[cfg(feature = "metrics")]
async fn metrics_overhead(count: usize) -> Vec<String> {
    use opentelemetry::global;
    use opentelemetry::metrics::noop::NoopMeterProvider;
    use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
    let inv = Message::Inv(vec![InvVect::tx(Hash([9; 32]))]);
    let mut off = Vec::new();
    let mut on = Vec::new();
    // Warm-up: the first connection of a process pays for the runtime and the allocator.
    let _ = one_connection("small inv", inv.clone(), count / 4, true).await;
    for round in 0..10 {
        let with_sdk = round % 2 == 1;
        let provider = with_sdk.then(|| {
            let p = SdkMeterProvider::builder()
                .with_reader(ManualReader::builder().build())
                .build();
            global::set_meter_provider(p.clone());
            p
        });
        let t0 = Instant::now();
        let _ = one_connection("small inv", inv.clone(), count, true).await;
        let rate = count as f64 / t0.elapsed().as_secs_f64();
        if let Some(p) = provider {
            let _ = p.shutdown();
            global::set_meter_provider(NoopMeterProvider::new());
            on.push(rate);
        } else {
            off.push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut off), median(&mut on));
    vec![format!(
        "| metrics overhead: {count} small `inv`s, lossless, median of 5 alternating runs each | no provider {off:.0} msgs/s; SDK provider {on:.0} msgs/s | **{:+.1} %** |",
        (on / off - 1.0) * 100.0
    )]
}

#[cfg(not(feature = "metrics"))]
async fn metrics_overhead(_count: usize) -> Vec<String> {
    vec!["| metrics overhead | needs `--features metrics` | skipped |".into()]
}

/// Benchmark 2: block download from a simnet node.
async fn block_download(blocks: u32, txs_per_block: u32) -> String {
    let t = Instant::now();
    let net = SimnetProcess::start(&ChildSpec {
        nodes: 1,
        blocks,
        txs_per_block,
        flood_inv: false,
    });
    eprintln!(
        "  simnet child with {blocks} blocks ready in {:?}",
        t.elapsed()
    );
    let options = PeerClientOptions {
        capacity: 64,
        ..PeerClientOptions::default()
    };
    let mut client = PeerClient::start(&config(), net.addresses[0], options).expect("client");
    client.established().await.expect("handshake");
    client
        .send(Message::GetHeaders(BlockLocator {
            version: 70016,
            hashes: vec![Network::Regtest.genesis_hash()],
            stop_hash: Hash::ZERO,
        }))
        .await
        .expect("getheaders");
    let hashes: Vec<Hash> = loop {
        match client.recv().await.expect("headers") {
            Message::Headers(h) => break h.iter().map(|h| h.hash()).collect(),
            _ => continue,
        }
    };
    assert_eq!(hashes.len(), blocks as usize);
    let before = client.snapshot().bytes_in;
    let t0 = Instant::now();
    client
        .send(Message::GetData(
            hashes.iter().map(|h| InvVect::block(*h)).collect(),
        ))
        .await
        .expect("getdata");
    let mut got = 0;
    let mut txs = 0usize;
    while got < blocks {
        if let Message::Block(b) = client.recv().await.expect("block") {
            got += 1;
            txs += b.transactions.len();
        }
    }
    let elapsed = t0.elapsed();
    let bytes = client.snapshot().bytes_in - before;
    client.close().await;
    drop(net);
    format!(
        "| block download: getdata for {blocks} blocks × {txs_per_block} txs ({:.1} MB, {txs} txs) → lossless client | {:.2} s | **{:.0} MB/s** ({:.1} blocks/s, {:.0} txs/s) |",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        bytes as f64 / elapsed.as_secs_f64() / 1e6,
        f64::from(blocks) / elapsed.as_secs_f64(),
        txs as f64 / elapsed.as_secs_f64()
    )
}

/// Benchmark 3: sequential handshakes, each a [`PeerClient::connect`] with the default options.
async fn handshakes(count: usize) -> String {
    let net = SimnetProcess::start(&ChildSpec {
        nodes: 1,
        blocks: 1,
        ..ChildSpec::default()
    });
    let addr = net.addresses[0];
    let config = config();
    let mut durations = Vec::with_capacity(count);
    let t0 = Instant::now();
    for _ in 0..count {
        let client = PeerClient::connect(&config, addr).await.expect("handshake");
        durations.push(client.snapshot().handshake_duration.unwrap_or_default());
        client.close().await;
    }
    let elapsed = t0.elapsed();
    drop(net);
    let s = Summary::new(durations);
    format!(
        "| {count} sequential `PeerClient::connect` to one simnet node (dial, handshake, close) | {:.2} s | **{:.0} handshakes/s**; handshake p50 {:?}, p99 {:?} |",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        s.pct(50.0),
        s.pct(99.0)
    )
}

/// The options of the idle clients of benchmark 4: small buffers, as a program holding many
/// idle peers would choose (the defaults' 1,000-event broadcast buffer alone would dominate).
const IDLE: PeerClientOptions = PeerClientOptions {
    capacity: 16,
    lossy: false,
    tap_capacity: None,
    event_capacity: 16,
    block_stream_mode: bitcoinsv::p2p::BlockStreamMode::TxIds,
};

/// Benchmark 4: RSS per idle connection.
async fn idle_memory(count: usize) -> String {
    let nodes = 10;
    let net = SimnetProcess::start(&ChildSpec {
        nodes,
        blocks: 1,
        ..ChildSpec::default()
    });
    let addrs: Vec<SocketAddr> = net.addresses.clone();
    let config = config();
    // Starts `n` clients spread over the nodes and waits until every one is established.
    let open = |n: usize| {
        let clients: Vec<PeerClient> = (0..n)
            .map(|i| PeerClient::start(&config, addrs[i % addrs.len()], IDLE).expect("client"))
            .collect();
        async move {
            let mut clients = clients;
            for c in &mut clients {
                c.established().await.expect("handshake");
            }
            clients
        }
    };
    // Warm up: a round of connections opened and closed, so that the runtime, allocator arenas
    // and buffers the first connections create are not counted.
    for c in open(100).await {
        c.close().await;
    }
    let before = support::rss_kib();
    let t0 = Instant::now();
    let clients = open(count).await;
    let up_in = t0.elapsed();
    let after = support::rss_kib();
    for c in clients {
        c.close().await;
    }
    drop(net);
    format!(
        "| memory per idle connected peer: RSS before / after {count} established `PeerClient`s (all up in {:.2} s) | {before} KiB / {after} KiB | **{:.1} KiB per connection** |",
        up_in.as_secs_f64(),
        (after.saturating_sub(before)) as f64 / count as f64
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(support::CHILD_FLAG) {
        support::child_main(&args[1..]);
        return;
    }
    support::check_fd_limit();
    let filter: Option<String> = args.iter().find(|a| !a.starts_with("--")).cloned();
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        println!("| measurement | work | result |");
        println!("|---|---|---|");
        // Memory first, while the allocator holds nothing from the other runs.
        if wanted("memory") {
            println!("{}", idle_memory(1_000).await);
        }
        if wanted("throughput") {
            let inv = Message::Inv(vec![InvVect::tx(Hash([9; 32]))]);
            let tx = Message::Tx(typical_tx(1));
            println!(
                "{}",
                one_connection("small inv", inv.clone(), 2_000_000, true).await
            );
            println!(
                "{}",
                one_connection("small inv", inv, 2_000_000, false).await
            );
            println!(
                "{}",
                one_connection("tx", tx.clone(), 1_000_000, true).await
            );
            println!("{}", one_connection("tx", tx, 1_000_000, false).await);
        }
        if wanted("metrics") {
            for row in metrics_overhead(1_000_000).await {
                println!("{row}");
            }
        }
        if wanted("blocks") {
            println!("{}", block_download(100, 10_000).await);
        }
        if wanted("handshakes") {
            println!("{}", handshakes(1_000).await);
        }
    });
}
