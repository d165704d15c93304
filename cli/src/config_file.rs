//! The options every network subcommand shares (`--network`, `--config FILE`) and loading a
//! [`ManagerConfig`] from a TOML file.
//!
//! A file holds only what it changes (every setting has a default). Its `network` and the
//! command line's `--network` must agree: when only one says it, that one wins; when both do
//! and they differ, the command fails rather than guess. Errors are one line naming the file,
//! the line and column, and the setting, so the user knows what to fix.

use std::path::{Path, PathBuf};

use bitcoinsv::bitcoin::Network;
use bitcoinsv::p2p::ManagerConfig;

use crate::error::CliError;

/// `--network` and `--config`, flattened into each subcommand's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// The network: mainnet, testnet, regtest or stn [default: mainnet, or the config file's].
    #[arg(long, value_name = "NETWORK")]
    pub network: Option<Network>,
    /// A TOML ManagerConfig file (see `bsvp2p config --print-default`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// The configuration these options describe.
    pub fn load(&self) -> Result<ManagerConfig, CliError> {
        load(self.config.as_deref(), self.network)
    }
}

/// Reads and validates the configuration in `path` (the defaults when `None`) for `network`
/// (the file's, or mainnet, when `None`).
pub fn load(path: Option<&Path>, network: Option<Network>) -> Result<ManagerConfig, CliError> {
    let Some(path) = path else {
        return Ok(ManagerConfig::new(network.unwrap_or_default()));
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
        path: shown.clone(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| toml_error(&shown, &text, &e, 0))?;
    // Top-level keys come before any table in TOML, so a `network` line put first is a key of
    // the root table; line numbers in errors are shifted back by it.
    let (text, shift) = match (table.get("network"), network) {
        (Some(v), Some(n)) => {
            let theirs = v.as_str().unwrap_or_default();
            if theirs.parse::<Network>().ok() != Some(n) {
                return Err(CliError::Usage(format!(
                    "{shown}: network = {v} conflicts with --network {n}; change one of them"
                )));
            }
            (text, 0)
        }
        (None, Some(n)) => (format!("network = \"{n}\"\n{text}"), 1),
        _ => (text, 0),
    };
    let config: ManagerConfig =
        toml::from_str(&text).map_err(|e| toml_error(&shown, &text, &e, shift))?;
    config
        .validate()
        .map_err(|e| CliError::Usage(format!("{shown}: {e}")))?;
    Ok(config)
}

/// A TOML error as one line: `file:line:column: message`.
fn toml_error(path: &str, text: &str, e: &toml::de::Error, shift: usize) -> CliError {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!(":{}:{column}", line.saturating_sub(shift).max(1))
    });
    CliError::Usage(format!("{path}{}: {message}", at.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bsvp2p-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn no_file_gives_the_networks_defaults() {
        let c = load(None, Some(Network::Testnet)).unwrap();
        assert_eq!(c, ManagerConfig::new(Network::Testnet));
        assert_eq!(load(None, None).unwrap(), ManagerConfig::default());
    }

    #[test]
    fn the_command_line_network_fills_in_for_a_file_without_one() {
        let p = file("partial.toml", "target_connections = 3\n");
        let c = load(Some(&p), Some(Network::Regtest)).unwrap();
        assert_eq!(c.network, Network::Regtest);
        assert_eq!(c.default_port, 18444);
        assert_eq!(c.target_connections, 3);
    }

    #[test]
    fn conflicting_networks_are_refused() {
        let p = file("testnet.toml", "network = \"testnet\"\n");
        let e = load(Some(&p), Some(Network::Mainnet)).unwrap_err();
        assert!(
            e.to_string().contains("conflicts with --network mainnet"),
            "{e}"
        );
        assert_eq!(
            load(Some(&p), None).unwrap().network,
            Network::Testnet,
            "the file's network when the command line says none"
        );
    }

    #[test]
    fn errors_name_the_file_line_and_setting_on_one_line() {
        let p = file("bad.toml", "target_connections = 3\nmax_conections = 4\n");
        let e = load(Some(&p), Some(Network::Regtest))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.toml:2:1: unknown field `max_conections`"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let p = file(
            "invalid.toml",
            "target_connections = 30\nmax_connections = 4\n",
        );
        let e = load(Some(&p), None).unwrap_err().to_string();
        assert!(
            e.contains("target_connections (30) is greater than max_connections (4)"),
            "{e}"
        );
        let p = file("syntax.toml", "target_connections = \n");
        let e = load(Some(&p), None).unwrap_err().to_string();
        assert!(e.contains("syntax.toml:1:"), "{e}");
        assert!(!e.contains('\n'));
    }
}
