//! Blocks of any size (issue: big blocks), on loopback, in release mode: a synthetic block
//! written to a file is served by one manager (`Manager::send_block_file`, never loaded) and
//! received by another as a `BlockStream` in `TxIds` mode (checksum and merkle root verified as
//! the bytes pass), against the limit measured in the same run: a raw copy of the same file
//! over a loopback socket to a reader that only counts bytes. Peak resident memory above the
//! baseline (`VmHWM` after resetting it through `/proc/self/clear_refs`) for the streamed run.
//!
//! ```text
//! cargo bench -p bitcoinsv --bench big_blocks            # 1 GiB, then 5 GiB both ways
//! cargo bench -p bitcoinsv --bench big_blocks -- 1gib    # only the 1 GiB comparison
//! ```
//!
//! The 1 GiB block is written to a file in the temporary directory (`TMPDIR`, 1 GiB free
//! needed) and served from it; the 5 GiB block is generated as it is sent (never on disk nor in
//! memory); its raw limit copies the same generator.
//! Results are printed as Markdown table rows for `docs/BENCHMARKS.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::{Hash, Network};
use bitcoinsv::p2p::{BlockPart, BlockStreamMode, InMemoryPeerStore, Manager, ManagerConfig};
use bitcoinsv_simnet::SyntheticBlock;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

#[path = "../tests/common/process.rs"]
mod process;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

fn config(listen: bool) -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    c.header_chain.enabled = false;
    c.connection.max_block_size = 8 * GIB;
    if listen {
        c.enable_listener = true;
        c.listener_address = "127.0.0.1".parse().unwrap();
        c.listener_port = 0;
        c.target_connections = 0;
    }
    c
}

/// Writes a synthetic block of `size` bytes (transactions of 1,000 bytes) to a file.
fn block_file(dir: &Path, seed: u64, size: u64) -> (PathBuf, SyntheticBlock) {
    use std::io::Write;
    let block = SyntheticBlock::new(seed, Hash::ZERO, size, 1000);
    let path = dir.join(format!("block-{seed}.bin"));
    let mut f = std::io::BufWriter::with_capacity(
        MIB as usize,
        std::fs::File::create(&path).expect("create"),
    );
    for chunk in block.chunks(MIB as usize) {
        f.write_all(&chunk).expect("write");
    }
    f.flush().expect("flush");
    (path, block)
}

/// Two managers, `a` dialling `b`; returns them and `a`'s connection id to `b`.
async fn pair() -> (Arc<Manager>, Arc<Manager>, uuid::Uuid) {
    let b = Manager::with_fixed_peers(config(true), Arc::new(InMemoryPeerStore::new()), vec![]);
    b.start().await.expect("start b");
    let addr: SocketAddr = b.listener_address().expect("listening");
    let a = Manager::with_fixed_peers(
        config(false),
        Arc::new(InMemoryPeerStore::new()),
        vec![addr],
    );
    a.start().await.expect("start a");
    a.wait_for_connections(1, Duration::from_secs(10))
        .await
        .expect("connected");
    let id = a.connected_peers()[0].peer_id;
    b.wait_for_connections(1, Duration::from_secs(10))
        .await
        .expect("connected");
    (Arc::new(a), Arc::new(b), id)
}

/// How the sender gets the payload's checksum.
#[derive(Clone, Copy)]
enum Checksum {
    /// Known beforehand, as a server that stored the block (or the simnet) knows it:
    /// `send_block_stream` with `Some(checksum)`.
    Known([u8; 4]),
    /// Computed by `send_block_file` in a pass over the file before the first byte is sent.
    FromFile,
}

