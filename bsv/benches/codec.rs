//! Wire codec benchmarks (docs/BENCHMARKS.md, "Wire codec").
//!
//! Decodes and encodes three frames that stand for the heavy traffic of a connection: a real
//! 159,219-byte mainnet block with 222 transactions, a full 2,000-entry `headers` and a 50,000-entry
//! `inv`. In the same run it measures the hashing those costs should be compared with: sha256d of
//! the block payload (the frame checksum alone), the txid of every transaction, and the merkle
//! root. The goals: decoding the block frame, checksum included, costs at most 1.3 × the sha256d
//! of its payload; the merkle root at most 1.3 × the txids.
//!
//! Run with `cargo bench -p bitcoinsv --bench codec`. The block is read from `testdata/data/` at the
//! root of the checkout, as the integration tests do.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcoinsv::bitcoin::{sha256d, Block, Decode, Hash, InvVect};
use bitcoinsv::p2p::codec::frame_bytes;
use bitcoinsv::p2p::{Message, MessageCodec, Network};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

#[path = "../tests/common/mod.rs"]
mod common;

/// Benchmarks decoding and encoding one frame.
fn bench_frame(c: &mut Criterion, group_name: &str, frame: &Bytes) {
    let msg = MessageCodec::new(Network::Mainnet)
        .decode(&mut BytesMut::from(&frame[..]))
        .expect("the frame decodes")
        .expect("the frame is complete");
    let mut sender = MessageCodec::new(Network::Mainnet);
    // `inv` of 50,000 entries is 1.8 MB: more than a peer accepts before its `protoconf`.
    sender.set_peer_max_recv(2 * 1024 * 1024);
    let mut out = BytesMut::with_capacity(frame.len());
    sender.encode(&msg, &mut out).expect("encodes");
    assert_eq!(&out[..], &frame[..], "re-encoding gives the same frame");

    let mut g = c.benchmark_group(group_name);
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("decode", |b| {
        // The copy into a fresh read buffer is set-up, not timed; so is dropping the message.
        // One buffer per iteration: a frame just read from a socket is hot in cache, not one of
        // a thousand prepared buffers streamed from memory.
        b.iter_batched(
            || BytesMut::from(&frame[..]),
            |mut buf| MessageCodec::new(Network::Mainnet).decode(&mut buf),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            sender.encode(black_box(&msg), &mut out).expect("encodes");
        })
    });
    g.finish();
}

fn block_benches(c: &mut Criterion) {
    let payload = Bytes::from(common::data(&format!("{}.bin", common::REAL_BLOCK_HASH)));
    let block = Block::decode_bytes(&payload).expect("the real block decodes");
    assert_eq!(block.transactions.len(), 222);
    assert_eq!(block.check_merkle_root(), Ok(()));
    let frame = frame_bytes(Network::Mainnet.magic(), "block", &payload);
    bench_frame(c, "block_frame", &frame);

    let mut g = c.benchmark_group("block_payload");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    // The parsing share of a block frame's decode: no framing, no checksum.
    g.bench_function("parse_only", |b| {
        b.iter(|| Block::decode_bytes(black_box(&payload)))
    });
    g.finish();

    let mut g = c.benchmark_group("block_hashing");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("sha256d_payload", |b| {
        b.iter(|| sha256d(black_box(&payload)))
    });
    g.bench_function("sha256d_all_txs", |b| {
        b.iter(|| {
            // Every txid, folded so none of them can be optimised away.
            black_box(&block)
                .transactions
                .iter()
                .fold(0u8, |acc, tx| acc ^ tx.txid().0[0])
        })
    });
    g.bench_function("merkle_root", |b| {
        b.iter(|| black_box(&block).compute_merkle_root())
    });
    g.finish();
}

fn list_benches(c: &mut Criterion) {
    let payload = Bytes::from(common::data(&format!("{}.bin", common::REAL_BLOCK_HASH)));
    let header = Block::decode_bytes(&payload).expect("decodes").header;
    let headers = (0..2000u32)
        .map(|i| {
            let mut h = header;
            h.nonce = i;
            h
        })
        .collect();
    let frame = MessageCodec::new(Network::Mainnet)
        .encode_to_bytes(&Message::Headers(headers))
        .expect("encodes");
    bench_frame(c, "headers_2000", &frame);

    let inv = (0..50_000u32)
        .map(|i| InvVect::tx(sha256d(&i.to_le_bytes())))
        .collect::<Vec<_>>();
    assert!(inv.iter().all(|v| v.hash != Hash::ZERO));
    let mut codec = MessageCodec::new(Network::Mainnet);
    codec.set_peer_max_recv(2 * 1024 * 1024);
    let frame = codec.encode_to_bytes(&Message::Inv(inv)).expect("encodes");
    bench_frame(c, "inv_50000", &frame);
}

/// Times `f` once, in nanoseconds. Its result is dropped after the clock stops, as criterion's
/// batched benchmarks do.
fn time_once<T>(f: impl FnOnce() -> T) -> f64 {
    let start = Instant::now();
    let out = black_box(f());
    let elapsed = start.elapsed().as_nanos() as f64;
    drop(out);
    elapsed
}

/// The two goals, measured interleaved: each round times the operation and its reference back to
/// back, so both see the same machine load (other work on a shared machine skews criterion's
/// groups, which run minutes apart). Reports the median of the per-round ratios and the ratio of
/// the fastest runs.
fn goal_ratios(_: &mut Criterion) {
    const ROUNDS: usize = 400;
    let payload = Bytes::from(common::data(&format!("{}.bin", common::REAL_BLOCK_HASH)));
    let block = Block::decode_bytes(&payload).expect("the real block decodes");
    let frame = frame_bytes(Network::Mainnet.magic(), "block", &payload);

    let report = |name: &str, pairs: &mut Vec<(f64, f64)>| {
        let fastest =
            |pick: fn(&(f64, f64)) -> f64| pairs.iter().map(pick).fold(f64::MAX, f64::min);
        let (best_op, best_ref) = (fastest(|p| p.0), fastest(|p| p.1));
        let mut ratios: Vec<f64> = pairs.iter().map(|(op, r)| op / r).collect();
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        println!(
            "goal {name}: median ratio {median:.3}, fastest {:.1} µs / {:.1} µs = {:.3} ({ROUNDS} interleaved rounds)",
            best_op / 1e3,
            best_ref / 1e3,
            best_op / best_ref
        );
    };

    let mut pairs = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let mut buf = BytesMut::from(&frame[..]);
        let op = time_once(|| MessageCodec::new(Network::Mainnet).decode(&mut buf));
        let reference = time_once(|| sha256d(black_box(&payload)));
        pairs.push((op, reference));
    }
    report("block frame decode / sha256d(payload) <= 1.3", &mut pairs);

    pairs.clear();
    for _ in 0..ROUNDS {
        let op = time_once(|| black_box(&block).compute_merkle_root());
        let reference = time_once(|| {
            black_box(&block)
                .transactions
                .iter()
                .fold(0u8, |acc, tx| acc ^ tx.txid().0[0])
        });
        pairs.push((op, reference));
    }
    report("merkle root / sha256d(all txs) <= 1.3", &mut pairs);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(60);
    targets = block_benches, list_benches, goal_ratios
}
criterion_main!(benches);
