//! Peer store benchmarks on 100,000 peers: `find_by_ip_port` and `update` for both stores, and
//! saving and loading the in-memory store's file.
//!
//! Run with `cargo bench -p bitcoinsv --bench store --all-features`; results are recorded in
//! `docs/BENCHMARKS.md`. The in-memory store's futures never wait, so they are driven with
//! `futures::executor::block_on` (a few nanoseconds); the SQLite store needs tokio's blocking
//! pool, so its calls go through a tokio runtime, as they would in an application.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bitcoinsv::p2p::{InMemoryPeerStore, Peer, PeerStatus, PeerStore};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use futures::executor::block_on;

const PEERS: usize = 100_000;

fn peers() -> Vec<Peer> {
    (0..PEERS)
        .map(|i| {
            let mut p = Peer::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32)), 8333);
            p.status_timestamp = 1_700_000_000 + i as u64;
            p.status = if i % 4 == 0 {
                PeerStatus::Valid
            } else {
                PeerStatus::Unknown
            };
            p
        })
        .collect()
}

/// A fixed pseudo-random visiting order, so successive lookups do not walk memory in order.
fn shuffled_indexes() -> Vec<usize> {
    let mut order: Vec<usize> = (0..PEERS).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

fn in_memory_store(peers: &[Peer], path: Option<&std::path::Path>) -> InMemoryPeerStore {
    let store = match path {
        Some(p) => InMemoryPeerStore::with_file(p),
        None => InMemoryPeerStore::new(),
    }
    .with_max_peers(PEERS);
    for p in peers {
        block_on(store.create(p.clone())).unwrap();
    }
    store
}

fn toggled(mut peer: Peer) -> Peer {
    let next = match peer.status {
        PeerStatus::Valid => PeerStatus::Inaccessible,
        _ => PeerStatus::Valid,
    };
    peer.status = next;
    peer.status_timestamp += 1;
    peer
}

fn bench_in_memory(c: &mut Criterion) {
    let peers = peers();
    let order = shuffled_indexes();
    let store = in_memory_store(&peers, None);
    let mut g = c.benchmark_group("in_memory_100k");

    // Addresses laid out in visiting order, so the harness reads them sequentially and only
    // the store's own memory accesses are random.
    let addrs: Vec<(IpAddr, u16)> = order
        .iter()
        .map(|&k| (peers[k].ip, peers[k].port))
        .collect();
    let mut i = 0;
    g.bench_function("find_by_ip_port", |b| {
        b.iter(|| {
            let (ip, port) = addrs[i % PEERS];
            i += 1;
            block_on(store.find_by_ip_port(ip, port)).unwrap()
        })
    });

    let mut current: Vec<Peer> = order.iter().map(|&k| peers[k].clone()).collect();
    let mut i = 0;
    g.bench_function("update", |b| {
        b.iter(|| {
            let k = i % PEERS;
            i += 1;
            let next = toggled(current[k].clone());
            current[k] = next.clone();
            block_on(store.update(next)).unwrap()
        })
    });
    g.finish();
}

fn bench_file(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    let store = in_memory_store(&peers(), Some(&path));
    rt.block_on(store.save_to_file()).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "peer store file with {PEERS} peers: {size} bytes ({:.1} MiB, {} bytes per peer)",
        size as f64 / (1024.0 * 1024.0),
        size / PEERS as u64
    );

    let mut g = c.benchmark_group("file_100k");
    g.sample_size(10);
    g.bench_function("save_to_file", |b| {
        b.iter(|| rt.block_on(store.save_to_file()).unwrap())
    });
    g.bench_function("load_from_file", |b| {
        b.iter_batched(
            || InMemoryPeerStore::with_file(&path).with_max_peers(PEERS),
            |fresh| rt.block_on(fresh.load_from_file()).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

#[cfg(feature = "sqlite")]
fn bench_sqlite(c: &mut Criterion) {
    use bitcoinsv::p2p::SqlitePeerStore;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.db");
    let peers = peers();
    drop(SqlitePeerStore::open(&path).unwrap());
    // Filling through `create` would fsync 100,000 times; one transaction of rows in the
    // store's own layout is the same data in a second.
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO peers (id, ip, port, status, ban_reason, ban_until, \
                     status_timestamp) VALUES (?1, ?2, ?3, ?4, NULL, NULL, ?5)",
                )
                .unwrap();
            for p in &peers {
                insert
                    .execute(rusqlite::params![
                        p.id.to_string(),
                        p.ip.to_string(),
                        p.port,
                        p.status.kind().as_str(),
                        p.status_timestamp as i64
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let store = SqlitePeerStore::open(&path).unwrap().with_max_peers(PEERS);
    let probe = &peers[PEERS / 2];
    assert_eq!(
        rt.block_on(store.find_by_ip_port(probe.ip, probe.port))
            .unwrap()
            .as_ref(),
        Some(probe),
        "bulk-loaded rows read back as the store's peers"
    );
    let order = shuffled_indexes();
    let mut g = c.benchmark_group("sqlite_100k");

    let addrs: Vec<(IpAddr, u16)> = order
        .iter()
        .map(|&k| (peers[k].ip, peers[k].port))
        .collect();
    let mut i = 0;
    g.bench_function("find_by_ip_port", |b| {
        b.iter(|| {
            let (ip, port) = addrs[i % PEERS];
            i += 1;
            rt.block_on(store.find_by_ip_port(ip, port)).unwrap()
        })
    });

    g.sample_size(20);
    let mut current: Vec<Peer> = order.iter().map(|&k| peers[k].clone()).collect();
    let mut i = 0;
    g.bench_function("update", |b| {
        b.iter(|| {
            let k = i % PEERS;
            i += 1;
            let next = toggled(current[k].clone());
            current[k] = next.clone();
            rt.block_on(store.update(next)).unwrap()
        })
    });
    g.finish();
}

#[cfg(not(feature = "sqlite"))]
fn bench_sqlite(_: &mut Criterion) {}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_in_memory, bench_file, bench_sqlite
}
criterion_main!(benches);
