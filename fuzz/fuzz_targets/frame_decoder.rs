//! Feeds arbitrary bytes to the frame decoder, as a peer's stream would arrive.
//!
//! For each input and for two codecs (any magic, and mainnet only) the stream is decoded twice:
//! all at once, and split in two at a point derived from the input. Checked:
//!
//! * nothing panics (libFuzzer reports a panic as a crash);
//! * how the bytes are split does not change what comes out (the same messages and errors in the
//!   same order), since a TCP stream can be cut anywhere;
//! * every decoded message re-encodes and decodes again to the same value;
//! * every decoded transaction's inputs and outputs, parsed on first access, rebuild exactly its
//!   bytes (decoding only checks a transaction's layout; the parse happens later and must agree).

#![no_main]

use bitcoinsv::bitcoin::Transaction;
use bitcoinsv::p2p::codec::RecvLimits;
use bitcoinsv::p2p::{CodecError, Message, MessageCodec, Network};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// What one decode call produced: a message, or an error in a comparable form (`CodecError`
/// holds `io::Error`, which is not `PartialEq`).
type Outcome = Result<Message, String>;

/// Decodes `chunks` fed one after another into one buffer, draining after each, until the
/// input ends or a fatal error stops the stream.
fn decode_stream(mut codec: MessageCodec, chunks: &[&[u8]]) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(msg)) => out.push(Ok(msg)),
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e.to_string()));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }
    out
}

/// A split point in `0..=len` that depends on every byte of the input (FNV-1a), so that the
/// seed corpus can stay raw frames while the fuzzer still reaches every split by mutation.
fn split_point(data: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % (data.len() as u64 + 1)) as usize
}

/// Re-encodes `msg` and decodes the frame again; it must come back unchanged.
fn check_reencodes(msg: &Message) {
    // Lift the send limits: a message we received may be larger than we would send unasked.
    let mut sender = MessageCodec::new(Network::Mainnet);
    sender.set_peer_max_recv(u64::MAX);
    sender.set_peer_version(i32::MAX);
    let mut buf = BytesMut::new();
    match sender.encode(msg, &mut buf) {
        Ok(()) => {}
        // The one message that may be received but not sent: an `extmsg` frame whose real
        // command itself starts with `extmsg`; a basic header cannot carry that name.
        Err(CodecError::BadCommandName { command }) if command.starts_with("extmsg") => return,
        Err(e) => panic!("re-encoding {msg:?} failed: {e}"),
    }
    let limits = RecvLimits {
        max_payload: u64::MAX,
        max_block: u64::MAX,
        max_tx: u64::MAX,
    };
    let mut receiver = MessageCodec::new(Network::Mainnet).with_recv_limits(limits);
    match receiver.decode(&mut buf) {
        Ok(Some(back)) => assert_eq!(&back, msg, "re-encoded message decoded differently"),
        other => panic!("re-encoded {msg:?} did not decode: {other:?}"),
    }
    assert!(
        buf.is_empty(),
        "re-encoded frame left {} byte(s)",
        buf.len()
    );
}

/// The transactions a message carries at its top level.
fn transactions(msg: &Message) -> Vec<&Transaction> {
    match msg {
        Message::Tx(tx) => vec![tx],
        Message::Block(b) => b.transactions.iter().collect(),
        Message::BlockTxn(b) => b.transactions.iter().collect(),
        Message::CmpctBlock(c) => c.prefilled.iter().map(|p| &p.tx).collect(),
        Message::DataRefTx(d) => vec![&d.tx],
        _ => vec![],
    }
}

/// The lazily parsed fields of `tx` serialize back to exactly its bytes.
fn check_parts(tx: &Transaction) {
    let rebuilt = Transaction::new(
        tx.version(),
        tx.inputs().to_vec(),
        tx.outputs().to_vec(),
        tx.lock_time(),
    );
    assert_eq!(
        rebuilt.raw(),
        tx.raw(),
        "parsed parts disagree with the bytes"
    );
}

fuzz_target!(|data: &[u8]| {
    let at = split_point(data);
    let (head, tail) = data.split_at(at);
    for make in [MessageCodec::any_magic, || {
        MessageCodec::new(Network::Mainnet)
    }] {
        let whole = decode_stream(make(), &[data]);
        let split = decode_stream(make(), &[head, tail]);
        assert_eq!(
            whole, split,
            "splitting the stream at {at} changed the outcome"
        );
        for msg in whole.iter().flatten() {
            check_reencodes(msg);
            transactions(msg).into_iter().for_each(check_parts);
        }
    }
});
