//! The outbound queue of one connection, shared by the actor (which fills it) and the writer
//! task (which drains it to the socket), so that reading never waits on writing.
//!
//! Two lanes: control replies (`pong`, `verack`, `reject`, `protoconf`) go ahead of bulk data so
//! a pong is never stuck behind a block. Bulk data is bounded in bytes by a semaphore that the
//! *sender* waits on, so a peer that stops reading applies back-pressure to the application
//! instead of growing our memory. The control lane is small by nature (one reply per message
//! read); if it still exceeds its cap the peer is flooding us without reading, and the actor
//! disconnects it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::p2p::limits::MAX_PRIORITY_BYTES;

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// The connection is closing.
    #[error("connection closed")]
    Closed,
    /// The control lane is over its cap: the peer is not reading.
    #[error("peer is not reading: control queue full")]
    PriorityFull,
}

/// A frame whose payload is read from a source while it is written, never held whole
/// (`Manager::send_block_stream`): the writer writes `header`, then copies exactly `len` bytes
/// from `body`, and says on `done` how it went.
pub(crate) struct StreamJob {
    /// The frame header, encoded.
    pub header: Bytes,
    /// The payload.
    pub body: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    /// The payload's length.
    pub len: u64,
    /// Payload bytes written, or why the write failed.
    pub done: tokio::sync::oneshot::Sender<Result<u64, String>>,
}

/// What the writer writes next.
pub(crate) enum Out {
    /// A whole frame.
    Frame(Bytes),
    /// A frame streamed from a source.
    Stream(StreamJob),
}

impl Out {
    /// Bytes it holds in memory.
    fn held(&self) -> usize {
        match self {
            Out::Frame(f) => f.len(),
            Out::Stream(j) => j.header.len(),
        }
    }
}

#[derive(Default)]
struct Lanes {
    priority: VecDeque<Bytes>,
    priority_bytes: usize,
    bulk: VecDeque<(Out, Option<OwnedSemaphorePermit>)>,
    closed: bool,
}

/// The shared outbound queue.
#[derive(Clone)]
pub struct Outbox {
    lanes: Arc<Mutex<Lanes>>,
    notify: Arc<Notify>,
    budget: Arc<Semaphore>,
    max_bytes: usize,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("max_bytes", &self.max_bytes)
            .field("queued_bytes", &self.queued_bytes())
            .finish()
    }
}

