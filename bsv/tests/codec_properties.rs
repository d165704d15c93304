//! Properties of the wire codec, checked over generated messages of every `Message` variant and
//! over arbitrary bytes:
//!
//! * encoding then decoding through [`MessageCodec`] is the identity, and `payload_len()` is the
//!   size actually written;
//! * a strict prefix of a valid frame only ever asks for more bytes, and a frame fed one byte at a
//!   time comes out exactly at its last byte;
//! * arbitrary bytes never make the decoder panic, and never make it grow the buffer from a length
//!   it has only been told about (capacity stays within what was fed, doubled, or 64 KiB more).
//!
//! Generated values stay inside what the protocol allows (short IDs below 2^48, var ints at most
//! 0xFFFFFFFF, strings within their limits, IPv6 addresses that are not IPv4-mapped), because
//! outside it the encoding is not meant to be reversible.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bitcoinsv::bitcoin::{
    Block, BlockHeader, BlockLocator, Hash, InvType, InvVect, MerkleProof, MerkleProofTx,
    NetAddress, OutPoint, TimestampedNetAddress, Transaction, TxIn, TxOut,
};
use bitcoinsv::p2p::codec::{frame_bytes, FrameHeader};
use bitcoinsv::p2p::messages::{
    AssociationId, AuthChallenge, AuthResponse, BlockTxn, CompactBlock, CreateStream, DataRefTx,
    DsBlockDetails, DsDetected, EnrichedHeader, FilterLoad, GetBlockTxn, MerkleBlock, PrefilledTx,
    Protoconf, ProvenTx, RevokeMid, SendCmpct, StreamAck, MAX_REJECT_MESSAGE_LEN,
    MAX_REJECT_REASON_LEN, MAX_STREAM_POLICIES_LEN, MAX_USER_AGENT_LEN,
};
use bitcoinsv::p2p::{
    CodecError, Message, MessageCodec, Network, Reject, RejectCode, VersionMessage,
};
use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::TestRunner;

/// The largest value a var int may carry on the wire (`MAX_SIZE`).
const MAX_VAR_INT: u64 = 0xFFFF_FFFF;
/// How far the decoder may grow its buffer beyond what was fed (see `arbitrary_bytes_…`).
const GROWTH_ALLOWANCE: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Strategies for the wire primitives.
// ---------------------------------------------------------------------------------------------

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// Printable ASCII of at most `max` bytes (always a valid, lossless UTF-8 string).
fn ascii(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~]{{0,{max}}}")).expect("valid regex")
}

/// Any UTF-8 text whose encoding is at most `max` bytes: the codec keeps valid UTF-8 exactly.
fn text(max: usize) -> impl Strategy<Value = String> {
    any::<String>().prop_map(move |s| {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    })
}

fn var_int_value() -> impl Strategy<Value = u64> {
    // Weighted towards each encoding width so the 1-, 3- and 5-byte forms all occur.
    prop_oneof![0u64..0xFD, 0xFDu64..=0xFFFF, 0x1_0000u64..=MAX_VAR_INT]
}

fn block_header() -> impl Strategy<Value = BlockHeader> {
    (
        any::<i32>(),
        hash(),
        hash(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(version, prev_hash, merkle_root, time, bits, nonce)| BlockHeader {
                version,
                prev_hash,
                merkle_root,
                time,
                bits,
                nonce,
            },
        )
}

fn tx_in() -> impl Strategy<Value = TxIn> {
    (hash(), any::<u32>(), bytes(40), any::<u32>()).prop_map(
        |(txid, vout, script_sig, sequence)| TxIn {
            prevout: OutPoint { txid, vout },
            script_sig,
            sequence,
        },
    )
}

fn tx_out() -> impl Strategy<Value = TxOut> {
    (any::<i64>(), bytes(40)).prop_map(|(value, script_pubkey)| TxOut {
        value,
        script_pubkey,
    })
}

fn transaction() -> impl Strategy<Value = Transaction> {
    (
        any::<i32>(),
        vec(tx_in(), 0..3),
        vec(tx_out(), 0..3),
        any::<u32>(),
    )
        .prop_map(|(version, inputs, outputs, lock_time)| {
            Transaction::new(version, inputs, outputs, lock_time)
        })
}

/// A small block whose header commits to its transactions.
fn block() -> impl Strategy<Value = Block> {
    (block_header(), vec(transaction(), 1..5)).prop_map(|(header, transactions)| {
        let mut block = Block {
            header,
            transactions,
        };
        block.header.merkle_root = block.compute_merkle_root();
        block
    })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        // An IPv4-mapped IPv6 address is the wire form of an IPv4 address and decodes as one.
        any::<[u8; 16]>()
            .prop_map(Ipv6Addr::from)
            .prop_filter("IPv4-mapped", |v6| v6.to_ipv4_mapped().is_none())
            .prop_map(IpAddr::V6),
    ]
}

