//! The node's catalogue (docs/PROTOCOL.md §1.5, §2.7, §2.8, §3, §5), one test per rule, on
//! [`PeerProtocol`] with a fake clock: each test feeds what a peer sends and asserts the exact
//! actions: what is sent, delivered, scored, banned and why the connection closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;
use crate::bitcoin::{BlockHeader, Hash, InvVect, NetAddress, TimestampedNetAddress};
use crate::p2p::codec::CodecError;
use crate::p2p::messages::{
    AuthChallenge, CompactBlock, DsDetected, FilterLoad, RevokeMid, SendCmpct,
};
use crate::p2p::DisconnectReason as Reason;

fn version(v: i32) -> VersionMessage {
    VersionMessage {
        version: v,
        services: 0x21,
        timestamp: 1_700_000_000,
        receiver: NetAddress::UNSPECIFIED,
        sender: NetAddress::UNSPECIFIED,
        nonce: 0xfeed,
        user_agent: "/Bitcoin SV:1.2.2/".into(),
        start_height: 100,
        relay: true,
        association_id: None,
    }
}

fn settings(flow: HandshakeFlow) -> ProtocolSettings {
    ProtocolSettings {
        flow,
        network: Network::Regtest,
        ours: VersionMessage {
            nonce: 0xabcd,
            services: 0,
            ..version(70016)
        },
        nonces: NonceRegistry::default(),
        banned_agent: Arc::new(|ua: &str| ua.to_lowercase().contains("abc")),
        handshake_timeout: Duration::from_secs(60),
        ping_interval: Duration::from_secs(120),
        ping_timeout: Duration::from_secs(1200),
        max_recv_payload: 2 * 1024 * 1024,
        whitelisted: false,
        ask_for_addresses: false,
    }
}

/// An outbound connection to a peer of protocol version `v`, past its handshake.
fn established(v: i32, t0: Instant) -> PeerProtocol {
    let mut p = PeerProtocol::new(settings(HandshakeFlow::Outbound), t0);
    p.start();
    p.on_message(Message::Version(version(v)), t0);
    let out = p.on_message(Message::Verack, t0);
    assert!(
        matches!(out.first(), Some(Action::Established(_))),
        "{out:?}"
    );
    p
}

fn sent(out: &[Action]) -> Vec<&str> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m.command()),
            _ => None,
        })
        .collect()
}

fn offences(out: &[Action]) -> Vec<(Misbehavior, u32)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Misbehaving { offence, score } => Some((*offence, *score)),
            _ => None,
        })
        .collect()
}

fn disconnect(out: &[Action]) -> Option<&Reason> {
    out.iter().find_map(|a| match a {
        Action::Disconnect(r) => Some(r),
        _ => None,
    })
}

fn banned(out: &[Action]) -> Option<&BanReason> {
    out.iter().find_map(|a| match a {
        Action::Ban(r) => Some(r),
        _ => None,
    })
}

fn delivered(out: &[Action]) -> bool {
    out.iter().any(|a| matches!(a, Action::Deliver(_)))
}

/// Feeds `msg` until the score reaches the threshold; returns the last actions and how many
/// messages it took.
fn until_banned(p: &mut PeerProtocol, msg: &Message, t0: Instant) -> (Vec<Action>, usize) {
    for n in 1..=200 {
        let out = p.on_message(msg.clone(), t0);
        if disconnect(&out).is_some() {
            return (out, n);
        }
    }
    panic!("never banned");
}

fn header_after(prev: Hash, nonce: u32) -> BlockHeader {
    BlockHeader {
        version: 1,
        prev_hash: prev,
        merkle_root: Hash::ZERO,
        time: 1_700_000_000,
        bits: 0x207f_ffff,
        nonce,
    }
}

// --- Handshake and what follows it (§2.5–2.8) ---

#[test]
fn completion_sends_protoconf_then_sendheaders_to_a_70016_peer() {
    let t0 = Instant::now();
    let mut p = PeerProtocol::new(settings(HandshakeFlow::Outbound), t0);
    assert_eq!(sent(&p.start()), ["version"]);
    assert_eq!(
        sent(&p.on_message(Message::Version(version(70016)), t0)),
        ["verack"]
    );
    let out = p.on_message(Message::Verack, t0);
    assert!(matches!(out[0], Action::Established(_)));
    assert_eq!(sent(&out), ["protoconf", "sendheaders"]);
    assert!(p.is_established());
}

