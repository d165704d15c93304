//! The real mainnet block 825188 in `testdata/data/`, wrapped in a `block` frame, and its three
//! corrupted copies.

mod common;

use bitcoinsv::bitcoin::{BlockError, DecodeError, Network};
use bitcoinsv::p2p::codec::{frame_bytes, MessageCodec};
use bitcoinsv::p2p::{CodecError, Message};
use bytes::BytesMut;
use common::{data, REAL_BLOCK_HASH};

fn decode_block_frame(raw: &[u8]) -> Result<Message, CodecError> {
    let frame = frame_bytes(Network::Mainnet.magic(), "block", raw);
    let mut buf = BytesMut::from(&frame[..]);
    let msg = MessageCodec::new(Network::Mainnet).decode(&mut buf)?;
    Ok(msg.expect("whole frame present"))
}

#[test]
fn real_block_decodes_to_222_transactions_hashing_to_its_name_with_a_valid_merkle_root() {
    let raw = data(&format!("{REAL_BLOCK_HASH}.bin"));
    assert_eq!(raw.len(), 159_219);
    let Message::Block(block) = decode_block_frame(&raw).unwrap() else {
        panic!("not a block")
    };
    assert_eq!(block.transactions.len(), 222);
    assert_eq!(block.hash().to_string(), REAL_BLOCK_HASH);
    assert!(block.header.check_proof_of_work());
    assert_eq!(block.check_merkle_root(), Ok(()));
    assert_eq!(block.validate(), Ok(()));
    assert!(block.transactions[0].is_coinbase());
    assert!(block.transactions[1..].iter().all(|t| !t.is_coinbase()));
    // Re-encoding gives the original bytes.
    let frame = frame_bytes(Network::Mainnet.magic(), "block", &raw);
    let again = MessageCodec::new(Network::Mainnet)
        .encode_to_bytes(&Message::Block(block))
        .unwrap();
    assert_eq!(again, frame);
}

#[test]
fn corrupted_merkle_copy_decodes_but_fails_the_merkle_check() {
    let raw = data("corrupted/corrupt_merkle.bin");
    let Message::Block(block) = decode_block_frame(&raw).unwrap() else {
        panic!("not a block")
    };
    match block.check_merkle_root() {
        Err(BlockError::MerkleMismatch { expected, computed }) => assert_ne!(expected, computed),
        other => panic!("expected a merkle mismatch, got {other:?}"),
    }
}

#[test]
fn block_with_a_trailing_byte_is_refused_as_trailing_bytes() {
    let raw = data("corrupted/too_long.bin");
    match decode_block_frame(&raw) {
        Err(CodecError::Malformed {
            command,
            source: DecodeError::TrailingBytes { offset, remaining },
            ..
        }) => {
            assert_eq!(command, "block");
            assert_eq!(remaining, 1);
            assert_eq!(offset, raw.len() - 1);
        }
        other => panic!("expected trailing bytes, got {other:?}"),
    }
}

#[test]
fn block_missing_its_last_byte_is_refused_as_truncated() {
    let raw = data("corrupted/too_small.bin");
    match decode_block_frame(&raw) {
        Err(CodecError::Malformed {
            command,
            source: DecodeError::UnexpectedEnd { needed, .. },
            ..
        }) => {
            assert_eq!(command, "block");
            assert_eq!(needed, 1);
        }
        other => panic!("expected truncation, got {other:?}"),
    }
}

#[test]
fn decoded_transactions_share_the_frame_buffer() {
    let raw = data(&format!("{REAL_BLOCK_HASH}.bin"));
    let frame = frame_bytes(Network::Mainnet.magic(), "block", &raw);
    let mut buf = BytesMut::from(&frame[..]);
    let payload = MessageCodec::new(Network::Mainnet)
        .decode_frame(&mut buf)
        .unwrap()
        .unwrap()
        .payload;
    let Ok(Message::Block(block)) = Message::decode_payload("block", payload.clone()) else {
        panic!("not a block")
    };
    let range = payload.as_ptr() as usize..payload.as_ptr() as usize + payload.len();
    assert!(block
        .transactions
        .iter()
        .all(|t| range.contains(&(t.raw().as_ptr() as usize))));
}
