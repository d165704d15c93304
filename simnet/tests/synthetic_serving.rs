//! Synthetic blocks served by simulated nodes: a raw loopback client asks for a registered block
//! with `getdata` and streams the frame through the library's `BlockStreamDecoder` as it
//! arrives, never holding the payload, so these tests check both that the node streams in
//! bounded memory and that what it sends is the block it registered (merkle root, checksum,
//! deliberate corruptions, `extmsg` framing for blocks over 4 GiB).

mod common;

use std::time::Duration;

use bitcoinsv::bitcoin::{Hash, InvType, InvVect};
use bitcoinsv::p2p::codec::{
    BlockEvent, BlockStreamConfig, BlockStreamDecoder, BlockStreamError, ChecksumStatus,
    FrameHeader,
};
use bitcoinsv::p2p::{Message, VersionMessage};
use bitcoinsv_simnet::{
    Corruption, Misbehaviour, SimNet, SimNetConfig, SyntheticInfo, SyntheticSpec,
};
use common::{client_version, Client, WAIT};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// How much more resident memory the whole process (client and node) may use while a 64 MiB
/// block goes through: less than the block, so neither side can have held it.
const RSS_ALLOWANCE: u64 = 64 * 1024 * 1024;
/// The client's socket read size.
const READ_SIZE: usize = 256 * 1024;

async fn simnet(mode: Misbehaviour) -> SimNet {
    SimNet::start(SimNetConfig::default().nodes(1).with_misbehaviour(0, mode))
        .await
        .expect("simnet starts")
}

/// The process's resident set size in bytes (0 where /proc is not available).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// sha256d's first four bytes over the block's regenerated payload.
fn checksum_of(info: &SyntheticInfo) -> [u8; 4] {
    let mut hasher = Sha256::new();
    for chunk in info.block.chunks(64 * 1024) {
        hasher.update(&chunk);
    }
    let d = Sha256::digest(hasher.finalize());
    [d[0], d[1], d[2], d[3]]
}

/// Reads from the client's buffer, then its socket, until a frame header is complete; returns
/// it and leaves the bytes after it in the buffer. Other frames before it are skipped whole.
async fn next_frame_header(client: &mut Client, command: &str) -> FrameHeader {
    loop {
        if let Some(header) = FrameHeader::parse(&client.buf).expect("valid frame header") {
            let wire = header.wire_len();
            if header.command == command {
                let _ = client.buf.split_to(wire);
                return header;
            }
            // Small frames (pings, announcements) are skipped whole.
            let total = wire + header.length as usize;
            if client.buf.len() >= total {
                let _ = client.buf.split_to(total);
                continue;
            }
        }
        client.buf.reserve(READ_SIZE);
        let n = tokio::time::timeout(WAIT, client.stream.read_buf(&mut client.buf))
            .await
            .expect("frame within the wait")
            .expect("read");
        assert!(n > 0, "node closed before the {command} frame");
    }
}

/// What streaming a block frame produced.
struct Streamed {
    header: FrameHeader,
    events: Vec<BlockEvent>,
    error: Option<BlockStreamError>,
    /// Payload bytes received.
    received: u64,
    /// Largest rise of the process's resident memory over the baseline taken before the request.
    peak_rss_rise: u64,
}

