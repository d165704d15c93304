//! What block fetching reports: each peer asked and what it did ([`Attempt`]), and why a fetch
//! failed ([`BlockFetchError`]). The outcomes name what the peer actually did, so a caller can
//! tell a peer that stayed silent (the node's "I do not have it", §3.4) from one that answered
//! `notfound`, was too busy, or sent a block that failed verification.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use uuid::Uuid;

use super::stream::BlockStreamFailure;
use crate::bitcoin::Hash;

/// One peer asked for a block, and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The peer's connection id.
    pub peer_id: Uuid,
    /// Its address.
    pub address: SocketAddr,
    /// What happened.
    pub outcome: AttemptOutcome,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.address, self.outcome)
    }
}

/// What a peer did with our `getdata` for a block, when it did not deliver a good one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// It sent nothing within the attempt timeout: what the node does for a block it does not
    /// have or will not serve (no `notfound`, §3.4).
    Silent {
        /// How long we waited.
        after: Duration,
    },
    /// It answered `notfound` (the node never does for blocks; other implementations may).
    NotFound,
    /// It answered `reject` 0x44 `REJECT_TOOBUSY`: its send queues are full (§3.4).
    TooBusy,
    /// It sent the block, but its transactions do not hash to the header's merkle root
    /// (`bad-txnmrklroot`; the peer is charged 100 as the node charges it).
    MerkleMismatch {
        /// The root in the header.
        expected: Hash,
        /// The root of the transactions received.
        computed: Hash,
    },
    /// It sent a `block` message that did not parse (the connection answered `reject` 0x01
    /// "error parsing message" and dropped it). Detected when the peer had no other block in
    /// flight; otherwise such an attempt is reported as [`AttemptOutcome::Silent`].
    Malformed,
    /// The connection ended before the block arrived.
    Disconnected,
    /// Its send queue was full, so the request could not even be queued.
    NotSent,
}

impl AttemptOutcome {
    /// A short stable name (metrics' `reason` attribute).
    pub fn kind(&self) -> &'static str {
        match self {
            AttemptOutcome::Silent { .. } => "silent",
            AttemptOutcome::NotFound => "notfound",
            AttemptOutcome::TooBusy => "too_busy",
            AttemptOutcome::MerkleMismatch { .. } => "merkle_mismatch",
            AttemptOutcome::Malformed => "malformed",
            AttemptOutcome::Disconnected => "disconnected",
            AttemptOutcome::NotSent => "not_sent",
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptOutcome::Silent { after } => write!(
                f,
                "sent nothing in {after:?} (a node sends nothing for a block it does not have)"
            ),
            AttemptOutcome::NotFound => f.write_str("answered notfound"),
            AttemptOutcome::TooBusy => f.write_str("answered reject 0x44 (too busy)"),
            AttemptOutcome::MerkleMismatch { expected, computed } => write!(
                f,
                "sent a corrupt block: merkle root {computed} of its transactions, {expected} \
                 in its header (bad-txnmrklroot)"
            ),
            AttemptOutcome::Malformed => f.write_str(
                "sent a malformed block message that did not parse (we answered reject 0x01)",
            ),
            AttemptOutcome::Disconnected => f.write_str("disconnected before sending the block"),
            AttemptOutcome::NotSent => f.write_str("not reading: the request could not be queued"),
        }
    }
}

/// Why `Manager::get_block` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockFetchError {
    /// Every peer that could be asked was asked and none delivered a good block.
    #[error("block {hash} not found: {}", tried_list(tried))]
    BlockNotFound {
        /// The block.
        hash: Hash,
        /// Each peer asked and what it did, in order.
        tried: Vec<Attempt>,
    },
    /// The fetch's overall timeout passed first.
    #[error("block {hash} not fetched within {after:?}: {}", tried_list(tried))]
    Timeout {
        /// The block.
        hash: Hash,
        /// The overall timeout.
        after: Duration,
        /// Each peer asked so far and what it did.
        tried: Vec<Attempt>,
    },
    /// Too many fetches are already waiting for a peer
    /// (`limits::MAX_PENDING_BLOCK_FETCHES`).
    #[error("block {hash} not requested: too many block fetches pending")]
    TooManyFetches {
        /// The block.
        hash: Hash,
    },
    /// The manager stopped before the fetch ended.
    #[error("block {hash} not fetched: the manager stopped")]
    Stopped {
        /// The block.
        hash: Hash,
    },
    /// The block arrived as a stream (it is above `block_streaming.threshold`) and went to
    /// another caller of `get_block_stream` for the same hash: a stream has one reader.
    #[error("block {hash} was streamed to another caller")]
    StreamedElsewhere {
        /// The block.
        hash: Hash,
    },
    /// The block was streamed and the stream failed (see [`BlockStreamFailure`]).
    #[error("block {hash} from {address} failed while streaming: {failure}")]
    StreamFailed {
        /// The block.
        hash: Hash,
        /// The peer that streamed it.
        peer_id: Uuid,
        /// Its address.
        address: SocketAddr,
        /// What went wrong.
        failure: Box<BlockStreamFailure>,
    },
}

impl BlockFetchError {
    /// Every attempt the error reports (empty for errors before any peer was asked).
    pub fn tried(&self) -> &[Attempt] {
        match self {
            BlockFetchError::BlockNotFound { tried, .. }
            | BlockFetchError::Timeout { tried, .. } => tried,
            _ => &[],
        }
    }
}

fn tried_list(tried: &[Attempt]) -> String {
    if tried.is_empty() {
        return "no peer could be asked".to_owned();
    }
    let each: Vec<String> = tried.iter().map(Attempt::to_string).collect();
    format!("asked {} peer(s): {}", tried.len(), each.join("; "))
}
