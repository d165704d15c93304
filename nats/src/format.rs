//! What goes on the wire: subjects, headers and the JSON bodies of the bridge's messages
//! (docs/FLEET.md, "Subjects and messages"). Consumers decode with these types.

use bitcoinsv::bitcoin::{Hash, Network};
use bitcoinsv::p2p::sink::Topic;
use serde::{Deserialize, Serialize};

/// Header with the record's kind: `tip`, `reorg`, `block`, `tx` or `event`.
pub const HEADER_KIND: &str = "Bsv-Kind";
/// Header on `.block` messages: `inline` (the body is the serialized block) or `object` (the
/// body is a [`BlockRef`] and the block is in the Object Store).
pub const HEADER_BLOCK_BODY: &str = "Bsv-Block-Body";
/// Header on `.block` messages: the block's height on the best chain when it was published.
pub const HEADER_BLOCK_HEIGHT: &str = "Bsv-Block-Height";
/// Header on `.tx` messages: the connection id (UUID) of the peer that delivered it.
pub const HEADER_PEER_ID: &str = "Bsv-Peer-Id";
/// The queue group of the broadcast responders: one bridge of a fleet answers each request.
pub const BROADCAST_QUEUE_GROUP: &str = "bsv-broadcast";

/// `bsv.<network>.<suffix>`, e.g. `subject(Network::Regtest, "tx")` = `bsv.regtest.tx`.
pub fn subject(network: Network, suffix: &str) -> String {
    format!("bsv.{}.{suffix}", network.name())
}

pub(crate) fn topic_suffix(topic: Topic) -> &'static str {
    match topic {
        Topic::Tip => "tip",
        Topic::Reorg => "reorg",
        Topic::Block => "block",
        Topic::Tx => "tx",
        Topic::Event => "event",
    }
}

/// The body of a `.tip` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TipMessage {
    /// The new tip's height.
    pub height: u32,
    /// Its hash (display order, hex).
    pub hash: String,
}

/// The body of a `.reorg` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReorgMessage {
    /// The tip before.
    pub old_tip: String,
    /// The tip after.
    pub new_tip: String,
    /// The height of the last block both branches share.
    pub fork_height: u32,
    /// How many blocks left the best chain.
    pub depth: u32,
}

/// The body of a `.block` message whose block is in the Object Store (header
/// `Bsv-Block-Body: object`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    /// The block's hash (display order, hex).
    pub hash: String,
    /// Its height.
    pub height: u32,
    /// Its serialized length in bytes.
    pub size: u64,
    /// The Object Store bucket.
    pub bucket: String,
    /// The object's name in it (the hash).
    pub object: String,
}

/// The body of a `.event.<kind>` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMessage {
    /// The bridge that saw it ([`crate::NatsSinkConfig::instance`]).
    pub instance: String,
    /// The kind, also the subject's last token.
    pub kind: String,
    /// What happened (printable).
    pub detail: String,
}

pub(crate) fn hash_hex(h: &Hash) -> String {
    h.to_string()
}