#[test]
fn a_learning_manager_asks_each_outbound_peer_for_addresses_once_after_the_handshake() {
    let t0 = Instant::now();
    let learning = ProtocolSettings {
        ask_for_addresses: true,
        ..settings(HandshakeFlow::Outbound)
    };
    let mut p = PeerProtocol::new(learning, t0);
    p.start();
    // Nothing but verack before the peer's verack (missing-verack, §2.5).
    assert_eq!(
        sent(&p.on_message(Message::Version(version(70016)), t0)),
        ["verack"]
    );
    let out = p.on_message(Message::Verack, t0);
    assert_eq!(sent(&out), ["protoconf", "sendheaders", "getaddr"]);
    // Once: later traffic never asks again.
    assert!(sent(&p.on_message(Message::Ping(7), t0)) == ["pong"]);
}

#[test]
fn inbound_peers_and_non_learning_connections_are_never_asked_for_addresses() {
    let t0 = Instant::now();
    let mut inbound = PeerProtocol::new(
        ProtocolSettings {
            ask_for_addresses: true,
            ..settings(HandshakeFlow::Inbound)
        },
        t0,
    );
    inbound.start();
    let mut all = sent(&inbound.on_message(Message::Version(version(70016)), t0))
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    let out = inbound.on_message(Message::Verack, t0);
    assert!(inbound.is_established());
    all.extend(sent(&out).into_iter().map(str::to_string));
    assert!(!all.iter().any(|c| c == "getaddr"), "{all:?}");

    let mut p = PeerProtocol::new(settings(HandshakeFlow::Outbound), t0);
    p.start();
    p.on_message(Message::Version(version(70016)), t0);
    assert!(!sent(&p.on_message(Message::Verack, t0)).contains(&"getaddr"));
}

#[test]
fn old_peers_get_neither_protoconf_nor_sendheaders() {
    let t0 = Instant::now();
    let mut p = PeerProtocol::new(settings(HandshakeFlow::Outbound), t0);
    p.start();
    p.on_message(Message::Version(version(70001)), t0);
    assert!(sent(&p.on_message(Message::Verack, t0)).is_empty());
}

#[test]
fn missing_version_costs_one_point_each_and_bans_at_one_hundred() {
    let t0 = Instant::now();
    let mut p = PeerProtocol::new(settings(HandshakeFlow::Inbound), t0);
    let out = p.on_message(Message::GetAddr, t0);
    assert_eq!(offences(&out), [(Misbehavior::MissingVersion, 1)]);
    let (out, n) = until_banned(&mut p, &Message::GetAddr, t0);
    assert_eq!(n, 99);
    assert_eq!(
        banned(&out),
        Some(&BanReason::Misbehavior {
            score: 100,
            reason: "missing-version".into()
        })
    );
    assert_eq!(
        disconnect(&out),
        Some(&Reason::Misbehavior {
            score: 100,
            reason: Misbehavior::MissingVersion
        })
    );
    assert!(p.is_closed());
    assert!(p.on_message(Message::GetAddr, t0).is_empty(), "closed");
}

fn malformed(command: &str) -> CodecError {
    CodecError::Malformed {
        command: command.into(),
        offset: 0,
        source: crate::bitcoin::DecodeError::UnexpectedEnd {
            offset: 0,
            needed: 1,
        },
    }
}

fn over_long(command: &str) -> CodecError {
    CodecError::VarIntTooLarge {
        command: command.into(),
        offset: 0,
        value: 1 << 33,
    }
}

