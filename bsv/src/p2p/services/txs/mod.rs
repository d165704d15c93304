//! Transactions: broadcast with a per-peer report (`Manager::broadcast_transaction`), the
//! stream of announced transactions (`Manager::subscribe_transactions`), and `mempool`
//! requests where the peer allows them (`Manager::request_mempool`).
//!
//! One service holds the three behind one lock: the relay cache that answers peers' `getdata`
//! for what we broadcast ([`cache`]), the live broadcasts the hub updates ([`broadcast`]), and
//! the stream's pending announcements ([`stream`]). Our own broadcasts are marked seen in the
//! stream, so a relay-back is not fetched again.

mod broadcast;
mod cache;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::warn;
use uuid::Uuid;

pub use broadcast::{BroadcastOptions, BroadcastReport, Delivery, PeerReport, TxRejection};
pub use stream::TransactionEvent;

use super::{Peers, Service};
use crate::bitcoin::{Hash, InvType, InvVect, Transaction};
use crate::p2p::config::ManagerConfig;
use crate::p2p::error::{P2pError, Result};
use crate::p2p::limits::{
    MAX_PENDING_TX_ANNOUNCEMENTS, NODE_BLOOM, TX_RELAY_CACHE_BYTES, TX_SEEN_CAPACITY,
    TX_STREAM_QUEUE_BYTES,
};
use crate::p2p::metrics::Metrics;
use crate::p2p::{Manager, Message};
use broadcast::Live;
use cache::RelayCache;
use stream::Stream;

/// Settings of the transaction services (`[transactions]` in a configuration file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionConfig {
    /// Bytes of broadcast transactions kept to answer peers' `getdata` (15 minutes each).
    pub relay_cache_bytes: usize,
    /// Txids the stream remembers having delivered.
    pub seen_capacity: usize,
    /// Announced transactions the stream remembers while it cannot request them yet.
    pub max_pending_announcements: usize,
    /// Bytes of undropped events a stream subscriber may hold before requests pause.
    pub stream_queue_bytes: usize,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            relay_cache_bytes: TX_RELAY_CACHE_BYTES,
            seen_capacity: TX_SEEN_CAPACITY,
            max_pending_announcements: MAX_PENDING_TX_ANNOUNCEMENTS,
            stream_queue_bytes: TX_STREAM_QUEUE_BYTES,
        }
    }
}