/// Sends `getdata(MSG_BLOCK, hash)` and streams the answer's `block` frame through a
/// `BlockStreamDecoder` in txid-only mode, feeding the socket's bytes as they arrive, until the
/// payload ends, the decoder fails, or `stop_after` payload bytes have arrived.
async fn stream_block(client: &mut Client, hash: Hash, stop_after: Option<u64>) -> Streamed {
    let baseline = rss_bytes();
    assert!(baseline > 0, "VmRSS readable from /proc/self/status");
    client
        .send(&Message::GetData(vec![InvVect::block(hash)]))
        .await;
    let header = next_frame_header(client, "block").await;
    let mut decoder = BlockStreamDecoder::for_frame(&header, BlockStreamConfig::txid_only());
    let mut out = Streamed {
        header,
        events: Vec::new(),
        error: None,
        received: 0,
        peak_rss_rise: 0,
    };
    let limit = stop_after.map_or(out.header.length, |s| s.min(out.header.length));
    let mut buf = vec![0u8; READ_SIZE];
    // The bytes already buffered after the header first (bounded by one read).
    let mut pending = std::mem::take(&mut client.buf).to_vec();
    let mut next_sample = 0u64;
    while out.received < limit {
        if pending.is_empty() {
            let want = READ_SIZE.min((out.header.length - out.received) as usize);
            let n = tokio::time::timeout(WAIT, client.stream.read(&mut buf[..want]))
                .await
                .expect("block bytes within the wait")
                .expect("read");
            assert!(n > 0, "node closed mid-block at {}", out.received);
            pending.extend_from_slice(&buf[..n]);
        }
        // Never feed past the frame: what follows belongs to the next frame.
        let take = pending
            .len()
            .min((out.header.length - out.received) as usize);
        let rest = pending.split_off(take);
        out.received += take as u64;
        let fed = decoder.feed(&pending);
        pending = rest;
        while let Some(ev) = decoder.next_event() {
            // Keep only the few events the tests look at, not one per transaction.
            if !matches!(ev, BlockEvent::TxId { .. }) || out.events.len() < 16 {
                out.events.push(ev);
            }
        }
        if let Err(e) = fed {
            out.error = Some(e);
            break;
        }
        if out.received >= next_sample {
            out.peak_rss_rise = out.peak_rss_rise.max(rss_bytes().saturating_sub(baseline));
            next_sample += 4 * 1024 * 1024;
        }
    }
    client.buf.extend_from_slice(&pending);
    out
}

fn end_of(streamed: &Streamed) -> bitcoinsv::p2p::codec::BlockEnd {
    streamed
        .events
        .iter()
        .find_map(|e| match e {
            BlockEvent::End(end) => Some(*end),
            _ => None,
        })
        .expect("the payload completed")
}

fn header_of(streamed: &Streamed) -> bitcoinsv::bitcoin::BlockHeader {
    streamed
        .events
        .iter()
        .find_map(|e| match e {
            BlockEvent::Header(h) => Some(*h),
            _ => None,
        })
        .expect("a header event")
}

async fn connected(simnet: &SimNet, version: i32) -> Client {
    let mut client = Client::connect(simnet.node(0).address()).await;
    if version == client_version().version {
        client.handshake().await;
    } else {
        client
            .send(&Message::Version(VersionMessage {
                version,
                ..client_version()
            }))
            .await;
        client.recv_until("verack").await;
        client.send(&Message::Verack).await;
        client.sync(1).await;
    }
    client
}

#[tokio::test]
async fn a_64_mib_block_streams_with_its_merkle_root_and_checksum_in_bounded_memory() {
    let simnet = simnet(Misbehaviour::None).await;
    let info = simnet
        .add_synthetic_block(SyntheticSpec::new(64 * 1024 * 1024).seed(1))
        .await
        .expect("registers");
    assert_eq!(info.len, 64 * 1024 * 1024);
    assert!(!info.extended);
    assert_eq!(info.header.prev_hash, simnet.chain().tip_hash());
    // Registered blocks are served, not mined: the chain does not move.
    assert_ne!(simnet.chain().tip_hash(), info.hash);
    let mut client = connected(&simnet, 70016).await;
    let streamed = stream_block(&mut client, info.hash, None).await;
    assert_eq!(streamed.error, None);
    assert_eq!(streamed.header.length, info.len);
    assert_eq!(Some(streamed.header.checksum), info.checksum);
    assert_eq!(header_of(&streamed).hash(), info.hash);
    let end = end_of(&streamed);
    assert!(end.merkle_matches());
    assert_eq!(end.checksum, ChecksumStatus::Matched);
    assert_eq!(end.tx_count, info.tx_count);
    eprintln!(
        "64 MiB block: resident memory rose by at most {} KiB",
        streamed.peak_rss_rise / 1024
    );
    assert!(
        streamed.peak_rss_rise < RSS_ALLOWANCE,
        "resident memory rose by {} bytes while a {}-byte block went through",
        streamed.peak_rss_rise,
        info.len
    );
    simnet.shutdown().await;
}