impl Outbox {
    /// A queue holding at most `max_bytes` of bulk data.
    pub fn new(max_bytes: usize) -> Self {
        let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS);
        Outbox {
            lanes: Arc::default(),
            notify: Arc::new(Notify::new()),
            budget: Arc::new(Semaphore::new(max_bytes)),
            max_bytes,
        }
    }

    /// Queues a control reply ahead of bulk data.
    pub fn push_priority(&self, frame: Bytes) -> Result<(), OutboxError> {
        let mut l = self.lanes.lock().map_err(|_| OutboxError::Closed)?;
        if l.closed {
            return Err(OutboxError::Closed);
        }
        if l.priority_bytes + frame.len() > MAX_PRIORITY_BYTES {
            return Err(OutboxError::PriorityFull);
        }
        l.priority_bytes += frame.len();
        l.priority.push_back(frame);
        drop(l);
        self.notify.notify_one();
        Ok(())
    }

    /// Queues bulk data, waiting while the queue holds `max_bytes` already. A frame larger than
    /// the whole budget waits for the queue to empty and then goes alone.
    pub async fn push_bulk(&self, frame: Bytes) -> Result<(), OutboxError> {
        let want = frame.len().clamp(1, self.max_bytes) as u32;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| OutboxError::Closed)?;
        self.enqueue_bulk(frame, permit)
    }

    /// Queues bulk data only if there is room now.
    pub fn try_push_bulk(&self, frame: Bytes) -> Result<bool, OutboxError> {
        let want = frame.len().clamp(1, self.max_bytes) as u32;
        match self.budget.clone().try_acquire_many_owned(want) {
            Ok(permit) => self.enqueue_bulk(frame, permit).map(|_| true),
            Err(tokio::sync::TryAcquireError::NoPermits) => Ok(false),
            Err(tokio::sync::TryAcquireError::Closed) => Err(OutboxError::Closed),
        }
    }

    /// Queues a streamed frame behind the bulk data already queued. It holds one byte of the
    /// budget (its payload is read as it is written, never queued).
    pub(crate) async fn push_stream(&self, job: StreamJob) -> Result<(), OutboxError> {
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(1)
            .await
            .map_err(|_| OutboxError::Closed)?;
        self.enqueue(Out::Stream(job), permit)
    }

    fn enqueue_bulk(&self, frame: Bytes, permit: OwnedSemaphorePermit) -> Result<(), OutboxError> {
        self.enqueue(Out::Frame(frame), permit)
    }

    fn enqueue(&self, out: Out, permit: OwnedSemaphorePermit) -> Result<(), OutboxError> {
        let mut l = self.lanes.lock().map_err(|_| OutboxError::Closed)?;
        if l.closed {
            return Err(OutboxError::Closed);
        }
        l.bulk.push_back((out, Some(permit)));
        drop(l);
        self.notify.notify_one();
        Ok(())
    }

    /// The next frame to write (control first), waiting until there is one. `None` once closed
    /// and drained. The returned guard releases the bulk budget when dropped (after the write).
    pub(crate) async fn next(&self) -> Option<(Out, Option<OwnedSemaphorePermit>)> {
        loop {
            let notified = self.notify.notified();
            {
                let mut l = self.lanes.lock().ok()?;
                if let Some(f) = l.priority.pop_front() {
                    l.priority_bytes -= f.len();
                    return Some((Out::Frame(f), None));
                }
                if let Some(f) = l.bulk.pop_front() {
                    return Some(f);
                }
                if l.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Stops accepting frames; the writer drains what is queued and ends.
    pub fn close(&self) {
        if let Ok(mut l) = self.lanes.lock() {
            l.closed = true;
        }
        self.budget.close();
        self.notify.notify_one();
    }

    /// Bytes currently queued in both lanes.
    pub fn queued_bytes(&self) -> usize {
        self.lanes
            .lock()
            .map(|l| l.priority_bytes + l.bulk.iter().map(|(f, _)| f.held()).sum::<usize>())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Out {
        fn frame(self) -> Bytes {
            match self {
                Out::Frame(f) => f,
                Out::Stream(j) => j.header,
            }
        }
    }

    #[tokio::test]
    async fn control_frames_overtake_queued_bulk_data() {
        let o = Outbox::new(1024);
        o.push_bulk(Bytes::from_static(b"block")).await.unwrap();
        o.push_priority(Bytes::from_static(b"pong")).unwrap();
        assert_eq!(o.next().await.unwrap().0.frame(), "pong");
        assert_eq!(o.next().await.unwrap().0.frame(), "block");
    }

    #[tokio::test]
    async fn bulk_data_beyond_the_byte_bound_waits_until_the_writer_drains() {
        let o = Outbox::new(10);
        o.push_bulk(Bytes::from(vec![0u8; 8])).await.unwrap();
        assert_eq!(o.try_push_bulk(Bytes::from(vec![0u8; 8])), Ok(false));
        assert_eq!(o.queued_bytes(), 8);
        let (_, permit) = o.next().await.unwrap();
        drop(permit); // written
        assert_eq!(o.try_push_bulk(Bytes::from(vec![0u8; 8])), Ok(true));
    }

    #[tokio::test]
    async fn a_flood_of_control_replies_past_the_cap_is_refused() {
        let o = Outbox::new(10);
        let frame = Bytes::from(vec![0u8; 1024]);
        for _ in 0..MAX_PRIORITY_BYTES / 1024 {
            o.push_priority(frame.clone()).unwrap();
        }
        assert_eq!(o.push_priority(frame), Err(OutboxError::PriorityFull));
    }

    #[tokio::test]
    async fn closing_drains_then_ends_and_refuses_new_frames() {
        let o = Outbox::new(10);
        o.push_priority(Bytes::from_static(b"a")).unwrap();
        o.close();
        assert_eq!(
            o.push_priority(Bytes::from_static(b"b")),
            Err(OutboxError::Closed)
        );
        assert!(o.push_bulk(Bytes::from_static(b"c")).await.is_err());
        assert_eq!(o.next().await.unwrap().0.frame(), "a");
        assert!(o.next().await.is_none());
    }
}
