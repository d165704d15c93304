//! The streaming block decoder (`codec::block_stream`) against the whole-frame decoder: the real
//! mainnet block 825188 in chunks of every size, corrupted copies, random blocks in random
//! chunkings, txid-only mode, a 64 MiB block in bounded memory, and declared lengths that do not
//! match the content.

mod common;

use bitcoinsv::bitcoin::Network;
use bitcoinsv::bitcoin::{
    merkle_root, sha256d, Block, BlockHeader, Decode, Encode, Hash, OutPoint, Transaction, TxIn,
    TxOut,
};
use bitcoinsv::p2p::codec::{
    frame_bytes, BlockEnd, BlockEvent, BlockStreamConfig, BlockStreamDecoder, BlockStreamError,
    ChecksumStatus, FrameHeader, MessageCodec, TxMode,
};
use bitcoinsv::p2p::Message;
use bytes::{Bytes, BytesMut};
use common::{data, REAL_BLOCK_HASH};
use proptest::prelude::*;

fn real_block() -> Vec<u8> {
    data(&format!("{REAL_BLOCK_HASH}.bin"))
}

/// The frame checksum of a payload.
fn checksum(payload: &[u8]) -> [u8; 4] {
    let h = sha256d(payload);
    [h.0[0], h.0[1], h.0[2], h.0[3]]
}

/// The whole-frame decoder's view of a payload.
fn whole_decode(payload: &[u8]) -> Block {
    let frame = frame_bytes(Network::Mainnet.magic(), "block", payload);
    let mut buf = BytesMut::from(&frame[..]);
    match MessageCodec::new(Network::Mainnet).decode(&mut buf) {
        Ok(Some(Message::Block(b))) => b,
        other => panic!("whole decoder: {other:?}"),
    }
}

/// Feeds `payload` in chunks of `chunk` bytes, draining events after each feed; returns the
/// events and the first error (feeding stops there).
fn stream(
    payload: &[u8],
    decoder: &mut BlockStreamDecoder,
    chunk: usize,
) -> (Vec<BlockEvent>, Result<(), BlockStreamError>) {
    let mut events = Vec::new();
    for piece in payload.chunks(chunk.max(1)) {
        let r = decoder.feed(piece);
        events.extend(std::iter::from_fn(|| decoder.next_event()));
        if r.is_err() {
            return (events, r);
        }
    }
    let r = decoder.finish();
    (events, r)
}

/// Splits events into header, count, transactions and end, asserting their order.
fn whole_parts(
    events: &[BlockEvent],
) -> (BlockHeader, u64, Vec<(u64, Hash, Transaction)>, BlockEnd) {
    let mut it = events.iter();
    let Some(BlockEvent::Header(header)) = it.next() else {
        panic!("first event is not the header: {events:?}")
    };
    let Some(BlockEvent::TxCount(count)) = it.next() else {
        panic!("second event is not the count")
    };
    let mut txs = Vec::new();
    let mut end = None;
    for e in it {
        match e {
            BlockEvent::Transaction {
                index,
                offset,
                txid,
                tx,
            } => {
                assert_eq!(*index, txs.len() as u64);
                assert!(end.is_none());
                txs.push((*offset, *txid, tx.clone()));
            }
            BlockEvent::End(e) => end = Some(*e),
            other => panic!("unexpected {other:?}"),
        }
    }
    (*header, *count, txs, end.expect("an end event"))
}

