//! Blocks of any size between two managers over loopback (docs/GUIDE.md, "Blocks of any size"):
//! one serves a synthetic block from a file (`send_block_file`, never loading it), the other
//! receives it as a `BlockStream` (`subscribe_block_streams`) verified as it passes, in memory
//! bounded by the stream window and the manager-wide budget whatever the block's size.
//!
//! Memory is the process's resident set from `/proc/self/status`: the peak (`VmHWM`, reset
//! through `/proc/self/clear_refs`) against the resident set before the block. The tests of this
//! file run one at a time (a lock), since the resident set is per process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::{Hash, Network};
use bitcoinsv::p2p::{
    BlockPart, BlockStreamFailure, BlockStreamMode, ControlEvent, InMemoryPeerStore, Manager,
    ManagerConfig,
};
use bitcoinsv_simnet::SyntheticBlock;
use tokio::sync::Mutex;

const MIB: u64 = 1024 * 1024;
const WAIT: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::const_new(());

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak resident set to the current one (Linux `clear_refs` value 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn config() -> ManagerConfig {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds = Vec::new();
    c.header_chain.enabled = false;
    c
}

/// A manager listening on a free loopback port, connecting to nobody.
async fn receiver(c: ManagerConfig) -> (Manager, SocketAddr) {
    let mut c = c;
    c.enable_listener = true;
    c.listener_address = "127.0.0.1".parse().unwrap();
    c.listener_port = 0;
    c.target_connections = 0;
    let m = Manager::with_fixed_peers(c, Arc::new(InMemoryPeerStore::new()), Vec::new());
    m.start().await.unwrap();
    let addr = m.listener_address().unwrap();
    (m, addr)
}

/// A manager connected to `to`, and the id of that connection.
async fn sender(to: SocketAddr) -> (Manager, uuid::Uuid) {
    let m = Manager::with_fixed_peers(config(), Arc::new(InMemoryPeerStore::new()), vec![to]);
    m.start().await.unwrap();
    m.wait_for_connections(1, WAIT).await.unwrap();
    let id = m.connected_peers()[0].peer_id;
    (m, id)
}

/// Writes a synthetic block of `size` bytes to a file in `dir`, chunk by chunk.
fn block_file(dir: &Path, seed: u64, size: u64) -> (PathBuf, SyntheticBlock) {
    use std::io::Write;
    let block = SyntheticBlock::new(seed, Hash::ZERO, size, 400);
    let path = dir.join(format!("block-{seed}.bin"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for chunk in block.chunks(MIB as usize) {
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    (path, block)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_block_streams_between_managers_verified_in_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, block) = block_file(dir.path(), 1, 256 * MIB);
    let (b, addr) = receiver(config()).await;
    let mut streams = b.subscribe_block_streams(BlockStreamMode::TxIds, 1);
    let (a, peer) = sender(addr).await;

    let baseline = status_kib("VmRSS:");
    reset_peak();
    let send = tokio::spawn(async move {
        let n = a.send_block_file(peer, &path).await;
        (a, n)
    });
    let mut stream = tokio::time::timeout(WAIT, streams.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.hash(), block.hash());
    assert_eq!(stream.len(), block.len());
    let mut txids = 0u64;
    let mut last_offset = 0;
    while let Some(part) = stream.next().await {
        match part.unwrap() {
            BlockPart::TxId { index, offset, .. } => {
                assert_eq!(index, txids);
                assert!(offset > last_offset || index == 0);
                last_offset = offset;
                txids += 1;
            }
            other => panic!("unexpected part in TxIds mode: {other:?}"),
        }
    }
    let end = *stream
        .verified()
        .expect("checksum and merkle root verified");
    assert!(end.merkle_matches() && end.checksum_ok());
    assert_eq!((end.tx_count, end.length), (block.tx_count(), block.len()));
    assert_eq!(txids, block.tx_count());
    let peak = status_kib("VmHWM:");
    let (a, sent) = send.await.unwrap();
    assert_eq!(sent.unwrap(), block.len());
    let above = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "256 MiB block: peak resident {above} MiB above the baseline of {} MiB",
        baseline / 1024
    );
    assert!(above < 64, "peak {above} MiB above baseline");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_with_a_corrupt_transaction_ends_the_stream_with_a_merkle_mismatch_and_the_peer_pays_100(
) {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, block) = block_file(dir.path(), 2, 40 * MIB);
    // Change the lock time of a transaction in the middle: the layout stays valid, its txid
    // changes, so the merkle root no longer matches (the checksum is recomputed by the sender).
    let mut raw = std::fs::read(&path).unwrap();
    let mut decoder = bitcoinsv::p2p::codec::BlockStreamDecoder::new(
        raw.len() as u64,
        None,
        bitcoinsv::p2p::codec::BlockStreamConfig::txid_only(),
    );
    decoder.feed(&raw).unwrap();
    let middle = block.tx_count() / 2;
    let mut at = None;
    while let Some(e) = decoder.next_event() {
        if let bitcoinsv::p2p::codec::BlockEvent::TxId {
            index,
            offset,
            length,
            ..
        } = e
        {
            if index == middle {
                at = Some((offset + length - 1) as usize);
            }
        }
    }
    let at = at.unwrap();
    raw[at] ^= 0x01;
    std::fs::write(&path, &raw).unwrap();
    drop(raw);

    let (b, addr) = receiver(config()).await;
    let mut events = b.subscribe_control_events();
    let mut streams = b.subscribe_block_streams(BlockStreamMode::Transactions, 1);
    let (a, peer) = sender(addr).await;
    let send = tokio::spawn(async move {
        let _ = a.send_block_file(peer, &path).await;
        a
    });
    let mut stream = tokio::time::timeout(WAIT, streams.recv())
        .await
        .unwrap()
        .unwrap();
    let mut delivered = 0;
    let failure = loop {
        match stream.next().await {
            Some(Ok(BlockPart::Transaction { .. })) => delivered += 1,
            Some(Ok(other)) => panic!("unexpected part {other:?}"),
            Some(Err(e)) => break e,
            None => panic!("a corrupt block ended well"),
        }
    };
    assert!(
        matches!(failure, BlockStreamFailure::MerkleMismatch { .. }),
        "{failure:?}"
    );
    assert_eq!(
        delivered,
        block.tx_count(),
        "every transaction passed before the verdict"
    );
    assert!(stream.verified().is_none());
    // The node charges `bad-txnmrklroot` 100: the sender is banned.
    let banned = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(ControlEvent::PeerBanned { ip, reason, .. }) => return (ip, reason),
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(banned.0, addr.ip());
    assert!(
        banned.1.to_string().contains("bad-txnmrklroot"),
        "{}",
        banned.1
    );
    let a = send.await.unwrap();
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_peers_streaming_large_blocks_at_once_stay_within_the_global_budget() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.block_streaming.window = 8 * MIB as usize;
    c.block_streaming.budget = 16 * MIB as usize;
    let (b, addr) = receiver(c).await;
    let mut streams = b.subscribe_block_streams(BlockStreamMode::Raw, 4);
    let mut senders = Vec::new();
    let mut blocks = Vec::new();
    for seed in 10..14u64 {
        let (path, block) = block_file(dir.path(), seed, 128 * MIB);
        let (a, peer) = sender(addr).await;
        senders.push((a, peer, path));
        blocks.push(block);
    }
    let baseline = status_kib("VmRSS:");
    reset_peak();
    let mut tasks = Vec::new();
    let sizes: Vec<u64> = blocks.iter().map(SyntheticBlock::len).collect();
    for (a, peer, path) in senders {
        tasks.push(tokio::spawn(async move {
            let n = a.send_block_file(peer, &path).await;
            (a, n)
        }));
    }
    // Take all four streams, then read them one after the other: the other three fill their
    // windows meanwhile, which the budget caps at half of what four windows would hold.
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(
            tokio::time::timeout(WAIT, streams.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    for mut stream in got {
        let mut bytes = 0u64;
        while let Some(part) = stream.next().await {
            if let BlockPart::Bytes(b) = part.unwrap() {
                bytes += b.len() as u64;
            }
        }
        assert_eq!(bytes, stream.len());
        assert!(stream.verified().is_some());
        assert!(blocks.iter().any(|b| b.hash() == stream.hash()));
    }
    let peak = status_kib("VmHWM:");
    let above = peak.saturating_sub(baseline) / 1024;
    eprintln!("four 128 MiB blocks at once: peak resident {above} MiB above baseline");
    // The budget (16 MiB) plus each connection's read buffer and decoder, the senders' read
    // buffers (1 MiB each) and the allocator's slack.
    assert!(above < 64, "peak {above} MiB above baseline");
    for t in tasks {
        let (a, n) = t.await.unwrap();
        assert!(sizes.contains(&n.unwrap()));
        a.shutdown().await.unwrap();
    }
    b.shutdown().await.unwrap();
}
