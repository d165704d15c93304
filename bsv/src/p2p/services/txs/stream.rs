//! The transaction stream (`Manager::subscribe_transactions`): announced transactions are
//! requested with `getdata` while someone is subscribed, and each is delivered once.
//!
//! The hub must never wait, so back-pressure works at the request level: we ask peers only for
//! as many transactions as every subscriber's queue has room for (counting those already
//! asked for), and not at all while a subscriber holds more than its byte budget of undropped
//! events. Announcements that cannot be requested yet wait, up to `max_pending`; a txid is
//! re-requested from another announcer after `TXN_REREQUEST_INTERVAL` and forgotten after
//! `TXN_EXPIRY_INTERVAL`, as the node does (`CNode::AskFor`, `src/net/net.cpp`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use crate::bitcoin::{Hash, InvVect, Transaction};
use crate::p2p::limits::{
    ANNOUNCERS_PER_TX, MAX_TX_GETDATA_BATCH, TXN_EXPIRY_INTERVAL, TXN_REREQUEST_INTERVAL,
};
use crate::p2p::services::Peers;
use crate::p2p::Message;

/// A transaction announced by a peer, delivered once to each subscriber.
#[derive(Debug)]
pub struct TransactionEvent {
    /// The peer that sent it.
    pub peer_id: Uuid,
    /// The transaction.
    pub transaction: Transaction,
    /// Releases the event's bytes from the subscriber's budget when dropped.
    _lease: Lease,
}

/// Counts an event's bytes against its subscriber's budget until dropped.
#[derive(Debug)]
struct Lease {
    bytes: usize,
    held: Arc<AtomicUsize>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<TransactionEvent>,
    held: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Pending {
    announcers: Vec<Uuid>,
    /// Who we asked last and when.
    asked: Option<(Uuid, Instant)>,
    first_seen: Instant,
}

/// Txids delivered, oldest forgotten first.
#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<Hash>,
    set: HashSet<Hash>,
    capacity: usize,
}

