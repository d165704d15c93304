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
//! 4. memory of a manager holding 1,000 connections, and 10,000 (issue 12), measured three
//!    ways in one run: RSS before `start()` and once all are established (after a warm-up
//!    round, so that the allocator's arenas are primed), the heap bytes live (counted by this
//!    binary's allocator) with the sizes of the allocations each connection added, and a raw
//!    baseline, the limit: as many bare tokio `TcpStream`s to the same nodes, each held by a
//!    task waiting for it to become readable. Run first, while the allocator holds nothing
//!    from the other measurements.
//!
//! Simnet nodes run in child processes (this binary re-executed; several for 10,000 nodes, as
//! each node needs two descriptors) so that their memory and work are not ours. The soft
//! open-file limit is raised to the hard one at start. Run with:
//!
//! ```text
//! ulimit -n 20000; cargo bench -p bitcoinsv --bench manager [-- cold|flood|lossless|memory|scale]
//! ```
//!
//! Results are printed as Markdown table rows for `docs/BENCHMARKS.md`.

mod support;

/// A global allocator that counts live heap bytes and live allocations by size, so that the
/// memory benchmark can say what each connection allocates (RSS alone cannot).
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicIsize, Ordering};

    /// Allocation sizes are counted exactly (in steps of [`STEP`] bytes) up to this size.
    const TRACKED: usize = 128 * 1024;
    const STEP: usize = 8;
    const BUCKETS: usize = TRACKED / STEP + 1;

    static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
    static BY_SIZE: [AtomicIsize; BUCKETS] = [const { AtomicIsize::new(0) }; BUCKETS];

    /// The counting allocator (the system's underneath).
    pub struct Counting;

    fn bucket(size: usize) -> usize {
        (size.div_ceil(STEP)).min(BUCKETS - 1)
    }

    fn add(size: usize, n: isize) {
        LIVE_BYTES.fetch_add(n * size as isize, Ordering::Relaxed);
        BY_SIZE[bucket(size)].fetch_add(n, Ordering::Relaxed);
    }

    // SAFETY: every call is forwarded unchanged to `System`; the counting has no effect on it.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(layout.size(), 1);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                add(layout.size(), 1);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            add(layout.size(), -1);
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                add(layout.size(), -1);
                add(new_size, 1);
            }
            p
        }
    }

    /// Live heap bytes and live allocations by size bucket at one moment.
    pub struct Snapshot {
        bytes: isize,
        by_size: Vec<isize>,
    }

    /// Takes a snapshot.
    pub fn snapshot() -> Snapshot {
        Snapshot {
            bytes: LIVE_BYTES.load(Ordering::Relaxed),
            by_size: BY_SIZE.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
        }
    }

    impl Snapshot {
        /// Heap bytes live now that were not at `before`.
        pub fn bytes_since(&self, before: &Snapshot) -> isize {
            self.bytes - before.bytes
        }

        /// The allocation sizes that grew by at least `min_count` since `before`, largest share
        /// first: (size in bytes, rounded up to 8; the largest bucket is "128 KiB or more";
        /// allocations added).
        pub fn grown_since(&self, before: &Snapshot, min_count: isize) -> Vec<(usize, isize)> {
            let mut v: Vec<(usize, isize)> = self
                .by_size
                .iter()
                .zip(&before.by_size)
                .enumerate()
                .map(|(i, (a, b))| (i * STEP, a - b))
                .filter(|(_, n)| *n >= min_count)
                .collect();
            v.sort_by_key(|(size, n)| std::cmp::Reverse(*size as isize * n));
            v
        }
    }
}

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

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

use support::{ChildSpec, ScriptedPeer, SimnetFleet, SimnetProcess, Summary};

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

/// Simnet nodes per child process: two descriptors each (listener and connection) stays well
/// under the usual 20,000 limit.
const NODES_PER_CHILD: usize = 2_500;

/// One round of benchmark 4: a manager reaching `connections` against `net`; returns the time
/// to establish them, the time until the heap held still, and the RSS (KiB) and the heap
/// snapshots before `start()` and once settled.
async fn manager_round(
    net: &SimnetFleet,
    connections: usize,
) -> (Duration, Duration, u64, u64, heap::Snapshot, heap::Snapshot) {
    let store = store_with(&net.addresses).await;
    let mut c = config(connections, connections);
    // Idle connections: no `getaddr`, whose replies (1,000 addresses from every node) would be
    // measured instead, still queued for the services' hub (see docs/BENCHMARKS.md).
    c.addresses.learn = false;
    let manager = Manager::new(c, store);
    support::trim_heap();
    let before = support::rss_kib();
    let heap_before = heap::snapshot();
    let t0 = Instant::now();
    manager.start().await.expect("start");
    manager
        .wait_for_connections(connections, Duration::from_secs(300))
        .await
        .expect("connections");
    let up = t0.elapsed();
    // Let the handshakes' aftermath settle (the first ping, `getaddr` and the `addr`s it brings,
    // the supervisor's store writes): until the live heap holds still for half a second.
    let mut last = heap::snapshot().bytes_since(&heap_before);
    let mut still = 0;
    while still < 2 && t0.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = heap::snapshot().bytes_since(&heap_before);
        if (now - last).unsigned_abs() * 500 < now.unsigned_abs() {
            still += 1;
        } else {
            still = 0;
        }
        last = now;
    }
    let settled = t0.elapsed();
    let after = support::rss_kib();
    let heap_after = heap::snapshot();
    manager.shutdown().await.expect("shutdown");
    drop(manager);
    (up, settled, before, after, heap_before, heap_after)
}

