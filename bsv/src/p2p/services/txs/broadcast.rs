//! Transaction broadcast (`Manager::broadcast_transaction`): the options, the per-peer report,
//! and the live state the hub updates while a broadcast collects answers.
//!
//! A broadcast announces the transaction by `inv` (or pushes the `tx` unannounced), serves the
//! peers' `getdata` from the relay cache, and watches for `reject` (command "tx", matched by
//! txid; the node sends only codes below 0x100, §3.7/§3.16) and for other peers announcing the
//! transaction back (the node relays what it accepted to its other peers, never back to the
//! one it came from). Nothing on the wire says "accepted": a relay-back is the evidence.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use crate::bitcoin::Hash;
use crate::p2p::limits::{BROADCAST_SETTLE, BROADCAST_WINDOW};
use crate::p2p::messages::RejectCode;

/// Options of [`Manager::broadcast_transaction_with`](crate::p2p::Manager::broadcast_transaction_with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Peers to send to, by connection id (`None`: every connected peer).
    pub peers: Option<Vec<Uuid>>,
    /// Push the `tx` unannounced instead of announcing it by `inv` (the node processes an
    /// unrequested `tx`, §3.7). Peers then never `getdata` it.
    pub push: bool,
    /// The transaction's fee rate in satoshis per 1000 bytes, if the caller knows it (we
    /// cannot compute it without the inputs' values): peers whose `feefilter` is above it are
    /// skipped, as they would not relay it.
    pub fee_rate: Option<i64>,
    /// How long to collect answers at most.
    pub window: Duration,
    /// Once every peer sent to has answered and a relay-back was seen, how long to wait still
    /// for late `reject`s before returning.
    pub settle: Duration,
}

impl Default for BroadcastOptions {
    fn default() -> Self {
        BroadcastOptions {
            peers: None,
            push: false,
            fee_rate: None,
            window: BROADCAST_WINDOW,
            settle: BROADCAST_SETTLE,
        }
    }
}

/// How the transaction went to one peer, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// Announced by `inv`.
    Announced,
    /// Pushed as `tx` without an announcement.
    Pushed,
    /// Not sent: the peer asked for no transaction relay (`relay` = 0 in its `version`).
    SkippedNoRelay,
    /// Not sent: the peer's `feefilter` is above the caller's fee rate.
    SkippedFeeFilter {
        /// The peer's filter (sat/kB).
        peer_rate: i64,
        /// The caller's rate (sat/kB).
        fee_rate: i64,
    },
    /// Not sent: the connection refused the message (gone, or the message is larger than
    /// the peer accepts).
    SendFailed(String),
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivery::Announced => f.write_str("announced (inv)"),
            Delivery::Pushed => f.write_str("pushed (tx)"),
            Delivery::SkippedNoRelay => f.write_str("skipped: peer asked for no tx relay"),
            Delivery::SkippedFeeFilter {
                peer_rate,
                fee_rate,
            } => write!(
                f,
                "skipped: peer's feefilter {peer_rate} sat/kB is above our {fee_rate} sat/kB"
            ),
            Delivery::SendFailed(e) => write!(f, "not sent: {e}"),
        }
    }
}

/// A `reject` a peer sent for the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRejection {
    /// The code (§8).
    pub code: RejectCode,
    /// The reason, e.g. `bad-txns-inputs-missingorspent`.
    pub reason: String,
}

/// What one peer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    /// The peer's connection id.
    pub peer_id: Uuid,
    /// Its address.
    pub address: SocketAddr,
    /// How the transaction went to it.
    pub delivery: Delivery,
    /// It asked for the transaction with `getdata` (and was served from the relay cache).
    pub requested: bool,
    /// It rejected the transaction.
    pub rejected: Option<TxRejection>,
    /// It announced the transaction to us by `inv` (it accepted it, from us or another peer).
    pub announced_back: bool,
}

