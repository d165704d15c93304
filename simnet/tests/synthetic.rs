//! Synthetic blocks: decodable, deterministic, streamable in bounded memory.

use bitcoinsv::bitcoin::{Block, Decode, Hash, Network};
use bitcoinsv::p2p::codec::{
    BlockEvent, BlockStreamConfig, BlockStreamDecoder, ChecksumStatus, FrameHeader,
};
use bitcoinsv_simnet::synthetic::{Corruption, SyntheticBlock, MIN_FILLER_SIZE};
use std::sync::Arc;
use tokio::io::AsyncReadExt;

fn parent() -> Hash {
    Hash([7; 32])
}

fn collect(block: &SyntheticBlock, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in block.chunks(max) {
        assert!(chunk.len() <= max.max(128));
        out.extend_from_slice(&chunk);
    }
    out
}

#[test]
fn small_block_decodes_with_the_normal_decoder() {
    let block = SyntheticBlock::new(1, parent(), 200_000, 1_000);
    assert_eq!(block.len(), 200_000);
    let bytes = collect(&block, 4096);
    assert_eq!(bytes.len() as u64, block.len());
    let decoded = Block::decode_exact(&bytes).expect("decodes");
    assert_eq!(decoded.hash(), block.hash());
    assert_eq!(decoded.header, *block.header());
    assert_eq!(decoded.header.prev_hash, parent());
    decoded.check_merkle_root().expect("merkle root");
    assert!(decoded.header.check_proof_of_work());
    assert_eq!(decoded.transactions.len() as u64, block.tx_count());
    assert!(decoded.transactions[0].is_coinbase());
    for (i, tx) in decoded.transactions.iter().enumerate() {
        assert_eq!(Some(tx.size() as u64), block.tx_len(i as u64));
        if i > 0 && (i as u64) < block.tx_count() - 1 {
            assert_eq!(tx.size(), 1_000);
        }
    }
}

#[test]
fn sizes_are_exact_across_var_int_boundaries() {
    for (size, tx) in [
        (175 + 95, 95),
        (200_001, 1_000),
        (80 + 1 + 94 + 345 + 1, 346),
        (80 + 1 + 94 + 347, 347),
        (80 + 1 + 94 + 252 * 95, 95),
        (80 + 1 + 94 + 253 * 95, 95),
        (80 + 3 + 94 + 252 * 95, 95),
        (80 + 3 + 94 + 252 * 95 + 1, 95),
        (80 + 3 + 94 + 70_000, 65_632),
        (500_000, 200_000),
    ] {
        let block = SyntheticBlock::new(3, parent(), size, tx);
        assert!(block.len() >= size, "{size}");
        let bytes = collect(&block, 1000);
        assert_eq!(bytes.len() as u64, block.len(), "{size}");
        let decoded = Block::decode_exact(&bytes).expect("decodes");
        decoded.check_merkle_root().expect("merkle root");
        assert_eq!(decoded.hash(), block.hash());
        if block.len() != size {
            // Only sizes too small for a filler are rounded up.
            assert!(
                size > 175 && size < 175 + MIN_FILLER_SIZE,
                "{size} became {}",
                block.len()
            );
        }
    }
    // Tiny requests give the smallest block: header, count and coinbase alone.
    let tiny = SyntheticBlock::new(3, parent(), 0, 0);
    assert_eq!(tiny.len(), 175);
    assert_eq!(tiny.tx_count(), 1);
    assert_eq!(
        SyntheticBlock::new(3, parent(), 176, 0).len(),
        175 + MIN_FILLER_SIZE
    );
    Block::decode_exact(&collect(&tiny, 128))
        .expect("decodes")
        .check_merkle_root()
        .expect("merkle");
}

#[test]
fn same_parameters_same_bytes_other_seed_other_hash() {
    let a = SyntheticBlock::new(9, parent(), 50_000, 700);
    let b = SyntheticBlock::new(9, parent(), 50_000, 700);
    let c = SyntheticBlock::new(10, parent(), 50_000, 700);
    let d = SyntheticBlock::new(9, Hash([8; 32]), 50_000, 700);
    assert_eq!(collect(&a, 333), collect(&b, 4096));
    assert_eq!(a.hash(), b.hash());
    assert_ne!(a.hash(), c.hash());
    assert_ne!(a.header().merkle_root, c.header().merkle_root);
    assert_ne!(a.hash(), d.hash());
}

