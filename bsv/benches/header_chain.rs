//! Header chain benchmark (docs/BENCHMARKS.md, "Header chain").
//!
//! 1. The limit: decoding the `headers` frames of a simnet chain of `N` headers (2,000 per
//!    frame, as a node sends them) with `MessageCodec`, checksums included.
//! 2. Sync speed: a manager with one simnet node as its peer, from `Manager::header_chain()`
//!    until `HeaderChain::sync` returns with the node's tip (getheaders round trips over
//!    loopback, decode, continuity, PoW, work, index, events), in headers/s; the ratio to (1).
//! 3. Memory: live heap bytes (a counting global allocator) after the sync minus before it,
//!    per header; then per 100,000 and for mainnet's ~900,000.
//! 4. Restart: the same chain loaded from its header file (`store_path`), re-validated.
//!
//! Run with `cargo bench -p bitcoinsv --bench header_chain` (release). `HEADERS=N` changes the
//! chain length (default 100,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoinsv::p2p::codec::frame_bytes;
use bitcoinsv::p2p::{InMemoryPeerStore, Manager, ManagerConfig, Message, MessageCodec, Network};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use bytes::BytesMut;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

async fn manager(net: &SimNet, store_path: Option<std::path::PathBuf>) -> Manager {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    c.enable_listener = false;
    c.header_chain.store_path = store_path;
    let store = Arc::new(InMemoryPeerStore::new());
    let m = Manager::with_fixed_peers(c, store, net.addresses());
    m.start().await.expect("starts");
    m.wait_for_connections(1, Duration::from_secs(30))
        .await
        .expect("connects");
    m
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u32 = std::env::var("HEADERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(n))
        .await
        .expect("simnet");

    // 1. The limit: decode every `headers` frame of the chain.
    let headers = net.chain().headers();
    let frames: Vec<bytes::Bytes> = headers[1..]
        .chunks(2000)
        .map(|c| {
            let mut payload = BytesMut::new();
            Message::Headers(c.to_vec()).encode_payload(&mut payload);
            frame_bytes(Network::Regtest.magic(), "headers", &payload)
        })
        .collect();
    let mut best_decode = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let mut count = 0usize;
        for f in &frames {
            let mut buf = BytesMut::from(&f[..]);
            if let Ok(Some(Message::Headers(h))) =
                MessageCodec::new(Network::Regtest).decode(&mut buf)
            {
                count += h.len();
            }
        }
        assert_eq!(count, n as usize);
        best_decode = best_decode.min(t.elapsed());
    }
    let decode_rate = f64::from(n) / best_decode.as_secs_f64();
    println!(
        "decode only: {n} headers in {:.1} ms = {:.0} headers/s",
        best_decode.as_secs_f64() * 1e3,
        decode_rate
    );
    // The least a validating client must add: one SHA-256d per header.
    let mut best_hashed = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let mut acc = 0u8;
        for f in &frames {
            let mut buf = BytesMut::from(&f[..]);
            if let Ok(Some(Message::Headers(h))) =
                MessageCodec::new(Network::Regtest).decode(&mut buf)
            {
                for header in &h {
                    acc ^= header.hash().0[0];
                }
            }
        }
        std::hint::black_box(acc);
        best_hashed = best_hashed.min(t.elapsed());
    }
    println!(
        "decode + one sha256d per header: {:.0} headers/s",
        f64::from(n) / best_hashed.as_secs_f64()
    );

    // 2 and 3. Sync from the node, and the memory the chain holds afterwards.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("headers.dat");
    let mut best_sync = Duration::MAX;
    let mut per_header = 0f64;
    for run in 0..3 {
        let m = manager(&net, (run == 0).then(|| path.clone())).await;
        let before = LIVE.load(Ordering::Relaxed);
        let t = Instant::now();
        let chain = m.header_chain();
        let tip = chain.sync(Duration::from_secs(600)).await.expect("syncs");
        let took = t.elapsed();
        let after = LIVE.load(Ordering::Relaxed);
        assert_eq!(tip.height, n);
        println!(
            "sync run {run}{}: {n} headers in {:.1} ms = {:.0} headers/s; heap +{:.1} MiB = {:.0} bytes/header",
            if run == 0 { " (also writing the file)" } else { "" },
            took.as_secs_f64() * 1e3,
            f64::from(n) / took.as_secs_f64(),
            (after - before) as f64 / (1024.0 * 1024.0),
            (after - before) as f64 / f64::from(n)
        );
        if run > 0 {
            best_sync = best_sync.min(took);
            per_header = (after - before) as f64 / f64::from(n);
        }
        drop(chain);
        m.shutdown().await.expect("shuts down");
    }
    let sync_rate = f64::from(n) / best_sync.as_secs_f64();
    println!(
        "sync (best of runs 1-2): {:.0} headers/s = {:.1} % of decode-only ({:.1}x slower)",
        sync_rate,
        100.0 * sync_rate / decode_rate,
        decode_rate / sync_rate
    );
    println!(
        "memory: {:.0} bytes/header = {:.1} MiB per 100,000 headers, {:.0} MiB for 900,000",
        per_header,
        per_header * 100_000.0 / (1024.0 * 1024.0),
        per_header * 900_000.0 / (1024.0 * 1024.0)
    );

    // 4. Restart from the file (loaded and re-validated on `header_chain()`).
    let m = manager(&net, Some(path.clone())).await;
    let t = Instant::now();
    let chain = m.header_chain();
    let loaded = t.elapsed();
    let tip = chain.sync(Duration::from_secs(60)).await.expect("syncs");
    assert_eq!(tip.height, n);
    println!(
        "load from file: {n} headers in {:.1} ms = {:.0} headers/s; 900,000 would take {:.2} s",
        loaded.as_secs_f64() * 1e3,
        f64::from(n) / loaded.as_secs_f64(),
        loaded.as_secs_f64() * 900_000.0 / f64::from(n)
    );
    m.shutdown().await.expect("shuts down");
    net.shutdown().await;
}
