//! What connections report and how the application hears it (SPEC §8).
//!
//! * [`ControlEvent`]s (lifecycle, bans, capacity) and [`BitcoinMessageEvent`]s (every message a
//!   connection does not consume itself) go out on tokio broadcast channels, as the seed asks. A
//!   broadcast receiver that falls behind loses events (`Lagged`): fine for monitoring. The
//!   message ring is bounded in bytes (`ByteBoundedBroadcast`); the control ring only in count,
//!   which bounds its bytes too, since no event a peer can cause holds more than a user agent
//!   (768 bytes decoded; the test `every_control_event_a_peer_can_cause_is_bounded_in_bytes`,
//!   docs/SECURITY.md).
//! * For applications that must not lose a transaction, [`MessageSinks`] holds lossless,
//!   bounded per-subscriber channels: when one is full, the connection that wants to deliver
//!   stops reading its socket until there is room, so TCP back-pressure slows the peer instead
//!   of us dropping messages.
//! * [`PeerConnectionCommand`] is what the manager sends a connection.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::p2p::config::ConnectionConfig;
use crate::p2p::connection::{DisconnectReason, Misbehavior};
use crate::p2p::limits::{
    DEFAULT_LOSSLESS_QUEUE_BYTES, MESSAGE_EVENT_OVERHEAD, MESSAGE_MEMORY_FACTOR,
};
use crate::p2p::metrics::Metrics;
use crate::p2p::peer::BanReason;
use crate::p2p::Message;

/// A command from the manager to one connection actor.
#[derive(Debug, Clone)]
pub enum PeerConnectionCommand {
    /// Apply new connection settings (timeouts, ping interval, backoff, limits).
    UpdateConfig(ConnectionConfig),
    /// Close the connection cleanly; no restart.
    Disconnect,
    /// Send a message to the peer.
    SendMessage(Message),
}

/// A lifecycle event of a connection, the listener or the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// A handshake completed and the connection counts.
    ConnectionEstablished {
        /// The peer.
        peer_id: Uuid,
        /// Whether the peer dialled us.
        is_inbound: bool,
    },
    /// A dial or a handshake failed.
    ConnectionFailed {
        /// The peer.
        peer_id: Uuid,
        /// Why.
        reason: DisconnectReason,
    },
    /// An established connection ended.
    ConnectionLost {
        /// The peer.
        peer_id: Uuid,
        /// Why.
        reason: DisconnectReason,
    },
    /// An outbound connection that dropped is being re-dialled at once.
    ConnectionRestarting {
        /// The peer.
        peer_id: Uuid,
        /// Why it dropped.
        reason: DisconnectReason,
    },
    /// The `version`/`verack` exchange finished.
    HandshakeComplete {
        /// The peer.
        peer_id: Uuid,
    },
    /// The peer broke a protocol rule; its score grew.
    PeerMisbehavior {
        /// The peer.
        peer_id: Uuid,
        /// Its total score.
        score: u32,
        /// The rule (its `Display` is the node's name, e.g. `missing-verack`).
        reason: Misbehavior,
    },
    /// The peer's IP was banned.
    PeerBanned {
        /// The peer.
        peer_id: Uuid,
        /// The banned address (every port).
        ip: IpAddr,
        /// Why.
        reason: BanReason,
    },
    /// A ban was lifted.
    PeerUnbanned {
        /// The address.
        ip: IpAddr,
    },
    /// The listener accepted a connection that will be handshaken.
    InboundConnectionAccepted {
        /// The peer.
        peer_id: Uuid,
        /// Its address.
        address: SocketAddr,
    },
    /// The listener dropped a connection before any handshake.
    InboundConnectionRejected {
        /// Its address.
        address: SocketAddr,
        /// Why.
        reason: InboundRejection,
    },
    /// An inbound peer got the handshake and then a `reject`: we were at `max_connections`.
    ConnectionRejectedCapacity {
        /// The peer.
        peer_id: Uuid,
        /// Its address.
        address: SocketAddr,
    },
    /// The listener could not bind; the manager carries on outbound only.
    ListenerBindFailed {
        /// The address it tried.
        address: SocketAddr,
        /// The error.
        error: String,
    },
    /// A configuration update was applied.
    ConfigUpdated,
    /// Saving the peer store failed (a full disk, a read-only file); the manager carries on
    /// and retries soon (`p2p::limits::STORE_SAVE_RETRY`).
    StoreSaveFailed {
        /// The store's error.
        error: String,
    },
    /// An inbound peer was closed to make room for another (the listener was full; see
    /// docs/SECURITY.md on eviction).
    PeerEvicted {
        /// The evicted peer.
        peer_id: Uuid,
        /// Its address.
        address: SocketAddr,
        /// Whether it was still in its handshake (else it was established).
        in_handshake: bool,
    },
}

