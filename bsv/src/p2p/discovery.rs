//! DNS seed discovery (placeholder until the resolver-backed implementation lands).

use crate::p2p::config::ManagerConfig;
use crate::p2p::store::PeerStore;

/// Resolves the configured DNS seeds and stores new addresses.
#[derive(Debug, Clone, Default)]
pub struct DnsDiscovery {
    seeds: Vec<String>,
}

/// What one discovery round found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryReport {
    /// Addresses found.
    pub found: usize,
    /// Addresses newly stored.
    pub added: usize,
}

impl DnsDiscovery {
    /// Discovery for the seeds and nameservers of `config`.
    pub fn from_config(config: &ManagerConfig) -> Self {
        DnsDiscovery {
            seeds: config.dns_seeds.clone(),
        }
    }

    /// Resolves every seed and stores new addresses.
    pub async fn discover(&self, _store: &dyn PeerStore) -> DiscoveryReport {
        let _ = &self.seeds;
        DiscoveryReport::default()
    }
}