#[tokio::test]
async fn frames_wait_behind_a_block_and_the_node_keeps_reading_meanwhile() {
    let simnet = simnet(Misbehaviour::None).await;
    let info = simnet
        .add_synthetic_block(SyntheticSpec::new(8 * 1024 * 1024).tx_size(100_000))
        .await
        .expect("registers");
    let mut client = connected(&simnet, 70016).await;
    // getdata then ping at once, and read nothing until both are sent: the node must go on
    // reading while it writes, and must not interleave the pong inside the block.
    client
        .send(&Message::GetData(vec![InvVect::block(info.hash)]))
        .await;
    client.send(&Message::Ping(77)).await;
    let header = next_frame_header(&mut client, "block").await;
    assert_eq!(header.length, info.len);
    let mut left = info.len - client.buf.len().min(info.len as usize) as u64;
    let _ = client.buf.split_to(client.buf.len().min(info.len as usize));
    let mut buf = vec![0u8; READ_SIZE];
    while left > 0 {
        let want = READ_SIZE.min(left as usize);
        let n = tokio::time::timeout(WAIT, client.stream.read(&mut buf[..want]))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0);
        left -= n as u64;
    }
    match client.recv().await {
        Message::Pong(77) => {}
        other => panic!("expected the pong right after the block, got {other:?}"),
    }
    simnet.shutdown().await;
}

#[tokio::test]
async fn a_merkle_mismatch_block_decodes_but_its_txids_miss_the_header_root() {
    let simnet = simnet(Misbehaviour::None).await;
    let spec = SyntheticSpec::new(1_000_000).tx_size(20_000);
    let intact = simnet
        .add_synthetic_block(spec.clone())
        .await
        .expect("registers");
    let info = simnet
        .add_synthetic_block(spec.corruption(Corruption::MerkleMismatch { tx_index: 20 }))
        .await
        .expect("registers");
    assert_ne!(info.hash, intact.hash);
    assert_eq!(info.len, intact.len);
    assert_eq!(info.checksum, Some(checksum_of(&info)));
    let mut client = connected(&simnet, 70016).await;
    let streamed = stream_block(&mut client, info.hash, None).await;
    assert_eq!(streamed.error, None);
    let end = end_of(&streamed);
    assert!(!end.merkle_matches());
    assert_eq!(end.checksum, ChecksumStatus::Matched);
    assert_eq!(end.tx_count, info.tx_count);
    // The intact twin, from the same connection, verifies.
    let streamed = stream_block(&mut client, intact.hash, None).await;
    assert!(end_of(&streamed).merkle_matches());
    simnet.shutdown().await;
}

#[tokio::test]
async fn a_malformed_block_fails_the_decoder_at_the_broken_transaction() {
    let simnet = simnet(Misbehaviour::None).await;
    let info = simnet
        .add_synthetic_block(
            SyntheticSpec::new(1_000_000)
                .tx_size(20_000)
                .corruption(Corruption::Malformed { tx_index: 5 }),
        )
        .await
        .expect("registers");
    assert_eq!(info.len, 1_000_000);
    assert_eq!(info.checksum, Some(checksum_of(&info)));
    let mut client = connected(&simnet, 70016).await;
    let streamed = stream_block(&mut client, info.hash, None).await;
    // Transaction 5 starts where transaction 4 ends; its input-script length is 41 bytes in.
    let tx5 = streamed
        .events
        .iter()
        .find_map(|e| match e {
            BlockEvent::TxId {
                index: 4,
                offset,
                length,
                ..
            } => Some(offset + length),
            _ => None,
        })
        .expect("transactions before the broken one decode");
    assert_eq!(
        streamed.error,
        Some(BlockStreamError::NonCanonicalVarInt { offset: tx5 + 41 })
    );
    assert!(streamed.received < info.len);
    simnet.shutdown().await;
}

