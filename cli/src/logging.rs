//! Where log lines go and which: `RUST_LOG` (the `tracing_subscriber::EnvFilter` syntax, e.g.
//! `RUST_LOG=bitcoinsv=debug`) wins; without it, `--log-level`, then the `log_level` of the
//! `--config` file given, then the command's default: `warn` for the long-running `simnet` and
//! plain `monitor`, `error` under `monitor`'s live table (which redraws the terminal), `off` for
//! the one-shot commands (they report their own failure as one line). Lines go to stderr, so
//! stdout keeps each command's output.

use std::path::Path;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (a no-op if one is installed already).
pub fn init(log_level: Option<&str>, config: Option<&Path>, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = log_level
            .map(str::to_string)
            .or_else(|| config.and_then(config_level))
            .unwrap_or_else(|| default.to_string());
        EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("warn"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The `log_level` key of a TOML config file, if it sets one (errors in the file are reported
/// by the command itself).
fn config_level(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    table.get("log_level")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_level_reads_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "log_level = \"debug\"\n").unwrap();
        assert_eq!(config_level(&p).as_deref(), Some("debug"));
        std::fs::write(&p, "target_connections = 3\n").unwrap();
        assert_eq!(config_level(&p), None);
    }
}
