//! Negative tests: one per framing or payload rule, each asserting the exact error.

mod common;

use bitcoinsv::bitcoin::{BlockHeader, DecodeError, Encode, Hash, Network};
use bitcoinsv::p2p::codec::{frame_bytes, MessageCodec};
use bitcoinsv::p2p::messages::{AssociationId, VersionMessage};
use bitcoinsv::p2p::{CodecError, Message};
use bytes::{BufMut, BytesMut};
use common::vector;

const MAIN: [u8; 4] = [0xe3, 0xe1, 0xf3, 0xe8];

fn decode(frame: &[u8]) -> (Result<Option<Message>, CodecError>, BytesMut) {
    let mut buf = BytesMut::from(frame);
    let r = MessageCodec::new(Network::Mainnet).decode(&mut buf);
    (r, buf)
}

#[test]
fn wrong_magic_is_a_fatal_bad_magic_error() {
    let mut f = vector("jcl_bsvmain_ping_frame.hex");
    f[0] = 0x00;
    match decode(&f).0 {
        Err(e @ CodecError::BadMagic { .. }) => {
            assert!(e.is_fatal());
            let CodecError::BadMagic {
                received, network, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(received, [0x00, 0xe1, 0xf3, 0xe8]);
            assert_eq!(network, None);
        }
        other => panic!("expected BadMagic, got {other:?}"),
    }
}

#[test]
fn bad_checksum_skips_exactly_that_frame_and_the_next_one_decodes() {
    let mut stream = vector("jcl_bsvmain_ping_frame.hex");
    stream[20] ^= 0xff;
    stream.extend(vector("jcl_bsvmain_pong_frame.hex"));
    let mut buf = BytesMut::from(&stream[..]);
    let mut codec = MessageCodec::new(Network::Mainnet);
    match codec.decode(&mut buf) {
        Err(e @ CodecError::BadChecksum { .. }) => {
            assert!(!e.is_fatal());
        }
        other => panic!("expected BadChecksum, got {other:?}"),
    }
    assert!(matches!(codec.decode(&mut buf), Ok(Some(Message::Pong(_)))));
}

#[test]
fn oversized_declared_length_fails_with_only_the_header_buffered() {
    // An `inv` declaring 2 MiB + 1 bytes: one byte over the default non-block limit.
    let mut header = BytesMut::new();
    header.put_slice(&MAIN);
    header.put_slice(b"inv\0\0\0\0\0\0\0\0\0");
    header.put_u32_le(2 * 1024 * 1024 + 1);
    header.put_u32_le(0);
    let (r, buf) = decode(&header);
    match r {
        Err(e @ CodecError::Oversized { .. }) => {
            assert!(e.is_fatal());
            let CodecError::Oversized {
                command,
                length,
                limit,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(command, "inv");
            assert_eq!(length, 2 * 1024 * 1024 + 1);
            assert_eq!(limit, 2 * 1024 * 1024);
        }
        other => panic!("expected Oversized, got {other:?}"),
    }
    assert_eq!(buf.len(), 24);
    assert!(
        buf.capacity() < 4096,
        "no allocation for the declared payload"
    );
}

#[test]
fn protoconf_over_1_mib_is_oversized_even_under_the_general_limit() {
    let mut header = BytesMut::new();
    header.put_slice(&MAIN);
    header.put_slice(b"protoconf\0\0\0");
    header.put_u32_le(1024 * 1024 + 1);
    header.put_u32_le(0);
    assert!(matches!(
        decode(&header).0,
        Err(CodecError::Oversized { limit: 1048576, .. })
    ));
}

#[test]
fn non_canonical_var_int_count_is_refused() {
    // inv with count 1 encoded as 0xfd 0x01 0x00.
    let mut payload = vec![0xfd, 0x01, 0x00];
    payload.extend_from_slice(&[1, 0, 0, 0]);
    payload.extend_from_slice(&[0xab; 32]);
    let f = frame_bytes(MAIN, "inv", &payload);
    match decode(&f).0 {
        Err(CodecError::NonCanonicalVarInt { command, offset }) => {
            assert_eq!(command, "inv");
            assert_eq!(offset, 0);
        }
        other => panic!("expected NonCanonicalVarInt, got {other:?}"),
    }
}

#[test]
fn var_int_over_u32_max_is_refused() {
    let payload = [0xff, 0, 0, 0, 0, 1, 0, 0, 0];
    let f = frame_bytes(MAIN, "inv", &payload);
    match decode(&f).0 {
        Err(CodecError::VarIntTooLarge {
            command,
            offset,
            value,
        }) => {
            assert_eq!(command, "inv");
            assert_eq!(offset, 0);
            assert_eq!(value, 0x1_0000_0000);
        }
        other => panic!("expected VarIntTooLarge, got {other:?}"),
    }
}

#[test]
fn a_count_larger_than_the_payload_is_refused_without_allocating_for_it() {
    // inv claiming 0xFFFFFFFF entries in a 5-byte payload.
    let f = frame_bytes(MAIN, "inv", &[0xfe, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        decode(&f).0,
        Err(CodecError::Malformed {
            source: DecodeError::UnexpectedEnd { offset: 0, .. },
            ..
        })
    ));
}

#[test]
fn every_truncated_payload_with_a_matching_header_is_malformed_not_a_panic() {
    for name in [
        "jcl_bsvmain_version_frame_synthetic.hex",
        "jcl_bsvmain_addr_frame.hex",
        "jcl_bsvmain_inv_frame.hex",
        "jcl_bsvmain_getheaders_frame.hex",
        "jcl_bsvmain_reject_frame.hex",
        "jcl_bsvmain_tx_frame_synthetic.hex",
        "jcl_bsvmain_ping_frame.hex",
        "derived/node_sendcmpct_frame.hex",
    ] {
        let frame = vector(name);
        let command = std::str::from_utf8(&frame[4..16])
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        let payload = &frame[24..];
        // `version` is lenient past addr_recv and `reject` past its reason; cut inside the
        // mandatory part for them, anywhere for the others.
        let mandatory = match command.as_str() {
            "version" => 46,
            "reject" => 1,
            _ => payload.len(),
        };
        for cut in 0..mandatory {
            let f = frame_bytes(MAIN, &command, &payload[..cut]);
            match decode(&f).0 {
                Err(CodecError::Malformed { command: c, .. }) => assert_eq!(c, command),
                other => panic!("{name} cut at {cut}: expected Malformed, got {other:?}"),
            }
        }
    }
}

fn version_with_tail(tail: &[u8]) -> Vec<u8> {
    let v = VersionMessage {
        version: 70016,
        services: 0,
        timestamp: 1_700_000_000,
        receiver: bitcoinsv::bitcoin::NetAddress::UNSPECIFIED,
        sender: bitcoinsv::bitcoin::NetAddress::UNSPECIFIED,
        nonce: 7,
        user_agent: "/test:1/".into(),
        start_height: 0,
        relay: true,
        association_id: None,
    };
    let mut p = v.to_vec();
    p.extend_from_slice(tail);
    p
}

#[test]
fn version_with_a_malformed_association_id_is_refused() {
    let mut too_long = vec![0x82u8, 0x00];
    too_long.extend_from_slice(&[0u8; 129]);
    let cases: [(&[u8], &str); 4] = [
        (&[0x05, 0, 1, 2, 3, 4], "UUID of 4 bytes"),
        (
            &[0x11, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "unsupported type byte 0x01",
        ),
        (&[0x11, 0x00, 1, 2], "unexpected end"),
        (&too_long, "130 bytes, at most 129"),
    ];
    for (tail, what) in cases {
        let f = frame_bytes(MAIN, "version", &version_with_tail(tail));
        match decode(&f).0 {
            Err(CodecError::Malformed {
                command, source, ..
            }) => {
                assert_eq!(command, "version");
                assert!(
                    source.to_string().contains(what),
                    "{source} should mention {what}"
                );
            }
            other => panic!("{tail:02x?}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn version_association_id_forms_are_accepted() {
    for (tail, expected) in [
        (&[0x00][..], AssociationId::Empty),
        (&[0x01, 0x09][..], AssociationId::Short(9)),
    ] {
        let f = frame_bytes(MAIN, "version", &version_with_tail(tail));
        let Ok(Some(Message::Version(v))) = decode(&f).0 else {
            panic!("not decoded")
        };
        assert_eq!(v.association_id, Some(expected));
    }
    let mut uuid = vec![0x11, 0x00];
    uuid.extend_from_slice(&[0x42; 16]);
    let f = frame_bytes(MAIN, "version", &version_with_tail(&uuid));
    let Ok(Some(Message::Version(v))) = decode(&f).0 else {
        panic!("not decoded")
    };
    assert_eq!(v.association_id, Some(AssociationId::Uuid([0x42; 16])));
}

#[test]
fn version_is_parsed_leniently_where_the_payload_ends() {
    let full = version_with_tail(&[]);
    // Stop right after addr_recv (46 bytes): everything else takes its default.
    let f = frame_bytes(MAIN, "version", &full[..46]);
    let Ok(Some(Message::Version(v))) = decode(&f).0 else {
        panic!("not decoded")
    };
    assert_eq!(v.version, 70016);
    assert_eq!(v.user_agent, "");
    assert!(v.relay);
}

#[test]
fn headers_entry_without_its_tx_count_byte_is_refused() {
    let h = BlockHeader {
        version: 1,
        prev_hash: Hash::ZERO,
        merkle_root: Hash::ZERO,
        time: 0,
        bits: 0x207fffff,
        nonce: 0,
    };
    let mut payload = vec![0x01];
    payload.extend(h.to_vec()); // no trailing tx count
    let f = frame_bytes(MAIN, "headers", &payload);
    assert!(matches!(
        decode(&f).0,
        Err(CodecError::Malformed {
            source: DecodeError::UnexpectedEnd { .. },
            ..
        })
    ));
}

#[test]
fn malformed_command_field_is_skipped_and_the_stream_continues() {
    let mut stream = frame_bytes(MAIN, "ping", &7u64.to_le_bytes()).to_vec();
    stream[4 + 5] = b'x'; // "ping\0x..." — a non-NUL after the first NUL
    stream.extend(vector("jcl_bsvmain_pong_frame.hex"));
    let mut buf = BytesMut::from(&stream[..]);
    let mut codec = MessageCodec::new(Network::Mainnet);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(CodecError::BadCommand { .. })
    ));
    assert!(matches!(codec.decode(&mut buf), Ok(Some(Message::Pong(_)))));
    assert!(buf.is_empty());
}

#[test]
fn sending_a_non_block_message_over_the_peer_limit_is_refused_and_writes_nothing() {
    let mut codec = MessageCodec::new(Network::Mainnet);
    // 1 MiB until the peer's protoconf: 29,127 inv entries (3 + 29,127 × 36 bytes) fit, 29,128
    // do not. (The node sizes its own invs at 29,126 because it keeps an 8-byte margin.)
    let inv = |n: usize| Message::Inv(vec![bitcoinsv::bitcoin::InvVect::tx(Hash::ZERO); n]);
    let mut out = BytesMut::new();
    codec.encode(&inv(29_127), &mut out).unwrap();
    out.clear();
    match codec.encode(&inv(29_128), &mut out) {
        Err(CodecError::SendOversized { command, limit, .. }) => {
            assert_eq!(command, "inv");
            assert_eq!(limit, 1024 * 1024);
        }
        other => panic!("expected SendOversized, got {other:?}"),
    }
    assert!(out.is_empty());
    // After a 2 MiB protoconf: 58,254 fit, 58,255 do not (docs/PROTOCOL.md §3.4).
    codec.set_peer_max_recv(2 * 1024 * 1024);
    codec.encode(&inv(58_254), &mut out).unwrap();
    out.clear();
    assert!(codec.encode(&inv(58_255), &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn every_prefix_of_a_valid_frame_asks_for_more_bytes() {
    for name in common::all_vectors()
        .into_iter()
        .filter(|n| n.contains("frame") && n.contains("bsv"))
    {
        let frame = vector(&name);
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            let mut codec = MessageCodec::new(
                Network::from_magic([frame[0], frame[1], frame[2], frame[3]]).unwrap(),
            );
            assert!(
                matches!(codec.decode(&mut buf), Ok(None)),
                "{name} cut at {cut}"
            );
        }
    }
}