#[test]
fn chunks_feed_the_stream_decoder_with_a_matching_checksum() {
    let block = SyntheticBlock::new(5, parent(), 300_000, 2_000);
    let magic = Network::Regtest.magic();
    let header_bytes = block.frame_header_bytes(magic);
    assert_eq!(header_bytes.len(), 24);
    let frame = FrameHeader::parse(&header_bytes)
        .expect("parses")
        .expect("complete");
    assert!(!frame.extended);
    assert_eq!(frame.command, "block");
    assert_eq!(frame.length, block.len());
    assert_eq!(frame.checksum, block.checksum());
    let mut dec = BlockStreamDecoder::for_frame(&frame, BlockStreamConfig::default());
    let mut txs = 0u64;
    let mut end = None;
    for chunk in block.chunks(10_000) {
        dec.feed(&chunk).expect("feeds");
        while let Some(ev) = dec.next_event() {
            match ev {
                BlockEvent::Header(h) => assert_eq!(h.hash(), block.hash()),
                BlockEvent::Transaction { .. } => txs += 1,
                BlockEvent::End(e) => end = Some(e),
                _ => {}
            }
        }
    }
    dec.finish().expect("complete");
    let end = end.expect("end event");
    assert!(end.merkle_matches());
    assert_eq!(end.checksum, ChecksumStatus::Matched);
    assert_eq!(end.length, block.len());
    assert_eq!(end.tx_count, block.tx_count());
    assert_eq!(txs, block.tx_count());
}

#[tokio::test]
async fn async_reader_yields_the_same_bytes() {
    let block = SyntheticBlock::new(2, parent(), 120_000, 1_500);
    let mut via_reader = Vec::new();
    block
        .reader_with_chunk(5_000)
        .read_to_end(&mut via_reader)
        .await
        .expect("reads");
    assert_eq!(via_reader, collect(&block, 64 * 1024));
}

#[test]
fn a_64_mib_block_streams_in_bounded_memory() {
    const SIZE: u64 = 64 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    let block = SyntheticBlock::new(11, parent(), SIZE, 1024 * 1024 + 17);
    assert_eq!(block.len(), SIZE);
    assert!(!block.needs_extended_header());
    let mut dec = BlockStreamDecoder::new(block.len(), None, BlockStreamConfig::txid_only());
    let mut chunks = block.chunks(CHUNK);
    let mut peak_state = 0;
    let mut end = None;
    let mut count = 0u64;
    while let Some(chunk) = chunks.next() {
        assert!(chunk.len() <= CHUNK);
        peak_state = peak_state.max(chunks.state_bytes());
        dec.feed(&chunk).expect("feeds");
        while let Some(ev) = dec.next_event() {
            match ev {
                BlockEvent::TxId { index, length, .. } => {
                    assert_eq!(Some(length), block.tx_len(index));
                    count += 1;
                }
                BlockEvent::End(e) => end = Some(e),
                _ => {}
            }
        }
    }
    assert_eq!(chunks.position(), SIZE);
    // Besides the chunk handed out, the generator keeps only a transaction's fixed part.
    assert!(peak_state < 1024, "generator state {peak_state} bytes");
    let end = end.expect("end event");
    assert!(end.merkle_matches());
    assert_eq!(end.checksum, ChecksumStatus::NotApplicable);
    assert_eq!(count, block.tx_count());
    assert!(dec.peak_buffered_bytes() <= 4 * 1024 * 1024);
}

/// sha256d's first four bytes of `bytes`.
fn checksum_of(bytes: &[u8]) -> [u8; 4] {
    let d = bitcoinsv::bitcoin::sha256d(bytes);
    [d.0[0], d.0[1], d.0[2], d.0[3]]
}

