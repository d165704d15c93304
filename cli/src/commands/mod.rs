//! One module per subcommand, and the argument parsers and helpers they share.

pub mod bridge;
pub mod broadcast;
pub mod config;
pub mod connect;
pub mod crawl;
pub mod decode;
pub mod demo;
pub mod fixed_peers;
pub mod getblock;
pub mod headers;
pub mod monitor;
pub mod simnet;
pub mod summary;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bitcoinsv::p2p::ManagerConfig;

use crate::error::CliError;

/// Resolves the configuration's DNS seeds with the system resolver, each address with the
/// network's default port. Fails, naming each seed's error and then `hint` (how to name peers
/// instead), when none gives an address.
pub async fn dns_seed_addresses(
    config: &ManagerConfig,
    hint: &str,
) -> Result<Vec<SocketAddr>, CliError> {
    if config.dns_seeds.is_empty() {
        return Err(CliError::Usage(format!(
            "{} has no DNS seeds: {hint}",
            config.network
        )));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for seed in &config.dns_seeds {
        let lookup = tokio::net::lookup_host((seed.as_str(), config.default_port));
        match tokio::time::timeout(Duration::from_secs(10), lookup).await {
            Ok(Ok(addrs)) => out.extend(addrs),
            Ok(Err(e)) => errors.push(format!("{seed}: {e}")),
            Err(_) => errors.push(format!("{seed}: timed out")),
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(CliError::Other(format!(
            "the DNS seeds gave no address ({}); {hint}",
            errors.join("; ")
        )));
    }
    Ok(out)
}

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Other(format!("starting the runtime: {e}")))
}

/// Parses a peer address argument (`ip:port`), with a message that shows the expected form.
pub fn parse_address(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("{s:?} is not an address: expected ip:port, e.g. 127.0.0.1:8333 or [::1]:8333")
    })
}

/// Parses a positive number of seconds (fractions allowed).
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v < 1e9 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// Writes `text` (plus a final newline) to `out`, or to stdout when `None`.
pub fn write_output(out: Option<&Path>, text: &str) -> Result<(), CliError> {
    match out {
        Some(path) => std::fs::write(path, format!("{text}\n")).map_err(|source| CliError::File {
            path: path.display().to_string(),
            source,
        }),
        None => {
            crate::output::line(text);
            Ok(())
        }
    }
}