#[test]
fn real_block_streams_in_chunks_of_1_7_4096_and_all_at_once_like_the_whole_decoder() {
    let raw = real_block();
    let block = whole_decode(&raw);
    let sum = checksum(&raw);
    for chunk in [1, 7, 4096, raw.len()] {
        let mut d =
            BlockStreamDecoder::new(raw.len() as u64, Some(sum), BlockStreamConfig::default());
        let (events, r) = stream(&raw, &mut d, chunk);
        assert_eq!(r, Ok(()), "chunk {chunk}");
        let (header, count, txs, end) = whole_parts(&events);
        assert_eq!(header, block.header);
        assert_eq!(count, 222);
        assert_eq!(txs.len(), 222);
        let mut offset = 81u64;
        for ((off, txid, tx), expected) in txs.iter().zip(&block.transactions) {
            assert_eq!(tx, expected);
            assert_eq!(*txid, expected.txid());
            assert_eq!(*off, offset);
            offset += expected.size() as u64;
        }
        assert_eq!(end.checksum, ChecksumStatus::Matched);
        assert!(end.merkle_matches());
        assert_eq!(end.computed_merkle_root, block.compute_merkle_root());
        assert_eq!(end.tx_count, 222);
        assert_eq!(end.length, raw.len() as u64);
        assert!(d.is_done());
        assert!(d.peak_buffered_bytes() <= BlockStreamConfig::default().window);
    }
}

#[test]
fn the_decoder_is_built_from_a_frame_header_basic_or_extended() {
    let raw = real_block();
    let frame = frame_bytes(Network::Mainnet.magic(), "block", &raw);
    let header = FrameHeader::parse(&frame).unwrap().unwrap();
    assert!(!header.extended);
    let mut d = BlockStreamDecoder::for_frame(&header, BlockStreamConfig::txid_only());
    let (events, r) = stream(&raw, &mut d, 1000);
    assert_eq!(r, Ok(()));
    let Some(BlockEvent::End(end)) = events.last() else {
        panic!("no end")
    };
    assert_eq!(end.checksum, ChecksumStatus::Matched);
    let ext = FrameHeader {
        extended: true,
        checksum: [0; 4],
        ..header
    };
    let mut d = BlockStreamDecoder::for_frame(&ext, BlockStreamConfig::txid_only());
    let (events, r) = stream(&raw, &mut d, 1000);
    assert_eq!(r, Ok(()));
    let Some(BlockEvent::End(end)) = events.last() else {
        panic!("no end")
    };
    assert_eq!(end.checksum, ChecksumStatus::NotApplicable);
    assert!(end.merkle_matches());
}

#[test]
fn txid_only_mode_yields_the_same_txids_offsets_and_lengths_and_keeps_no_transaction_bytes() {
    let raw = real_block();
    let block = whole_decode(&raw);
    for chunk in [1, 7, 4096, raw.len()] {
        let mut d = BlockStreamDecoder::new(
            raw.len() as u64,
            Some(checksum(&raw)),
            BlockStreamConfig::txid_only(),
        );
        let (events, r) = stream(&raw, &mut d, chunk);
        assert_eq!(r, Ok(()));
        let ids: Vec<(u64, Hash, u64, u64)> = events
            .iter()
            .filter_map(|e| match e {
                BlockEvent::TxId {
                    index,
                    txid,
                    offset,
                    length,
                } => Some((*index, *txid, *offset, *length)),
                _ => None,
            })
            .collect();
        assert_eq!(ids.len(), 222);
        let mut offset = 81u64;
        for (i, ((index, txid, off, len), tx)) in ids.iter().zip(&block.transactions).enumerate() {
            assert_eq!(*index, i as u64);
            assert_eq!(*txid, tx.txid());
            assert_eq!(*off, offset);
            assert_eq!(*len, tx.size() as u64);
            // The offset and length find the transaction's bytes in the passed-through payload.
            let (s, e) = (*off as usize, (*off + *len) as usize);
            assert_eq!(&raw[s..e], &tx.raw()[..]);
            offset += *len;
        }
        assert!(d.peak_buffered_bytes() <= 80, "chunk {chunk}");
        let Some(BlockEvent::End(end)) = events.last() else {
            panic!("no end")
        };
        assert!(end.merkle_matches());
        assert_eq!(end.checksum, ChecksumStatus::Matched);
    }
}

