//! [`MessageReceiver`]: the receiving end of a lossless message subscription
//! (`Manager::subscribe_messages_lossless`, and a lossless `PeerClient`).
//!
//! A connection hands its subscribers everything one read of the peer's socket brought as one
//! channel item, a `Batch`, and the receiver gives the messages out one at a time. Sending
//! each message as its own item cost a cross-thread wake-up (a parked worker unparked through
//! the kernel) per message, most of the time of a stream of small messages (docs/BENCHMARKS.md,
//! "Small messages"). The subscriber's capacity is still counted in messages: a batch holds
//! one permit per message of the subscriber's semaphore until its last message is taken.

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::p2p::events::BitcoinMessageEvent;

/// What a connection queues for one lossless subscriber: messages in the order the peer sent
/// them, with their share of the subscriber's capacity.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) events: Vec<BitcoinMessageEvent>,
    pub(crate) permits: OwnedSemaphorePermit,
}

/// The receiving end of a lossless, back-pressured message stream: every message from every
/// peer, in each peer's order, never dropped. While it holds its capacity in messages (or its
/// byte budget, `limits.lossless_queue_bytes`), the connections feeding it stop reading their
/// sockets. Dropping it ends the subscription.
#[derive(Debug)]
pub struct MessageReceiver {
    rx: mpsc::Receiver<Batch>,
    batch: std::vec::IntoIter<BitcoinMessageEvent>,
    /// The capacity the current batch holds until its last message is taken.
    held: Option<OwnedSemaphorePermit>,
}

impl MessageReceiver {
    pub(crate) fn new(rx: mpsc::Receiver<Batch>) -> Self {
        MessageReceiver {
            rx,
            batch: Vec::new().into_iter(),
            held: None,
        }
    }

    /// The next message; `None` once every connection feeding it is gone (the manager shut
    /// down, or the lone connection ended) and everything queued has been taken.
    pub async fn recv(&mut self) -> Option<BitcoinMessageEvent> {
        loop {
            if let Some(e) = self.take() {
                return Some(e);
            }
            let batch = self.rx.recv().await?;
            self.load(batch);
        }
    }

    /// The next message if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Result<BitcoinMessageEvent, mpsc::error::TryRecvError> {
        loop {
            if let Some(e) = self.take() {
                return Ok(e);
            }
            let batch = self.rx.try_recv()?;
            self.load(batch);
        }
    }

    /// Waits for at least one message, then appends to `buf` what is queued, up to `limit`;
    /// returns how many (0 only when the stream has ended or `limit` is 0).
    pub async fn recv_many(&mut self, buf: &mut Vec<BitcoinMessageEvent>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        let mut n = 0;
        if self.batch.len() == 0 {
            match self.rx.recv().await {
                Some(batch) => self.load(batch),
                None => return 0,
            }
        }
        loop {
            while n < limit {
                match self.take() {
                    Some(e) => {
                        buf.push(e);
                        n += 1;
                    }
                    None => break,
                }
            }
            if n >= limit {
                return n;
            }
            match self.rx.try_recv() {
                Ok(batch) => self.load(batch),
                Err(_) => return n,
            }
        }
    }

    fn take(&mut self) -> Option<BitcoinMessageEvent> {
        let e = self.batch.next();
        if self.batch.len() == 0 {
            // The batch is all taken: its room goes back to the connections now.
            self.held = None;
        }
        e
    }

    fn load(&mut self, batch: Batch) {
        self.batch = batch.events.into_iter();
        self.held = Some(batch.permits);
    }
}
