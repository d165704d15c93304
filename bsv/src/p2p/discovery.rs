//! DNS seed discovery: how a node that knows no peers finds its first ones (SPEC §7).
//!
//! Each network names a few DNS seeds (docs/PROTOCOL.md §4): host names whose A and AAAA records are
//! the addresses of nodes believed to be up. They are queried with the plain host name, as the
//! official node does (no `x5.`-style service-bit prefixes). [`DnsDiscovery`] resolves every seed
//! and stores each new address in the [`PeerStore`] as an `Unknown` peer on the network's default
//! port; the manager then dials them like any other stored peer.
//!
//! Why it is built the way it is:
//!
//! * **An async resolver in process** (`hickory-resolver` on tokio), not the C library's
//!   `getaddrinfo`: a blocking lookup would hold a runtime thread for as long as the system
//!   resolver takes, and `getaddrinfo` cannot be pointed at a chosen name server. With
//!   `dns_nameservers` set, exactly those `ip:port` servers are queried (UDP, then TCP when an
//!   answer is truncated), which is how the tests use a DNS server on loopback, and `/etc/hosts`
//!   is not consulted, so the answer is the server's and nothing else. With `None` the system
//!   configuration (`/etc/resolv.conf`, hosts file) applies, as a user would expect.
//! * **Short timeouts, one retry, and a deadline per seed** ([`DNS_QUERY_TIMEOUT`],
//!   [`DNS_QUERY_RETRIES`], [`DNS_SEED_TIMEOUT`]): seeds are resolved concurrently and discovery
//!   waits for all of them, so one dead seed or name server must cost seconds, not the resolver
//!   library's default of several rounds of five seconds.
//! * **A failing seed is data, not an error**: [`DnsDiscovery::discover`] never fails. Each
//!   seed's error is logged at WARN and listed in the [`DiscoveryReport`], and the other seeds'
//!   addresses are stored regardless. A resolver that could not even be configured (no readable
//!   system configuration) makes every seed fail the same way instead of failing construction,
//!   so a manager always starts and can still use stored or fixed peers.
//! * **Seed names are made fully qualified** before the query, so a search domain from the
//!   system configuration is never appended to a seed name.
//! * **What is stored**: addresses are de-duplicated across seeds (IPv4-mapped IPv6 addresses
//!   count as their IPv4 address, as [`Peer::new`] stores them); an address whose IP is banned
//!   (any stored port of it) or whose `ip:port` is already stored is skipped, so running
//!   discovery again changes nothing for addresses it already knows. Addresses no peer can ever
//!   listen on (unspecified, multicast, IPv4 broadcast) are dropped.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig as DnsConnection, LookupIpStrategy, NameServerConfig, ResolveHosts,
    ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::TokioResolver;

use super::config::ManagerConfig;
use super::error::{P2pError, Result};
use super::peer::{unix_now, Peer};
use super::store::PeerStore;
use crate::bitcoin::Network;

/// How long one DNS query waits for an answer. Seeds answer from memory in milliseconds; two
/// seconds allows for a slow path without letting a dead server hold discovery.
pub const DNS_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Extra attempts after a failed query (a lost UDP datagram is worth one retry, a dead server
/// is not worth more).
pub const DNS_QUERY_RETRIES: usize = 1;

/// The most one seed may take, whatever the resolver does internally (A and AAAA queries, retries,
/// several name servers). Discovery waits for its slowest seed, so this bounds it.
pub const DNS_SEED_TIMEOUT: Duration = Duration::from_secs(10);

/// What one run of [`DnsDiscovery::discover`] did.
///
/// Every address in `found` ends up in exactly one of `added`, `skipped_existing`,
/// `skipped_banned` or `store_errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryReport {
    /// Distinct usable addresses the seeds returned, across all seeds.
    pub found: usize,
    /// Addresses stored as new `Unknown` peers.
    pub added: usize,
    /// Addresses skipped because a peer with the same IP and port is already stored.
    pub skipped_existing: usize,
    /// Addresses skipped because their IP is banned.
    pub skipped_banned: usize,
    /// Seeds that could not be resolved: `(seed, error)`, in the order of the seed list.
    pub failed_seeds: Vec<(String, String)>,
    /// Addresses the peer store failed on (for example a full store of `Valid` and `Banned`
    /// peers): `(ip, error)`.
    pub store_errors: Vec<(IpAddr, String)>,
}