#[test]
fn an_unparsable_message_before_the_handshake_is_missing_version_or_verack_without_a_reject() {
    let t0 = Instant::now();
    let mut p = PeerProtocol::new(settings(HandshakeFlow::Inbound), t0);
    // Before the peer's `version` the node drops an `inv` unread: +1, no `reject`, and an
    // over-long var int inside it is never seen.
    let out = p.on_codec_error(&malformed("inv"), t0);
    assert_eq!(offences(&out), [(Misbehavior::MissingVersion, 1)]);
    assert!(sent(&out).is_empty(), "{out:?}");
    let out = p.on_codec_error(&over_long("inv"), t0);
    assert_eq!(offences(&out), [(Misbehavior::MissingVersion, 2)]);
    assert!(sent(&out).is_empty(), "{out:?}");
    // `authresp` too, before the peer's `version`.
    let out = p.on_codec_error(&malformed("authresp"), t0);
    assert_eq!(offences(&out), [(Misbehavior::MissingVersion, 3)]);
    assert!(sent(&out).is_empty(), "{out:?}");
    // After the peer's `version`, before its `verack`: missing-verack; `authresp` is read now,
    // so an unparsable one gets its `reject`.
    p.on_message(Message::Version(version(70016)), t0);
    let out = p.on_codec_error(&malformed("headers"), t0);
    assert_eq!(offences(&out), [(Misbehavior::MissingVerack, 4)]);
    assert!(sent(&out).is_empty(), "{out:?}");
    let out = p.on_codec_error(&malformed("authresp"), t0);
    assert!(offences(&out).is_empty());
    assert!(sent(&out).contains(&"reject"), "{out:?}");
}

#[test]
fn a_first_version_that_does_not_parse_is_refused_without_a_score() {
    let t0 = Instant::now();
    for e in [malformed("version"), over_long("version")] {
        let mut p = PeerProtocol::new(settings(HandshakeFlow::Inbound), t0);
        let out = p.on_codec_error(&e, t0);
        match out.as_slice() {
            [Action::Send(Message::Reject(r)), Action::Disconnect(d)] => {
                assert_eq!(
                    (r.message.as_str(), r.code),
                    ("version", RejectCode::StreamSetup)
                );
                assert_eq!(d, &Reason::Protocol(ProtocolViolation::MalformedVersion));
            }
            other => panic!("{other:?}"),
        }
        assert!(offences(&out).is_empty(), "no score, not even over-long");
        assert!(banned(&out).is_none());
    }
}

