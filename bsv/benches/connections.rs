//! Connection benchmarks (issue 5), on loopback, in release mode:
//!
//! 1. messages per second through one connection, from the socket to the message channel, for
//!    small `inv`s (one entry, 61 bytes on the wire) and typical `tx`s (226-byte payload), sent
//!    by a scripted peer (codec + `TcpStream`) into a [`PeerConnection::inbound`]: once to a
//!    lossless subscriber (every message counted, back-pressured) and once to a broadcast
//!    subscriber only (messages received plus those reported lagged);
//! 2. block download: `getdata` for 100 blocks of 10,000 transactions (about 1.6 MB each) from a
//!    simnet node, bytes per second from the request to the last `block` delivered;
//! 3. handshakes per second over 1,000 sequential outbound connections to one simnet node
//!    (dial, handshake, disconnect, wait for the actor to end), with the handshake time;
//! 4. memory per idle connected peer: RSS before and after 1,000 established connections (run
//!    first, while the allocator holds nothing from the other measurements).
//!
//! Simnet nodes run in a child process (this binary re-executed) so that their memory and
//! work are not ours. Run with:
//!
//! ```text
//! ulimit -n 20000; cargo bench -p bitcoinsv --bench connections [-- throughput|blocks|handshakes|memory]
//! ```
//!
//! Results are printed as Markdown table rows for `docs/BENCHMARKS.md`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bitcoinsv::bitcoin::{BlockLocator, Hash, InvVect, OutPoint, Transaction, TxIn, TxOut};
use bitcoinsv::p2p::__bench::{ConnectionContext, PeerConnection};
use bitcoinsv::p2p::{
    BitcoinMessageEvent, ControlEvent, InMemoryPeerStore, ManagerConfig, Message, Network, Peer,
    PeerStore,
};
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::broadcast::{self, error::RecvError};

use support::{ChildSpec, ScriptedPeer, SimnetProcess, Summary};