#[tokio::test]
async fn a_block_over_4_gib_gets_notfound_for_a_70015_peer() {
    let simnet = simnet(Misbehaviour::None).await;
    let info = simnet
        .add_synthetic_block(
            SyntheticSpec::new(5 << 30).corruption(Corruption::PlaceholderMerkleRoot),
        )
        .await
        .expect("registers");
    assert!(info.extended);
    assert_eq!(info.checksum, None);
    let mut client = connected(&simnet, 70015).await;
    client
        .send(&Message::GetData(vec![InvVect::block(info.hash)]))
        .await;
    let seen = client.recv_until("notfound").await;
    match seen.last() {
        Some(Message::NotFound(items)) => {
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].inv_type, InvType::Block);
            assert_eq!(items[0].hash, info.hash);
        }
        other => panic!("expected notfound, got {other:?}"),
    }
    assert!(seen.iter().all(|m| m.command() != "block"));
    simnet.shutdown().await;
}

#[tokio::test]
async fn a_block_over_4_gib_is_framed_with_extmsg_for_a_70016_peer() {
    let simnet = simnet(Misbehaviour::None).await;
    let info = simnet
        .add_synthetic_block(
            SyntheticSpec::new(5 << 30).corruption(Corruption::PlaceholderMerkleRoot),
        )
        .await
        .expect("registers");
    let mut client = connected(&simnet, 70016).await;
    // Only the header and the first few MiB: streaming 5 GiB is for release benchmarks.
    let streamed = stream_block(&mut client, info.hash, Some(4 * 1024 * 1024)).await;
    assert!(streamed.header.extended);
    assert_eq!(streamed.header.length, 5 << 30);
    assert_eq!(streamed.header.command, "block");
    assert_eq!(streamed.error, None);
    assert_eq!(header_of(&streamed).hash(), info.hash);
    assert!(streamed
        .events
        .iter()
        .any(|e| matches!(e, BlockEvent::TxCount(n) if *n == info.tx_count)));
    assert!(streamed
        .events
        .iter()
        .any(|e| matches!(e, BlockEvent::TxId { index: 1, .. })));
    // Hanging up mid-block just ends the node's write; the node serves the next peer.
    drop(client);
    let small = simnet
        .add_synthetic_block(SyntheticSpec::new(300_000).tx_size(10_000))
        .await
        .expect("registers");
    let mut client = connected(&simnet, 70016).await;
    let streamed = stream_block(&mut client, small.hash, None).await;
    assert!(end_of(&streamed).merkle_matches());
    simnet.shutdown().await;
}

#[tokio::test]
async fn announce_synthetic_sends_an_inv_of_the_block() {
    let simnet = simnet(Misbehaviour::None).await;
    let info = simnet
        .add_synthetic_block(SyntheticSpec::new(10_000).tx_size(1_000))
        .await
        .expect("registers");
    let mut client = connected(&simnet, 70016).await;
    simnet.announce_synthetic(&info.hash).expect("registered");
    let seen = client.recv_until("inv").await;
    assert_eq!(
        seen.last(),
        Some(&Message::Inv(vec![InvVect::block(info.hash)]))
    );
    assert!(simnet.remove_synthetic_block(&info.hash));
    assert!(simnet.announce_synthetic(&info.hash).is_err());
    simnet.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn trickle_blocks_writes_a_synthetic_block_at_the_set_rate() {
    let simnet = simnet(Misbehaviour::TrickleBlocks {
        bytes_per_second: 10_000,
    })
    .await;
    let info = simnet
        .add_synthetic_block(SyntheticSpec::new(20_000).tx_size(1_000))
        .await
        .expect("registers");
    let mut client = connected(&simnet, 70016).await;
    let started = tokio::time::Instant::now();
    let streamed = stream_block(&mut client, info.hash, None).await;
    let took = started.elapsed();
    assert!(end_of(&streamed).merkle_matches());
    // The 24-byte header, then 20,000 bytes in slices of 1,000 every 0.1 s: the last slice
    // goes out about 1.9 s after the first.
    assert!(
        took >= Duration::from_millis(1_800) && took <= Duration::from_millis(2_300),
        "took {took:?}"
    );
    simnet.shutdown().await;
}
