use super::*;
use crate::bitcoin::NetAddress;
use crate::p2p::connection::Misbehavior;

const TIMEOUT: Duration = Duration::from_secs(60);

fn version(nonce: u64, agent: &str, proto: i32) -> VersionMessage {
    VersionMessage {
        version: proto,
        services: 0x21,
        timestamp: 1_700_000_000,
        receiver: NetAddress::UNSPECIFIED,
        sender: NetAddress::UNSPECIFIED,
        nonce,
        user_agent: agent.into(),
        start_height: 100,
        relay: true,
        association_id: None,
    }
}

fn bch_filter() -> UserAgentFilter {
    Arc::new(|ua: &str| {
        let ua = ua.to_ascii_lowercase();
        ["abc", "cash", "bch"].iter().any(|p| ua.contains(p))
    })
}

fn machine(flow: HandshakeFlow, now: Instant) -> Handshake {
    Handshake::new(
        flow,
        Network::Mainnet,
        version(1111, "/bitcoinsv-rs:0.1.0/", 70016),
        NonceRegistry::default(),
        bch_filter(),
        TIMEOUT,
        now,
    )
}

fn peer() -> Message {
    Message::Version(version(2222, "/Bitcoin SV:1.2.2/", 70016))
}

fn sent(out: &[HandshakeOutput]) -> Vec<&str> {
    out.iter()
        .filter_map(|o| match o {
            HandshakeOutput::Send(m) => Some(m.command()),
            _ => None,
        })
        .collect()
}

fn completed(out: &[HandshakeOutput]) -> bool {
    out.iter()
        .any(|o| matches!(o, HandshakeOutput::Complete(_)))
}

fn failure(out: &[HandshakeOutput]) -> Option<HandshakeFailure> {
    out.iter().find_map(|o| match o {
        HandshakeOutput::Failed(f) => Some(f.clone()),
        _ => None,
    })
}

#[test]
fn outbound_sends_version_first_and_completes_with_version_then_verack() {
    let mut h = machine(HandshakeFlow::Outbound, Instant::now());
    assert_eq!(sent(&h.start()), ["version"]);
    let out = h.on_message(&peer());
    assert_eq!(sent(&out), ["verack"]);
    assert!(!completed(&out));
    let out = h.on_message(&Message::Verack);
    assert!(completed(&out));
    assert!(h.is_finished());
}

#[test]
fn outbound_completes_with_verack_before_version() {
    let mut h = machine(HandshakeFlow::Outbound, Instant::now());
    h.start();
    assert!(h.on_message(&Message::Verack).is_empty());
    let out = h.on_message(&peer());
    assert_eq!(sent(&out), ["verack"]);
    match out.last() {
        Some(HandshakeOutput::Complete(v)) => assert_eq!(v.user_agent, "/Bitcoin SV:1.2.2/"),
        other => panic!("expected completion, got {other:?}"),
    }
    // An early verack is not misbehaviour on outbound: nothing but the verack and completion.
    assert_eq!(out.len(), 2);
}

#[test]
fn inbound_waits_for_version_then_answers_version_and_verack_and_completes_on_verack() {
    let mut h = machine(HandshakeFlow::Inbound, Instant::now());
    assert!(h.start().is_empty(), "the listener never speaks first");
    assert_eq!(sent(&h.on_message(&peer())), ["version", "verack"]);
    assert!(completed(&h.on_message(&Message::Verack)));
}

#[test]
fn inbound_verack_before_version_is_missing_version_misbehaviour() {
    let mut h = machine(HandshakeFlow::Inbound, Instant::now());
    let out = h.on_message(&Message::Verack);
    assert_eq!(
        out,
        [HandshakeOutput::Misbehaving(Misbehavior::MissingVersion)]
    );
}

#[test]
fn over_capacity_gets_the_full_handshake_then_a_reject_and_never_completes() {
    let mut h = machine(HandshakeFlow::InboundOverCapacity, Instant::now());
    assert_eq!(sent(&h.on_message(&peer())), ["version", "verack"]);
    let out = h.on_message(&Message::Verack);
    assert!(!completed(&out));
    match &out[0] {
        HandshakeOutput::Send(Message::Reject(r)) => {
            assert_eq!(r.code, RejectCode::TooBusy);
            assert_eq!(r.message, "version");
        }
        other => panic!("expected a reject, got {other:?}"),
    }
    assert_eq!(failure(&out), Some(HandshakeFailure::OverCapacity));
    assert!(!HandshakeFailure::OverCapacity.is_ban());
}

#[test]
fn obsolete_version_gets_reject_0x11_and_fails_without_a_ban() {
    let mut h = machine(HandshakeFlow::Inbound, Instant::now());
    let out = h.on_message(&Message::Version(version(5, "/old/", 31799)));
    match &out[0] {
        HandshakeOutput::Send(Message::Reject(r)) => {
            assert_eq!(r.code, RejectCode::Obsolete);
            assert_eq!(r.reason, "Version must be 31800 or greater");
        }
        other => panic!("expected reject, got {other:?}"),
    }
    let f = failure(&out).unwrap();
    assert_eq!(f, HandshakeFailure::ObsoleteVersion { version: 31799 });
    assert!(!f.is_ban());
}