/// A context like a manager's, with roomy channels so that no event is lost.
fn context(_store: Arc<InMemoryPeerStore>) -> ConnectionContext {
    let (control_tx, _) = broadcast::channel(100_000);
    let (message_tx, _) = broadcast::channel(1_000);
    ConnectionContext::new(
        &ManagerConfig::new(Network::Regtest),
        control_tx,
        message_tx,
    )
    .expect("context")
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

/// Waits for `ConnectionEstablished` of `peer_id`.
async fn established(rx: &mut broadcast::Receiver<ControlEvent>, peer_id: uuid::Uuid) {
    loop {
        match rx.recv().await {
            Ok(ControlEvent::ConnectionEstablished { peer_id: p, .. }) if p == peer_id => return,
            Ok(ControlEvent::ConnectionFailed { peer_id: p, reason }) if p == peer_id => {
                panic!("connection failed: {reason}")
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => panic!("control channel closed"),
        }
    }
}

/// Waits for `n` `ConnectionEstablished` events.
async fn established_count(control: &mut broadcast::Receiver<ControlEvent>, n: usize) {
    let mut up = 0;
    while up < n {
        match control.recv().await {
            Ok(ControlEvent::ConnectionEstablished { .. }) => up += 1,
            Ok(ControlEvent::ConnectionFailed { reason, .. }) => {
                panic!("connection failed: {reason}")
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => panic!("control channel closed"),
        }
    }
}

/// Benchmark 1: one inbound connection fed `count` copies of `msg` by a scripted peer.
async fn one_connection(label: &str, msg: Message, count: usize, lossless: bool) -> String {
    let store = Arc::new(InMemoryPeerStore::new());
    let ctx = context(store);
    let mut sink = lossless.then(|| ctx.sinks.subscribe(4096));
    let mut lossy = ctx.message_tx.subscribe();
    if lossless {
        // Only the lossless subscriber listens.
        drop(lossy);
        lossy = broadcast::channel::<BitcoinMessageEvent>(1).1;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = tokio::spawn(async move { listener.accept().await.expect("accept") });
    // The remote dials and handshakes in its own task while we accept and start our side.
    let remote = tokio::spawn(ScriptedPeer::dial_and_handshake(addr, Network::Regtest));
    let (stream, from) = accept.await.expect("accept task");
    let handle = PeerConnection::inbound(Peer::new(from.ip(), from.port()), stream, ctx);
    let remote = remote.await.expect("scripted peer");
    let frame = remote.encode(&msg);
    let bytes = support::repeat(&frame, count);
    let wire_bytes = bytes.len();
    let t0 = Instant::now();
    let blast = tokio::spawn(remote.blast(bytes));
    let mut seen = 0usize;
    let mut lagged = 0u64;
    while seen + (lagged as usize) < count {
        match &mut sink {
            Some(rx) => match rx.recv().await {
                Some(_) => seen += 1,
                None => break,
            },
            None => match lossy.recv().await {
                Ok(_) => seen += 1,
                Err(RecvError::Lagged(n)) => lagged += n,
                Err(RecvError::Closed) => break,
            },
        }
    }
    let elapsed = t0.elapsed();
    handle.disconnect();
    handle.join().await;
    let _ = blast.await;
    let rate = count as f64 / elapsed.as_secs_f64();
    let mb = wire_bytes as f64 / elapsed.as_secs_f64() / 1e6;
    let subscriber = if lossless {
        "lossless subscriber".to_string()
    } else {
        format!(
            "broadcast subscriber ({} received, {} lagged)",
            seen, lagged
        )
    };
    format!(
        "| one connection, {label} ({} B frames) → {subscriber} | {count} msgs in {:.2} s | **{:.0} msgs/s** ({mb:.1} MB/s) |",
        frame.len(),
        elapsed.as_secs_f64(),
        rate
    )
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
    let store = Arc::new(InMemoryPeerStore::new());
    let ctx = context(store);
    let mut rx = ctx.sinks.subscribe(64);
    let mut control = ctx.control_tx.subscribe();
    let peer = Peer::new(net.addresses[0].ip(), net.addresses[0].port());
    let id = peer.id;
    let handle = PeerConnection::outbound(peer, ctx);
    established(&mut control, id).await;
    handle
        .send_message(Message::GetHeaders(BlockLocator {
            version: 70016,
            hashes: vec![Network::Regtest.genesis_hash()],
            stop_hash: Hash::ZERO,
        }))
        .await
        .expect("getheaders");
    let hashes: Vec<Hash> = loop {
        match rx.recv().await.expect("headers").message {
            Message::Headers(h) => break h.iter().map(|h| h.hash()).collect(),
            _ => continue,
        }
    };
    assert_eq!(hashes.len(), blocks as usize);
    let before = handle.stats().snapshot().bytes_in;
    let t0 = Instant::now();
    handle
        .send_message(Message::GetData(
            hashes.iter().map(|h| InvVect::block(*h)).collect(),
        ))
        .await
        .expect("getdata");
    let mut got = 0;
    let mut txs = 0usize;
    while got < blocks {
        if let Message::Block(b) = rx.recv().await.expect("block").message {
            got += 1;
            txs += b.transactions.len();
        }
    }
    let elapsed = t0.elapsed();
    let bytes = handle.stats().snapshot().bytes_in - before;
    handle.disconnect();
    handle.join().await;
    drop(net);
    format!(
        "| block download: getdata for {blocks} blocks × {txs_per_block} txs ({:.1} MB, {txs} txs) → lossless subscriber | {:.2} s | **{:.0} MB/s** ({:.1} blocks/s, {:.0} txs/s) |",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        bytes as f64 / elapsed.as_secs_f64() / 1e6,
        f64::from(blocks) / elapsed.as_secs_f64(),
        txs as f64 / elapsed.as_secs_f64()
    )
}

/// Benchmark 3: sequential handshakes.
async fn handshakes(count: usize) -> String {
    let net = SimnetProcess::start(&ChildSpec {
        nodes: 1,
        blocks: 1,
        ..ChildSpec::default()
    });
    let addr = net.addresses[0];
    let store = Arc::new(InMemoryPeerStore::new());
    let peer = Peer::new(addr.ip(), addr.port());
    store.create(peer.clone()).await.expect("store");
    let ctx = context(store);
    let mut control = ctx.control_tx.subscribe();
    let mut durations = Vec::with_capacity(count);
    let t0 = Instant::now();
    for _ in 0..count {
        let handle = PeerConnection::outbound(peer.clone(), ctx.clone());
        established(&mut control, peer.id).await;
        durations.push(
            handle
                .stats()
                .snapshot()
                .handshake_duration
                .unwrap_or_default(),
        );
        handle.disconnect();
        handle.join().await;
    }
    let elapsed = t0.elapsed();
    drop(net);
    let s = Summary::new(durations);
    format!(
        "| {count} sequential outbound connections to one simnet node (dial, handshake, disconnect) | {:.2} s | **{:.0} handshakes/s**; handshake p50 {:?}, p99 {:?} |",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        s.pct(50.0),
        s.pct(99.0)
    )
}

/// Benchmark 4: RSS per idle connection.
async fn idle_memory(count: usize) -> String {
    let nodes = 10;
    let net = SimnetProcess::start(&ChildSpec {
        nodes,
        blocks: 1,
        ..ChildSpec::default()
    });
    let addrs: Vec<SocketAddr> = net.addresses.clone();
    let store = Arc::new(InMemoryPeerStore::new());
    let ctx = context(store);
    let mut control = ctx.control_tx.subscribe();
    // Warm up: a round of connections opened and closed, so that the runtime, allocator arenas
    // and buffers the first connections create are not counted.
    let open = |n: usize, ctx: &ConnectionContext| -> Vec<_> {
        (0..n)
            .map(|i| {
                let a = addrs[i % addrs.len()];
                PeerConnection::outbound(Peer::new(a.ip(), a.port()), ctx.clone())
            })
            .collect()
    };
    let warm = open(100, &ctx);
    established_count(&mut control, 100).await;
    for h in warm {
        h.disconnect();
        h.join().await;
    }
    let before = support::rss_kib();
    let t0 = Instant::now();
    let handles = open(count, &ctx);
    established_count(&mut control, count).await;
    let up_in = t0.elapsed();
    let after = support::rss_kib();
    for h in handles {
        h.disconnect();
        h.join().await;
    }
    drop(net);
    format!(
        "| memory per idle connected peer: RSS before / after {count} established connections (all up in {:.2} s) | {before} KiB / {after} KiB | **{:.1} KiB per connection** |",
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
        if wanted("blocks") {
            println!("{}", block_download(100, 10_000).await);
        }
        if wanted("handshakes") {
            println!("{}", handshakes(1_000).await);
        }
    });
}
