//! Transactions: broadcast with a per-peer report (`Manager::broadcast_transaction`) and the stream of announced transactions (`Manager::subscribe_transactions`).

use serde::{Deserialize, Serialize};

use super::{Peers, Service};
use crate::p2p::config::ManagerConfig;

/// Settings of the transaction services (`[transactions]` in a configuration file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransactionConfig {}

impl TransactionConfig {
    /// Checks the settings.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The service behind the manager's transaction broadcast and stream.
#[derive(Debug)]
pub(crate) struct TxService {
    #[allow(dead_code)]
    peers: Peers,
}

impl TxService {
    /// The service for a manager configured by `config`.
    pub(crate) fn new(_config: &ManagerConfig, peers: Peers) -> Self {
        TxService { peers }
    }
}

impl Service for TxService {}

/// Why a transaction service refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// The peer would disconnect us for a legacy `mempool` request.
    #[error("peer {peer_id} does not allow mempool requests: {reason}")]
    MempoolRefused {
        /// The peer.
        peer_id: uuid::Uuid,
        /// Why.
        reason: String,
    },
}