#[test]
fn each_chunk_can_be_forwarded_to_a_sink_while_the_decoder_verifies_it() {
    let raw = real_block();
    let mut d = BlockStreamDecoder::new(
        raw.len() as u64,
        Some(checksum(&raw)),
        BlockStreamConfig::txid_only(),
    );
    let mut sink: Vec<u8> = Vec::new();
    let mut offsets = Vec::new();
    for piece in raw.chunks(333) {
        d.feed(piece).unwrap();
        sink.extend_from_slice(piece);
        while let Some(e) = d.next_event() {
            if let BlockEvent::TxId {
                txid,
                offset,
                length,
                ..
            } = e
            {
                offsets.push((txid, offset, length));
            }
        }
    }
    assert_eq!(sink, raw);
    // Every transaction can be read back from the sink at the offset and length given.
    for (txid, offset, length) in offsets {
        let bytes = &sink[offset as usize..(offset + length) as usize];
        assert_eq!(Transaction::decode_exact(bytes).unwrap().txid(), txid);
    }
}

#[test]
fn a_corrupted_transaction_byte_gives_a_merkle_mismatch_at_the_end_and_the_stream_before_it_is_intact(
) {
    let raw = real_block();
    let good_sum = checksum(&raw);
    let block = whole_decode(&raw);
    // The last byte of transaction 100 (its lock time): the transaction still parses.
    let start: usize = 81
        + block.transactions[..100]
            .iter()
            .map(Transaction::size)
            .sum::<usize>();
    let at = start + block.transactions[100].size() - 1;
    let mut bad = raw.clone();
    bad[at] ^= 0x01;
    for chunk in [1, 7, 4096] {
        let mut d = BlockStreamDecoder::new(
            bad.len() as u64,
            Some(good_sum),
            BlockStreamConfig::default(),
        );
        let (events, r) = stream(&bad, &mut d, chunk);
        assert_eq!(r, Ok(()));
        let (header, _, txs, end) = whole_parts(&events);
        assert_eq!(header, block.header);
        for (i, (_, txid, tx)) in txs.iter().enumerate() {
            if i == 100 {
                assert_ne!(tx, &block.transactions[i]);
            } else {
                assert_eq!(tx, &block.transactions[i]);
                assert_eq!(*txid, block.transactions[i].txid());
            }
        }
        assert!(!end.merkle_matches());
        assert_eq!(end.header_merkle_root, block.header.merkle_root);
        assert!(
            matches!(end.checksum, ChecksumStatus::Mismatched { expected, .. } if expected == good_sum)
        );
        assert!(!end.checksum_ok());
    }
}

#[test]
fn a_corrupted_input_count_is_a_typed_error_after_the_intact_transactions_before_it() {
    let raw = real_block();
    let block = whole_decode(&raw);
    let start: usize = 81
        + block.transactions[..50]
            .iter()
            .map(Transaction::size)
            .sum::<usize>();
    // Transaction 50's input count, made huge: no room for that many inputs.
    let mut bad = raw.clone();
    bad[start + 4] = 0xFE;
    let mut d = BlockStreamDecoder::new(bad.len() as u64, None, BlockStreamConfig::default());
    let (events, r) = stream(&bad, &mut d, 7);
    assert!(
        matches!(
            r,
            Err(BlockStreamError::CountTooLarge { what: "input", .. })
                | Err(BlockStreamError::NonCanonicalVarInt { .. })
        ),
        "{r:?}"
    );
    let txs: Vec<&Transaction> = events
        .iter()
        .filter_map(|e| match e {
            BlockEvent::Transaction { tx, .. } => Some(tx),
            _ => None,
        })
        .collect();
    assert_eq!(txs.len(), 50);
    for (tx, expected) in txs.iter().zip(&block.transactions) {
        assert_eq!(*tx, expected);
    }
    assert_eq!(d.feed(&[0]), Err(BlockStreamError::Failed));
}

