//! The frame checksum of a streamed block, hashed on another core (docs/BENCHMARKS.md, "Blocks
//! of any size").
//!
//! A streamed `block` in a basic frame is hashed twice as it passes: once whole for the frame
//! checksum (sha256d of the payload, as `ProcessMessages` in `src/net/net_processing.cpp`
//! checks it) and once per transaction for the txids behind the merkle root. On one core those
//! two passes cost more than moving the bytes. The checksum needs only the bytes in order, so
//! the session hands each chunk (shared `Bytes`, no copy) to a worker on tokio's blocking pool
//! and decodes the same chunk meanwhile; at the end it awaits the digest. The worker holds at
//! most [`CHECKSUM_QUEUE_CHUNKS`] chunks of at most `STREAM_CHUNK` bytes: when it falls behind,
//! the session waits, so the socket is read no faster than both can hash. Dropping the worker
//! (the block failed or the connection ended) ends its thread.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::p2p::limits::CHECKSUM_QUEUE_CHUNKS;

/// Hashes a streamed payload on the blocking pool; see the module documentation.
#[derive(Debug)]
pub(super) struct ChecksumWorker {
    chunks: mpsc::Sender<Bytes>,
    digest: oneshot::Receiver<[u8; 32]>,
}

impl ChecksumWorker {
    /// Starts the worker (must be called inside the runtime).
    pub(super) fn spawn() -> Self {
        let (chunks, mut rx) = mpsc::channel::<Bytes>(CHECKSUM_QUEUE_CHUNKS);
        let (done, digest) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut sha = Sha256::new();
            while let Some(chunk) = rx.blocking_recv() {
                sha.update(&chunk);
            }
            // Nobody waits when the block was abandoned.
            let _ = done.send(Sha256::digest(sha.finalize()).into());
        });
        ChecksumWorker { chunks, digest }
    }

    /// Hands over the payload's next chunk, waiting while the worker is a full queue behind.
    /// False when the worker is gone (its thread cannot fail short of a panic).
    pub(super) async fn feed(&self, chunk: Bytes) -> bool {
        self.chunks.send(chunk).await.is_ok()
    }

    /// The sha256d of everything fed, once the worker has hashed it.
    pub(super) async fn finish(self) -> Option<[u8; 32]> {
        let ChecksumWorker { chunks, digest } = self;
        drop(chunks);
        digest.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn worker_digest_is_the_sha256d_of_the_chunks_in_order() {
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let worker = ChecksumWorker::spawn();
        for part in payload.chunks(7_777) {
            assert!(worker.feed(Bytes::copy_from_slice(part)).await);
        }
        let digest = worker.finish().await;
        let expected: [u8; 32] = Sha256::digest(Sha256::digest(&payload)).into();
        assert_eq!(digest, Some(expected));
    }

    #[tokio::test]
    async fn dropping_the_worker_ends_its_thread_without_a_digest() {
        let worker = ChecksumWorker::spawn();
        assert!(worker.feed(Bytes::from_static(b"abc")).await);
        drop(worker);
    }
}
