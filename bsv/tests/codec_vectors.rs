//! Every vector in `testdata/vectors/` decodes and re-encodes to the identical bytes.

mod common;

use bitcoinsv::bitcoin::{Magic, Network};
use bitcoinsv::p2p::codec::{MessageCodec, RecvLimits};
use bitcoinsv::p2p::messages::AssociationId;
use bitcoinsv::p2p::{CodecError, Message};
use bytes::{Bytes, BytesMut};
use common::{all_vectors, vector};

const BTC_MAGIC: Magic = [0xf9, 0xbe, 0xb4, 0xd9];

fn magic_of(frame: &[u8]) -> Magic {
    [frame[0], frame[1], frame[2], frame[3]]
}

/// Decodes one whole frame with `codec`, then re-encodes the message with the same codec.
fn round_trip_frame(codec: &mut MessageCodec, frame: &[u8]) -> Message {
    let mut buf = BytesMut::from(frame);
    let msg = codec.decode(&mut buf).unwrap().expect("a complete frame");
    assert!(buf.is_empty(), "the frame was consumed exactly");
    let mut out = BytesMut::new();
    let mut enc = codec.clone();
    enc.set_peer_max_recv(u64::MAX);
    enc.encode(&msg, &mut out).unwrap();
    assert_eq!(
        hex::encode(&out),
        hex::encode(frame),
        "re-encoding is identical"
    );
    msg
}

fn round_trip_payload(command: &str, payload: &[u8]) -> Message {
    let msg = Message::decode_payload(command, Bytes::copy_from_slice(payload)).unwrap();
    assert_eq!(msg.payload_len(), payload.len());
    assert_eq!(hex::encode(msg.payload_bytes()), hex::encode(payload));
    msg
}

#[test]
fn every_vector_decodes_and_re_encodes_identically() {
    let names = all_vectors();
    assert!(names.len() >= 28, "found {} vectors", names.len());
    for name in names {
        let bytes = vector(&name);
        if name.contains("_payload") {
            let command = if name.contains("headers") {
                "headers"
            } else if name.contains("dsdetected") {
                "dsdetected"
            } else if name.contains("datareftx") {
                "datareftx"
            } else {
                panic!("unexpected payload vector {name}")
            };
            round_trip_payload(command, &bytes);
        } else if name.contains("extmsg_header") {
            continue; // a bare 44-byte header, covered by its own tests below
        } else {
            let magic = magic_of(&bytes);
            let mut codec = match Network::from_magic(magic) {
                Some(n) => MessageCodec::new(n),
                None => MessageCodec::with_magic(magic),
            };
            round_trip_frame(&mut codec, &bytes);
        }
    }
}

#[test]
fn real_node_version_captures_keep_every_field() {
    let mut codec = MessageCodec::new(Network::Mainnet);
    let Message::Version(v) = round_trip_frame(
        &mut codec,
        &vector("bsvmain_version_frame_bitcoin-sv-1.0.2_capture.hex"),
    ) else {
        panic!("not a version")
    };
    assert_eq!(v.version, 70015);
    assert_eq!(v.services, 0x25);
    assert_eq!(v.user_agent, "/Bitcoin SV:1.0.2/");
    assert_eq!(v.start_height, 626329);
    assert!(v.relay);
    assert_eq!(v.association_id, None);
    assert_eq!(
        v.receiver.socket_addr(),
        "92.24.53.52:45116".parse().unwrap()
    );

    let mut codec = MessageCodec::new(Network::Testnet);
    let Message::Version(v) = round_trip_frame(
        &mut codec,
        &vector("bsvtest_version_frame_bitcoin-sv-1.2.2_capture.hex"),
    ) else {
        panic!("not a version")
    };
    assert_eq!(v.version, 70016);
    assert_eq!(v.services, 0x21);
    assert_eq!(v.user_agent, "/Bitcoin SV:1.2.2/");
    assert_eq!(v.start_height, 1739394);
    assert_eq!(v.association_id, Some(AssociationId::Empty));
}

#[test]
fn node_protoconf_sendcmpct_and_sendheaders_frames_decode_to_node_defaults() {
    let mut codec = MessageCodec::new(Network::Mainnet);
    let Message::Protoconf(p) = round_trip_frame(
        &mut codec,
        &vector("derived/node_default_protoconf_frame.hex"),
    ) else {
        panic!("not a protoconf")
    };
    assert_eq!(p.number_of_fields, 2);
    assert_eq!(p.max_recv_payload_length, 2 * 1024 * 1024);
    assert_eq!(p.stream_policies, "BlockPriority,Default");
    let Message::SendCmpct(s) =
        round_trip_frame(&mut codec, &vector("derived/node_sendcmpct_frame.hex"))
    else {
        panic!("not a sendcmpct")
    };
    assert!(!s.announce);
    assert_eq!(s.version, 1);
    assert_eq!(
        round_trip_frame(&mut codec, &vector("derived/node_sendheaders_frame.hex")),
        Message::SendHeaders
    );
}