/// Why the listener closed an inbound socket before any handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundRejection {
    /// The address is banned.
    #[error("banned")]
    Banned,
    /// We are full and already refusing as many peers as we allow at once.
    #[error("at capacity")]
    AtCapacity,
    /// The listener's accept rate (`limits.accept_rate`) is exceeded.
    #[error("accept rate exceeded")]
    RateLimited,
    /// The IP already has `limits.max_inbound_per_ip` inbound connections.
    #[error("too many connections from this address")]
    PerIpCap,
}

/// A message received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitcoinMessageEvent {
    /// The peer that sent it.
    pub peer_id: Uuid,
    /// The message.
    pub message: Message,
}

/// What a queued message event costs in memory, for the byte bounds: the payload's length
/// times [`MESSAGE_MEMORY_FACTOR`] plus [`MESSAGE_EVENT_OVERHEAD`] (decoded messages are larger
/// than their wire form; see `p2p::limits`).
pub(crate) fn event_bytes(event: &BitcoinMessageEvent) -> usize {
    message_bytes(&event.message)
}

/// What a queued message costs in memory, by the same count as [`event_bytes`].
pub(crate) fn message_bytes(message: &Message) -> usize {
    message
        .payload_len()
        .saturating_mul(MESSAGE_MEMORY_FACTOR)
        .saturating_add(MESSAGE_EVENT_OVERHEAD)
}

/// The sizes of the values a channel may still hold, oldest first. Both tokio channels keep
/// values in the order sent and let go of the oldest first (a broadcast value once every
/// receiver has seen it or it is overwritten, an mpsc value once received), so the values still
/// held are always the *last* `n` sent, and the channel tells us `n`: dropping sizes from the
/// front down to `n` leaves the bytes held.
#[derive(Debug, Default)]
struct Held {
    sizes: VecDeque<usize>,
    bytes: usize,
}

impl Held {
    /// Forgets the values the channel no longer holds; returns the bytes it still holds.
    fn sync(&mut self, still_held: usize) -> usize {
        while self.sizes.len() > still_held {
            if let Some(n) = self.sizes.pop_front() {
                self.bytes = self.bytes.saturating_sub(n);
            }
        }
        self.bytes
    }

    fn push(&mut self, size: usize) {
        self.sizes.push_back(size);
        self.bytes = self.bytes.saturating_add(size);
    }
}

/// A tokio broadcast channel bounded in bytes as well as in messages, for the lossy message
/// stream. The seed's API hands out plain `broadcast::Receiver`s, and a broadcast ring cannot
/// drop a chosen value, so the bound is kept on the way in: a send that would make the ring
/// hold more than `max_bytes` (counting what its slowest receiver has not read yet) is dropped
/// and counted as an overflow, exactly as if that receiver had lagged. One message bigger than
/// the budget still goes through when the ring holds nothing, so the worst case is
/// `max_bytes` plus one message of the node's largest payload.
#[derive(Debug)]
pub(crate) struct ByteBoundedBroadcast<T> {
    tx: broadcast::Sender<T>,
    held: Mutex<Held>,
    max_bytes: AtomicUsize,
}

