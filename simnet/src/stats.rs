//! Per-node counters, so tests can assert what a node saw ("node 3 received one `getaddr`, sent
//! 2 `addr`, banned one IP") and wait for it without sleeping.
//!
//! The counters live behind a mutex next to a [`Notify`]; every change wakes the waiters of
//! [`Counters::wait_for`], which re-check their predicate on a fresh [`NodeStats`] snapshot.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// A snapshot of a node's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Connections the node accepted (closed-at-once connections from banned IPs excluded).
    pub inbound_connections: u64,
    /// Connections the node dialled.
    pub outbound_connections: u64,
    /// Connections open now.
    pub active_connections: u64,
    /// Connections whose handshake completed (the peer's `version` and `verack` received).
    pub handshakes: u64,
    /// Connections closed (for any reason).
    pub disconnects: u64,
    /// Connections refused at once because the peer's IP was banned.
    pub refused_banned: u64,
    /// IPs banned (a ban counts once per occurrence).
    pub bans: u64,
    /// Total misbehaviour score given to peers.
    pub misbehaviour_score: u64,
    /// Frames that could not be used (bad checksum, bad command field, malformed payload).
    pub bad_frames: u64,
    /// Messages received, by command.
    pub messages_in: BTreeMap<String, u64>,
    /// Messages sent, by command.
    pub messages_out: BTreeMap<String, u64>,
}

impl NodeStats {
    /// Messages of `command` received.
    pub fn received(&self, command: &str) -> u64 {
        self.messages_in.get(command).copied().unwrap_or(0)
    }

    /// Messages of `command` sent.
    pub fn sent(&self, command: &str) -> u64 {
        self.messages_out.get(command).copied().unwrap_or(0)
    }
}

/// The live counters of one node.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    stats: Mutex<NodeStats>,
    changed: Notify,
}

impl Counters {
    /// Applies `f` to the counters and wakes waiters.
    pub(crate) fn update(&self, f: impl FnOnce(&mut NodeStats)) {
        {
            let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut s);
        }
        self.changed.notify_waiters();
    }

    /// Counts a received message.
    pub(crate) fn message_in(&self, command: &str) {
        self.update(|s| *s.messages_in.entry(command.to_string()).or_default() += 1);
    }

    /// Counts a sent message.
    pub(crate) fn message_out(&self, command: &str) {
        self.update(|s| *s.messages_out.entry(command.to_string()).or_default() += 1);
    }

    /// A snapshot.
    pub(crate) fn snapshot(&self) -> NodeStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `pred` holds on the counters, at most `timeout`; returns the snapshot that
    /// satisfied it, or `None` on timeout.
    pub(crate) async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&NodeStats) -> bool,
    ) -> Option<NodeStats> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so a change between the check and the await
            // is not lost.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let s = self.snapshot();
            if pred(&s) {
                return Some(s);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}