/// Decodes `bytes` as a whole block frame with the stream decoder (txid-only): the end event,
/// or the error.
fn stream_decode(
    block: &SyntheticBlock,
    bytes: &[u8],
) -> Result<bitcoinsv::p2p::codec::BlockEnd, bitcoinsv::p2p::codec::BlockStreamError> {
    let mut dec = BlockStreamDecoder::new(
        block.len(),
        Some(block.checksum()),
        BlockStreamConfig::txid_only(),
    );
    let mut end = None;
    for chunk in bytes.chunks(7_000) {
        dec.feed(chunk)?;
        while let Some(ev) = dec.next_event() {
            if let BlockEvent::End(e) = ev {
                end = Some(e);
            }
        }
    }
    Ok(end.expect("end event"))
}

#[test]
fn corruptions_keep_the_length_and_agree_across_chunks_reader_and_checksum() {
    let intact = SyntheticBlock::new(3, parent(), 150_000, 2_000);
    for corruption in [
        Corruption::MerkleMismatch { tx_index: 7 },
        Corruption::Malformed { tx_index: 7 },
        Corruption::MerkleMismatch { tx_index: 0 },
        Corruption::Malformed { tx_index: 0 },
        Corruption::MerkleMismatch { tx_index: u64::MAX },
        Corruption::PlaceholderMerkleRoot,
    ] {
        let block = SyntheticBlock::with_corruption(3, parent(), 150_000, 2_000, Some(corruption));
        assert_eq!(block.corruption(), Some(corruption));
        assert_eq!(block.len(), intact.len(), "{corruption:?}");
        assert_eq!(block.tx_count(), intact.tx_count());
        assert_ne!(block.hash(), intact.hash(), "{corruption:?}");
        assert!(block.header().check_proof_of_work());
        let bytes = collect(&block, 4_096);
        assert_eq!(bytes.len() as u64, block.len());
        assert_eq!(collect(&block, 100_000), bytes);
        assert_eq!(block.checksum(), checksum_of(&bytes), "{corruption:?}");
        let outcome = stream_decode(&block, &bytes);
        match corruption {
            Corruption::Malformed { .. } => assert!(
                matches!(
                    outcome,
                    Err(bitcoinsv::p2p::codec::BlockStreamError::NonCanonicalVarInt { .. })
                ),
                "{corruption:?}: {outcome:?}"
            ),
            _ => {
                let end = outcome.expect("decodes");
                assert!(!end.merkle_matches(), "{corruption:?}");
                assert_eq!(end.checksum, ChecksumStatus::Matched);
            }
        }
    }
}

#[test]
fn a_malformed_transaction_breaks_the_normal_decoder_and_a_mismatch_fails_the_merkle_check() {
    let malformed = SyntheticBlock::with_corruption(
        4,
        parent(),
        60_000,
        1_000,
        Some(Corruption::Malformed { tx_index: 3 }),
    );
    assert!(Block::decode_exact(&collect(&malformed, 8_192)).is_err());
    let mismatch = SyntheticBlock::with_corruption(
        4,
        parent(),
        60_000,
        1_000,
        Some(Corruption::MerkleMismatch { tx_index: 3 }),
    );
    let block = Block::decode_exact(&collect(&mismatch, 8_192)).expect("layout intact");
    assert_eq!(block.hash(), mismatch.hash());
    assert!(block.check_merkle_root().is_err());
}

#[test]
fn shared_chunks_yield_the_same_bytes_as_borrowed_chunks() {
    let block = Arc::new(SyntheticBlock::new(6, parent(), 90_000, 1_200));
    let mut shared = block.shared_chunks(5_000);
    let mut bytes = Vec::new();
    for chunk in shared.by_ref() {
        assert!(chunk.len() <= 5_000);
        bytes.extend_from_slice(&chunk);
    }
    assert_eq!(shared.position(), block.len());
    assert_eq!(bytes, collect(&block, 5_000));
}

#[test]
fn a_placeholder_merkle_root_describes_a_5_gib_block_without_walking_it() {
    let started = std::time::Instant::now();
    let block = SyntheticBlock::with_corruption(
        1,
        parent(),
        5 << 30,
        1_000_000,
        Some(Corruption::PlaceholderMerkleRoot),
    );
    assert_eq!(block.len(), 5 << 30);
    assert!(block.needs_extended_header());
    assert_eq!(block.frame_header_bytes(Network::Regtest.magic()).len(), 44);
    // No pass over 5 GiB (minutes in a debug build): construction is PoW only.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