impl<T: Clone> ByteBoundedBroadcast<T> {
    /// A channel of `capacity` messages and `max_bytes` bytes.
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        ByteBoundedBroadcast {
            tx,
            held: Mutex::new(Held::default()),
            max_bytes: AtomicUsize::new(max_bytes.max(1)),
        }
    }

    /// A new receiver.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<T> {
        self.tx.subscribe()
    }

    /// Whether any receiver exists.
    pub(crate) fn has_receivers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Changes the byte budget (a configuration update).
    pub(crate) fn set_max_bytes(&self, max_bytes: usize) {
        self.max_bytes.store(max_bytes.max(1), Ordering::Relaxed);
    }

    /// The bytes the ring holds now, by our count.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        let still = self.tx.len();
        self.held.lock().map(|mut h| h.sync(still)).unwrap_or(0)
    }

    /// Sends `value` of `size` bytes; returns `false` when it was dropped for the byte budget
    /// (nobody listening is not a drop).
    pub(crate) fn send(&self, value: T, size: usize) -> bool {
        if self.tx.receiver_count() == 0 {
            return true;
        }
        let Ok(mut held) = self.held.lock() else {
            return false;
        };
        let bytes = held.sync(self.tx.len());
        if !held.sizes.is_empty()
            && bytes.saturating_add(size) > self.max_bytes.load(Ordering::Relaxed)
        {
            return false;
        }
        if self.tx.send(value).is_ok() {
            held.push(size);
        }
        true
    }
}

/// The byte count of what an mpsc channel holds, kept beside its sender: sizes are recorded as
/// values are sent, and the channel's free permits tell how many are still queued (see
/// [`Held`]). Used for the lossless message subscribers and for the services' hub channel, so
/// neither holds more than its byte budget of what peers sent, whatever the count.
#[derive(Debug, Default)]
pub(crate) struct MpscBytes {
    held: Mutex<Held>,
}

impl MpscBytes {
    /// Waits until `size` more bytes fit under `max_bytes` in `tx` (or nothing is queued).
    /// Returns whether it had to wait, or `Err` when the receiver went away.
    pub(crate) async fn room_for<T>(
        &self,
        tx: &mpsc::Sender<T>,
        size: usize,
        max_bytes: usize,
    ) -> Result<bool, ()> {
        let mut waited = false;
        loop {
            let queued = tx.max_capacity().saturating_sub(tx.capacity());
            // How many of the oldest queued values must be received before `size` fits.
            let must_go = {
                let Ok(mut held) = self.held.lock() else {
                    return Ok(waited);
                };
                let bytes = held.sync(queued);
                if held.sizes.is_empty() || bytes.saturating_add(size) <= max_bytes {
                    return Ok(waited);
                }
                let mut freed = 0usize;
                let mut n = 0usize;
                for s in &held.sizes {
                    if bytes.saturating_sub(freed).saturating_add(size) <= max_bytes {
                        break;
                    }
                    freed = freed.saturating_add(*s);
                    n += 1;
                }
                n.max(1)
            };
            waited = true;
            // Permits free up only as the receiver takes values: waiting for `must_go` more
            // than are free now is waiting for it to take that many of the oldest.
            let want = (tx.capacity() + must_go).min(tx.max_capacity());
            match tx.reserve_many(want).await {
                Ok(permits) => drop(permits),
                Err(_) => return Err(()),
            }
        }
    }

    /// Records a value of `size` bytes just sent.
    pub(crate) fn sent(&self, size: usize) {
        if let Ok(mut h) = self.held.lock() {
            h.push(size);
        }
    }
}

/// One lossless subscriber: its channel and the sizes of what it has queued.
#[derive(Debug)]
struct Sink {
    tx: mpsc::Sender<crate::p2p::lossless::Batch>,
    /// Its capacity in messages: a queued batch holds one permit per message.
    room: Arc<tokio::sync::Semaphore>,
    capacity: usize,
    bytes: MpscBytes,
}

/// The subscribers of the message stream: the lossy broadcast (bounded in bytes, see
/// `ByteBoundedBroadcast`) when a manager owns it, and the lossless, back-pressured
/// per-subscriber channels, bounded in messages and in bytes.
#[derive(Debug, Clone, Default)]
pub struct MessageSinks {
    /// Copy-on-write: a delivery takes the list with one `Arc` clone (it used to copy the whole
    /// `Vec` for every message); subscribing and dropping closed subscribers replace it.
    lossless: Arc<RwLock<Arc<Vec<Arc<Sink>>>>>,
    /// Bytes each lossless subscriber may have queued.
    lossless_bytes: Arc<AtomicUsize>,
    /// The lossy stream, when the manager routes it through here (a lone connection still
    /// sends on its own broadcast channel).
    lossy: Option<Arc<ByteBoundedBroadcast<BitcoinMessageEvent>>>,
    metrics: Metrics,
}