#[test]
fn the_corrupt_merkle_copy_streams_to_a_merkle_mismatch() {
    let raw = data("corrupted/corrupt_merkle.bin");
    let mut d = BlockStreamDecoder::new(
        raw.len() as u64,
        Some(checksum(&raw)),
        BlockStreamConfig::txid_only(),
    );
    let (events, r) = stream(&raw, &mut d, 4096);
    assert_eq!(r, Ok(()));
    let Some(BlockEvent::End(end)) = events.last() else {
        panic!("no end")
    };
    assert!(!end.merkle_matches());
    assert_eq!(end.checksum, ChecksumStatus::Matched);
}

#[test]
fn declared_lengths_that_do_not_match_the_content_are_typed_errors() {
    let raw = real_block();
    let n = raw.len() as u64;
    // Declared one short: the declared end falls inside the last transaction.
    let mut d = BlockStreamDecoder::new(n - 1, None, BlockStreamConfig::default());
    let (_, r) = stream(&raw[..raw.len() - 1], &mut d, 4096);
    assert!(
        matches!(r, Err(BlockStreamError::ContentLongerThanDeclared { declared, .. }) if declared == n - 1),
        "{r:?}"
    );
    // Declared one long: the last transaction ends before the declared end.
    let mut long = raw.clone();
    long.push(0);
    let mut d = BlockStreamDecoder::new(n + 1, None, BlockStreamConfig::default());
    let (events, r) = stream(&long, &mut d, 1);
    assert_eq!(
        r,
        Err(BlockStreamError::ContentShorterThanDeclared {
            declared: n + 1,
            end: n
        })
    );
    assert!(!events.iter().any(|e| matches!(e, BlockEvent::End(_))));
    // The too_long copy with its own length declared: a trailing byte.
    let too_long = data("corrupted/too_long.bin");
    let mut d = BlockStreamDecoder::new(too_long.len() as u64, None, BlockStreamConfig::default());
    let (_, r) = stream(&too_long, &mut d, 4096);
    assert!(
        matches!(r, Err(BlockStreamError::ContentShorterThanDeclared { .. })),
        "{r:?}"
    );
    // The too_small copy: the content runs past the declared end.
    let too_small = data("corrupted/too_small.bin");
    let mut d = BlockStreamDecoder::new(too_small.len() as u64, None, BlockStreamConfig::default());
    let (_, r) = stream(&too_small, &mut d, 4096);
    assert!(
        matches!(r, Err(BlockStreamError::ContentLongerThanDeclared { .. })),
        "{r:?}"
    );
    // Bytes fed past the declared end: the block completes, then the extra bytes are refused.
    let mut d = BlockStreamDecoder::new(n, None, BlockStreamConfig::default());
    let r = d.feed(&long);
    assert_eq!(
        r,
        Err(BlockStreamError::BeyondDeclaredLength {
            declared: n,
            extra: 1
        })
    );
    let events: Vec<_> = std::iter::from_fn(|| d.next_event()).collect();
    assert!(matches!(events.last(), Some(BlockEvent::End(e)) if e.merkle_matches()));
    // The input stopping early.
    let mut d = BlockStreamDecoder::new(n, None, BlockStreamConfig::default());
    d.feed(&raw[..1000]).unwrap();
    assert_eq!(
        d.finish(),
        Err(BlockStreamError::Incomplete {
            declared: n,
            received: 1000
        })
    );
    // A transaction count the declared length cannot hold.
    let mut d = BlockStreamDecoder::new(200, None, BlockStreamConfig::default());
    let r = d.feed(&raw[..200]);
    assert!(
        matches!(
            r,
            Err(BlockStreamError::CountTooLarge {
                what: "transaction",
                count: 222,
                ..
            })
        ),
        "{r:?}"
    );
}

fn sample_tx(tag: u32, script_len: usize, outputs: usize) -> Transaction {
    Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint {
                txid: Hash([tag as u8; 32]),
                vout: tag,
            },
            script_sig: Bytes::from(vec![(tag % 251) as u8; script_len]),
            sequence: u32::MAX,
        }],
        (0..outputs)
            .map(|i| TxOut {
                value: i as i64,
                script_pubkey: Bytes::from(vec![0x51; i % 300]),
            })
            .collect(),
        tag,
    )
}

