//! Manager benchmarks (issue 6), on loopback, in release mode:
//!
//! 1. time to reach 8 connections from a cold start (a new manager and store, `start()`, until
//!    `wait_for_connections(8)` returns) against 16 simnet nodes, over 20 runs;
//! 2. a 1,000-node inbound flood: every node of a 1,000-node simnet dials the manager's
//!    listener at once (`max_connections` 125, target 0); the time until every dial has its
//!    outcome (125 established, the rest refused after the handshake or closed at once), and
//!    the largest connection count seen;
//! 3. messages per second delivered to one subscriber of the lossless stream with 50 connected
//!    peers all sending `inv`s: (a) 50 simnet nodes in `FloodInv` mode (1,000-entry `inv`s,
//!    36 kB each), (b) 50 scripted peers writing one-entry `inv`s (61 bytes) as fast as they
//!    can;
//! 4. memory of a manager holding 1,000 connections (RSS before `start()` and once 1,000 are
//!    established; run first, while the allocator holds nothing from the other measurements).
//!
//! Simnet nodes run in a child process (this binary re-executed) so that their memory and
//! work are not ours. Run with:
//!
//! ```text
//! ulimit -n 20000; cargo bench -p bitcoinsv --bench manager [-- cold|flood|lossless|memory]
//! ```
//!
//! Results are printed as Markdown table rows for `docs/BENCHMARKS.md`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::{Hash, InvVect};
use bitcoinsv::p2p::{
    ConnectionConfig, ControlEvent, InMemoryPeerStore, Manager, ManagerConfig, Message, Network,
    Peer, PeerStore,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::timeout;

use support::{ChildSpec, ScriptedPeer, SimnetProcess, Summary};

/// A regtest manager configuration (no DNS seeds), otherwise the defaults.
fn config(target: usize, max: usize) -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.target_connections = target;
    c.max_connections = max;
    c.connection = ConnectionConfig {
        connect_timeout: Duration::from_secs(10),
        ..ConnectionConfig::default()
    };
    c
}

/// A store holding `addrs` as `Unknown` peers.
async fn store_with(addrs: &[SocketAddr]) -> Arc<InMemoryPeerStore> {
    let store = Arc::new(InMemoryPeerStore::new());
    for a in addrs {
        store
            .create(Peer::new(a.ip(), a.port()))
            .await
            .expect("store");
    }
    store
}

/// `c` with the listener on a free loopback port and room for every event of a flood.
fn listening(mut c: ManagerConfig) -> ManagerConfig {
    c.event_channel_capacity = 100_000;
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().expect("ip");
    c.listener_port = 0;
    c
}

/// Benchmark 1.
async fn cold_start(runs: usize) -> String {
    let net = SimnetProcess::start(&ChildSpec {
        nodes: 16,
        blocks: 1,
        ..ChildSpec::default()
    });
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let store = store_with(&net.addresses).await;
        let t0 = Instant::now();
        let manager = Manager::new(config(8, 125), store);
        manager.start().await.expect("start");
        manager
            .wait_for_connections(8, Duration::from_secs(30))
            .await
            .expect("8 connections");
        times.push(t0.elapsed());
        manager.shutdown().await.expect("shutdown");
    }
    drop(net);
    let s = Summary::new(times);
    let (min, max) = s.range();
    format!(
        "| cold start to 8 connections (new manager and store, `start()`, `wait_for_connections(8)`; 16 simnet nodes) | {runs} runs | **median {:?}**, min {min:?}, max {max:?} |",
        s.pct(50.0)
    )
}

/// Benchmark 2.
async fn inbound_flood(nodes: usize, max: usize) -> String {
    let t = Instant::now();
    let mut net = SimnetProcess::start(&ChildSpec {
        nodes,
        blocks: 1,
        ..ChildSpec::default()
    });
    eprintln!(
        "  simnet child with {nodes} nodes ready in {:?}",
        t.elapsed()
    );
    let manager = Manager::new(
        listening(config(0, max)),
        Arc::new(InMemoryPeerStore::new()),
    );
    let mut events = manager.subscribe_control_events();
    manager.start().await.expect("start");
    let listen = manager.listener_address().expect("listening");
    let t0 = Instant::now();
    let (dialled, failed) = tokio::task::block_in_place(|| net.dial_all(listen));
    let dial_time = t0.elapsed();
    let (mut established, mut refused, mut closed, mut other_failed) = (0, 0, 0, 0);
    let mut peak = 0;
    let settled = timeout(Duration::from_secs(120), async {
        while established + refused + closed + other_failed < dialled {
            match events.recv().await {
                Ok(ControlEvent::ConnectionEstablished { .. }) => established += 1,
                Ok(ControlEvent::ConnectionRejectedCapacity { .. }) => refused += 1,
                Ok(ControlEvent::InboundConnectionRejected { .. }) => closed += 1,
                Ok(ControlEvent::ConnectionFailed { .. }) => other_failed += 1,
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => panic!("lagged {n} events"),
                Err(RecvError::Closed) => break,
            }
            peak = peak.max(manager.connection_count());
        }
    })
    .await;
    let elapsed = t0.elapsed();
    assert!(settled.is_ok(), "flood did not settle");
    let count = manager.connection_count();
    manager.shutdown().await.expect("shutdown");
    drop(net);
    format!(
        "| inbound flood: {nodes} simnet nodes dial the listener at once, `max_connections` {max} | {dialled} dials ({failed} failed to connect), all connected in {:.2} s | **settled in {:.2} s**: {established} established, {refused} handshaken then refused, {closed} closed at once, {other_failed} failed; peak count {peak}, final {count} |",
        dial_time.as_secs_f64(),
        elapsed.as_secs_f64()
    )
}