impl MessageSinks {
    /// Sinks that also feed the byte-bounded lossy stream `lossy`, with `lossless_bytes` per
    /// lossless subscriber.
    pub(crate) fn with_broadcast(
        lossy: Arc<ByteBoundedBroadcast<BitcoinMessageEvent>>,
        lossless_bytes: usize,
        metrics: Metrics,
    ) -> Self {
        MessageSinks {
            lossless: Arc::default(),
            lossless_bytes: Arc::new(AtomicUsize::new(lossless_bytes)),
            lossy: Some(lossy),
            metrics,
        }
    }

    /// Changes the bytes each lossless subscriber may have queued.
    pub(crate) fn set_lossless_bytes(&self, bytes: usize) {
        self.lossless_bytes.store(bytes, Ordering::Relaxed);
    }

    fn max_lossless_bytes(&self) -> usize {
        match self.lossless_bytes.load(Ordering::Relaxed) {
            0 => DEFAULT_LOSSLESS_QUEUE_BYTES,
            n => n,
        }
    }

    /// Adds a subscriber with room for `capacity` messages and returns its receiver.
    pub fn subscribe(&self, capacity: usize) -> crate::p2p::lossless::MessageReceiver {
        let capacity = capacity.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        // Every queued batch holds at least one message, so `capacity` items always fit.
        let (tx, rx) = mpsc::channel(capacity);
        if let Ok(mut v) = self.lossless.write() {
            Arc::make_mut(&mut v).push(Arc::new(Sink {
                tx,
                room: Arc::new(tokio::sync::Semaphore::new(capacity)),
                capacity,
                bytes: MpscBytes::default(),
            }));
        }
        crate::p2p::lossless::MessageReceiver::new(rx)
    }

    /// Whether anyone is subscribed (lossless or, through here, lossy).
    pub fn is_empty(&self) -> bool {
        let lossless = self
            .lossless
            .read()
            .map(|v| v.iter().all(|s| s.tx.is_closed()))
            .unwrap_or(true);
        lossless && !self.lossy.as_ref().is_some_and(|l| l.has_receivers())
    }