/// The limit of benchmark 4: bare tokio sockets to the same nodes, each held by a task that
/// waits for it to become readable (what any tokio program holding an idle connection needs at
/// least); returns RSS KiB per socket and heap bytes per socket.
async fn raw_sockets(addrs: &[SocketAddr]) -> (f64, f64) {
    support::trim_heap();
    let before = support::rss_kib();
    let heap_before = heap::snapshot();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::with_capacity(addrs.len());
    for chunk in addrs.chunks(500) {
        let dials = chunk.iter().map(|a| tokio::net::TcpStream::connect(*a));
        for s in futures::future::join_all(dials).await {
            let s = s.expect("raw connect");
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 64];
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        r = s.readable() => {
                            if r.is_err() { break; }
                            match s.try_read(&mut buf) {
                                Ok(0) => break,
                                Ok(_) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(_) => break,
                            }
                        }
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = support::rss_kib();
    let heap_bytes = heap::snapshot().bytes_since(&heap_before);
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let n = addrs.len() as f64;
    (
        after.saturating_sub(before) as f64 / n,
        heap_bytes as f64 / n,
    )
}

/// Benchmark 4: memory of a manager holding `connections` idle outbound connections.
async fn manager_memory(connections: usize) -> String {
    let t = Instant::now();
    let net = SimnetFleet::start(
        &ChildSpec {
            nodes: connections,
            blocks: 1,
            ..ChildSpec::default()
        },
        NODES_PER_CHILD,
    );
    eprintln!(
        "  {} simnet children with {connections} nodes ready in {:?}",
        net.children.len(),
        t.elapsed()
    );
    let kernel_before = support::tcp_kernel_kib();
    let (raw_rss, raw_heap) = raw_sockets(&net.addresses).await;
    let kernel_raw = support::tcp_kernel_kib().saturating_sub(kernel_before);
    // A warm-up round, so that the allocator's arenas and tokio's worker state are primed as
    // they are in a process that has run for a while.
    let (warm_up, ..) = manager_round(&net, connections).await;
    eprintln!("  warm-up round: all up in {warm_up:?}");
    let (up, settled, before, after, heap_before, heap_after) =
        manager_round(&net, connections).await;
    drop(net);
    let n = connections as f64;
    let per = after.saturating_sub(before) as f64 / n;
    let heap_per = heap_after.bytes_since(&heap_before) as f64 / n;
    eprintln!(
        "  allocations added per connection (size: count per connection, bytes per connection):"
    );
    for (size, count) in heap_after.grown_since(&heap_before, (connections / 2) as isize) {
        eprintln!(
            "    {size:>6} B: {:.2} per connection, {:.0} B per connection",
            count as f64 / n,
            (size as isize * count) as f64 / n
        );
    }
    format!(
        "| manager holding {connections} outbound connections (target = max = {connections}; {} simnet children) | all up {:.2} s after `start()` (warm-up round {:.2} s), settled at {:.2} s; RSS {before} KiB → {after} KiB | **{:.1} MiB in all, {per:.1} KiB per connection** ({:.2} of the 16 KiB goal); heap live {:.1} KiB per connection; raw tokio socket + waiting task (the limit): {raw_rss:.1} KiB RSS, {:.2} KiB heap per socket; kernel TCP buffers {:.1} KiB per raw socket pair (not in RSS) |",
        connections.div_ceil(NODES_PER_CHILD),
        up.as_secs_f64(),
        warm_up.as_secs_f64(),
        settled.as_secs_f64(),
        after.saturating_sub(before) as f64 / 1024.0,
        per / 16.0,
        heap_per / 1024.0,
        raw_heap / 1024.0,
        kernel_raw as f64 / n,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(support::CHILD_FLAG) {
        support::child_main(&args[1..]);
        return;
    }
    let fds = support::raise_fd_limit();
    eprintln!("  open-file limit: {fds}");
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
        if wanted("memory") || wanted("scale") {
            println!("{}", manager_memory(10_000).await);
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