/// Streams `path` from `from` (connection `peer`) to `to`, which reads it in `TxIds` mode;
/// returns the time, the transactions verified and the peak resident memory above baseline.
async fn stream_once(
    from: &Arc<Manager>,
    to: &Manager,
    peer: uuid::Uuid,
    path: &Path,
    checksum: Checksum,
) -> (Duration, u64, u64) {
    let mut streams = to.subscribe_block_streams(BlockStreamMode::TxIds, 1);
    let baseline = process::status_kib("VmRSS:");
    process::reset_peak();
    let started = Instant::now();
    let send = {
        let from = from.clone();
        let path = path.to_path_buf();
        tokio::spawn(async move {
            match checksum {
                Checksum::FromFile => from.send_block_file(peer, &path).await,
                Checksum::Known(sum) => {
                    let file = tokio::fs::File::open(&path).await.expect("open");
                    let len = file.metadata().await.expect("metadata").len();
                    let body = tokio::io::BufReader::with_capacity(MIB as usize, file);
                    from.send_block_stream(peer, body, len, Some(sum)).await
                }
            }
        })
    };
    let mut stream = streams.recv().await.expect("a stream");
    let mut txs = 0;
    while let Some(part) = stream.next().await {
        if let BlockPart::TxId { .. } = part.expect("valid block") {
            txs += 1;
        }
    }
    let took = started.elapsed();
    assert!(stream.verified().is_some(), "verified");
    send.await.expect("join").expect("sent");
    let peak = process::status_kib("VmHWM:").saturating_sub(baseline);
    (took, txs, peak / 1024)
}

/// Accepts one connection and counts what arrives until it closes: the raw limit's reader.
async fn count_bytes(listener: TcpListener) -> u64 {
    let (mut s, _) = listener.accept().await.expect("accept");
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf).await.expect("read") {
            0 => return n,
            k => n += k as u64,
        }
    }
}

/// The limit: the same file copied over a loopback socket to a reader that counts bytes.
async fn raw_copy(path: &Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = tokio::spawn(count_bytes(listener));
    let started = Instant::now();
    let mut sock = TcpStream::connect(addr).await.expect("connect");
    let mut file = tokio::io::BufReader::with_capacity(
        MIB as usize,
        tokio::fs::File::open(path).await.expect("open"),
    );
    tokio::io::copy_buf(&mut file, &mut sock)
        .await
        .expect("copy");
    drop(sock);
    let n = reader.await.expect("join");
    assert!(n > 0);
    started.elapsed()
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

async fn one_gib(dir: &Path) {
    let (path, block) = block_file(dir, 1, GIB);
    let sum = block.checksum();
    let (a, b, peer) = pair().await;
    // Warm the page cache and both paths once, then three interleaved rounds.
    let _ = raw_copy(&path).await;
    let mut rows = Vec::new();
    for _ in 0..3 {
        let raw = raw_copy(&path).await;
        let (known, txs, peak) = stream_once(&a, &b, peer, &path, Checksum::Known(sum)).await;
        assert_eq!(txs, block.tx_count());
        let (from_file, txs, _) = stream_once(&a, &b, peer, &path, Checksum::FromFile).await;
        assert_eq!(txs, block.tx_count());
        rows.push((raw, known, peak, from_file));
    }
    rows.sort_by_key(|r| r.1);
    let (raw, streamed, peak, from_file) = rows[1];
    println!(
        "| 1 GiB block ({} txs), median of 3 | raw copy {:.2?} ({:.0} MB/s); streamed and verified {:.2?} ({:.0} MB/s); peak {} MiB above baseline; with the sender's checksum pass (`send_block_file`) {:.2?} | **ratio {:.2}** ({:.2} with the checksum pass) |",
        block.tx_count(),
        raw,
        mb_s(block.len(), raw),
        streamed,
        mb_s(block.len(), streamed),
        peak,
        from_file,
        streamed.as_secs_f64() / raw.as_secs_f64(),
        from_file.as_secs_f64() / raw.as_secs_f64()
    );
    a.shutdown().await.ok();
    b.shutdown().await.ok();
    let _ = std::fs::remove_file(path);
}

/// The payload of a synthetic block as an `AsyncRead`, generated as it is read (a 5 GiB block
/// is never on disk nor in memory).
struct Generated {
    chunks: bitcoinsv_simnet::SharedSyntheticChunks,
    current: bytes::Bytes,
}

impl tokio::io::AsyncRead for Generated {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.current.is_empty() {
            if let Some(next) = self.chunks.next() {
                self.current = next;
            }
        }
        let n = self.current.len().min(buf.remaining());
        let head = self.current.split_to(n);
        buf.put_slice(&head);
        std::task::Poll::Ready(Ok(()))
    }
}

