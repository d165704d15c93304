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