/// Benchmark 3a: 50 flooding simnet nodes, counted for `window`.
async fn lossless_flood(peers: usize, window: Duration) -> String {
    let net = SimnetProcess::start(&ChildSpec {
        nodes: peers,
        blocks: 1,
        flood_inv: true,
        ..ChildSpec::default()
    });
    let manager = Manager::new(config(peers, 125), store_with(&net.addresses).await);
    let mut rx = manager.subscribe_messages_lossless(1024);
    manager.start().await.expect("start");
    // Drain while the connections come up (every flood starts with its handshake).
    let up = async {
        manager
            .wait_for_connections(peers, Duration::from_secs(30))
            .await
            .expect("connections")
    };
    tokio::pin!(up);
    loop {
        tokio::select! {
            _ = &mut up => break,
            m = rx.recv() => { m.expect("stream"); }
        }
    }
    let (mut msgs, mut items) = (0u64, 0u64);
    let mut senders = std::collections::HashSet::new();
    let t0 = Instant::now();
    let _ = timeout(window, async {
        while let Some(e) = rx.recv().await {
            msgs += 1;
            senders.insert(e.peer_id);
            if let Message::Inv(v) = &e.message {
                items += v.len() as u64;
            }
        }
    })
    .await;
    let elapsed = t0.elapsed().as_secs_f64();
    drop(rx);
    manager.shutdown().await.expect("shutdown");
    drop(net);
    format!(
        "| lossless stream, {peers} simnet peers in `FloodInv` (1,000-entry `inv`s, 36 kB) | {msgs} msgs from {} peers in {elapsed:.1} s | **{:.0} msgs/s** ({:.0} inv entries/s, {:.0} MB/s) |",
        senders.len(),
        msgs as f64 / elapsed,
        items as f64 / elapsed,
        msgs as f64 * 36_027.0 / elapsed / 1e6
    )
}

/// Benchmark 3b: 50 scripted peers each writing `per_peer` one-entry `inv`s.
async fn lossless_scripted(peers: usize, per_peer: usize) -> String {
    let manager = Manager::new(
        listening(config(0, 125)),
        Arc::new(InMemoryPeerStore::new()),
    );
    let mut rx = manager.subscribe_messages_lossless(1024);
    manager.start().await.expect("start");
    let listen = manager.listener_address().expect("listening");
    let mut remotes = Vec::with_capacity(peers);
    for _ in 0..peers {
        remotes.push(ScriptedPeer::dial_and_handshake(listen, Network::Regtest).await);
    }
    manager
        .wait_for_connections(peers, Duration::from_secs(30))
        .await
        .expect("connections");
    let frame = remotes[0].encode(&Message::Inv(vec![InvVect::tx(Hash([5; 32]))]));
    let payload = support::repeat(&frame, per_peer);
    let total = peers * per_peer;
    let t0 = Instant::now();
    let blasts: Vec<_> = remotes
        .into_iter()
        .map(|r| tokio::spawn(r.blast(payload.clone())))
        .collect();
    let mut got = 0;
    while got < total {
        rx.recv().await.expect("stream");
        got += 1;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    drop(rx);
    manager.shutdown().await.expect("shutdown");
    for b in blasts {
        let _ = b.await;
    }
    format!(
        "| lossless stream, {peers} scripted peers each writing {per_peer} one-entry `inv`s ({} B) | {total} msgs in {elapsed:.2} s | **{:.0} msgs/s** |",
        frame.len(),
        total as f64 / elapsed
    )
}

/// Benchmark 4.
async fn manager_memory(connections: usize) -> String {
    let t = Instant::now();
    let net = SimnetProcess::start(&ChildSpec {
        nodes: connections,
        blocks: 1,
        ..ChildSpec::default()
    });
    eprintln!(
        "  simnet child with {connections} nodes ready in {:?}",
        t.elapsed()
    );
    let store = store_with(&net.addresses).await;
    let manager = Manager::new(config(connections, connections), store);
    let before = support::rss_kib();
    let t0 = Instant::now();
    manager.start().await.expect("start");
    manager
        .wait_for_connections(connections, Duration::from_secs(120))
        .await
        .expect("connections");
    let up = t0.elapsed();
    let after = support::rss_kib();
    manager.shutdown().await.expect("shutdown");
    drop(net);
    format!(
        "| manager holding {connections} outbound connections (target = max = {connections}) | all up {:.2} s after `start()`; RSS {before} KiB → {after} KiB | **{:.1} MiB in all, {:.1} KiB per connection** |",
        up.as_secs_f64(),
        after.saturating_sub(before) as f64 / 1024.0,
        after.saturating_sub(before) as f64 / connections as f64
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
            println!("{}", manager_memory(1_000).await);
        }
        if wanted("cold") {
            println!("{}", cold_start(20).await);
        }
        if wanted("flood") {
            println!("{}", inbound_flood(1_000, 125).await);
        }
        if wanted("lossless") {
            println!("{}", lossless_flood(50, Duration::from_secs(5)).await);
            println!("{}", lossless_scripted(50, 20_000).await);
        }
    });
}