fn net_address() -> impl Strategy<Value = NetAddress> {
    (any::<u64>(), ip(), any::<u16>()).prop_map(|(services, ip, port)| NetAddress {
        services,
        ip,
        port,
    })
}

fn timestamped_address() -> impl Strategy<Value = TimestampedNetAddress> {
    (any::<u32>(), net_address()).prop_map(|(time, addr)| TimestampedNetAddress { time, addr })
}

fn inv_type() -> impl Strategy<Value = InvType> {
    prop_oneof![
        Just(InvType::Error),
        Just(InvType::Tx),
        Just(InvType::Block),
        Just(InvType::FilteredBlock),
        Just(InvType::CompactBlock),
        Just(InvType::DataRefTx),
        // Values with a name decode to that name, so `Unknown` only carries the others.
        (6u32..).prop_map(InvType::Unknown),
    ]
}

fn inv_list() -> impl Strategy<Value = Vec<InvVect>> {
    vec(
        (inv_type(), hash()).prop_map(|(inv_type, hash)| InvVect { inv_type, hash }),
        0..20,
    )
}

fn locator() -> impl Strategy<Value = BlockLocator> {
    (any::<u32>(), vec(hash(), 0..12), hash()).prop_map(|(version, hashes, stop_hash)| {
        BlockLocator {
            version,
            hashes,
            stop_hash,
        }
    })
}

/// A TSC proof; bit 0 of the flags always agrees with the form of `tx`, since the encoder
/// derives it from that.
fn merkle_proof() -> impl Strategy<Value = MerkleProof> {
    let tx = prop_oneof![
        hash().prop_map(MerkleProofTx::Txid),
        transaction().prop_map(MerkleProofTx::Full),
    ];
    (
        any::<u8>(),
        var_int_value(),
        tx,
        hash(),
        vec((any::<u8>(), hash()), 0..6),
    )
        .prop_map(|(flags, index, tx, target, nodes)| {
            let full = matches!(tx, MerkleProofTx::Full(_));
            MerkleProof {
                flags: (flags & !1) | u8::from(full),
                index,
                tx,
                target,
                nodes,
            }
        })
}

fn proven_tx() -> impl Strategy<Value = ProvenTx> {
    (transaction(), merkle_proof()).prop_map(|(tx, proof)| ProvenTx { tx, proof })
}