#[test]
fn a_later_version_that_does_not_parse_is_a_duplicate() {
    let t0 = Instant::now();
    // Between the peer's `version` and its `verack`, and after the handshake: the node sees a
    // second `version` before it reads a byte of it.
    let mut p = PeerProtocol::new(settings(HandshakeFlow::Inbound), t0);
    p.on_message(Message::Version(version(70016)), t0);
    let out = p.on_codec_error(&over_long("version"), t0);
    assert_eq!(offences(&out), [(Misbehavior::MultipleVersion, 1)]);
    assert_eq!(sent(&out), ["reject"]);
    let mut p = established(70016, t0);
    let out = p.on_codec_error(&malformed("version"), t0);
    assert_eq!(offences(&out), [(Misbehavior::MultipleVersion, 1)]);
    match out.first() {
        Some(Action::Send(Message::Reject(r))) => assert_eq!(r.code, RejectCode::Duplicate),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unparsable_reject_is_never_answered_nor_scored() {
    let t0 = Instant::now();
    let mut p = PeerProtocol::new(settings(HandshakeFlow::Inbound), t0);
    assert!(p.on_codec_error(&malformed("reject"), t0).is_empty());
    let mut p = established(70016, t0);
    assert!(p.on_codec_error(&malformed("reject"), t0).is_empty());
    assert!(p.on_codec_error(&over_long("reject"), t0).is_empty());
    assert_eq!(p.score(), 0);
}

#[test]
fn missing_verack_costs_one_point() {
    let t0 = Instant::now();
    let mut p = PeerProtocol::new(settings(HandshakeFlow::Outbound), t0);
    p.start();
    p.on_message(Message::Version(version(70016)), t0);
    let out = p.on_message(Message::Ping(1), t0);
    assert_eq!(offences(&out), [(Misbehavior::MissingVerack, 1)]);
    assert!(
        sent(&out).is_empty(),
        "the early ping is dropped, not answered"
    );
}

#[test]
fn whitelisted_peers_are_scored_but_never_banned() {
    let t0 = Instant::now();
    let mut s = settings(HandshakeFlow::Inbound);
    s.whitelisted = true;
    let mut p = PeerProtocol::new(s, t0);
    for _ in 0..150 {
        let out = p.on_message(Message::GetAddr, t0);
        assert!(banned(&out).is_none() && disconnect(&out).is_none());
    }
    assert_eq!(p.score(), 150);
}

#[test]
fn a_duplicate_version_after_the_handshake_is_rejected_and_costs_one_point() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let out = p.on_message(Message::Version(version(70016)), t0);
    assert_eq!(sent(&out), ["reject"]);
    match &out[0] {
        Action::Send(Message::Reject(r)) => {
            assert_eq!(r.code, RejectCode::Duplicate);
            assert_eq!(r.reason, "Duplicate version message");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(offences(&out), [(Misbehavior::MultipleVersion, 1)]);
    let (_, n) = until_banned(&mut p, &Message::Version(version(70016)), t0);
    assert_eq!(
        n, 99,
        "120 duplicate versions ban the peer at the 100th point"
    );
}

#[test]
fn a_banned_user_agent_is_a_ban() {
    let t0 = Instant::now();
    let mut p = PeerProtocol::new(settings(HandshakeFlow::Inbound), t0);
    let mut v = version(70016);
    v.user_agent = "/Bitcoin ABC:0.22/".into();
    let out = p.on_message(Message::Version(v), t0);
    assert!(matches!(
        banned(&out),
        Some(BanReason::BannedUserAgent { .. })
    ));
    assert!(matches!(
        disconnect(&out),
        Some(Reason::Handshake(HandshakeFailure::BannedUserAgent { .. }))
    ));
}

#[test]
fn the_handshake_times_out_at_the_deadline() {
    let t0 = Instant::now();
    let mut p = PeerProtocol::new(settings(HandshakeFlow::Inbound), t0);
    assert_eq!(p.deadline(), t0 + Duration::from_secs(60));
    assert!(p.on_tick(t0 + Duration::from_secs(59), || 1).is_empty());
    let out = p.on_tick(t0 + Duration::from_secs(60), || 1);
    assert!(matches!(
        disconnect(&out),
        Some(Reason::Handshake(HandshakeFailure::Timeout(_)))
    ));
}

// --- Keepalive (§3.2) ---

#[test]
fn pings_are_answered_and_our_pings_measure_rtt() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    assert_eq!(
        p.on_message(Message::Ping(7), t0),
        [Action::Send(Message::Pong(7))]
    );
    assert_eq!(p.on_tick(t0, || 42), [Action::Send(Message::Ping(42))]);
    let out = p.on_message(Message::Pong(42), t0 + Duration::from_millis(30));
    assert_eq!(
        out,
        [Action::Learned(Learned::Rtt(Duration::from_millis(30)))]
    );
    // A pong we did not ask for is the application's.
    assert!(delivered(&p.on_message(Message::Pong(5), t0)));
}

#[test]
fn peers_at_or_below_60000_get_nonce_less_pings_and_no_pongs() {
    let t0 = Instant::now();
    let mut p = established(60000, t0);
    assert!(p.on_message(Message::Ping(7), t0).is_empty(), "no pong");
    // Their empty ping fails to parse as a nonce ping: neither a reject nor a score.
    let e = CodecError::Malformed {
        command: "ping".into(),
        offset: 0,
        source: crate::bitcoin::DecodeError::UnexpectedEnd {
            offset: 0,
            needed: 8,
        },
    };
    assert!(p.on_codec_error(&e, t0).is_empty());
    // Our ping is due at once and then every interval, whether or not anything comes back.
    assert_eq!(p.on_tick(t0, || 9), [Action::Send(Message::Ping(0))]);
    let next = t0 + Duration::from_secs(120);
    assert_eq!(p.on_tick(next, || 9), [Action::Send(Message::Ping(0))]);
    // Silent for 90 minutes: dead.
    let out = p.on_tick(t0 + Duration::from_secs(5400), || 9);
    assert!(matches!(disconnect(&out), Some(Reason::PingTimeout(_))));
}

#[test]
fn an_unanswered_ping_times_out_the_peer() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    p.on_tick(t0, || 3);
    let out = p.on_tick(t0 + Duration::from_secs(1200), || 4);
    assert!(matches!(disconnect(&out), Some(Reason::PingTimeout(_))));
}

// --- Codec-error policy (§1.3–1.5) ---

#[test]
fn a_wrong_magic_after_the_handshake_is_a_ban() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let e = CodecError::BadMagic {
        expected: Some(Network::Regtest.magic()),
        received: Network::Testnet.magic(),
        network: Some(Network::Testnet),
    };
    let out = p.on_codec_error(&e, t0);
    assert!(matches!(
        banned(&out),
        Some(BanReason::NetworkMismatch { .. })
    ));
    assert!(matches!(disconnect(&out), Some(Reason::BadFrame(_))));
}

