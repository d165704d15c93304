//! Entry points for the fuzz targets beyond the codec (issue 14, docs/FUZZING.md): the
//! connection's `PeerProtocol` state machine and the header chain's index are crate-private, so
//! the `fuzz/` crate reaches them through these functions, built only with the `fuzzing`
//! feature and hidden from the documentation. Each takes the fuzzer's bytes, drives the
//! machine, and panics (a libFuzzer crash) when an invariant breaks.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use crate::bitcoin::{BlockHeader, Hash, NetAddress, Network};
use crate::p2p::codec::MessageCodec;
use crate::p2p::connection::handshake::HandshakeFlow;
use crate::p2p::connection::protocol::{Action, PeerProtocol, ProtocolSettings};
use crate::p2p::connection::NonceRegistry;
use crate::p2p::limits::BAN_SCORE_THRESHOLD;
use crate::p2p::messages::VersionMessage;
use crate::p2p::services::chain::index::{Accepted, ChainIndex};
use crate::p2p::services::chain::work::pow_limit;
#[cfg(test)]
use crate::p2p::Message;

fn settings(flow: HandshakeFlow) -> ProtocolSettings {
    ProtocolSettings {
        flow,
        network: Network::Regtest,
        ours: VersionMessage {
            version: 70016,
            services: 0,
            timestamp: 1_700_000_000,
            receiver: NetAddress::UNSPECIFIED,
            sender: NetAddress::UNSPECIFIED,
            nonce: 0xabcd,
            user_agent: "/fuzz:0.1/".into(),
            start_height: 0,
            relay: true,
            association_id: None,
        },
        nonces: NonceRegistry::default(),
        banned_agent: Arc::new(|ua: &str| ua.to_lowercase().contains("abc")),
        handshake_timeout: Duration::from_secs(60),
        ping_interval: Duration::from_secs(120),
        ping_timeout: Duration::from_secs(1200),
        max_recv_payload: 2 * 1024 * 1024,
        whitelisted: false,
        ask_for_addresses: true,
    }
}