fn enriched_header() -> impl Strategy<Value = EnrichedHeader> {
    (
        block_header(),
        var_int_value(),
        any::<bool>(),
        proptest::option::of(proven_tx()),
        proptest::option::of(proven_tx()),
    )
        .prop_map(
            |(header, tx_count, no_more_headers, coinbase, miner_info)| EnrichedHeader {
                header,
                tx_count,
                no_more_headers,
                coinbase,
                miner_info,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Strategies for the payload types.
// ---------------------------------------------------------------------------------------------

fn association_id() -> impl Strategy<Value = Option<AssociationId>> {
    prop_oneof![
        Just(None),
        Just(Some(AssociationId::Empty)),
        any::<u8>().prop_map(|b| Some(AssociationId::Short(b))),
        any::<[u8; 16]>().prop_map(|u| Some(AssociationId::Uuid(u))),
    ]
}

fn version_message() -> impl Strategy<Value = VersionMessage> {
    (
        (any::<i32>(), any::<u64>(), any::<i64>()),
        (net_address(), net_address(), any::<u64>()),
        (text(MAX_USER_AGENT_LEN), any::<i32>(), any::<bool>()),
        association_id(),
    )
        .prop_map(
            |(
                (version, services, timestamp),
                (receiver, sender, nonce),
                (user_agent, start_height, relay),
                association_id,
            )| VersionMessage {
                version,
                services,
                timestamp,
                receiver,
                sender,
                nonce,
                user_agent,
                start_height,
                relay,
                association_id,
            },
        )
}

fn reject() -> impl Strategy<Value = Reject> {
    (
        ascii(MAX_REJECT_MESSAGE_LEN),
        any::<u8>().prop_map(RejectCode::from_u8),
        text(MAX_REJECT_REASON_LEN),
        proptest::option::of(hash()),
    )
        .prop_map(|(message, code, reason, hash)| Reject {
            message,
            code,
            reason,
            hash,
        })
}

fn compact_block() -> impl Strategy<Value = CompactBlock> {
    (
        block_header(),
        any::<u64>(),
        vec(0u64..(1 << 48), 0..20),
        vec(
            (var_int_value(), transaction())
                .prop_map(|(index_delta, tx)| PrefilledTx { index_delta, tx }),
            0..3,
        ),
    )
        .prop_map(|(header, nonce, short_ids, prefilled)| CompactBlock {
            header,
            nonce,
            short_ids,
            prefilled,
        })
}

fn protoconf() -> impl Strategy<Value = Protoconf> {
    prop_oneof![
        // What every node sends: the limit and the policy list.
        (any::<u32>(), ascii(MAX_STREAM_POLICIES_LEN)).prop_map(|(max, p)| Protoconf::new(max, p)),
        // An older peer's single field: no policy list on the wire.
        any::<u32>().prop_map(|max| Protoconf {
            number_of_fields: 1,
            max_recv_payload_length: max,
            stream_policies: String::new(),
        }),
    ]
}

fn ds_detected() -> impl Strategy<Value = DsDetected> {
    let fork = (vec(block_header(), 0..3), merkle_proof())
        .prop_map(|(headers, proof)| DsBlockDetails { headers, proof });
    (any::<u16>(), vec(fork, 0..3)).prop_map(|(version, blocks)| DsDetected { version, blocks })
}

fn revoke_mid() -> impl Strategy<Value = RevokeMid> {
    (
        any::<u32>(),
        any::<[u8; 33]>(),
        any::<[u8; 33]>(),
        any::<[u8; 33]>(),
        bytes(150),
    )
        .prop_map(
            |(version, revocation_key, miner_id, revocation_message, signatures)| RevokeMid {
                version,
                revocation_key,
                miner_id,
                revocation_message,
                signatures,
            },
        )
}

/// A command name no message of the catalogue uses: printable ASCII, 1 to 12 characters, and not
/// starting with `extmsg` (that prefix marks an extended header, whatever follows it).
fn unknown_command() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~]{1,12}")
        .expect("valid regex")
        .prop_filter("known command", |c| {
            !c.starts_with("extmsg")
                && matches!(
                    Message::decode_payload(c, Bytes::new()),
                    Ok(Message::Unknown { .. })
                )
        })
}

/// Every variant of [`Message`], each with payloads across its whole legal range.
fn message() -> impl Strategy<Value = Message> {
    Union::new(vec![
        version_message().prop_map(Message::Version).boxed(),
        Just(Message::Verack).boxed(),
        any::<u64>().prop_map(Message::Ping).boxed(),
        any::<u64>().prop_map(Message::Pong).boxed(),
        vec(timestamped_address(), 0..10)
            .prop_map(Message::Addr)
            .boxed(),
        Just(Message::GetAddr).boxed(),
        inv_list().prop_map(Message::Inv).boxed(),
        inv_list().prop_map(Message::GetData).boxed(),
        inv_list().prop_map(Message::NotFound).boxed(),
        locator().prop_map(Message::GetBlocks).boxed(),
        locator().prop_map(Message::GetHeaders).boxed(),
        vec(block_header(), 0..10)
            .prop_map(Message::Headers)
            .boxed(),
        block().prop_map(Message::Block).boxed(),
        transaction().prop_map(Message::Tx).boxed(),
        reject().prop_map(Message::Reject).boxed(),
        Just(Message::SendHeaders).boxed(),
        any::<i64>().prop_map(Message::FeeFilter).boxed(),
        (any::<bool>(), any::<u64>())
            .prop_map(|(announce, version)| Message::SendCmpct(SendCmpct { announce, version }))
            .boxed(),
        compact_block().prop_map(Message::CmpctBlock).boxed(),
        (hash(), vec(var_int_value(), 0..10))
            .prop_map(|(block_hash, index_deltas)| {
                Message::GetBlockTxn(GetBlockTxn {
                    block_hash,
                    index_deltas,
                })
            })
            .boxed(),
        (hash(), vec(transaction(), 0..4))
            .prop_map(|(block_hash, transactions)| {
                Message::BlockTxn(BlockTxn {
                    block_hash,
                    transactions,
                })
            })
            .boxed(),
        protoconf().prop_map(Message::Protoconf).boxed(),
        proptest::option::of(any::<i64>())
            .prop_map(Message::Mempool)
            .boxed(),
        (any::<u32>(), bytes(64))
            .prop_map(|(version, challenge)| Message::AuthCh(AuthChallenge { version, challenge }))
            .boxed(),
        (bytes(40), any::<u64>(), bytes(80))
            .prop_map(|(public_key, nonce, signature)| {
                Message::AuthResp(AuthResponse {
                    public_key,
                    nonce,
                    signature,
                })
            })
            .boxed(),
        (bytes(40), any::<u8>(), ascii(64))
            .prop_map(|(association_id, stream_type, policy)| {
                Message::CreateStream(CreateStream {
                    association_id,
                    stream_type,
                    policy,
                })
            })
            .boxed(),
        (bytes(40), any::<u8>())
            .prop_map(|(association_id, stream_type)| {
                Message::StreamAck(StreamAck {
                    association_id,
                    stream_type,
                })
            })
            .boxed(),
        locator().prop_map(Message::GetHdrsEn).boxed(),
        vec(enriched_header(), 0..4)
            .prop_map(Message::HdrsEn)
            .boxed(),
        Just(Message::SendHdrsEn).boxed(),
        ds_detected().prop_map(Message::DsDetected).boxed(),
        revoke_mid().prop_map(Message::RevokeMid).boxed(),
        (transaction(), merkle_proof())
            .prop_map(|(tx, proof)| Message::DataRefTx(DataRefTx { tx, proof }))
            .boxed(),
        (block_header(), any::<u32>(), vec(hash(), 0..10), bytes(20))
            .prop_map(|(header, total_transactions, hashes, flags)| {
                Message::MerkleBlock(MerkleBlock {
                    header,
                    total_transactions,
                    hashes,
                    flags,
                })
            })
            .boxed(),
        (bytes(100), any::<u32>(), any::<u32>(), any::<u8>())
            .prop_map(|(filter, hash_funcs, tweak, flags)| {
                Message::FilterLoad(FilterLoad {
                    filter,
                    hash_funcs,
                    tweak,
                    flags,
                })
            })
            .boxed(),
        bytes(100).prop_map(Message::FilterAdd).boxed(),
        Just(Message::FilterClear).boxed(),
        bytes(200).prop_map(Message::Alert).boxed(),
        (unknown_command(), bytes(200))
            .prop_map(|(command, payload)| Message::Unknown { command, payload })
            .boxed(),
    ])
}

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

fn encode(msg: &Message) -> BytesMut {
    let mut buf = BytesMut::new();
    MessageCodec::new(Network::Mainnet)
        .encode(msg, &mut buf)
        .expect("a generated message is within the send limits");
    buf
}

/// How `feed_arbitrary` drains the buffer.
#[derive(Clone, Copy)]
enum Drain {
    /// `decode`: frames and payloads.
    Messages,
    /// `decode_frame`: framing and checksums only.
    Frames,
}

/// Feeds `data` to `codec` in pieces of the given sizes (cycled), draining decoded frames after
/// each piece until the decoder asks for more or fails fatally. Panics if the buffer's capacity
/// ever exceeds what the bytes fed so far justify.
fn feed_arbitrary(codec: &mut MessageCodec, data: &[u8], pieces: &[usize], drain: Drain) {
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut rest = data;
    let mut sizes = pieces.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        fed += n;
        let bound = (2 * fed).max(GROWTH_ALLOWANCE + fed);
        loop {
            let result = match drain {
                Drain::Messages => codec.decode(&mut buf).map(|m| m.map(|_| ())),
                Drain::Frames => codec.decode_frame(&mut buf).map(|f| f.map(|_| ())),
            };
            assert!(
                buf.capacity() <= bound,
                "capacity {} after {fed} byte(s) fed (bound {bound})",
                buf.capacity()
            );
            match result {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) if e.is_fatal() => return,
                // A skipped frame: the stream goes on with the next one.
                Err(_) => continue,
            }
        }
    }
}