impl PeerReport {
    /// A short stable name of the outcome (metrics' `outcome` attribute).
    pub fn kind(&self) -> &'static str {
        match (&self.delivery, &self.rejected) {
            (_, Some(_)) => "rejected",
            (Delivery::SkippedNoRelay, _) => "skipped_no_relay",
            (Delivery::SkippedFeeFilter { .. }, _) => "skipped_fee_filter",
            (Delivery::SendFailed(_), _) => "send_failed",
            _ if self.announced_back => "relayed_back",
            _ if self.requested => "requested",
            _ => "unanswered",
        }
    }

    /// Whether the transaction went to this peer.
    pub fn sent(&self) -> bool {
        matches!(self.delivery, Delivery::Announced | Delivery::Pushed)
    }
}

impl fmt::Display for PeerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.address, self.delivery)?;
        if self.requested {
            f.write_str(", requested")?;
        } else if self.delivery == Delivery::Announced {
            f.write_str(", not requested")?;
        }
        if let Some(r) = &self.rejected {
            write!(
                f,
                ", rejected 0x{:02x} {}",
                r.code.to_u8(),
                // Peer-supplied text: escaped so it cannot forge lines or terminal codes.
                r.reason.escape_debug()
            )?;
        }
        if self.announced_back {
            f.write_str(", announced it back")?;
        }
        Ok(())
    }
}

/// What a broadcast found, peer by peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastReport {
    /// The transaction.
    pub txid: Hash,
    /// Every peer considered, in the order they were sent to.
    pub peers: Vec<PeerReport>,
    /// Whether the broadcast returned before its window ended (everyone answered, a
    /// relay-back was seen).
    pub completed_early: bool,
    /// How long it took.
    pub elapsed: Duration,
}

impl BroadcastReport {
    /// Peers that asked for the transaction.
    pub fn requested_by(&self) -> impl Iterator<Item = &PeerReport> {
        self.peers.iter().filter(|p| p.requested)
    }

    /// Peers that rejected it.
    pub fn rejected_by(&self) -> impl Iterator<Item = &PeerReport> {
        self.peers.iter().filter(|p| p.rejected.is_some())
    }

    /// Peers that announced it back (evidence it propagated).
    pub fn relayed_back_by(&self) -> impl Iterator<Item = &PeerReport> {
        self.peers.iter().filter(|p| p.announced_back)
    }
}

impl fmt::Display for BroadcastReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "transaction {}", self.txid)?;
        for p in &self.peers {
            writeln!(f, "  {p}")?;
        }
        write!(
            f,
            "{} sent, {} requested, {} rejected, {} announced it back ({:?}{})",
            self.peers.iter().filter(|p| p.sent()).count(),
            self.requested_by().count(),
            self.rejected_by().count(),
            self.relayed_back_by().count(),
            self.elapsed,
            if self.completed_early {
                ""
            } else {
                ", window ended"
            }
        )
    }
}

/// A broadcast collecting answers; the hub updates it, the caller waits on `changed`.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) txid: Hash,
    pub(crate) peers: HashMap<Uuid, PeerReport>,
    pub(crate) order: Vec<Uuid>,
    pub(crate) changed: Arc<Notify>,
}

impl Live {
    /// Every peer sent to has answered (asked for it or rejected it; a pushed `tx` needs no
    /// request) and some peer announced it back.
    pub(crate) fn settled(&self) -> bool {
        let answered = self
            .peers
            .values()
            .filter(|p| p.sent())
            .all(|p| p.rejected.is_some() || p.requested || p.delivery == Delivery::Pushed);
        answered && self.peers.values().any(|p| p.announced_back)
    }

    /// The report so far.
    pub(crate) fn report(&self, started: Instant, early: bool) -> BroadcastReport {
        BroadcastReport {
            txid: self.txid,
            peers: self
                .order
                .iter()
                .filter_map(|id| self.peers.get(id).cloned())
                .collect(),
            completed_early: early,
            elapsed: started.elapsed(),
        }
    }
}