#[test]
fn getheadersen_is_not_a_node_command_and_decodes_as_unknown() {
    let mut codec = MessageCodec::new(Network::Mainnet);
    match round_trip_frame(
        &mut codec,
        &vector("jcl_getheadersen_frame_NOT_NODE_COMMAND.hex"),
    ) {
        Message::Unknown { command, payload } => {
            assert_eq!(command, "getheadersen");
            assert!(!payload.is_empty());
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
}

#[test]
fn btc_magic_frames_are_refused_as_no_bsv_network_but_decode_with_explicit_magic() {
    for name in all_vectors()
        .into_iter()
        .filter(|n| n.starts_with("btcmain"))
    {
        let bytes = vector(&name);
        let mut buf = BytesMut::from(&bytes[..]);
        match MessageCodec::new(Network::Mainnet).decode(&mut buf) {
            Err(CodecError::BadMagic {
                received, network, ..
            }) => {
                assert_eq!(received, BTC_MAGIC);
                assert_eq!(network, None, "BTC's magic is no BSV network");
            }
            other => panic!("{name}: expected BadMagic, got {other:?}"),
        }
        let mut codec = MessageCodec::with_magic(BTC_MAGIC);
        round_trip_frame(&mut codec, &bytes);
    }
}

#[test]
fn another_bsv_networks_magic_is_reported_with_that_network() {
    let bytes = vector("bsvtest_version_frame_bitcoin-sv-1.2.2_capture.hex");
    let mut buf = BytesMut::from(&bytes[..]);
    match MessageCodec::new(Network::Mainnet).decode(&mut buf) {
        Err(CodecError::BadMagic { network, .. }) => assert_eq!(network, Some(Network::Testnet)),
        other => panic!("expected BadMagic, got {other:?}"),
    }
}

#[test]
fn real_headers_payload_links_and_meets_proof_of_work() {
    let Message::Headers(h) =
        round_trip_payload("headers", &vector("jcl_bsvmain_headers_payload_real.hex"))
    else {
        panic!("not headers")
    };
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].prev_hash, h[0].hash());
    assert!(h.iter().all(|x| x.check_proof_of_work()));
    assert!(h[0]
        .hash()
        .to_string()
        .starts_with("000000000000000002af8998"));
}

#[test]
fn dsdetected_and_datareftx_payloads_parse_to_their_last_byte() {
    let Message::DsDetected(d) =
        round_trip_payload("dsdetected", &vector("jcl_dsdetected_payload_regtest.hex"))
    else {
        panic!("not dsdetected")
    };
    assert_eq!(d.version, 1);
    assert_eq!(d.blocks.len(), 5);
    let prev = d.blocks[0].headers.last().unwrap().prev_hash;
    assert!(d
        .blocks
        .iter()
        .all(|b| b.headers.last().unwrap().prev_hash == prev));
    assert!(d
        .blocks
        .iter()
        .all(|b| b.proof.flags == 5 && b.proof.index == 1));
    let Message::DataRefTx(t) =
        round_trip_payload("datareftx", &vector("jcl_datareftx_payload.hex"))
    else {
        panic!("not datareftx")
    };
    assert_eq!(t.tx.size(), 541);
    assert_eq!(t.proof.flags, 5);
}

#[test]
fn extmsg_header_for_a_5_gib_block_is_refused_from_the_header_alone_by_default() {
    let header = vector("derived/extmsg_header_block_5GiB.hex");
    assert_eq!(header.len(), 44);
    let mut buf = BytesMut::from(&header[..]);
    match MessageCodec::new(Network::Mainnet).decode(&mut buf) {
        Err(CodecError::Oversized {
            command,
            length,
            limit,
        }) => {
            assert_eq!(command, "block");
            assert_eq!(length, 5 * 1024 * 1024 * 1024);
            assert_eq!(limit, 4 * 1024 * 1024 * 1024);
        }
        other => panic!("expected Oversized, got {other:?}"),
    }
    assert_eq!(
        buf.len(),
        44,
        "nothing past the header was consumed or buffered"
    );
}

#[test]
fn extmsg_header_within_a_raised_block_limit_waits_for_the_payload_without_reserving_it() {
    let header = vector("derived/extmsg_header_block_5GiB.hex");
    let mut codec = MessageCodec::new(Network::Mainnet).with_recv_limits(RecvLimits {
        max_block: 8 * 1024 * 1024 * 1024,
        ..RecvLimits::default()
    });
    let mut buf = BytesMut::from(&header[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(buf.is_empty());
    assert!(
        buf.capacity() <= 128 * 1024,
        "capacity {} grew from a declared length",
        buf.capacity()
    );
    // The header is remembered: more bytes do not restart parsing.
    buf.extend_from_slice(&[0u8; 1000]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(
        buf.capacity() <= 2 * (1000 + 64 * 1024),
        "capacity {}",
        buf.capacity()
    );
}

#[test]
fn a_large_block_encodes_with_an_extended_header_only_to_70016_peers() {
    // Only the decision is tested: encoding 4 GiB for real would take minutes.
    let mut codec = MessageCodec::new(Network::Mainnet);
    assert_eq!(codec.send_limit_for("block"), 0xFFFF_FFFF);
    codec.set_peer_version(70016);
    assert_eq!(codec.send_limit_for("block"), u64::MAX);
}