/// Bytes a frame decoder might see: noise, or real frames (any command, any length, good or bad
/// checksum) whose payloads are noise, so that every payload parser meets garbage too.
fn wire_noise() -> impl Strategy<Value = Vec<u8>> {
    let command = prop_oneof![
        3 => prop::sample::select(vec![
            "version", "verack", "ping", "pong", "addr", "getaddr", "inv", "getdata", "notfound",
            "getblocks", "getheaders", "headers", "block", "tx", "reject", "sendheaders",
            "feefilter", "sendcmpct", "cmpctblock", "getblocktxn", "blocktxn", "protoconf",
            "mempool", "authch", "authresp", "createstrm", "streamack", "gethdrsen", "hdrsen",
            "sendhdrsen", "dsdetected", "revokemid", "datareftx", "merkleblock", "filterload",
            "filteradd", "filterclear", "alert", "extmsg",
        ])
        .prop_map(str::to_string),
        1 => "[ -~]{0,12}",
    ];
    let framed = (command, vec(any::<u8>(), 0..300), any::<bool>()).prop_map(
        |(command, payload, good_sum)| {
            let mut frame = frame_bytes(Network::Mainnet.magic(), &command, &payload).to_vec();
            if !good_sum {
                frame[20] ^= 0xFF;
            }
            frame
        },
    );
    // A header that declares a length (possibly huge) and then only a little data.
    let liar = (any::<u32>(), vec(any::<u8>(), 0..200)).prop_map(|(len, tail)| {
        let mut frame = frame_bytes(Network::Mainnet.magic(), "block", &[]).to_vec();
        frame[16..20].copy_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&tail);
        frame
    });
    prop_oneof![
        vec(any::<u8>(), 0..400),
        vec(framed, 1..4).prop_map(|frames| frames.concat()),
        message()
            .prop_flat_map(|m| {
                let frame = encode(&m).to_vec();
                let len = frame.len();
                (Just(frame), vec((0..len, any::<u8>()), 0..4))
            })
            .prop_map(|(mut frame, flips)| {
                for (at, b) in flips {
                    frame[at] = b;
                }
                frame
            }),
        liar,
    ]
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8192))]

    #[test]
    fn every_message_survives_an_encode_decode_round_trip(msg in message()) {
        let mut buf = encode(&msg);
        let frame_len = buf.len();
        prop_assert_eq!(frame_len, 24 + msg.payload_len(), "payload_len() disagrees with the frame");
        prop_assert_eq!(msg.payload_bytes().len(), msg.payload_len());

        let mut codec = MessageCodec::new(Network::Mainnet);
        let decoded = codec.decode(&mut buf).expect("a frame we encoded decodes");
        prop_assert_eq!(decoded.as_ref(), Some(&msg));
        prop_assert!(buf.is_empty(), "the whole frame was consumed");
    }

    #[test]
    fn every_message_survives_an_extended_header_round_trip(msg in message()) {
        // The 44-byte `extmsg` header is only sent for payloads over 4 GiB; build one by hand for
        // a small payload: the receiver must not care how small it is.
        let payload = msg.payload_bytes();
        let header = FrameHeader {
            magic: Network::Mainnet.magic(),
            command: msg.command().to_string(),
            length: payload.len() as u64,
            checksum: [0; 4],
            extended: true,
        };
        let mut buf = BytesMut::new();
        header.encode(&mut buf);
        buf.extend_from_slice(&payload);
        let decoded = MessageCodec::new(Network::Mainnet).decode(&mut buf).expect("decodes");
        prop_assert_eq!(decoded, Some(msg));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn a_strict_prefix_of_a_frame_only_asks_for_more_bytes(msg in message()) {
        let frame = encode(&msg);
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            let mut codec = MessageCodec::new(Network::Mainnet);
            match codec.decode(&mut buf) {
                Ok(None) => {}
                other => prop_assert!(false, "prefix of {cut}/{} bytes gave {other:?}", frame.len()),
            }
        }
    }

    #[test]
    fn a_frame_fed_byte_by_byte_decodes_exactly_at_its_last_byte(msg in message()) {
        let frame = encode(&msg);
        let mut codec = MessageCodec::new(Network::Mainnet);
        let mut buf = BytesMut::new();
        for (i, b) in frame.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = codec.decode(&mut buf).expect("no error on a valid frame");
            if i + 1 < frame.len() {
                prop_assert!(got.is_none(), "a message came out after {} of {} bytes", i + 1, frame.len());
            } else {
                prop_assert_eq!(got.as_ref(), Some(&msg));
            }
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_grow_the_buffer_beyond_what_arrived(
        data in wire_noise(),
        pieces in vec(1usize..600, 1..6),
    ) {
        feed_arbitrary(&mut MessageCodec::any_magic(), &data, &pieces, Drain::Messages);
        feed_arbitrary(&mut MessageCodec::new(Network::Mainnet), &data, &pieces, Drain::Messages);
        feed_arbitrary(&mut MessageCodec::any_magic(), &data, &pieces, Drain::Frames);
        // Everything at once: whole frames are split off a buffer that already holds them.
        feed_arbitrary(&mut MessageCodec::any_magic(), &data, &[data.len().max(1)], Drain::Messages);
    }
}