fn build_payload(txs: Vec<Transaction>) -> Vec<u8> {
    let mut header = BlockHeader::decode_exact(&[0u8; 80]).unwrap();
    header.merkle_root = merkle_root(txs.iter().map(Transaction::txid).collect());
    Block {
        header,
        transactions: txs,
    }
    .to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_blocks_in_random_chunkings_stream_like_the_whole_decoder(
        shapes in prop::collection::vec((0usize..70_000, 0usize..5), 0..6),
        cuts in prop::collection::vec(1usize..5000, 1..40),
        txid_only in any::<bool>(),
    ) {
        let txs: Vec<Transaction> = shapes
            .iter()
            .enumerate()
            .map(|(i, (len, outs))| sample_tx(i as u32, *len, *outs))
            .collect();
        let payload = build_payload(txs);
        let block = whole_decode(&payload);
        let config = if txid_only { BlockStreamConfig::txid_only() } else { BlockStreamConfig::default() };
        let mut d = BlockStreamDecoder::new(payload.len() as u64, Some(checksum(&payload)), config);
        let mut events = Vec::new();
        let mut rest = &payload[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            let (piece, tail) = rest.split_at(n);
            d.feed(piece).unwrap();
            events.extend(std::iter::from_fn(|| d.next_event()));
            rest = tail;
        }
        prop_assert_eq!(d.finish(), Ok(()));
        prop_assert_eq!(&events[0], &BlockEvent::Header(block.header));
        prop_assert_eq!(&events[1], &BlockEvent::TxCount(block.transactions.len() as u64));
        let mut offset = 80 + bitcoinsv::bitcoin::VarInt::size(block.transactions.len() as u64) as u64;
        for (i, tx) in block.transactions.iter().enumerate() {
            let expected = if txid_only {
                BlockEvent::TxId { index: i as u64, txid: tx.txid(), offset, length: tx.size() as u64 }
            } else {
                BlockEvent::Transaction { index: i as u64, offset, txid: tx.txid(), tx: tx.clone() }
            };
            prop_assert_eq!(&events[2 + i], &expected);
            offset += tx.size() as u64;
        }
        let Some(BlockEvent::End(end)) = events.last() else { panic!("no end") };
        prop_assert_eq!(events.len(), 3 + block.transactions.len());
        prop_assert_eq!(end.checksum, ChecksumStatus::Matched);
        prop_assert_eq!(end.merkle_matches(), block.check_merkle_root().is_ok());
        prop_assert_eq!(end.computed_merkle_root, block.compute_merkle_root());
    }
}

#[test]
fn a_64_mib_block_streams_in_txid_only_mode_within_a_small_window() {
    const WINDOW: usize = 64 * 1024;
    // 64 transactions of about 1 MiB each: 16 times the window.
    let txs: Vec<Transaction> = (0..64).map(|i| sample_tx(i, 1024 * 1024, 2)).collect();
    let lengths: Vec<u64> = txs.iter().map(|t| t.size() as u64).collect();
    let (first, last) = (txs[0].clone(), txs[63].clone());
    // The header's merkle root is left zero (hashing 64 MiB twice more in a debug build is
    // slow); the end event's root is compared with the root of the txids streamed instead.
    let mut header = BlockHeader::decode_exact(&[0u8; 80]).unwrap();
    header.merkle_root = Hash::ZERO;
    let payload = Block {
        header,
        transactions: txs,
    }
    .to_vec();
    assert!(payload.len() > 64 * 1024 * 1024);
    let config = BlockStreamConfig {
        mode: TxMode::TxidOnly,
        window: WINDOW,
        ..BlockStreamConfig::default()
    };
    let mut d = BlockStreamDecoder::new(payload.len() as u64, None, config);
    let mut txids = Vec::new();
    let mut end = None;
    let mut peak = 0;
    for piece in payload.chunks(64 * 1024 + 3) {
        d.feed(piece).unwrap();
        peak = peak.max(d.buffered_bytes());
        while let Some(e) = d.next_event() {
            match e {
                BlockEvent::TxId {
                    txid,
                    length,
                    index,
                    ..
                } => {
                    assert_eq!(length, lengths[index as usize]);
                    txids.push(txid);
                }
                BlockEvent::End(e) => end = Some(e),
                _ => {}
            }
        }
    }
    assert!(peak < WINDOW);
    assert!(d.peak_buffered_bytes() < WINDOW);
    assert!(d.peak_buffered_bytes() <= 80);
    assert_eq!(txids.len(), 64);
    assert_eq!(txids[0], first.txid());
    assert_eq!(txids[63], last.txid());
    let end = end.expect("end");
    assert_eq!(end.computed_merkle_root, merkle_root(txids));
    assert!(!end.merkle_matches());
    // The same block in whole mode with that window refuses the first transaction.
    let mut d = BlockStreamDecoder::new(
        payload.len() as u64,
        None,
        BlockStreamConfig {
            mode: TxMode::Whole,
            ..config
        },
    );
    let r = payload.chunks(4096).try_for_each(|p| d.feed(p));
    assert!(
        matches!(r, Err(BlockStreamError::TxExceedsWindow { index: 0, .. })),
        "{r:?}"
    );
    assert!(d.peak_buffered_bytes() <= WINDOW);
}

