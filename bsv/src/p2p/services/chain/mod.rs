//! The header chain: the best chain of headers the connected peers know (`Manager::header_chain`).

use serde::{Deserialize, Serialize};

use super::{Peers, Service};
use crate::p2p::config::ManagerConfig;

/// Settings of the header chain (`[header_chain]` in a configuration file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderChainConfig {}

impl HeaderChainConfig {
    /// Checks the settings.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The service behind the manager's header chain.
#[derive(Debug)]
pub(crate) struct ChainService {
    #[allow(dead_code)]
    peers: Peers,
}

impl ChainService {
    /// The service for a manager configured by `config`.
    pub(crate) fn new(_config: &ManagerConfig, peers: Peers) -> Self {
        ChainService { peers }
    }
}

impl Service for ChainService {}
