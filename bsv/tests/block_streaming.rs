//! Blocks of any size between two managers over loopback (docs/GUIDE.md, "Blocks of any size"):
//! one serves a synthetic block from a file (`send_block_file`, never loading it), the other
//! receives it as a `BlockStream` (`subscribe_block_streams`) verified as it passes, in memory
//! bounded by the stream window and the manager-wide budget whatever the block's size.
//!
//! Memory is the process's resident set from `/proc/self/status`: the peak (`VmHWM`, reset
//! through `/proc/self/clear_refs`) against the resident set before the block. The tests of this
//! file run one at a time (a lock), since the resident set is per process.

#[path = "common/process.rs"]
mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::{Hash, Network};
use bitcoinsv::p2p::codec::BlockStreamError;
use bitcoinsv::p2p::connection::DisconnectReason;
use bitcoinsv::p2p::{
    BlockPart, BlockStreamFailure, BlockStreamMode, ControlEvent, InMemoryPeerStore, Manager,
    ManagerConfig,
};
use bitcoinsv_simnet::{
    Corruption, Misbehaviour, SimNet, SimNetConfig, SyntheticBlock, SyntheticSpec,
};
use tokio::sync::Mutex;

const MIB: u64 = 1024 * 1024;
const WAIT: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::const_new(());

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

    let baseline = process::status_kib("VmRSS:");
    process::reset_peak();
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
    let peak = process::status_kib("VmHWM:");
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
    c.block_streaming.window = 4 * MIB as usize;
    c.block_streaming.budget = 8 * MIB as usize;
    let (b, addr) = receiver(c).await;
    let mut streams = b.subscribe_block_streams(BlockStreamMode::Raw, 4);
    let mut senders = Vec::new();
    let mut blocks = Vec::new();
    for seed in 10..14u64 {
        let (path, block) = block_file(dir.path(), seed, 64 * MIB);
        let (a, peer) = sender(addr).await;
        senders.push((a, peer, path));
        blocks.push(block);
    }
    let baseline = process::status_kib("VmRSS:");
    process::reset_peak();
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
    let mut received = Vec::new();
    for mut stream in got {
        let mut bytes = 0u64;
        while let Some(part) = stream.next().await {
            if let BlockPart::Bytes(b) = part.unwrap() {
                bytes += b.len() as u64;
            }
        }
        let block = blocks
            .iter()
            .find(|b| b.hash() == stream.hash())
            .expect("one of the four blocks");
        assert_eq!((bytes, stream.len()), (block.len(), block.len()));
        let end = stream.verified().expect("verified");
        assert_eq!(end.tx_count, block.tx_count());
        received.push(stream.hash());
    }
    received.sort();
    received.dedup();
    assert_eq!(received.len(), 4, "each block exactly once");
    let peak = process::status_kib("VmHWM:");
    let above = peak.saturating_sub(baseline) / 1024;
    eprintln!("four 64 MiB blocks at once: peak resident {above} MiB above baseline");
    // The budget (8 MiB) plus each connection's read buffer and decoder, the senders' read
    // buffers (1 MiB each) and the allocator's slack.
    assert!(above < 40, "peak {above} MiB above baseline");
    let mut sent = Vec::new();
    for t in tasks {
        let (a, n) = t.await.unwrap();
        sent.push(n.unwrap());
        a.shutdown().await.unwrap();
    }
    let mut sizes = sizes;
    sizes.sort_unstable();
    sent.sort_unstable();
    assert_eq!(sent, sizes, "every sender wrote its whole block");
    b.shutdown().await.unwrap();
}