/// A peer can announce a huge block and then trickle it in; the buffer must grow with what
/// arrives, not with what was announced.
#[test]
fn a_trickled_large_frame_grows_the_buffer_only_with_what_arrived() {
    let mut frame = frame_bytes(Network::Mainnet.magic(), "block", &[]).to_vec();
    frame[16..20].copy_from_slice(&(1_000_000_000u32).to_le_bytes());
    frame.extend_from_slice(&vec![0u8; 300_000]);
    feed_arbitrary(
        &mut MessageCodec::any_magic(),
        &frame,
        &[1, 7, 24, 1000, 33, 4096],
        Drain::Messages,
    );
}

#[test]
fn an_oversized_declared_length_is_refused_before_any_payload_arrives() {
    let mut frame = frame_bytes(Network::Mainnet.magic(), "inv", &[]).to_vec();
    frame[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut buf = BytesMut::from(&frame[..]);
    let err = MessageCodec::new(Network::Mainnet)
        .decode(&mut buf)
        .unwrap_err();
    assert!(matches!(err, CodecError::Oversized { .. }), "{err:?}");
    assert!(buf.capacity() < GROWTH_ALLOWANCE);
}

/// The message strategy is only as good as its reach: every variant must come up.
#[test]
fn the_message_strategy_generates_every_variant() {
    let strategy = message();
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5000 {
        let msg = strategy.new_tree(&mut runner).unwrap().current();
        seen.insert(std::mem::discriminant(&msg));
    }
    // 38 node commands plus `Unknown`.
    assert_eq!(seen.len(), 39);
}
