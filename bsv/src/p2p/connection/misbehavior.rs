//! The node's misbehaviour catalogue as a type (docs/PROTOCOL.md §5): every rule that costs a
//! peer points, with the score the node charges and the reason string it logs. Events and
//! disconnect reasons carry a [`Misbehavior`] so applications can `match` on the rule instead of
//! parsing text; `Display` prints the node's own name for logs.

use serde::Serialize;

use crate::p2p::limits::BAN_SCORE_THRESHOLD;

/// A rule the peer broke, named as the node names it (`Misbehaving(...)` calls in
/// `src/net/net_processing.cpp` unless noted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Misbehavior {
    /// A message other than `version`, `reject` or stream setup before the peer's `version`
    /// (`ProcessMessage`): +1.
    MissingVersion,
    /// A message other than `verack`/`authch`/`authresp` before the peer's `verack`: +1.
    MissingVerack,
    /// A second `version` on the same connection (`ProcessVersionMessage`): `reject` 0x12, +1.
    MultipleVersion,
    /// A second `sendheaders`: +1.
    InvalidSendHeaders,
    /// A second `sendhdrsen`: +1.
    InvalidSendHdrsEn,
    /// More than 100 bad checksums in a row, each under 500 ms after the last
    /// (`ProcessMessages`): +1 for each further one.
    InvalidChecksum,
    /// A var int above 0xFFFFFFFF in a payload (the "size too large" exception): `reject` 0x01,
    /// +1.
    OverLongSize,
    /// An `addr` with more than 1000 entries (`ProcessAddrMessage`): +20, message dropped.
    OversizedAddr,
    /// A `headers` with more than 2000 headers (`ProcessHeadersMessage`): +20.
    TooManyHeaders,
    /// A `headers` whose headers do not chain one to the next: +20.
    DisconnectedHeader,
    /// Every 10th `headers` announcement that does not connect to our chain: +20.
    TooManyUnconnectedHeaders,
    /// A header whose hash does not meet its target, or whose target is easier than the
    /// network's proof-of-work limit (`CheckBlockHeader`, `src/validation.cpp`): +50. Scored
    /// by the header chain service.
    HighHash,
    /// A `headers` message of more than 8 headers (`MAX_BLOCKS_TO_ANNOUNCE`) whose first
    /// header's parent is unknown (`AcceptBlockHeader`, `src/validation.cpp`): +10. Scored by
    /// the header chain service.
    PrevBlkNotFound,
    /// `authch` faster than the leaky bucket allows (`ProcessAuthChMessage`): +10, charged only
    /// by a node with a miner-ID database (`-minerid`). Like a default node, the library has none
    /// and never charges it.
    AuthChRateLimit,
    /// `authresp` faster than the leaky bucket allows (`ProcessAuthRespMessage`): +10.
    AuthRespRateLimit,
    /// A `revokemid` that fails to parse or its structural checks (`src/miner_id/revokemid.h`):
    /// +10, charged only by a node with a miner-ID database; a default node, and the library,
    /// ignore `revokemid`.
    InvalidRevokeMid,
    /// A `dsdetected` that parses but fails the structural checks
    /// (`src/double_spend/dsdetected_message.cpp`): +10.
    InvalidDsDetected,
    /// A `dsdetected` that does not parse: +10, under its own reason string (capital D).
    MalformedDsDetected,
    /// `filterload`/`filteradd` from a peer ≥ 70011 when we do not offer `NODE_BLOOM`: +100.
    NoBloomVersion,
    /// A `filterload` over 36,000 bytes or 50 hash functions: +100.
    OversizedBloomFilter,
    /// A `filteradd` element over 520 bytes: +100.
    InvalidFilterAdd,
    /// A `cmpctblock` that cannot be a block (`PartiallyDownloadedBlock::InitData`): +100.
    InvalidCmpctBlock,
    /// A `blocktxn` whose transactions do not complete the compact block: +100.
    InvalidCmpctBlockTxns,
    /// A `getblocktxn` index past the end of the block: +100.
    OutOfBoundTxIndex,
    /// A `block` whose transactions do not hash to its header's merkle root (`CheckBlock`,
    /// `src/validation.cpp`: `state.DoS(100, .., "bad-txnmrklroot", corruptionPossible=true)`).
    /// The node charges the 100 through `BlockChecked` whatever the corruption flag; the flag
    /// only stops it marking the block hash invalid, so it will take the block from another
    /// peer. The library mirrors both: +100, and the fetch moves on to the next peer.
    BadTxnMerkleRoot,
    /// A user agent matching the ban list (`ProcessVersionMessage`, `IsClientUABanned`): the
    /// threshold at once. The library bans such peers directly (`BanReason::BannedUserAgent`).
    InvalidUserAgent,
    /// A header declaring a payload above the limit for its command (`CNetMessage::Read`,
    /// "Oversized header detected"): a direct ban.
    OversizedHeader,
}