/// Streams `payload` (no checksum) in pieces cut at `cuts`, returning the outcome and events.
fn stream_cuts(
    payload: &[u8],
    config: BlockStreamConfig,
    cuts: &[usize],
) -> (Vec<BlockEvent>, Result<(), BlockStreamError>) {
    let mut d = BlockStreamDecoder::new(payload.len() as u64, None, config);
    let mut events = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let n = cuts
            .get(i % cuts.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, rest.len());
        i += 1;
        let (piece, tail) = rest.split_at(n);
        let r = d.feed(piece);
        events.extend(std::iter::from_fn(|| d.next_event()));
        if r.is_err() {
            return (events, r);
        }
        rest = tail;
    }
    let r = d.finish();
    (events, r)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Damaged blocks (a byte changed, bytes cut off or added) never panic the decoder, and it
    /// accepts exactly what the whole decoder accepts, with the same transactions.
    #[test]
    fn damaged_blocks_are_accepted_by_the_stream_iff_by_the_whole_decoder(
        shapes in prop::collection::vec((0usize..600, 0usize..4), 0..5),
        damage in 0usize..3,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cuts in prop::collection::vec(1usize..300, 1..20),
        txid_only in any::<bool>(),
    ) {
        let txs: Vec<Transaction> = shapes
            .iter()
            .enumerate()
            .map(|(i, (len, outs))| sample_tx(i as u32, *len, *outs))
            .collect();
        let mut payload = build_payload(txs);
        let i = at.index(payload.len());
        match damage {
            0 => payload[i] = byte,
            1 => payload.truncate(i),
            _ => payload.insert(i, byte),
        }
        let whole = Block::decode_exact(&payload);
        let config = if txid_only { BlockStreamConfig::txid_only() } else { BlockStreamConfig::default() };
        let (events, r) = stream_cuts(&payload, config, &cuts);
        prop_assert_eq!(whole.is_ok(), r.is_ok(), "whole {:?}, stream {:?}", whole, r);
        if let Ok(block) = whole {
            let txids: Vec<Hash> = events
                .iter()
                .filter_map(|e| match e {
                    BlockEvent::Transaction { txid, tx, .. } => {
                        assert_eq!(*txid, tx.txid());
                        Some(*txid)
                    }
                    BlockEvent::TxId { txid, .. } => Some(*txid),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(txids, block.transactions.iter().map(Transaction::txid).collect::<Vec<_>>());
            let Some(BlockEvent::End(end)) = events.last() else { panic!("no end") };
            prop_assert_eq!(end.merkle_matches(), block.check_merkle_root().is_ok());
        }
    }
}