    /// Delivers `events` (one peer's, in its order) to every lossless subscriber as one
    /// batch each (split only where a subscriber's capacity is smaller), waiting while any of
    /// them is full in messages or in bytes, then to the lossy stream if it goes through here;
    /// returns whether it had to wait (back-pressure). Subscribers that went away are dropped.
    /// A batch a subscriber has started taking no longer counts against its bytes, so each may
    /// hold one batch beyond its byte budget.
    pub async fn deliver(&self, events: &[BitcoinMessageEvent]) -> bool {
        let sinks: Arc<Vec<Arc<Sink>>> = match self.lossless.read() {
            Ok(v) => Arc::clone(&v),
            Err(_) => return false,
        };
        let max_bytes = self.max_lossless_bytes();
        let mut closed = false;
        let mut waited = false;
        for s in sinks.iter() {
            for chunk in events.chunks(s.capacity) {
                match s.send(chunk, max_bytes).await {
                    Ok(w) => waited |= w,
                    Err(()) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if closed {
            if let Ok(mut v) = self.lossless.write() {
                Arc::make_mut(&mut v).retain(|s| !s.tx.is_closed());
            }
        }
        if let Some(lossy) = &self.lossy {
            for event in events {
                if !lossy.send(event.clone(), event_bytes(event)) {
                    self.metrics.broadcast_overflow("messages");
                }
            }
        }
        waited
    }
}

impl Sink {
    /// Queues `events` (at most its capacity) as one batch, waiting for room in bytes and in
    /// messages; whether it waited, or `Err` when the receiver went away.
    async fn send(&self, events: &[BitcoinMessageEvent], max_bytes: usize) -> Result<bool, ()> {
        let size = events
            .iter()
            .map(event_bytes)
            .fold(0usize, usize::saturating_add);
        let mut waited = self.bytes.room_for(&self.tx, size, max_bytes).await?;
        let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
        let permits = match self.room.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                waited = true;
                tokio::select! {
                    p = self.room.clone().acquire_many_owned(n) => p.map_err(|_| ())?,
                    _ = self.tx.closed() => return Err(()),
                }
            }
        };
        let batch = crate::p2p::lossless::Batch {
            events: events.to_vec(),
            permits,
        };
        match self.tx.try_send(batch) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(()),
            Err(mpsc::error::TrySendError::Full(b)) => {
                waited = true;
                self.tx.send(b).await.map_err(|_| ())?;
            }
        }
        self.bytes.sent(size);
        Ok(waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitcoin::{Hash, InvType, InvVect, NetAddress};
    use crate::p2p::codec::CodecError;
    use crate::p2p::connection::{HandshakeFailure, ProtocolViolation};
    use crate::p2p::messages::{VersionMessage, MAX_USER_AGENT_LEN};
    use crate::p2p::Network;

    fn inv(n: usize) -> BitcoinMessageEvent {
        BitcoinMessageEvent {
            peer_id: Uuid::nil(),
            message: Message::Inv(vec![
                InvVect {
                    inv_type: InvType::Tx,
                    hash: Hash([7; 32])
                };
                n
            ]),
        }
    }

    #[test]
    fn a_slow_broadcast_receiver_holds_at_most_the_byte_budget() {
        let ring = ByteBoundedBroadcast::new(1000, 10 * 1024 * 1024);
        let _slow = ring.subscribe();
        let big = inv(50_000);
        let size = event_bytes(&big);
        let sent = (0..100).filter(|_| ring.send(big.clone(), size)).count();
        // 50,000 entries are 1.8 MB on the wire, 3.6 MB by our count: two fit in 10 MiB.
        assert_eq!(sent, 2);
        assert!(ring.held_bytes() <= 10 * 1024 * 1024);
    }

    #[tokio::test]
    async fn what_a_receiver_has_read_no_longer_counts() {
        let ring = ByteBoundedBroadcast::new(1000, 10 * 1024 * 1024);
        let mut rx = ring.subscribe();
        let big = inv(50_000);
        let size = event_bytes(&big);
        for _ in 0..50 {
            assert!(
                ring.send(big.clone(), size),
                "a reader that keeps up loses nothing"
            );
            rx.recv().await.unwrap();
        }
        assert_eq!(ring.held_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lossless_subscriber_is_bounded_in_bytes_and_pushes_back() {
        let sinks = MessageSinks::with_broadcast(
            Arc::new(ByteBoundedBroadcast::new(10, 1)),
            8 * 1024 * 1024,
            Metrics::default(),
        );
        let mut rx = sinks.subscribe(1000);
        let big = inv(50_000);
        // Two fit (3.6 MB each by our count); the third waits for the subscriber.
        let one = std::slice::from_ref(&big);
        assert!(!sinks.deliver(one).await);
        assert!(!sinks.deliver(one).await);
        let third = {
            let sinks = sinks.clone();
            let big = big.clone();
            tokio::spawn(async move { sinks.deliver(std::slice::from_ref(&big)).await })
        };
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(!third.is_finished(), "the third waits while two are queued");
        rx.recv().await.unwrap();
        assert!(
            third.await.unwrap(),
            "it went through once one was received, having waited"
        );
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "two were left");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lossless_subscriber_takes_a_read_as_one_batch_and_its_capacity_counts_messages() {
        let sinks = MessageSinks::with_broadcast(
            Arc::new(ByteBoundedBroadcast::new(10, 1)),
            8 * 1024 * 1024,
            Metrics::default(),
        );
        let mut rx = sinks.subscribe(8);
        let five: Vec<BitcoinMessageEvent> = (1..=5).map(inv).collect();
        assert!(!sinks.deliver(&five).await);
        // Five more do not fit in eight until the first five are all taken.
        let next = {
            let sinks = sinks.clone();
            let five = five.clone();
            tokio::spawn(async move { sinks.deliver(&five).await })
        };
        for n in 1..=4 {
            let e = rx.recv().await.unwrap();
            assert!(
                matches!(&e.message, Message::Inv(v) if v.len() == n),
                "in order"
            );
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(
            !next.is_finished(),
            "one message of the batch still holds its room"
        );
        let mut got = Vec::new();
        assert_eq!(rx.recv_many(&mut got, 100).await, 1);
        assert!(next.await.unwrap(), "it waited for room");
        assert_eq!(rx.recv_many(&mut got, 100).await, 5);
        // A batch larger than the capacity goes in parts.
        let twenty: Vec<BitcoinMessageEvent> = (1..=20).map(inv).collect();
        let all = {
            let sinks = sinks.clone();
            tokio::spawn(async move { sinks.deliver(&twenty).await })
        };
        let mut n = 0;
        while n < 20 {
            let e = rx.recv().await.unwrap();
            n += 1;
            assert!(
                matches!(&e.message, Message::Inv(v) if v.len() == n),
                "in order"
            );
        }
        all.await.unwrap();
        drop(rx);
        assert!(
            !sinks.deliver(&five).await,
            "a gone subscriber is dropped, not waited for"
        );
    }

    // --- The control-event channel's byte bound (docs/SECURITY.md) ---

    fn reason_heap(r: &DisconnectReason) -> usize {
        match r {
            DisconnectReason::ConnectFailed(s)
            | DisconnectReason::Io(s)
            | DisconnectReason::Oversized(s)
            | DisconnectReason::BadFrame(s) => s.capacity(),
            DisconnectReason::Handshake(f) => match f {
                HandshakeFailure::BannedUserAgent { user_agent } => user_agent.capacity(),
                HandshakeFailure::Timeout(_)
                | HandshakeFailure::ObsoleteVersion { .. }
                | HandshakeFailure::SelfConnection { .. }
                | HandshakeFailure::NetworkMismatch { .. }
                | HandshakeFailure::BlockchainMismatch { .. }
                | HandshakeFailure::OverCapacity => 0,
            },
            DisconnectReason::ConnectTimeout(_)
            | DisconnectReason::PingTimeout(_)
            | DisconnectReason::PeerClosed
            | DisconnectReason::NotReading
            | DisconnectReason::Misbehavior { .. }
            | DisconnectReason::Protocol(_)
            | DisconnectReason::BlockStalled { .. }
            | DisconnectReason::Requested => 0,
        }
    }

    fn ban_heap(b: &BanReason) -> usize {
        match b {
            BanReason::NetworkMismatch { received, .. } => received.capacity(),
            BanReason::BlockchainMismatch { received } => received.capacity(),
            BanReason::BannedUserAgent { user_agent } => user_agent.capacity(),
            BanReason::Misbehavior { reason, .. } => reason.capacity(),
            BanReason::Manual { note } => note.capacity(),
        }
    }

    /// The heap bytes an event owns beyond its inline size (every `String`, by capacity). The
    /// match is exhaustive on purpose: a new variant, or a new string in one, must be sized
    /// here before this compiles.
    fn heap(e: &ControlEvent) -> usize {
        match e {
            ControlEvent::ConnectionFailed { reason, .. }
            | ControlEvent::ConnectionLost { reason, .. }
            | ControlEvent::ConnectionRestarting { reason, .. } => reason_heap(reason),
            ControlEvent::PeerBanned { reason, .. } => ban_heap(reason),
            ControlEvent::ListenerBindFailed { error, .. }
            | ControlEvent::StoreSaveFailed { error } => error.capacity(),
            ControlEvent::ConnectionEstablished { .. }
            | ControlEvent::HandshakeComplete { .. }
            | ControlEvent::PeerMisbehavior { .. }
            | ControlEvent::PeerUnbanned { .. }
            | ControlEvent::InboundConnectionAccepted { .. }
            | ControlEvent::InboundConnectionRejected { .. }
            | ControlEvent::ConnectionRejectedCapacity { .. }
            | ControlEvent::ConfigUpdated
            | ControlEvent::PeerEvicted { .. } => 0,
        }
    }

    /// The longest user agent a peer can make us hold: 256 bytes on the wire, each invalid
    /// UTF-8 byte becoming U+FFFD (3 bytes) when decoded.
    fn worst_user_agent() -> String {
        let v = VersionMessage {
            version: 70016,
            services: 0,
            timestamp: 0,
            receiver: NetAddress::UNSPECIFIED,
            sender: NetAddress::UNSPECIFIED,
            nonce: 1,
            user_agent: "a".repeat(MAX_USER_AGENT_LEN),
            start_height: 0,
            relay: true,
            association_id: None,
        };
        let payload = Message::Version(v).payload_bytes().to_vec();
        let at = payload
            .windows(MAX_USER_AGENT_LEN)
            .position(|w| w.iter().all(|b| *b == b'a'))
            .expect("the user agent's bytes");
        let mut bad = payload.clone();
        bad[at..at + MAX_USER_AGENT_LEN].fill(0xFF);
        let ua = match Message::decode_payload("version", bad.into()) {
            Ok(Message::Version(v)) => v.user_agent,
            other => panic!("{other:?}"),
        };
        // One byte more is refused by the decoder.
        let mut longer = payload[..at - 3].to_vec();
        longer.extend_from_slice(&[0xFD, 0x01, 0x01]);
        longer.extend(std::iter::repeat_n(b'a', MAX_USER_AGENT_LEN + 1));
        longer.extend_from_slice(&payload[at + MAX_USER_AGENT_LEN..]);
        assert!(Message::decode_payload("version", longer.into()).is_err());
        // What the handshake puts in its failure and its ban (a clone: capacity = length).
        ua.clone()
    }

    /// Every event a peer can cause, with the largest strings it can put in each.
    fn worst_peer_events() -> Vec<ControlEvent> {
        let id = Uuid::nil();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let address = SocketAddr::new(ip, 1);
        let ua = worst_user_agent();
        // Frame commands are at most 12 printable ASCII characters; lengths at most u64::MAX.
        let oversized = CodecError::Oversized {
            command: "abcdefghijkl".into(),
            length: u64::MAX,
            limit: u64::MAX,
        }
        .to_string();
        let bad_magic = [
            CodecError::BadMagic {
                expected: Some([0; 4]),
                received: [0xff; 4],
                network: Some(Network::Testnet),
            },
            CodecError::BadMagic {
                expected: None,
                received: [0xff; 4],
                network: None,
            },
        ]
        .iter()
        .map(|e| e.to_string())
        .max_by_key(String::len)
        .unwrap_or_default();
        let longest_rule = [
            Misbehavior::MissingVersion,
            Misbehavior::MissingVerack,
            Misbehavior::MultipleVersion,
            Misbehavior::InvalidSendHeaders,
            Misbehavior::InvalidSendHdrsEn,
            Misbehavior::InvalidChecksum,
            Misbehavior::OverLongSize,
            Misbehavior::OversizedAddr,
            Misbehavior::TooManyHeaders,
            Misbehavior::DisconnectedHeader,
            Misbehavior::TooManyUnconnectedHeaders,
            Misbehavior::HighHash,
            Misbehavior::PrevBlkNotFound,
            Misbehavior::AuthChRateLimit,
            Misbehavior::AuthRespRateLimit,
            Misbehavior::InvalidRevokeMid,
            Misbehavior::InvalidDsDetected,
            Misbehavior::MalformedDsDetected,
            Misbehavior::NoBloomVersion,
            Misbehavior::OversizedBloomFilter,
            Misbehavior::InvalidFilterAdd,
            Misbehavior::InvalidCmpctBlock,
            Misbehavior::InvalidCmpctBlockTxns,
            Misbehavior::OutOfBoundTxIndex,
            Misbehavior::BadTxnMerkleRoot,
            Misbehavior::InvalidUserAgent,
            Misbehavior::OversizedHeader,
        ]
        .iter()
        .map(|m| m.node_reason())
        .max_by_key(|r| r.len())
        .unwrap_or_default();
        let longest_network = [
            Network::Mainnet,
            Network::Testnet,
            Network::Regtest,
            Network::Stn,
        ]
        .iter()
        .map(|n| n.to_string())
        .max_by_key(String::len)
        .unwrap_or_default();
        let lost = |reason| ControlEvent::ConnectionLost {
            peer_id: id,
            reason,
        };
        let banned = |reason| ControlEvent::PeerBanned {
            peer_id: id,
            ip,
            reason,
        };
        vec![
            ControlEvent::ConnectionFailed {
                peer_id: id,
                reason: DisconnectReason::Handshake(HandshakeFailure::BannedUserAgent {
                    user_agent: ua.clone(),
                }),
            },
            banned(BanReason::BannedUserAgent { user_agent: ua }),
            lost(DisconnectReason::Oversized(oversized)),
            lost(DisconnectReason::BadFrame(bad_magic)),
            lost(DisconnectReason::Misbehavior {
                score: u32::MAX,
                reason: Misbehavior::MalformedDsDetected,
            }),
            lost(DisconnectReason::Protocol(
                ProtocolViolation::UnsupportedInvType(u32::MAX),
            )),
            // An operating-system error text (a reset, a refused connection): bounded by the
            // system's message table, never by the peer.
            lost(DisconnectReason::Io(
                std::io::Error::from(std::io::ErrorKind::ConnectionReset).to_string(),
            )),
            banned(BanReason::Misbehavior {
                score: u32::MAX,
                reason: longest_rule.to_string(),
            }),
            banned(BanReason::NetworkMismatch {
                expected: Network::Mainnet,
                received: longest_network,
            }),
            banned(BanReason::BlockchainMismatch {
                received: hex::encode([0xffu8; 4]),
            }),
            ControlEvent::PeerMisbehavior {
                peer_id: id,
                score: u32::MAX,
                reason: Misbehavior::OversizedHeader,
            },
            ControlEvent::InboundConnectionAccepted {
                peer_id: id,
                address,
            },
            ControlEvent::InboundConnectionRejected {
                address,
                reason: InboundRejection::PerIpCap,
            },
            ControlEvent::PeerEvicted {
                peer_id: id,
                address,
                in_handshake: true,
            },
            ControlEvent::ConnectionRejectedCapacity {
                peer_id: id,
                address,
            },
        ]
    }

    /// The heap a peer can make one control event hold: its user agent, at three bytes per
    /// wire byte (docs/SECURITY.md states the channel's bound from this).
    const PEER_EVENT_MAX_HEAP: usize = 3 * MAX_USER_AGENT_LEN;

    #[test]
    fn every_control_event_a_peer_can_cause_is_bounded_in_bytes() {
        let events = worst_peer_events();
        let worst = events.iter().map(heap).max().unwrap_or(0);
        for e in &events {
            assert!(
                heap(e) <= PEER_EVENT_MAX_HEAP,
                "{} heap bytes: {e:?}",
                heap(e)
            );
        }
        // The bound is reached: a user agent of 256 invalid bytes.
        assert_eq!(worst, PEER_EVENT_MAX_HEAP);
        // Every other string a peer can cause is far smaller.
        let second = events
            .iter()
            .map(heap)
            .filter(|h| *h < worst)
            .max()
            .unwrap_or(0);
        assert!(second <= 128, "{second}");
        // The inline size every slot of the ring holds (allocated when the channel is made).
        let inline = std::mem::size_of::<ControlEvent>();
        assert!(inline <= 96, "ControlEvent is {inline} bytes inline");
        let per_event = inline + PEER_EVENT_MAX_HEAP;
        let default_bound = crate::p2p::config::DEFAULT_EVENT_CHANNEL_CAPACITY * per_event;
        eprintln!(
            "ControlEvent: {inline} bytes inline + at most {PEER_EVENT_MAX_HEAP} on the heap; \
             {default_bound} bytes for the default {} events",
            crate::p2p::config::DEFAULT_EVENT_CHANNEL_CAPACITY
        );
        // 1,000 events: under 1 MiB however the peers behave.
        assert!(default_bound < 1024 * 1024, "{default_bound}");
    }
}
