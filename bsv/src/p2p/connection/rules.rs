//! The node's checks on single messages after the handshake, as pure functions, and the small
//! counters some rules need (docs/PROTOCOL.md §1.3, §3, §5). [`super::PeerProtocol`] calls them
//! and turns what they find into score, bans and disconnects; nothing here does I/O or reads a
//! clock.

use tokio::time::Instant;

use crate::bitcoin::{BlockHeader, MerkleProofTx};
use crate::p2p::limits::{
    AUTH_MESSAGE_BURST, AUTH_MESSAGE_DRAIN, INVALID_CHECKSUM_FREQUENCY, INVALID_CHECKSUM_INTERVAL,
    MAX_BLOOM_FILTER_SIZE, MAX_FILTERADD_ELEMENT, MAX_HASH_FUNCS, MAX_UNCONNECTING_HEADERS,
};
use crate::p2p::messages::{CompactBlock, DsDetected, FilterLoad};

/// Whether each header of an announcement builds on the one before it
/// (`ProcessHeadersMessage`: "non-continuous headers sequence" is `disconnected-header`).
pub(crate) fn headers_are_continuous(headers: &[BlockHeader]) -> bool {
    headers
        .windows(2)
        .all(|w| matches!(w, [a, b] if b.prev_hash == a.hash()))
}

/// Whether a `cmpctblock` can describe a block at all (`PartiallyDownloadedBlock::InitData`,
/// `src/blockencodings.cpp`): it must list at least one transaction, and every prefilled
/// transaction's differentially encoded index must stay inside the block and within 16 bits.
pub(crate) fn compact_block_is_valid(c: &CompactBlock) -> bool {
    if c.short_ids.is_empty() && c.prefilled.is_empty() {
        return false;
    }
    let total = c.short_ids.len() as u64 + c.prefilled.len() as u64;
    let mut last: Option<u64> = None;
    for p in &c.prefilled {
        let index = match last {
            None => p.index_delta,
            Some(l) => match l.checked_add(p.index_delta).and_then(|v| v.checked_add(1)) {
                Some(v) => v,
                None => return false,
            },
        };
        if index > u64::from(u16::MAX) || index >= total {
            return false;
        }
        last = Some(index);
    }
    true
}

/// The structural checks of `dsdetected` (`DSDetected::IsValid`,
/// `src/double_spend/dsdetected_message.cpp`): version 1; at least two forks; every fork has
/// headers that chain, ending on a common parent; proofs carry the full transaction, target the
/// merkle root and never prove the coinbase. What needs a chain (double spend, fork distance) is
/// the application's to check.
pub(crate) fn ds_detected_is_valid(d: &DsDetected) -> bool {
    if d.version != 1 || d.blocks.len() < 2 {
        return false;
    }
    let mut common_parent = None;
    for b in &d.blocks {
        let Some(last) = b.headers.last() else {
            return false;
        };
        // Headers run from the block holding the transaction back towards the fork point.
        let chained = b
            .headers
            .windows(2)
            .all(|w| matches!(w, [child, parent] if child.prev_hash == parent.hash()));
        if !chained {
            return false;
        }
        match common_parent {
            None => common_parent = Some(last.prev_hash),
            Some(p) if p != last.prev_hash => return false,
            Some(_) => {}
        }
        let proof = &b.proof;
        if proof.index == 0 || !matches!(proof.tx, MerkleProofTx::Full(_)) {
            return false;
        }
        if proof.nodes.iter().any(|(kind, _)| *kind != 0) {
            return false;
        }
    }
    true
}

/// A `filterload` within the node's size limits (`CBloomFilter::IsWithinSizeConstraints`).
pub(crate) fn filter_load_is_valid(f: &FilterLoad) -> bool {
    f.filter.len() <= MAX_BLOOM_FILTER_SIZE && f.hash_funcs <= MAX_HASH_FUNCS
}

/// A `filteradd` element within the node's limit.
pub(crate) fn filter_add_is_valid(data: &[u8]) -> bool {
    data.len() <= MAX_FILTERADD_ELEMENT
}

/// Runs of bad checksums (docs/PROTOCOL.md §1.3), counted as bitcoin-sv 1.2.2 counts them
/// (checked against the node, bsv/tests/real_node/rules.rs): the connection's start is the first
/// event; each bad checksum less than 500 ms after the previous event adds one, a longer gap
/// resets the count to zero; a bad checksum that takes the count past 100 costs +1.
#[derive(Debug)]
pub(crate) struct ChecksumRun {
    last: Instant,
    count: u32,
}

impl ChecksumRun {
    /// A run for a connection that started at `start`.
    pub(crate) fn new(start: Instant) -> Self {
        ChecksumRun {
            last: start,
            count: 0,
        }
    }

    /// Records a bad checksum at `now`; true when this one costs +1.
    pub(crate) fn on_bad_checksum(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) < INVALID_CHECKSUM_INTERVAL {
            self.count = self.count.saturating_add(1);
        } else {
            self.count = 0;
        }
        self.last = now;
        self.count > INVALID_CHECKSUM_FREQUENCY
    }
}

/// The node's leaky bucket for `authresp`: a burst of [`AUTH_MESSAGE_BURST`] passes,
/// then one message per [`AUTH_MESSAGE_DRAIN`].
#[derive(Debug, Default)]
pub(crate) struct LeakyBucket {
    level: f64,
    last: Option<Instant>,
}

impl LeakyBucket {
    /// Adds one message at `now`; true when it overflows the bucket.
    pub(crate) fn overflows(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let drained = now.saturating_duration_since(last).as_secs_f64()
                / AUTH_MESSAGE_DRAIN.as_secs_f64();
            self.level = (self.level - drained).max(0.0);
        }
        self.last = Some(now);
        if self.level + 1.0 > f64::from(AUTH_MESSAGE_BURST) {
            return true;
        }
        self.level += 1.0;
        false
    }
}

/// Counts `headers` announcements that did not connect to our chain; every
/// [`MAX_UNCONNECTING_HEADERS`]th costs +20 (`ProcessHeadersMessage`).
#[derive(Debug, Default)]
pub(crate) struct UnconnectingHeaders(u32);

impl UnconnectingHeaders {
    /// Records one; true when this one costs +20.
    pub(crate) fn on_unconnecting(&mut self) -> bool {
        self.0 = self.0.saturating_add(1);
        self.0.is_multiple_of(MAX_UNCONNECTING_HEADERS)
    }
}