fn generated(block: &Arc<SyntheticBlock>) -> Generated {
    Generated {
        chunks: block.shared_chunks(MIB as usize),
        current: bytes::Bytes::new(),
    }
}

/// Streams a generated block from `from` to `to` (`TxIds`): time, transactions, peak above
/// baseline in MiB.
async fn stream_generated(
    from: &Arc<Manager>,
    to: &Manager,
    peer: uuid::Uuid,
    block: &Arc<SyntheticBlock>,
) -> (Duration, u64, u64) {
    let mut streams = to.subscribe_block_streams(BlockStreamMode::TxIds, 1);
    let baseline = process::status_kib("VmRSS:");
    process::reset_peak();
    let started = Instant::now();
    let send = {
        let from = from.clone();
        let body = generated(block);
        let len = block.len();
        tokio::spawn(async move { from.send_block_stream(peer, body, len, None).await })
    };
    let mut stream = streams.recv().await.expect("a stream");
    let mut txs = 0;
    while let Some(part) = stream.next().await {
        match part {
            Ok(BlockPart::TxId { .. }) => txs += 1,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let took = started.elapsed();
    send.await.expect("join").expect("sent");
    let peak = process::status_kib("VmHWM:").saturating_sub(baseline);
    (took, txs, peak / 1024)
}

/// The limit for a generated block: the same generator copied over a loopback socket.
async fn raw_generated(block: &Arc<SyntheticBlock>) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = tokio::spawn(count_bytes(listener));
    let started = Instant::now();
    let mut sock = TcpStream::connect(addr).await.expect("connect");
    let mut body = tokio::io::BufReader::with_capacity(MIB as usize, generated(block));
    tokio::io::copy_buf(&mut body, &mut sock)
        .await
        .expect("copy");
    drop(sock);
    assert_eq!(reader.await.expect("join"), block.len());
    started.elapsed()
}

async fn five_gib() {
    eprintln!("5 GiB: generating the block (one pass for its merkle root)");
    let block = Arc::new(SyntheticBlock::new(5, Hash::ZERO, 5 * GIB, 1000));
    let (a, b, a_to_b) = pair().await;
    eprintln!("5 GiB: raw copy");
    let raw = raw_generated(&block).await;
    eprintln!("5 GiB: A to B");
    let (there, txs, peak_there) = stream_generated(&a, &b, a_to_b, &block).await;
    eprintln!("5 GiB: B to A");
    assert_eq!(txs, block.tx_count());
    let b_to_a = b.connected_peers()[0].peer_id;
    let (back, _, peak_back) = stream_generated(&b, &a, b_to_a, &block).await;
    println!(
        "| 5 GiB `extmsg` block ({} txs), generated as sent | raw copy of the generator {:.2?}; A→B {:.2?} ({:.0} MB/s, peak {} MiB above baseline); B→A {:.2?} ({:.0} MB/s, peak {} MiB) | **ratio {:.2} / {:.2}** |",
        block.tx_count(),
        raw,
        there,
        mb_s(block.len(), there),
        peak_there,
        back,
        mb_s(block.len(), back),
        peak_back,
        there.as_secs_f64() / raw.as_secs_f64(),
        back.as_secs_f64() / raw.as_secs_f64(),
    );
    a.shutdown().await.ok();
    b.shutdown().await.ok();
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    println!("| block | measurements | result |\n|---|---|---|");
    if wants("1gib") {
        rt.block_on(one_gib(dir.path()));
    }
    if wants("5gib") {
        rt.block_on(five_gib());
    }
}