/// Resolves a network's DNS seeds and stores the addresses they return as new peers.
///
/// Cheap to clone (the resolver and its cache are shared), so the manager's discovery task can
/// own one while the application keeps another for an on-demand run.
#[derive(Debug, Clone)]
pub struct DnsDiscovery {
    seeds: Vec<String>,
    default_port: u16,
    network: Option<Network>,
    seed_timeout: Duration,
    /// The resolver, or why it could not be built (then every seed fails with that reason).
    resolver: std::result::Result<TokioResolver, String>,
}

impl DnsDiscovery {
    /// A discovery of `seeds`, storing their addresses with `default_port`.
    ///
    /// `nameservers`: `None` uses the system's resolver configuration; `Some(list)` queries
    /// exactly those `ip:port` servers (over UDP, and TCP for truncated answers) and ignores the
    /// hosts file. Construction never fails: if the resolver cannot be configured, the reason is
    /// logged at WARN and reported by every resolution instead.
    pub fn new(
        seeds: Vec<String>,
        nameservers: Option<Vec<SocketAddr>>,
        default_port: u16,
    ) -> Self {
        let resolver = build_resolver(nameservers.as_deref());
        if let Err(error) = &resolver {
            tracing::warn!(%error, "DNS resolver could not be configured; DNS seeds will fail");
        }
        DnsDiscovery {
            seeds,
            default_port,
            network: None,
            seed_timeout: DNS_SEED_TIMEOUT,
            resolver,
        }
    }

    /// A discovery for the manager's configuration: its `dns_seeds`, `dns_nameservers` and
    /// `default_port`, with `network` named in the logs.
    pub fn from_config(config: &ManagerConfig) -> Self {
        let mut discovery = Self::new(
            config.dns_seeds.clone(),
            config.dns_nameservers.clone(),
            config.default_port,
        );
        discovery.network = Some(config.network);
        discovery
    }

    /// Replaces the deadline for resolving one seed ([`DNS_SEED_TIMEOUT`] by default).
    pub fn with_seed_timeout(mut self, timeout: Duration) -> Self {
        self.seed_timeout = timeout;
        self
    }

    /// The seed host names, in the order they were given.
    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    /// The port given to every discovered address.
    pub fn default_port(&self) -> u16 {
        self.default_port
    }

    /// The addresses (A and AAAA records) `seed` resolves to, without duplicates, in the order
    /// the resolver returned them (IPv4 first). A seed written as an IP address resolves to
    /// itself.
    ///
    /// Fails with [`P2pError::Dns`] when the name is invalid, does not exist (`no such host name
    /// (NXDOMAIN)`), has no address records (`no A or AAAA records`), or no name server answered
    /// within the seed deadline (`no answer within 10s`).
    pub async fn resolve_seed(&self, seed: &str) -> Result<Vec<IpAddr>> {
        let dns_error = |message: String| P2pError::Dns {
            seed: seed.to_string(),
            message,
        };
        if let Ok(ip) = seed.parse::<IpAddr>() {
            return Ok(vec![ip.to_canonical()]);
        }
        let resolver = self.resolver.as_ref().map_err(|e| dns_error(e.clone()))?;
        let mut name =
            Name::from_ascii(seed).map_err(|e| dns_error(format!("invalid host name: {e}")))?;
        if name.num_labels() == 0 {
            return Err(dns_error("invalid host name: empty".to_string()));
        }
        // Fully qualified: the system's search domains must not turn `seed.bitcoinsv.io` into
        // `seed.bitcoinsv.io.corp.example`.
        name.set_fqdn(true);
        let lookup = tokio::time::timeout(self.seed_timeout, resolver.lookup_ip(name))
            .await
            .map_err(|_| {
                dns_error(format!(
                    "no answer within {}",
                    humantime_serde::re::humantime::format_duration(self.seed_timeout)
                ))
            })?
            .map_err(|e| dns_error(describe(&e)))?;
        let mut seen = HashSet::new();
        Ok(lookup
            .iter()
            .map(|ip| ip.to_canonical())
            .filter(|ip| seen.insert(*ip))
            .collect())
    }