#[test]
fn an_oversized_header_is_a_direct_ban() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let e = CodecError::Oversized {
        command: "inv".into(),
        length: 3 << 20,
        limit: 2 << 20,
    };
    let out = p.on_codec_error(&e, t0);
    assert_eq!(
        banned(&out),
        Some(&BanReason::Misbehavior {
            score: 100,
            reason: "Oversized header detected".into()
        })
    );
    assert!(matches!(disconnect(&out), Some(Reason::Oversized(_))));
}

#[test]
fn an_unparsable_payload_gets_reject_malformed_and_no_score() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let e = CodecError::Malformed {
        command: "getheaders".into(),
        offset: 4,
        source: crate::bitcoin::DecodeError::UnexpectedEnd {
            offset: 4,
            needed: 1,
        },
    };
    let out = p.on_codec_error(&e, t0);
    match out.as_slice() {
        [Action::Send(Message::Reject(r))] => {
            assert_eq!(r.code, RejectCode::Malformed);
            assert_eq!(r.message, "getheaders");
            assert_eq!(r.reason, "error parsing message");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_over_long_var_int_gets_reject_and_costs_one_point() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let e = CodecError::VarIntTooLarge {
        command: "inv".into(),
        offset: 0,
        value: 1 << 33,
    };
    let out = p.on_codec_error(&e, t0);
    assert_eq!(sent(&out), ["reject"]);
    assert_eq!(offences(&out), [(Misbehavior::OverLongSize, 1)]);
}

fn bad_checksum() -> CodecError {
    CodecError::BadChecksum {
        command: "inv".into(),
        expected: [0; 4],
        actual: [1; 4],
    }
}

#[test]
fn bad_checksums_cost_nothing_until_a_run_passes_one_hundred() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let step = Duration::from_millis(10);
    // The connection's start counts as the run's first event, as at the node.
    for i in 1..=100 {
        assert!(p.on_codec_error(&bad_checksum(), t0 + step * i).is_empty());
    }
    let out = p.on_codec_error(&bad_checksum(), t0 + step * 101);
    assert_eq!(offences(&out), [(Misbehavior::InvalidChecksum, 1)]);
    // A pause of 500 ms resets the count to zero: then the 102nd costs the first point.
    let mut t = t0 + step * 101 + Duration::from_millis(500);
    for _ in 0..101 {
        assert!(p.on_codec_error(&bad_checksum(), t).is_empty());
        t += step;
    }
    assert_eq!(
        offences(&p.on_codec_error(&bad_checksum(), t)),
        [(Misbehavior::InvalidChecksum, 2)]
    );
}

#[test]
fn a_malformed_command_field_is_dropped_silently() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let e = CodecError::BadCommand { raw: [0xff; 12] };
    assert!(p.on_codec_error(&e, t0).is_empty());
}

// --- Post-handshake rules (§3, §5) ---

#[test]
fn an_addr_of_more_than_1000_entries_costs_twenty_and_is_dropped() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let entry = TimestampedNetAddress {
        time: 0,
        addr: NetAddress::UNSPECIFIED,
    };
    let out = p.on_message(Message::Addr(vec![entry; 1001]), t0);
    assert_eq!(offences(&out), [(Misbehavior::OversizedAddr, 20)]);
    assert!(!delivered(&out));
    assert!(delivered(
        &p.on_message(Message::Addr(vec![entry; 1000]), t0)
    ));
}

#[test]
fn more_than_2000_headers_cost_twenty() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let mut headers = Vec::new();
    let mut prev = Hash::ZERO;
    for i in 0..2001 {
        let h = header_after(prev, i);
        prev = h.hash();
        headers.push(h);
    }
    let out = p.on_message(Message::Headers(headers.clone()), t0);
    assert_eq!(offences(&out), [(Misbehavior::TooManyHeaders, 20)]);
    headers.pop();
    assert!(delivered(&p.on_message(Message::Headers(headers), t0)));
}