impl Misbehavior {
    /// Points the node adds for one offence.
    pub fn score(self) -> u32 {
        use Misbehavior::*;
        match self {
            MissingVersion | MissingVerack | MultipleVersion | InvalidSendHeaders
            | InvalidSendHdrsEn | InvalidChecksum | OverLongSize => 1,
            AuthChRateLimit | AuthRespRateLimit | InvalidRevokeMid | InvalidDsDetected
            | MalformedDsDetected | PrevBlkNotFound => 10,
            HighHash => 50,
            OversizedAddr | TooManyHeaders | DisconnectedHeader | TooManyUnconnectedHeaders => 20,
            NoBloomVersion
            | OversizedBloomFilter
            | InvalidFilterAdd
            | InvalidCmpctBlock
            | InvalidCmpctBlockTxns
            | OutOfBoundTxIndex
            | BadTxnMerkleRoot => 100,
            OversizedHeader | InvalidUserAgent => BAN_SCORE_THRESHOLD,
        }
    }

    /// The reason string the node logs for this rule.
    pub fn node_reason(self) -> &'static str {
        use Misbehavior::*;
        match self {
            MissingVersion => "missing-version",
            MissingVerack => "missing-verack",
            MultipleVersion => "multiple-version",
            InvalidSendHeaders => "Invalid SendHeaders activity",
            InvalidSendHdrsEn => "Invalid SendHdrsEn activity",
            InvalidChecksum => "Invalid Checksum activity",
            OverLongSize => "Over-long size message protection",
            OversizedAddr => "oversized-addr",
            TooManyHeaders => "too-many-headers",
            DisconnectedHeader => "disconnected-header",
            TooManyUnconnectedHeaders => "too-many-unconnected-headers",
            HighHash => "high-hash",
            PrevBlkNotFound => "prev-blk-not-found",
            AuthChRateLimit => "authch-rate-limit",
            AuthRespRateLimit => "authresp-rate-limit",
            InvalidRevokeMid => "Invalid revokemid message",
            // Both as bitcoin-sv 1.2.2 logs them (checked against the node, bsv/tests/real_node).
            InvalidDsDetected => "Invalid double-spend detected message received",
            MalformedDsDetected => "Invalid double-spend Detected message received",
            NoBloomVersion => "no-bloom-version",
            OversizedBloomFilter => "oversized-bloom-filter",
            InvalidFilterAdd => "invalid-filteradd",
            InvalidCmpctBlock => "invalid-cmpctblk",
            InvalidCmpctBlockTxns => "invalid-cmpctblk-txns",
            OutOfBoundTxIndex => "out-of-bound-tx-index",
            BadTxnMerkleRoot => "bad-txnmrklroot",
            OversizedHeader => "Oversized header detected",
            InvalidUserAgent => "invalid-UA",
        }
    }
}

impl std::fmt::Display for Misbehavior {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.node_reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_node_catalogue() {
        assert_eq!(Misbehavior::MissingVerack.score(), 1);
        assert_eq!(Misbehavior::AuthChRateLimit.score(), 10);
        assert_eq!(Misbehavior::OversizedAddr.score(), 20);
        assert_eq!(Misbehavior::HighHash.score(), 50);
        assert_eq!(Misbehavior::PrevBlkNotFound.score(), 10);
        assert_eq!(Misbehavior::HighHash.to_string(), "high-hash");
        assert_eq!(Misbehavior::InvalidCmpctBlock.score(), 100);
        assert_eq!(Misbehavior::OversizedHeader.score(), BAN_SCORE_THRESHOLD);
        assert_eq!(
            Misbehavior::OverLongSize.to_string(),
            "Over-long size message protection"
        );
    }
}