    /// Resolves every seed concurrently and stores each new address as an `Unknown` peer on
    /// the default port; see the module documentation for what is skipped and why.
    ///
    /// Never fails: a seed that cannot be resolved is logged at WARN and listed in
    /// [`DiscoveryReport::failed_seeds`], and an address the store refuses in
    /// [`DiscoveryReport::store_errors`].
    pub async fn discover(&self, store: &dyn PeerStore) -> DiscoveryReport {
        let network = self.network.map(tracing::field::display);
        let started = Instant::now();
        let results = futures::future::join_all(self.seeds.iter().map(|seed| async move {
            let seed_started = Instant::now();
            let result = self.resolve_seed(seed).await;
            (seed, result, seed_started.elapsed())
        }))
        .await;

        let mut report = DiscoveryReport::default();
        let mut addresses = Vec::new();
        let mut seen = HashSet::new();
        for (seed, result, elapsed) in results {
            match result {
                Ok(ips) => {
                    tracing::debug!(
                        seed = %seed,
                        addresses = ips.len(),
                        elapsed_ms = elapsed.as_millis() as u64,
                        network,
                        "Resolved DNS seed"
                    );
                    for ip in ips {
                        if !is_dialable(ip) {
                            tracing::debug!(seed = %seed, %ip, "Dropping unusable seed address");
                        } else if seen.insert(ip) {
                            addresses.push(ip);
                        }
                    }
                }
                Err(error) => {
                    let message = match &error {
                        P2pError::Dns { message, .. } => message.clone(),
                        other => other.to_string(),
                    };
                    tracing::warn!(seed = %seed, error = %message, network, "DNS seed failed");
                    report.failed_seeds.push((seed.clone(), message));
                }
            }
        }

        report.found = addresses.len();
        let now = unix_now();
        for ip in addresses {
            match self.store_address(store, ip, now).await {
                Ok(Outcome::Added) => report.added += 1,
                Ok(Outcome::Existing) => report.skipped_existing += 1,
                Ok(Outcome::Banned) => report.skipped_banned += 1,
                Err(error) => {
                    tracing::warn!(%ip, port = self.default_port, %error, "Could not store seed address");
                    report.store_errors.push((ip, error.to_string()));
                }
            }
        }

        tracing::info!(
            found = report.found,
            added = report.added,
            skipped_existing = report.skipped_existing,
            skipped_banned = report.skipped_banned,
            failed_seeds = report.failed_seeds.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            network,
            "DNS discovery finished"
        );
        report
    }

    /// Stores `ip` on the default port unless it is banned or already stored.
    async fn store_address(&self, store: &dyn PeerStore, ip: IpAddr, now: u64) -> Result<Outcome> {
        if store.is_ip_banned(ip, now).await? {
            return Ok(Outcome::Banned);
        }
        if store
            .find_by_ip_port(ip, self.default_port)
            .await?
            .is_some()
        {
            return Ok(Outcome::Existing);
        }
        match store.create(Peer::new(ip, self.default_port)).await {
            Ok(()) => Ok(Outcome::Added),
            // Another task (an inbound connection, an `addr` message) stored it meanwhile.
            Err(P2pError::DuplicatePeer { .. }) => Ok(Outcome::Existing),
            Err(e) => Err(e),
        }
    }
}