#[test]
fn headers_that_do_not_chain_cost_twenty() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let a = header_after(Hash::ZERO, 1);
    let b = header_after(Hash::ZERO, 2); // does not build on `a`
    let out = p.on_message(Message::Headers(vec![a, b]), t0);
    assert_eq!(offences(&out), [(Misbehavior::DisconnectedHeader, 20)]);
    assert!(!delivered(&out));
}

#[test]
fn every_tenth_unconnecting_announcement_costs_twenty() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    for _ in 0..9 {
        assert!(p.on_unconnecting_headers().is_empty());
    }
    assert_eq!(
        offences(&p.on_unconnecting_headers()),
        [(Misbehavior::TooManyUnconnectedHeaders, 20)]
    );
}

#[test]
fn a_second_sendheaders_or_sendhdrsen_costs_one_point() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    assert_eq!(
        p.on_message(Message::SendHeaders, t0),
        [Action::Learned(Learned::WantsHeaders)]
    );
    assert_eq!(
        offences(&p.on_message(Message::SendHeaders, t0)),
        [(Misbehavior::InvalidSendHeaders, 1)]
    );
    assert!(p.on_message(Message::SendHdrsEn, t0).is_empty());
    assert_eq!(
        offences(&p.on_message(Message::SendHdrsEn, t0)),
        [(Misbehavior::InvalidSendHdrsEn, 2)]
    );
}

#[test]
fn a_second_protoconf_disconnects_without_a_ban() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let pc = Message::Protoconf(Protoconf::new(2 * 1024 * 1024, "Default"));
    assert_eq!(
        p.on_message(pc.clone(), t0),
        [Action::Learned(Learned::MaxRecv(2 * 1024 * 1024))]
    );
    let out = p.on_message(pc, t0);
    assert!(banned(&out).is_none());
    assert_eq!(
        disconnect(&out),
        Some(&Reason::Protocol(ProtocolViolation::DuplicateProtoconf))
    );
}

#[test]
fn a_protoconf_below_one_mebibyte_disconnects() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let out = p.on_message(Message::Protoconf(Protoconf::new(1000, "Default")), t0);
    assert_eq!(
        disconnect(&out),
        Some(&Reason::Protocol(ProtocolViolation::ProtoconfLimitTooLow(
            1000
        )))
    );
}

#[test]
fn authch_is_ignored_entirely_as_by_a_node_without_a_miner_id() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let ch = Message::AuthCh(AuthChallenge {
        version: 1,
        challenge: Bytes::from_static(&[7; 32]),
    });
    for _ in 0..20 {
        assert!(
            p.on_message(ch.clone(), t0).is_empty(),
            "no reply, no score"
        );
    }
}

#[test]
fn authresp_is_rate_limited() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let resp = Message::AuthResp(crate::p2p::messages::AuthResponse {
        public_key: Bytes::from_static(&[2; 33]),
        nonce: 1,
        signature: Bytes::from_static(&[0x30; 71]),
    });
    for _ in 0..6 {
        assert!(p.on_message(resp.clone(), t0).is_empty());
    }
    assert_eq!(
        offences(&p.on_message(resp, t0)),
        [(Misbehavior::AuthRespRateLimit, 10)]
    );
}

#[test]
fn revokemid_is_never_scored_as_by_a_node_without_a_miner_id() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let bad = RevokeMid {
        version: 1,
        revocation_key: [2; 33],
        miner_id: [2; 33],
        revocation_message: [2; 33],
        signatures: Bytes::from_static(&[1]),
    };
    assert!(offences(&p.on_message(Message::RevokeMid(bad), t0)).is_empty());
    let e = CodecError::Malformed {
        command: "revokemid".into(),
        offset: 0,
        source: crate::bitcoin::DecodeError::UnexpectedEnd {
            offset: 0,
            needed: 4,
        },
    };
    assert!(p.on_codec_error(&e, t0).is_empty(), "no reject, no score");
}

#[test]
fn an_invalid_dsdetected_costs_ten() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let bad = DsDetected {
        version: 1,
        blocks: Vec::new(),
    };
    assert_eq!(
        offences(&p.on_message(Message::DsDetected(bad), t0)),
        [(Misbehavior::InvalidDsDetected, 10)]
    );
    let e = CodecError::Malformed {
        command: "dsdetected".into(),
        offset: 0,
        source: crate::bitcoin::DecodeError::UnexpectedEnd {
            offset: 0,
            needed: 2,
        },
    };
    assert_eq!(
        offences(&p.on_codec_error(&e, t0)),
        [(Misbehavior::MalformedDsDetected, 20)]
    );
}