impl Seen {
    fn insert(&mut self, txid: Hash) {
        if self.set.insert(txid) {
            self.order.push_back(txid);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// The stream's state.
#[derive(Debug)]
pub(crate) struct Stream {
    subscribers: Vec<Subscriber>,
    seen: Seen,
    pending: HashMap<Hash, Pending>,
    /// Pending txids not asked for yet, oldest first (may hold stale entries).
    waiting: VecDeque<Hash>,
    /// Transactions asked for and not yet arrived.
    outstanding: usize,
    max_pending: usize,
    queue_bytes: usize,
    relay: bool,
}

impl Stream {
    /// No subscriber yet.
    pub(crate) fn new(
        relay: bool,
        seen_capacity: usize,
        max_pending: usize,
        queue_bytes: usize,
    ) -> Self {
        Stream {
            subscribers: Vec::new(),
            seen: Seen {
                capacity: seen_capacity,
                ..Seen::default()
            },
            pending: HashMap::new(),
            waiting: VecDeque::new(),
            outstanding: 0,
            max_pending,
            queue_bytes,
            relay,
        }
    }

    /// A new subscriber with room for `capacity` events.
    pub(crate) fn subscribe(&mut self, capacity: usize) -> mpsc::Receiver<TransactionEvent> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.subscribers.push(Subscriber {
            tx,
            held: Arc::new(AtomicUsize::new(0)),
        });
        rx
    }

    /// Marks `txid` as known (e.g. our own broadcast), so it is neither requested nor delivered.
    pub(crate) fn mark_seen(&mut self, txid: Hash) {
        self.seen.insert(txid);
        self.forget(&txid);
    }

    fn active(&mut self) -> bool {
        self.subscribers.retain(|s| !s.tx.is_closed());
        if self.subscribers.is_empty() {
            self.pending.clear();
            self.waiting.clear();
            self.outstanding = 0;
            return false;
        }
        self.relay
    }

    /// How many more transactions we may ask for now.
    fn budget(&self) -> usize {
        let mut room = usize::MAX;
        for s in &self.subscribers {
            if s.held.load(Ordering::Relaxed) >= self.queue_bytes {
                return 0;
            }
            room = room.min(s.tx.capacity());
        }
        room.saturating_sub(self.outstanding)
    }

    /// `peer_id` announced `txids`.
    pub(crate) fn on_inv(
        &mut self,
        peer_id: Uuid,
        txids: impl Iterator<Item = Hash>,
        peers: &Peers,
        now: Instant,
    ) {
        if !self.active() {
            return;
        }
        for txid in txids {
            if self.seen.set.contains(&txid) {
                continue;
            }
            if let Some(p) = self.pending.get_mut(&txid) {
                if p.announcers.len() < ANNOUNCERS_PER_TX && !p.announcers.contains(&peer_id) {
                    p.announcers.push(peer_id);
                }
                continue;
            }
            if self.pending.len() >= self.max_pending {
                continue; // Not remembered: a later announcement is taken again.
            }
            self.pending.insert(
                txid,
                Pending {
                    announcers: vec![peer_id],
                    asked: None,
                    first_seen: now,
                },
            );
            self.waiting.push_back(txid);
        }
        self.request(peers, now);
    }

    /// Asks announcers for as many waiting transactions as the subscribers have room for.
    pub(crate) fn request(&mut self, peers: &Peers, now: Instant) {
        if !self.active() {
            return;
        }
        let mut budget = self.budget();
        let mut batches: HashMap<Uuid, Vec<InvVect>> = HashMap::new();
        while budget > 0 {
            let Some(txid) = self.waiting.pop_front() else {
                break;
            };
            let Some(p) = self.pending.get_mut(&txid) else {
                continue;
            };
            if p.asked.is_some() {
                continue;
            }
            let Some(peer) = p.announcers.first().copied() else {
                continue;
            };
            p.asked = Some((peer, now));
            batches.entry(peer).or_default().push(InvVect::tx(txid));
            self.outstanding += 1;
            budget -= 1;
        }
        for (peer, items) in batches {
            for chunk in items.chunks(MAX_TX_GETDATA_BATCH) {
                if !peers.try_send(peer, &Message::GetData(chunk.to_vec())) {
                    // Not reading: the entries are re-asked (of the next announcer) by the
                    // re-request timer.
                    tracing::trace!(%peer, "transaction getdata not queued");
                }
            }
        }
    }

    /// A `tx` arrived from `peer_id`: delivered once to every subscriber, if asked for or if
    /// every subscriber has room for it unasked.
    pub(crate) fn on_tx(&mut self, peer_id: Uuid, tx: &Transaction, peers: &Peers, now: Instant) {
        if !self.active() {
            return;
        }
        let txid = tx.txid();
        if self.seen.set.contains(&txid) {
            return;
        }
        let was_asked = self.pending.get(&txid).is_some_and(|p| p.asked.is_some());
        if !was_asked && self.budget() == 0 {
            return; // No room: not delivered and not marked seen, so it can be taken later.
        }
        self.forget(&txid);
        self.seen.insert(txid);
        let bytes = tx.size();
        for s in &self.subscribers {
            s.held.fetch_add(bytes, Ordering::Relaxed);
            let event = TransactionEvent {
                peer_id,
                transaction: tx.clone(),
                _lease: Lease {
                    bytes,
                    held: s.held.clone(),
                },
            };
            // Room was reserved before the request, so this succeeds unless the subscriber
            // has gone (its event is then dropped with it).
            let _ = s.tx.try_send(event);
        }
        self.request(peers, now);
    }

    /// `peer_id` answered `notfound` for `txid`: ask the next announcer at once.
    pub(crate) fn on_notfound(&mut self, peer_id: Uuid, txid: &Hash, peers: &Peers, now: Instant) {
        if let Some(p) = self.pending.get_mut(txid) {
            if p.asked.is_some_and(|(who, _)| who == peer_id) {
                p.announcers.retain(|a| *a != peer_id);
                self.reask(*txid, peers, now);
            }
        }
    }

    /// `peer_id` is gone: its requests go to the next announcers.
    pub(crate) fn on_peer_down(&mut self, peer_id: Uuid, peers: &Peers, now: Instant) {
        let asked: Vec<Hash> = self
            .pending
            .iter_mut()
            .filter_map(|(h, p)| {
                p.announcers.retain(|a| *a != peer_id);
                p.asked.is_some_and(|(who, _)| who == peer_id).then_some(*h)
            })
            .collect();
        for txid in asked {
            self.reask(txid, peers, now);
        }
    }

    /// Re-requests and expiries; more requests if subscribers made room.
    pub(crate) fn on_tick(&mut self, peers: &Peers, now: Instant) {
        let expired: Vec<Hash> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.first_seen) >= TXN_EXPIRY_INTERVAL)
            .map(|(h, _)| *h)
            .collect();
        for txid in expired {
            self.forget(&txid);
        }
        let late: Vec<Hash> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.asked
                    .is_some_and(|(_, at)| now.duration_since(at) >= TXN_REREQUEST_INTERVAL)
            })
            .map(|(h, _)| *h)
            .collect();
        for txid in late {
            // The slow announcer goes to the back: the next one is asked.
            if let Some(p) = self.pending.get_mut(&txid) {
                if p.announcers.len() > 1 {
                    p.announcers.rotate_left(1);
                }
            }
            self.reask(txid, peers, now);
        }
        self.request(peers, now);
    }

    /// Asks the first announcer of `txid` again (its slot stays reserved), or forgets it.
    fn reask(&mut self, txid: Hash, peers: &Peers, now: Instant) {
        let Some(p) = self.pending.get_mut(&txid) else {
            return;
        };
        match p.announcers.first().copied() {
            Some(peer) => {
                p.asked = Some((peer, now));
                let _ = peers.try_send(peer, &Message::GetData(vec![InvVect::tx(txid)]));
            }
            None => self.forget(&txid),
        }
    }

    /// Drops `txid` from the pending set, releasing its reserved slot.
    fn forget(&mut self, txid: &Hash) {
        if let Some(p) = self.pending.remove(txid) {
            if p.asked.is_some() {
                self.outstanding = self.outstanding.saturating_sub(1);
            }
        }
    }
}