/// The resolver's error in an operator's words: the two answers a seed most often gives
/// (the name does not exist, or it has no address records) say so plainly instead of dumping
/// the query.
fn describe(error: &NetError) -> String {
    if error.is_nx_domain() {
        "no such host name (NXDOMAIN)".to_string()
    } else if error.is_no_records_found() {
        "no A or AAAA records".to_string()
    } else {
        error.to_string()
    }
}

/// What happened to one discovered address.
enum Outcome {
    Added,
    Existing,
    Banned,
}

/// Whether a peer could ever listen on `ip`: not the unspecified address, not multicast, not the
/// IPv4 broadcast address. Private and loopback addresses are kept: test networks and private
/// deployments use them.
fn is_dialable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// Builds the resolver: the system configuration, or exactly the given name servers.
fn build_resolver(
    nameservers: Option<&[SocketAddr]>,
) -> std::result::Result<TokioResolver, String> {
    let mut builder = match nameservers {
        None => TokioResolver::builder_tokio()
            .map_err(|e| format!("system resolver configuration unavailable: {e}"))?,
        Some(servers) => {
            let config = ResolverConfig::from_name_servers(
                servers.iter().map(|&addr| name_server(addr)).collect(),
            );
            let mut builder =
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
            // Explicit servers are the whole truth: no local hosts-file answers.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        }
    };
    tune(builder.options_mut());
    builder
        .build()
        .map_err(|e| format!("DNS resolver could not be built: {e}"))
}

/// The options discovery needs whatever the configuration says: both address families, short
/// timeouts, one retry.
fn tune(options: &mut ResolverOpts) {
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = DNS_QUERY_TIMEOUT;
    options.attempts = DNS_QUERY_RETRIES;
}

/// A name server at `addr`, queried over UDP first and TCP for truncated answers.
fn name_server(addr: SocketAddr) -> NameServerConfig {
    let connection = |mut c: DnsConnection| {
        c.port = addr.port();
        c
    };
    NameServerConfig::new(
        addr.ip(),
        true,
        vec![
            connection(DnsConnection::udp()),
            connection(DnsConnection::tcp()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_seed_written_as_an_ip_address_resolves_to_itself_without_a_query() {
        // Port 9 on loopback (discard) answers no DNS: any query would fail.
        let d = DnsDiscovery::new(vec![], Some(vec!["127.0.0.1:9".parse().unwrap()]), 8333);
        assert_eq!(
            d.resolve_seed("::ffff:10.0.0.1").await.unwrap(),
            vec!["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            d.resolve_seed("2001:db8::5").await.unwrap(),
            vec!["2001:db8::5".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn an_invalid_seed_name_fails_with_a_dns_error_naming_the_seed() {
        let d = DnsDiscovery::new(vec![], Some(vec!["127.0.0.1:9".parse().unwrap()]), 8333);
        for bad in ["", ".", "bad name.example", "a..b"] {
            match d.resolve_seed(bad).await {
                Err(P2pError::Dns { seed, message }) => {
                    assert_eq!(seed, bad);
                    assert!(
                        message.starts_with("invalid host name"),
                        "{bad:?}: {message}"
                    );
                }
                other => panic!("{bad:?}: expected a DNS error, got {other:?}"),
            }
        }
    }

    #[test]
    fn unusable_addresses_are_not_dialable() {
        for ip in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"] {
            assert!(!is_dialable(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.0.2.1", "10.0.0.1", "127.0.0.1", "2001:db8::1", "::1"] {
            assert!(is_dialable(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn from_config_takes_the_seeds_and_port_of_the_configuration() {
        let config = ManagerConfig::default();
        let d = DnsDiscovery::from_config(&config);
        assert_eq!(d.seeds(), config.dns_seeds.as_slice());
        assert_eq!(d.default_port(), config.default_port);
        assert_eq!(d.network, Some(config.network));
    }
}