#[test]
fn bloom_messages_without_node_bloom_cost_one_hundred() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let f = Message::FilterLoad(FilterLoad {
        filter: Bytes::from_static(&[0; 8]),
        hash_funcs: 1,
        tweak: 0,
        flags: 0,
    });
    let out = p.on_message(f.clone(), t0);
    assert_eq!(offences(&out), [(Misbehavior::NoBloomVersion, 100)]);
    assert!(banned(&out).is_some());
    // An old peer is only disconnected.
    let mut old = established(70010, t0);
    let out = old.on_message(f, t0);
    assert!(banned(&out).is_none());
    assert_eq!(
        disconnect(&out),
        Some(&Reason::Protocol(ProtocolViolation::BloomWithoutService))
    );
}

#[test]
fn oversized_bloom_filters_and_elements_cost_one_hundred_when_we_offer_bloom() {
    let t0 = Instant::now();
    let mut s = settings(HandshakeFlow::Outbound);
    s.ours.services = crate::p2p::limits::NODE_BLOOM;
    let mut p = PeerProtocol::new(s.clone(), t0);
    p.start();
    p.on_message(Message::Version(version(70016)), t0);
    p.on_message(Message::Verack, t0);
    let big = Message::FilterLoad(FilterLoad {
        filter: Bytes::from(vec![0; 36_001]),
        hash_funcs: 1,
        tweak: 0,
        flags: 0,
    });
    assert_eq!(
        offences(&p.on_message(big, t0)),
        [(Misbehavior::OversizedBloomFilter, 100)]
    );
    let mut p = PeerProtocol::new(s, t0);
    p.start();
    p.on_message(Message::Version(version(70016)), t0);
    p.on_message(Message::Verack, t0);
    let add = Message::FilterAdd(Bytes::from(vec![0; 521]));
    assert_eq!(
        offences(&p.on_message(add, t0)),
        [(Misbehavior::InvalidFilterAdd, 100)]
    );
}

#[test]
fn an_empty_or_out_of_range_compact_block_costs_one_hundred() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let empty = CompactBlock {
        header: header_after(Hash::ZERO, 1),
        nonce: 1,
        short_ids: Vec::new(),
        prefilled: Vec::new(),
    };
    assert_eq!(
        offences(&p.on_message(Message::CmpctBlock(empty), t0)),
        [(Misbehavior::InvalidCmpctBlock, 100)]
    );
}

#[test]
fn an_inv_of_an_unsupported_type_disconnects() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let ok = InvVect {
        inv_type: crate::bitcoin::InvType::Tx,
        hash: Hash::ZERO,
    };
    assert!(delivered(&p.on_message(Message::Inv(vec![ok]), t0)));
    let bad = InvVect {
        inv_type: crate::bitcoin::InvType::FilteredBlock,
        hash: Hash::ZERO,
    };
    assert_eq!(
        disconnect(&p.on_message(Message::Inv(vec![ok, bad]), t0)),
        Some(&Reason::Protocol(ProtocolViolation::UnsupportedInvType(3)))
    );
}

#[test]
fn reject_toobusy_backs_off_five_seconds() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    let r = Message::Reject(Reject {
        message: "getdata".into(),
        code: RejectCode::TooBusy,
        reason: "Max blocks' downloading size exceeded.".into(),
        hash: None,
    });
    let out = p.on_message(r, t0);
    assert_eq!(out[0], Action::BackOff(t0 + Duration::from_secs(5)));
    assert!(delivered(&out));
}

#[test]
fn preferences_are_recorded_and_feefilters_outside_the_money_range_ignored() {
    let t0 = Instant::now();
    let mut p = established(70016, t0);
    assert_eq!(
        p.on_message(
            Message::SendCmpct(SendCmpct {
                announce: false,
                version: 1
            }),
            t0
        ),
        [Action::Learned(Learned::CompactBlocks {
            announce: false,
            version: 1
        })]
    );
    assert_eq!(
        p.on_message(Message::FeeFilter(1000), t0),
        [Action::Learned(Learned::FeeFilter(1000))]
    );
    assert!(p.on_message(Message::FeeFilter(-1), t0).is_empty());
}