#[test]
fn minimum_version_31800_is_accepted() {
    let mut h = machine(HandshakeFlow::Inbound, Instant::now());
    assert_eq!(
        sent(&h.on_message(&Message::Version(version(5, "/x/", 31800)))),
        ["version", "verack"]
    );
}

#[test]
fn bch_user_agent_is_banned() {
    for agent in [
        "/Bitcoin ABC:0.22.0/",
        "/BCH Unlimited:1.9/",
        "/bitcoin-cash-node:24/",
    ] {
        let mut h = machine(HandshakeFlow::Outbound, Instant::now());
        h.start();
        let f = failure(&h.on_message(&Message::Version(version(9, agent, 70015)))).unwrap();
        assert_eq!(
            f,
            HandshakeFailure::BannedUserAgent {
                user_agent: agent.into()
            }
        );
        assert!(f.is_ban());
    }
}

#[test]
fn our_own_nonce_coming_back_is_a_self_connection_without_a_ban() {
    let nonces = NonceRegistry::default();
    let now = Instant::now();
    // The outbound side registered nonce 1111; the inbound side of the same manager sees it.
    let mut outbound = Handshake::new(
        HandshakeFlow::Outbound,
        Network::Mainnet,
        version(1111, "/us/", 70016),
        nonces.clone(),
        bch_filter(),
        TIMEOUT,
        now,
    );
    outbound.start();
    let mut inbound = Handshake::new(
        HandshakeFlow::Inbound,
        Network::Mainnet,
        version(3333, "/us/", 70016),
        nonces.clone(),
        bch_filter(),
        TIMEOUT,
        now,
    );
    let f = failure(&inbound.on_message(&Message::Version(version(1111, "/us/", 70016)))).unwrap();
    assert_eq!(f, HandshakeFailure::SelfConnection { nonce: 1111 });
    assert!(!f.is_ban());
    drop(outbound);
    assert!(
        !nonces.contains(1111),
        "nonces are forgotten when the handshake ends"
    );
}

#[test]
fn another_bsv_networks_magic_is_network_mismatch_and_unknown_magic_is_blockchain_mismatch() {
    let mut h = machine(HandshakeFlow::Outbound, Instant::now());
    let f = failure(&h.on_wrong_magic(Network::Testnet.magic())).unwrap();
    assert_eq!(
        f,
        HandshakeFailure::NetworkMismatch {
            expected: Network::Mainnet,
            received: Network::Testnet
        }
    );
    assert!(f.is_ban());
    let mut h = machine(HandshakeFlow::Outbound, Instant::now());
    let btc = [0xf9, 0xbe, 0xb4, 0xd9];
    assert_eq!(
        failure(&h.on_wrong_magic(btc)),
        Some(HandshakeFailure::BlockchainMismatch { magic: btc })
    );
}

#[test]
fn times_out_exactly_at_the_configured_instant() {
    let t0 = Instant::now();
    let mut h = machine(HandshakeFlow::Outbound, t0);
    h.start();
    assert!(h
        .on_tick(t0 + TIMEOUT - Duration::from_millis(1))
        .is_empty());
    assert_eq!(
        failure(&h.on_tick(t0 + TIMEOUT)),
        Some(HandshakeFailure::Timeout(TIMEOUT))
    );
    assert!(h.on_tick(t0 + TIMEOUT * 2).is_empty(), "fails once");
}

#[test]
fn every_message_before_verack_is_reported_as_missing_verack() {
    // The score and the ban at 100 are PeerProtocol's (protocol_tests.rs).
    let mut h = machine(HandshakeFlow::Inbound, Instant::now());
    h.on_message(&peer());
    for i in 1..150 {
        assert_eq!(
            h.on_message(&Message::Ping(i)),
            [HandshakeOutput::Misbehaving(Misbehavior::MissingVerack)]
        );
    }
}

#[test]
fn authch_reject_and_stream_messages_are_allowed_before_the_handshake_completes() {
    let mut h = machine(HandshakeFlow::Outbound, Instant::now());
    h.start();
    h.on_message(&peer());
    let authch = Message::AuthCh(crate::p2p::messages::AuthChallenge {
        version: 1,
        challenge: bytes::Bytes::from_static(&[0; 32]),
    });
    assert!(h.on_message(&authch).is_empty());
    assert!(h
        .on_message(&Message::Reject(Reject {
            message: "x".into(),
            code: RejectCode::Invalid,
            reason: "y".into(),
            hash: None
        }))
        .is_empty());
}

#[test]
fn a_second_version_is_rejected_as_duplicate_and_costs_one_point() {
    let mut h = machine(HandshakeFlow::Outbound, Instant::now());
    h.start();
    h.on_message(&peer());
    let out = h.on_message(&peer());
    match &out[0] {
        HandshakeOutput::Send(Message::Reject(r)) => assert_eq!(r.code, RejectCode::Duplicate),
        other => panic!("expected reject, got {other:?}"),
    }
    assert_eq!(
        out[1],
        HandshakeOutput::Misbehaving(Misbehavior::MultipleVersion)
    );
}
