//! The application's side of the header chain: [`HeaderChain`], the cheap-to-clone handle
//! [`crate::p2p::Manager::header_chain`] returns, and the types it answers with.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::ChainService;
use crate::bitcoin::{BlockHeader, Hash};
use crate::p2p::error::{P2pError, Result};
use crate::p2p::Manager;

/// The best chain's tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChainTip {
    /// Its height (genesis is 0).
    pub height: u32,
    /// Its hash.
    pub hash: Hash,
    /// Its header.
    pub header: BlockHeader,
    /// Work of the chain up to and including it (from the checkpoint when one is configured).
    pub chain_work: u128,
}

/// A header the chain holds, on any branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChainHeader {
    /// The header.
    pub header: BlockHeader,
    /// Its hash.
    pub hash: Hash,
    /// Its height.
    pub height: u32,
    /// Work of the chain up to and including it.
    pub chain_work: u128,
    /// Whether it is on the best chain.
    pub best: bool,
}

/// A change of the best chain, as [`HeaderChain::subscribe`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChainEvent {
    /// The best chain has a new tip (after a [`ChainEvent::Reorg`], its new tip). During a sync
    /// one event per batch of headers, for the batch's last.
    NewTip {
        /// The new tip's height.
        height: u32,
        /// The new tip's hash.
        hash: Hash,
    },
    /// Another branch took over: the headers above `fork_height` of the old chain left the
    /// best chain. Followed by a [`ChainEvent::NewTip`] of `new_tip`.
    Reorg {
        /// The tip before.
        old_tip: Hash,
        /// The tip after.
        new_tip: Hash,
        /// The height of the last header both branches share.
        fork_height: u32,
        /// How many headers left the best chain: old tip height − `fork_height`.
        depth: u32,
    },
}

/// The best header chain the connected peers know: a cheap-to-clone handle on the manager's
/// header chain service (see [`Manager::header_chain`]).
#[derive(Debug, Clone)]
pub struct HeaderChain {
    service: Arc<ChainService>,
}

impl HeaderChain {
    /// Waits until our tip has reached what every connected peer knows (the best of its
    /// `version` start height and its announcements) and the sync peer's last reply had fewer
    /// than 2000 headers; waits for a peer when none is connected. Returns the tip, or
    /// [`P2pError::Timeout`] after `timeout`, or the header file's error.
    pub async fn sync(&self, timeout: Duration) -> Result<ChainTip> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.service.watch_changes();
        loop {
            if let Some(tip) = self.service.synced_tip()? {
                return Ok(tip);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(P2pError::ChannelClosed {
                        channel: "header chain".into(),
                    })
                }
                Err(_) => {
                    return Err(P2pError::Timeout {
                        what: "the header chain to reach the peers' tip".into(),
                        after: timeout,
                    })
                }
            }
        }
    }

    /// The best chain's tip now.
    pub fn tip(&self) -> ChainTip {
        self.service.tip()
    }

    /// The header with `hash`, on any branch.
    pub fn header(&self, hash: &Hash) -> Option<ChainHeader> {
        self.service.header(hash)
    }

    /// The best chain's header at `height`.
    pub fn header_at(&self, height: u32) -> Option<ChainHeader> {
        self.service.header_at(height)
    }

    /// A block locator for the tip, as the node builds one (`CChain::GetLocator`): the last
    /// eleven hashes, then doubling back, ending with genesis (or the checkpoint). The body of
    /// a `getheaders` or `getblocks`.
    pub fn locator(&self) -> Vec<Hash> {
        self.service.locator()
    }

    /// New tips and reorganisations from now on. A subscriber that falls more than
    /// `CHAIN_EVENT_CAPACITY` (1024) events behind loses the oldest (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<ChainEvent> {
        self.service.subscribe()
    }

    /// The peer that gave us the header with `hash` first (`None` for genesis, the checkpoint,
    /// headers loaded from the file, or unknown hashes).
    pub fn announced_by(&self, hash: &Hash) -> Option<Uuid> {
        self.service.announced_by(hash)
    }

    /// Headers held, on every branch (the start point included).
    pub fn len(&self) -> usize {
        self.service.len()
    }

    /// Always false: the chain holds at least its start point.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Manager {
    /// The header chain. The first call starts following the chain (loading the header file
    /// and asking a peer for headers) unless `HeaderChainConfig::enabled` started it with the
    /// manager; later calls return handles on the same chain.
    pub fn header_chain(&self) -> HeaderChain {
        let service = self.services().chain.clone();
        service.activate();
        HeaderChain { service }
    }
}
