//! Block fetching (`Manager::get_block`): asks a peer that has the block, retries elsewhere, verifies.

use serde::{Deserialize, Serialize};

use super::{Peers, Service};
use crate::p2p::config::ManagerConfig;

/// Settings of block fetching (`[block_fetch]` in a configuration file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockFetchConfig {}

impl BlockFetchConfig {
    /// Checks the settings.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The service behind the manager's block fetching.
#[derive(Debug)]
pub(crate) struct BlockService {
    #[allow(dead_code)]
    peers: Peers,
}

impl BlockService {
    /// The service for a manager configured by `config`.
    pub(crate) fn new(_config: &ManagerConfig, peers: Peers) -> Self {
        BlockService { peers }
    }
}

impl Service for BlockService {}
