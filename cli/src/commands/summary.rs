//! One-line human summaries of messages, for tools that print traffic. Text the peer chose (a
//! user agent, a `reject`'s command and reason) is escaped with [`printable`].

use bitcoinsv::p2p::text::printable;
use bitcoinsv::p2p::Message;

/// A short description of a message's payload.
pub fn summary(m: &Message) -> String {
    match m {
        Message::Version(v) => format!(
            "{} protocol {} services {:#x} height {} relay {}",
            printable(&v.user_agent),
            v.version,
            v.services,
            v.start_height,
            v.relay
        ),
        Message::Ping(n) | Message::Pong(n) => format!("nonce {n:#018x}"),
        Message::Inv(v) | Message::GetData(v) | Message::NotFound(v) => match v.first() {
            Some(first) if v.len() == 1 => format!("{} {}", first.inv_type, first.hash),
            Some(first) => format!(
                "{} entries, first {} {}",
                v.len(),
                first.inv_type,
                first.hash
            ),
            None => "0 entries".into(),
        },
        Message::Addr(a) => format!("{} addresses", a.len()),
        Message::Headers(h) => match (h.first(), h.last()) {
            (Some(f), Some(l)) => format!("{} headers {} .. {}", h.len(), f.hash(), l.hash()),
            _ => "0 headers".into(),
        },
        Message::Block(b) => format!("{} with {} transactions", b.hash(), b.transactions.len()),
        Message::Tx(t) => format!("{} ({} bytes)", t.txid(), t.size()),
        Message::Reject(r) => format!("{} {} {:?}", printable(&r.message), r.code, r.reason),
        Message::Protoconf(p) => format!(
            "max payload {} policies {}",
            p.max_recv_payload_length, p.stream_policies
        ),
        Message::SendCmpct(c) => format!("announce {} version {}", c.announce, c.version),
        Message::FeeFilter(f) => format!("{f} sat/kB"),
        Message::GetHeaders(l) | Message::GetBlocks(l) => {
            format!("{} locator hashes, stop {}", l.hashes.len(), l.stop_hash)
        }
        other => format!("{} bytes", other.payload_len()),
    }
}