/// Feeds `data` to a `PeerProtocol` as the byte stream a peer sends. The first byte picks the
/// handshake flow and whether the peer is whitelisted; the stream is cut into chunks whose
/// sizes come from the data, and between chunks the clock advances (so timeouts and pings
/// fire). Every decoded frame goes to `on_message`, every codec error to `on_codec_error`.
///
/// Checks: nothing panics; the score never decreases and stays in step with the `Misbehaving`
/// actions; a ban comes only at a score of 100 or for the rules that ban at once, never for a
/// whitelisted peer's score; once the machine has said `Disconnect` it stays closed and
/// returns nothing more; it never establishes twice.
pub fn peer_protocol(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let flow = match first % 3 {
        0 => HandshakeFlow::Outbound,
        1 => HandshakeFlow::Inbound,
        _ => HandshakeFlow::InboundOverCapacity,
    };
    let mut s = settings(flow);
    s.whitelisted = first & 0x80 != 0;
    let whitelisted = s.whitelisted;
    let mut now = Instant::now();
    let mut p = PeerProtocol::new(s, now);
    let mut codec = MessageCodec::new(Network::Regtest);
    let mut buf = BytesMut::new();
    let mut score = 0u32;
    let mut closed = false;
    let mut established = false;
    let mut check = |actions: Vec<Action>, closed: &mut bool| {
        if *closed {
            assert!(actions.is_empty(), "a closed machine acted: {actions:?}");
            return;
        }
        for a in actions {
            match a {
                Action::Misbehaving { score: s, .. } => {
                    assert!(s >= score, "the score went down: {score} -> {s}");
                    score = s;
                }
                Action::Established(_) => {
                    assert!(!established, "established twice");
                    established = true;
                }
                Action::Disconnect(_) => *closed = true,
                Action::Ban(_) => {
                    assert!(
                        !(whitelisted && score >= BAN_SCORE_THRESHOLD),
                        "a whitelisted peer was banned for its score"
                    );
                }
                _ => {}
            }
        }
    };
    check(p.start(), &mut closed);
    let mut i = 0usize;
    while i < rest.len() {
        let step = rest[i];
        let len = (step as usize % 64) + 1;
        let end = (i + 1 + len).min(rest.len());
        buf.extend_from_slice(&rest[(i + 1).min(rest.len())..end]);
        i = end;
        now += Duration::from_millis(u64::from(step) * 250);
        p.on_bytes_received(now);
        let ticked = p.on_tick(now, || u64::from(step) << 8 | 1);
        check(ticked, &mut closed);
        loop {
            let before = buf.len();
            match codec.decode_frame(&mut buf) {
                Ok(Some(frame)) => match frame.message() {
                    Ok(m) => {
                        let out = p.on_message(m, now);
                        check(out, &mut closed);
                    }
                    Err(e) => {
                        let out = p.on_codec_error(&e, now);
                        check(out, &mut closed);
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    let out = p.on_codec_error(&e, now);
                    check(out, &mut closed);
                    // The connection closes on a framing error it cannot skip; so do we.
                    if e.is_fatal() || buf.len() == before {
                        return;
                    }
                }
            }
        }
    }
}

/// Feeds a header chain index a sequence of headers built from `data`: each 12-byte step picks
/// a parent among the headers known so far (or an unknown one), a time, a nonce and bits close
/// to regtest's limit, so most headers connect and about half meet their target; every tenth
/// step is instead 80 raw bytes decoded as a header.
///
/// Checks: nothing panics; the best chain is consistent (each height's header is the child of
/// the one below, the tip is at the top); no known header has more work than the tip; the
/// locator starts at the tip and is never longer than the chain.
pub fn header_chain(data: &[u8]) {
    let network = Network::Regtest;
    let genesis = network.genesis_header();
    let mut index = ChainIndex::new(genesis, 0, pow_limit(network));
    let mut known: Vec<Hash> = vec![genesis.hash()];
    let mut i = 0usize;
    let mut step = 0usize;
    while i + 12 <= data.len() {
        step += 1;
        let header = if step.is_multiple_of(10) && i + 80 <= data.len() {
            let raw = &data[i..i + 80];
            i += 80;
            let mut r = crate::bitcoin::Reader::new(raw);
            match <BlockHeader as crate::bitcoin::Decode>::decode(&mut r) {
                Ok(h) => h,
                Err(_) => continue,
            }
        } else {
            let c = &data[i..i + 12];
            i += 12;
            let parent = if c[0] == 0xff {
                Hash([c[1]; 32])
            } else {
                known[c[0] as usize % known.len()]
            };
            BlockHeader {
                version: 0x2000_0000,
                prev_hash: parent,
                merkle_root: Hash([c[1]; 32]),
                time: u32::from_le_bytes([c[2], c[3], c[4], c[5]]),
                // Regtest's 0x207fffff, or a harder target now and then.
                bits: if c[6] & 7 == 0 {
                    0x2000_ffff
                } else {
                    0x207f_ffff
                },
                nonce: u32::from_le_bytes([c[7], c[8], c[9], c[10]]),
            }
        };
        if let Ok(Accepted::New(_)) = index.accept(&header, None) {
            known.push(header.hash());
        }
        check_chain(&index);
    }
}

fn check_chain(index: &ChainIndex) {
    let tip = index.tip();
    let tip_height = index.tip_height();
    assert_eq!(
        index.hash_at(tip_height),
        Some(tip),
        "the tip is not at the top"
    );
    let tip_work = index.tip_entry().map_or(0, |e| e.work);
    let mut h = tip_height;
    while h > index.base_height() {
        let (Some(this), Some(below)) = (index.hash_at(h), index.hash_at(h - 1)) else {
            panic!("a hole in the best chain at {h}");
        };
        let entry = index.get(&this).expect("best-chain header is known");
        assert_eq!(entry.header.prev_hash, below, "best chain broken at {h}");
        assert!(entry.work <= tip_work, "work above the tip's");
        h -= 1;
    }
    let locator = index.locator();
    assert_eq!(locator.first(), Some(&tip), "the locator starts at the tip");
    assert!(locator.len() as u32 <= tip_height - index.base_height() + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn the_protocol_harness_accepts_a_real_handshake_and_noise() {
        let codec = MessageCodec::new(Network::Regtest);
        let mut stream = vec![1u8];
        for m in [
            Message::Version(settings(HandshakeFlow::Inbound).ours),
            Message::Verack,
            Message::Ping(5),
            Message::GetAddr,
        ] {
            let frame = codec.encode_to_bytes(&m).unwrap();
            for chunk in frame.chunks(60) {
                stream.push(59);
                stream.extend_from_slice(chunk);
            }
        }
        peer_protocol(&stream);
        for seed in 0..200 {
            peer_protocol(&noise(seed, 2000));
        }
    }

    #[test]
    fn the_header_chain_harness_grows_a_consistent_chain() {
        for seed in 0..50 {
            header_chain(&noise(seed, 4000));
        }
    }
}