/// A manager connected to every node of `net`.
async fn manager_on(net: &SimNet, c: ManagerConfig) -> Manager {
    let m = Manager::with_fixed_peers(c, Arc::new(InMemoryPeerStore::new()), net.addresses());
    m.start().await.unwrap();
    m.wait_for_connections(net.len(), WAIT).await.unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_block_from_the_simnet_streams_through_get_block_stream_in_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(1))
        .await
        .unwrap();
    let info = net
        .add_synthetic_block(SyntheticSpec::new(256 * MIB).tx_size(1000).seed(7))
        .await
        .unwrap();
    let m = manager_on(&net, config()).await;
    let baseline = process::status_kib("VmRSS:");
    process::reset_peak();
    let mut stream = m
        .get_block_stream(info.hash, BlockStreamMode::Transactions)
        .await
        .unwrap();
    assert_eq!((stream.hash(), stream.len()), (info.hash, info.len));
    let mut n = 0u64;
    while let Some(part) = stream.next().await {
        let BlockPart::Transaction {
            index, txid, tx, ..
        } = part.unwrap()
        else {
            panic!("Transactions mode delivers transactions");
        };
        assert_eq!((index, txid), (n, tx.txid()));
        n += 1;
    }
    let end = stream.verified().copied().expect("verified");
    assert_eq!((n, end.tx_count), (info.tx_count, info.tx_count));
    let above = process::status_kib("VmHWM:").saturating_sub(baseline) / 1024;
    eprintln!("256 MiB simnet block: peak resident {above} MiB above baseline");
    assert!(above < 64, "peak {above} MiB above baseline");
    m.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_transaction_mid_block_is_a_typed_error_a_bad_checksum_is_found_and_a_bad_merkle_root_costs_the_node_100(
) {
    let _serial = SERIAL.lock().await;
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(1))
        .await
        .unwrap();
    let spec = |c| {
        SyntheticSpec::new(40 * MIB)
            .tx_size(1000)
            .seed(8)
            .corruption(c)
    };
    let malformed = net
        .add_synthetic_block(spec(Corruption::Malformed { tx_index: 20_000 }))
        .await
        .unwrap();
    let corrupt = net
        .add_synthetic_block(spec(Corruption::MerkleMismatch { tx_index: 20_000 }))
        .await
        .unwrap();
    let bad_sum = net
        .add_synthetic_block(spec(Corruption::WrongChecksum))
        .await
        .unwrap();
    let m = manager_on(&net, config()).await;
    let mut events = m.subscribe_control_events();

    // A layout the node could not parse: the stream fails where the transaction does; the
    // connection answers as it answers a buffered block that does not parse (reject, no score).
    let mut stream = m
        .get_block_stream(malformed.hash, BlockStreamMode::TxIds)
        .await
        .unwrap();
    let mut before = 0;
    let failure = loop {
        match stream.next().await.expect("an error before the end") {
            Ok(_) => before += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            failure,
            BlockStreamFailure::Malformed(BlockStreamError::NonCanonicalVarInt { .. })
        ),
        "{failure:?}"
    );
    assert_eq!(
        before, 20_000,
        "the transactions before the bad one were delivered"
    );
    assert_eq!(m.connected_peers()[0].misbehavior_score, 0);

    // Intact transactions in a frame whose checksum is wrong (hashed on the checksum worker's
    // core): every transaction is delivered, the end says the checksum did not match, and the
    // peer pays nothing (the node drops such a frame and counts only a run of them).
    let mut stream = m
        .get_block_stream(bad_sum.hash, BlockStreamMode::TxIds)
        .await
        .unwrap();
    let mut delivered = 0u64;
    let failure = loop {
        match stream.next().await.expect("an error at the end") {
            Ok(_) => delivered += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(failure, BlockStreamFailure::ChecksumMismatch { expected, actual }
            if expected[0] ^ actual[0] == 1 && expected[1..] == actual[1..]),
        "{failure:?}"
    );
    assert_eq!(delivered, bad_sum.tx_count);
    assert_eq!(m.connected_peers()[0].misbehavior_score, 0);

    // A bad merkle root: `bad-txnmrklroot`, 100, a ban.
    let mut stream = m
        .get_block_stream(corrupt.hash, BlockStreamMode::TxIds)
        .await
        .unwrap();
    let failure = loop {
        if let Err(e) = stream.next().await.expect("an error at the end") {
            break e;
        }
    };
    assert!(
        matches!(failure, BlockStreamFailure::MerkleMismatch { .. }),
        "{failure:?}"
    );
    let reason = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(ControlEvent::PeerBanned { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    })
    .await
    .unwrap();
    assert!(reason.to_string().contains("bad-txnmrklroot"), "{reason}");
    m.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_trickled_below_the_minimum_rate_is_abandoned_and_the_peer_disconnected() {
    let _serial = SERIAL.lock().await;
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(1)
            .with_misbehaviour(
                0,
                Misbehaviour::TrickleBlocks {
                    bytes_per_second: 20_000,
                },
            ),
    )
    .await
    .unwrap();
    let info = net
        .add_synthetic_block(SyntheticSpec::new(40 * MIB).tx_size(1000))
        .await
        .unwrap();
    let mut c = config();
    // The node's rule scaled down so the test takes about a second: 100 kB/s over 1 s.
    c.block_streaming.stall_timeout = Duration::from_secs(1);
    let m = manager_on(&net, c).await;
    let mut events = m.subscribe_control_events();
    let mut stream = m
        .get_block_stream(info.hash, BlockStreamMode::TxIds)
        .await
        .unwrap();
    let failure = loop {
        if let Err(e) = stream.next().await.expect("a failure") {
            break e;
        }
    };
    assert!(
        matches!(failure, BlockStreamFailure::Stalled { within, .. } if within == Duration::from_secs(1)),
        "{failure:?}"
    );
    let reason = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(ControlEvent::ConnectionLost { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(reason, DisconnectReason::BlockStalled { .. }),
        "{reason:?}"
    );
    m.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test]
async fn a_5_gib_extmsg_block_frames_and_parses_through_the_streaming_decoder_generated_on_the_fly()
{
    use bitcoinsv::p2p::codec::{
        BlockEvent, BlockStreamConfig, BlockStreamDecoder, ChecksumStatus, Decoded, MessageCodec,
        RecvLimits,
    };
    // A placeholder merkle root: computing the real one is a pass over 5 GiB, which an
    // unoptimised build takes minutes over; everything else is the real layout.
    let block = SyntheticBlock::with_corruption(
        5,
        Hash::ZERO,
        5 * 1024 * MIB,
        1_000_000,
        Some(Corruption::PlaceholderMerkleRoot),
    );
    // Above the default 4 GiB cap on blocks: an application that wants such blocks raises it.
    let mut codec = MessageCodec::new(Network::Regtest).with_recv_limits(RecvLimits {
        max_block: 8 * 1024 * MIB,
        ..RecvLimits::default()
    });
    codec.set_stream_threshold(Some(32 * MIB));
    let mut buf = bytes::BytesMut::from(&block.frame_header_bytes(Network::Regtest.magic())[..]);
    let Ok(Some(Decoded::BlockStart(header))) = codec.decode_next(&mut buf) else {
        panic!("an extmsg block header");
    };
    assert!(header.extended);
    assert_eq!(header.length, block.len());
    assert!(header.length > u64::from(u32::MAX));
    let mut decoder = BlockStreamDecoder::for_frame(&header, BlockStreamConfig::txid_only());
    let mut txs = 0u64;
    let mut next_offset = 0;
    let mut end = None;
    for chunk in block.chunks(4 * MIB as usize) {
        decoder.feed(&chunk).unwrap();
        while let Some(e) = decoder.next_event() {
            match e {
                BlockEvent::TxId {
                    index,
                    offset,
                    length,
                    ..
                } => {
                    assert_eq!(index, txs);
                    assert!(
                        txs == 0 || offset == next_offset,
                        "transactions are contiguous"
                    );
                    next_offset = offset + length;
                    txs += 1;
                }
                BlockEvent::End(e) => end = Some(e),
                _ => {}
            }
        }
        assert!(
            decoder.buffered_bytes() <= 80,
            "txid-only mode keeps no transaction bytes"
        );
    }
    let end = end.expect("the end");
    assert_eq!((end.tx_count, end.length), (block.tx_count(), block.len()));
    assert_eq!(next_offset, block.len());
    assert_eq!(end.checksum, ChecksumStatus::NotApplicable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_above_4_gib_is_refused_to_a_peer_below_70016_with_a_typed_error() {
    use bitcoinsv::bitcoin::NetAddress;
    use bitcoinsv::p2p::codec::{FramedStream, MessageCodec};
    use bitcoinsv::p2p::{CodecError, Message, P2pError, VersionMessage};
    let _serial = SERIAL.lock().await;
    let (b, addr) = receiver(config()).await;
    // A peer at 70015 (before `extmsg`), handshaking by hand.
    let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut peer = FramedStream::tcp(
        socket,
        MessageCodec::new(Network::Regtest),
        MessageCodec::new(Network::Regtest),
    );
    peer.send(&Message::Version(VersionMessage {
        version: 70015,
        services: 1,
        timestamp: 0,
        receiver: NetAddress::new(addr, 0),
        sender: NetAddress::UNSPECIFIED,
        nonce: 42,
        user_agent: "/old:0.1/".into(),
        start_height: 0,
        relay: true,
        association_id: None,
    }))
    .await
    .unwrap();
    peer.send(&Message::Verack).await.unwrap();
    b.wait_for_connections(1, WAIT).await.unwrap();
    let id = b.connected_peers()[0].peer_id;
    let block = SyntheticBlock::with_corruption(
        6,
        Hash::ZERO,
        5 * 1024 * MIB,
        1_000_000,
        Some(Corruption::PlaceholderMerkleRoot),
    );
    let err = b
        .send_block_stream(id, tokio::io::empty(), block.len(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, P2pError::Codec(CodecError::SendOversized { length, limit, .. })
            if length == block.len() && limit == u64::from(u32::MAX)),
        "{err:?}"
    );
    // Under 4 GiB a basic frame needs the checksum.
    let err = b
        .send_block_stream(id, tokio::io::empty(), 1000, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, P2pError::ChecksumRequired { length: 1000 }),
        "{err:?}"
    );
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_peer_client_streams_a_block_above_the_threshold_instead_of_buffering_it() {
    use bitcoinsv::bitcoin::InvVect;
    use bitcoinsv::p2p::{Message, PeerClient, PeerClientOptions};
    let _serial = SERIAL.lock().await;
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(1))
        .await
        .unwrap();
    let info = net
        .add_synthetic_block(SyntheticSpec::new(64 * MIB).tx_size(1000).seed(11))
        .await
        .unwrap();
    let options = PeerClientOptions {
        block_stream_mode: BlockStreamMode::TxIds,
        ..PeerClientOptions::default()
    };
    let mut client = PeerClient::start(&config(), net.addresses()[0], options).unwrap();
    client.established().await.unwrap();
    let mut streams = client.block_streams().expect("the receiver, once");
    assert!(client.block_streams().is_none());
    let baseline = process::status_kib("VmRSS:");
    process::reset_peak();
    client
        .send(Message::GetData(vec![InvVect::block(info.hash)]))
        .await
        .unwrap();
    let mut stream = tokio::time::timeout(WAIT, streams.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stream.hash(), stream.len()), (info.hash, info.len));
    let mut n = 0u64;
    while let Some(part) = stream.next().await {
        let BlockPart::TxId { index, .. } = part.unwrap() else {
            panic!("TxIds mode delivers txids");
        };
        assert_eq!(index, n);
        n += 1;
    }
    let end = stream.verified().copied().expect("verified");
    assert!(end.merkle_matches() && end.checksum_ok());
    assert_eq!(n, info.tx_count);
    let above = process::status_kib("VmHWM:").saturating_sub(baseline) / 1024;
    eprintln!("64 MiB block to a PeerClient: peak resident {above} MiB above baseline");
    assert!(above < 32, "peak {above} MiB above baseline");
    client.close().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_above_max_whole_tx_is_our_limit_not_the_peer_s_fault_and_txids_mode_reads_the_block(
) {
    let _serial = SERIAL.lock().await;
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(1))
        .await
        .unwrap();
    let info = net
        .add_synthetic_block(SyntheticSpec::new(4 * MIB).tx_size(4000).seed(12))
        .await
        .unwrap();
    let mut c = config();
    c.block_streaming.threshold = MIB;
    c.block_streaming.max_whole_tx = 1024;
    let m = manager_on(&net, c).await;
    let mut stream = m
        .get_block_stream(info.hash, BlockStreamMode::Transactions)
        .await
        .unwrap();
    let failure = loop {
        if let Err(e) = stream.next().await.expect("a failure") {
            break e;
        }
    };
    assert!(
        matches!(
            failure,
            BlockStreamFailure::TransactionTooLarge { limit: 1024, size, .. } if size > 1024
        ),
        "{failure:?}"
    );
    assert_eq!(m.connected_peers()[0].misbehavior_score, 0);
    let mut ids = m
        .get_block_stream(info.hash, BlockStreamMode::TxIds)
        .await
        .unwrap();
    let mut n = 0;
    while let Some(part) = ids.next().await {
        part.unwrap();
        n += 1;
    }
    assert_eq!(n, info.tx_count);
    assert!(ids.verified().is_some());
    m.shutdown().await.unwrap();
    net.shutdown().await;
}