impl TransactionConfig {
    /// Checks the settings.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        for (name, v) in [
            ("relay_cache_bytes", self.relay_cache_bytes),
            ("seen_capacity", self.seen_capacity),
            ("max_pending_announcements", self.max_pending_announcements),
            ("stream_queue_bytes", self.stream_queue_bytes),
        ] {
            if v == 0 {
                return Err(format!("transactions.{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Why a transaction service refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// The peer would disconnect us for a legacy `mempool` request (§3.14: unless it offers
    /// `NODE_BLOOM` or whitelists us).
    #[error("peer {peer_id} does not allow mempool requests: {reason}")]
    MempoolRefused {
        /// The peer.
        peer_id: Uuid,
        /// Why.
        reason: String,
    },
    /// No connected peer could be sent the transaction.
    #[error("transaction {txid} reached no peer: {reason}")]
    NoPeers {
        /// The transaction.
        txid: Hash,
        /// Why, e.g. "no peer connected".
        reason: String,
    },
}

#[derive(Debug)]
struct State {
    cache: RelayCache,
    live: HashMap<u64, Live>,
    next_id: u64,
    stream: Stream,
}

/// The service behind the manager's transaction broadcast and stream.
#[derive(Debug)]
pub(crate) struct TxService {
    peers: Peers,
    metrics: Metrics,
    state: Mutex<State>,
}

impl TxService {
    /// The service for a manager configured by `config`.
    pub(crate) fn new(config: &ManagerConfig, peers: Peers) -> Self {
        let c = &config.transactions;
        TxService {
            peers,
            metrics: Metrics::from_global(),
            state: Mutex::new(State {
                cache: RelayCache::new(c.relay_cache_bytes),
                live: HashMap::new(),
                next_id: 0,
                stream: Stream::new(
                    config.relay,
                    c.seen_capacity,
                    c.max_pending_announcements,
                    c.stream_queue_bytes,
                ),
            }),
        }
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s)
    }

    /// Broadcasts `tx` (see [`Manager::broadcast_transaction_with`]).
    pub(crate) async fn broadcast(
        &self,
        tx: Transaction,
        options: BroadcastOptions,
    ) -> Result<BroadcastReport> {
        let started = Instant::now();
        let txid = tx.txid();
        let targets: Vec<_> = self
            .peers
            .connected()
            .into_iter()
            .filter(|p| {
                options
                    .peers
                    .as_ref()
                    .is_none_or(|w| w.contains(&p.peer_id))
            })
            .collect();
        if targets.is_empty() {
            return Err(TransactionError::NoPeers {
                txid,
                reason: "no peer connected".into(),
            }
            .into());
        }
        let changed = Arc::new(Notify::new());
        let mut live = Live {
            txid,
            peers: HashMap::new(),
            order: Vec::new(),
            changed: changed.clone(),
        };
        let mut sends = Vec::new();
        for p in &targets {
            let delivery = if !p.details.relay {
                Delivery::SkippedNoRelay
            } else {
                match (p.details.fee_filter, options.fee_rate) {
                    (Some(peer_rate), Some(fee_rate)) if peer_rate > fee_rate => {
                        Delivery::SkippedFeeFilter {
                            peer_rate,
                            fee_rate,
                        }
                    }
                    _ if options.push => Delivery::Pushed,
                    _ => Delivery::Announced,
                }
            };
            if matches!(delivery, Delivery::Announced | Delivery::Pushed) {
                sends.push(p.peer_id);
            }
            live.order.push(p.peer_id);
            live.peers.insert(
                p.peer_id,
                PeerReport {
                    peer_id: p.peer_id,
                    address: p.address,
                    delivery,
                    requested: false,
                    rejected: None,
                    announced_back: false,
                },
            );
        }
        let id = self.with_state(|s| {
            s.cache.insert(tx.clone(), started);
            s.stream.mark_seen(txid);
            let id = s.next_id;
            s.next_id += 1;
            s.live.insert(id, live);
            id
        });
        // Concurrently, so a peer that does not read delays only itself.
        let message = if options.push {
            Message::Tx(tx)
        } else {
            Message::Inv(vec![InvVect::tx(txid)])
        };
        let results = futures::future::join_all(sends.iter().map(|peer_id| {
            let m = message.clone();
            async move { (*peer_id, self.peers.send(*peer_id, m).await) }
        }))
        .await;
        self.with_state(|s| {
            if let Some(l) = s.live.get_mut(&id) {
                for (peer_id, r) in results {
                    if let (Err(e), Some(p)) = (r, l.peers.get_mut(&peer_id)) {
                        p.delivery = Delivery::SendFailed(e.to_string());
                    }
                }
            }
        });
        // Collect answers until settled (plus a grace for late rejects) or the window ends.
        let deadline = started + options.window;
        let mut early = false;
        loop {
            let notified = changed.notified();
            if self.with_state(|s| s.live.get(&id).is_some_and(Live::settled)) {
                let settle_end = (Instant::now() + options.settle).min(deadline);
                tokio::time::sleep_until(settle_end).await;
                early = settle_end < deadline;
                break;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let report = self.with_state(|s| s.live.remove(&id).map(|l| l.report(started, early)));
        let report = report.ok_or_else(|| P2pError::ChannelClosed {
            channel: "transaction broadcast".into(),
        })?;
        for p in &report.peers {
            self.metrics.broadcast_outcome(p.kind());
        }
        Ok(report)
    }

    /// A new stream subscriber.
    pub(crate) fn subscribe(&self, capacity: usize) -> mpsc::Receiver<TransactionEvent> {
        self.with_state(|s| s.stream.subscribe(capacity))
    }

    fn on_getdata(&self, s: &mut State, peer_id: Uuid, items: &[InvVect]) {
        let now = Instant::now();
        for item in items.iter().filter(|i| i.inv_type == InvType::Tx) {
            let Some(tx) = s.cache.get(&item.hash, now) else {
                continue; // Not ours: whoever else serves transactions answers.
            };
            let served = self.peers.try_send(peer_id, &Message::Tx(tx.clone()));
            for l in s.live.values_mut().filter(|l| l.txid == item.hash) {
                if let Some(p) = l.peers.get_mut(&peer_id) {
                    p.requested = true;
                    if !served {
                        p.delivery = Delivery::SendFailed("send queue full on getdata".into());
                    }
                    l.changed.notify_one();
                }
            }
        }
    }
}

impl Service for TxService {
    fn on_message(&self, peers: &Peers, peer_id: Uuid, message: &Message) {
        let now = Instant::now();
        self.with_state(|s| match message {
            Message::Inv(items) => {
                let txids = items.iter().filter(|i| i.inv_type == InvType::Tx);
                for i in txids.clone() {
                    for l in s.live.values_mut().filter(|l| l.txid == i.hash) {
                        if let Some(p) = l.peers.get_mut(&peer_id) {
                            p.announced_back = true;
                            l.changed.notify_one();
                        }
                    }
                }
                s.stream.on_inv(peer_id, txids.map(|i| i.hash), peers, now);
            }
            Message::Tx(tx) => s.stream.on_tx(peer_id, tx, peers, now),
            Message::GetData(items) => self.on_getdata(s, peer_id, items),
            Message::NotFound(items) => {
                for i in items.iter().filter(|i| i.inv_type == InvType::Tx) {
                    s.stream.on_notfound(peer_id, &i.hash, peers, now);
                }
            }
            Message::Reject(r) if r.message == "tx" => {
                let Some(txid) = r.hash else { return };
                for l in s.live.values_mut().filter(|l| l.txid == txid) {
                    if let Some(p) = l.peers.get_mut(&peer_id) {
                        p.rejected = Some(TxRejection {
                            code: r.code,
                            reason: r.reason.clone(),
                        });
                        l.changed.notify_one();
                    }
                }
            }
            _ => {}
        });
    }

    fn on_peer_down(&self, peers: &Peers, peer_id: Uuid) {
        self.with_state(|s| s.stream.on_peer_down(peer_id, peers, Instant::now()));
    }

    fn on_tick(&self, peers: &Peers, now: Instant) {
        self.with_state(|s| {
            s.cache.expire(now);
            s.stream.on_tick(peers, now);
        });
    }
}

impl Manager {
    /// Broadcasts `tx` to every connected peer that accepts transaction relay, by `inv`,
    /// serving their `getdata` from a relay cache (15 minutes, bounded in bytes), and reports
    /// what each peer did: asked for it, rejected it (code and reason, matched by txid), or
    /// announced it back. Returns once every peer sent to has answered and a relay-back was
    /// seen (plus `BroadcastOptions::settle` for late rejects), or when the window ends.
    pub async fn broadcast_transaction(&self, tx: Transaction) -> Result<BroadcastReport> {
        self.broadcast_transaction_with(tx, BroadcastOptions::default())
            .await
    }

    /// [`Manager::broadcast_transaction`] with `options`: which peers, push instead of
    /// announce, the fee rate to compare with peers' `feefilter`, the collection window.
    pub async fn broadcast_transaction_with(
        &self,
        tx: Transaction,
        options: BroadcastOptions,
    ) -> Result<BroadcastReport> {
        self.services().txs.broadcast(tx, options).await
    }

    /// A stream of the transactions peers announce, each delivered once (whichever peer
    /// announced it first), with room for `capacity` events.
    ///
    /// Guaranteed: while subscribed, every transaction we request is delivered (room for it
    /// is reserved before the request), once; nothing is dropped for a slow subscriber:
    /// requests pause while its queue is full or it holds more than
    /// `transactions.stream_queue_bytes` of undropped events, and resume within a second of
    /// room freeing. Not guaranteed: announcements beyond
    /// `transactions.max_pending_announcements` waiting meanwhile are not remembered (a later
    /// announcement of the same txid is); a transaction no announcer serves within 10 minutes
    /// is forgotten, as the node forgets it; transactions announced while nobody is subscribed
    /// are not fetched; nothing is requested when our `relay` flag is off (peers announce
    /// nothing then). Several subscribers each get every transaction; the slowest paces all.
    pub fn subscribe_transactions(&self, capacity: usize) -> mpsc::Receiver<TransactionEvent> {
        if !self.config().relay {
            warn!("subscribe_transactions with relay off: peers announce no transactions");
        }
        self.services().txs.subscribe(capacity)
    }

    /// Asks `peer_id` for its mempool (a legacy BIP35 `mempool`; the answer is `inv`s, which
    /// feed [`Manager::subscribe_transactions`]). Refused unless the peer offers `NODE_BLOOM`:
    /// the node disconnects a legacy `mempool` from a peer it does not whitelist when it lacks
    /// `NODE_BLOOM` (`ProcessMempoolMessage`, §3.14), and by default (`-rejectmempoolrequest`)
    /// also when it has it but does not whitelist us, which we cannot see from here.
    pub async fn request_mempool(&self, peer_id: Uuid) -> Result<()> {
        let peers = &self.services().txs.peers;
        let view = peers
            .view(peer_id)
            .ok_or(P2pError::PeerNotFound { peer_id })?;
        if view.details.services & NODE_BLOOM == 0 {
            return Err(TransactionError::MempoolRefused {
                peer_id,
                reason: "it does not offer NODE_BLOOM, so the node would disconnect us".into(),
            }
            .into());
        }
        peers.send(peer_id, Message::Mempool(None)).await
    }
}
