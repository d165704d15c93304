//! `bsvp2p bridge`: one listener of a fleet. Runs the manager with its services, publishes new
//! tips, reorganisations, blocks, the transaction stream and control events into NATS
//! JetStream (`bitcoinsv_nats::NatsSink` fed by the library's `sink::Pump`), and answers
//! broadcast requests on `bsv.<network>.broadcast`. Several bridges publish into one stream;
//! JetStream's duplicate window keeps one copy of each block and transaction (docs/FLEET.md).
//!
//! Settings come from the command line or from the `--config` file: the manager's settings as
//! for every command, plus a `[bridge]` table with the same names as the options (`nats`,
//! `store`, `peers`, `instance`, `buffer_mib`, `from_height`); the command line wins. A status
//! line is printed every `--status-every` seconds. Ctrl-C stops taking input, waits until
//! JetStream has acknowledged everything in flight (up to the drain timeout, then says what
//! was not), and shuts the manager down, saving the peer store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::Network;
use bitcoinsv::p2p::sink::{Pump, PumpOptions, SinkStats};
use bitcoinsv::p2p::{InMemoryPeerStore, Manager, ManagerConfig, PeerStore};
use bitcoinsv_nats::{serve_broadcasts, NatsSink, NatsSinkConfig};
use serde::Deserialize;

use super::{parse_address, parse_seconds};
use crate::config_file::ConfigArgs;
use crate::error::CliError;
use crate::interrupt::Interrupt;

/// Arguments of `bsvp2p bridge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The NATS server, e.g. nats://127.0.0.1:4222 (or `nats` in the config's [bridge]).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// The peer store: a JSON file path, `sqlite:PATH` (feature `sqlite`) or
    /// `postgres://...` (default: `bsvp2p-peers-<network>.json`).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Connect only to these peers (Fixed Peer List mode); repeat for several.
    #[arg(long = "peer", value_name = "ADDR", value_parser = parse_address)]
    pub peers: Vec<SocketAddr>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// This bridge's name in its event messages (default: `bridge-<pid>`).
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// MiB held unacknowledged before the peers are slowed [default: 64].
    #[arg(long, value_name = "MIB")]
    pub buffer_mib: Option<usize>,
    /// Publish blocks from this height (default: those after the synced tip).
    #[arg(long, value_name = "HEIGHT")]
    pub from_height: Option<u32>,
    /// Seconds between status lines.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub status_every: Duration,
}

/// The config file's `[bridge]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BridgeSection {
    nats: Option<String>,
    store: Option<String>,
    peers: Vec<SocketAddr>,
    instance: Option<String>,
    buffer_mib: Option<usize>,
    from_height: Option<u32>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    super::runtime()?.block_on(bridge(args))
}

/// Loads the manager's settings and the `[bridge]` table from `path` (the table is taken out
/// before the manager's settings are read, which allow no unknown keys).
fn load_config(
    path: Option<&Path>,
    network: Option<Network>,
) -> Result<(ManagerConfig, BridgeSection), CliError> {
    let Some(path) = path else {
        return Ok((
            crate::config_file::load(None, network)?,
            BridgeSection::default(),
        ));
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
        path: shown.clone(),
        source,
    })?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| CliError::Usage(format!("{shown}: {e}")))?;
    let Some(section) = table.remove("bridge") else {
        return Ok((
            crate::config_file::load(Some(path), network)?,
            BridgeSection::default(),
        ));
    };
    let section: BridgeSection = section
        .try_into()
        .map_err(|e| CliError::Usage(format!("{shown}: [bridge]: {e}")))?;
    // The rest goes through the common loader (network rules, validation) from a copy.
    let rest = toml::to_string(&table)
        .map_err(|e| CliError::Other(format!("{shown}: re-encoding: {e}")))?;
    let copy = std::env::temp_dir().join(format!(
        "bsvp2p-bridge-{}-{}",
        std::process::id(),
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config.toml")
    ));
    std::fs::write(&copy, rest).map_err(|source| CliError::File {
        path: copy.display().to_string(),
        source,
    })?;
    let loaded = crate::config_file::load(Some(&copy), network);
    let _ = std::fs::remove_file(&copy);
    let config = loaded.map_err(|e| {
        CliError::Usage(e.to_string().replace(
            &copy.display().to_string(),
            &format!("{shown} (without [bridge])"),
        ))
    })?;
    Ok((config, section))
}

/// Opens the peer store named by `url`.
///
/// A `postgres://` URL opens the PostgreSQL store shared by the fleet (feature `postgres`, on by
/// default: bans made by one instance reach the others within a second), bounded by
/// `config.max_stored_peers`.
pub async fn open_store(
    url: &str,
    config: &bitcoinsv::p2p::ManagerConfig,
) -> Result<Arc<dyn PeerStore>, CliError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let options = bitcoinsv::p2p::PostgresOptions::from_config(config);
            let store = bitcoinsv::p2p::PostgresPeerStore::connect(url, options)
                .await
                .map_err(|e| CliError::Other(format!("--store {url}: {e}")))?;
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = config;
            return Err(CliError::Usage(
                "--store postgres://...: this bsvp2p was built without PostgreSQL support \
                 (feature `postgres`)"
                    .into(),
            ));
        }
    }
    let _ = config;
    if let Some(path) = url.strip_prefix("sqlite:") {
        #[cfg(feature = "sqlite")]
        {
            let store = bitcoinsv::p2p::SqlitePeerStore::open(path)
                .map_err(|e| CliError::Other(format!("--store {url}: {e}")))?;
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "sqlite"))]
        {
            let _ = path;
            return Err(CliError::Usage(format!(
                "--store {url}: this bsvp2p was built without SQLite support (feature `sqlite`)"
            )));
        }
    }
    Ok(Arc::new(InMemoryPeerStore::with_file(PathBuf::from(url))))
}

fn status(stats: &SinkStats) -> String {
    format!(
        "published {} (duplicates {}), blocks {}, transactions {}, buffered {} B (max {}), \
         retries {}, paused {}x, refused {}, missed blocks {}{}",
        stats.published,
        stats.duplicates,
        stats.blocks,
        stats.transactions,
        stats.buffered_bytes,
        stats.max_buffered_bytes,
        stats.retries,
        stats.times_blocked,
        stats.refused,
        stats.blocks_missed,
        if stats.bus_unavailable {
            "; NATS UNAVAILABLE, holding records"
        } else {
            ""
        }
    )
}

async fn bridge(args: Args) -> Result<(), CliError> {
    let (config, section) = load_config(args.config.config.as_deref(), args.config.network)?;
    let network = config.network;
    let nats = args.nats.or(section.nats).ok_or_else(|| {
        CliError::Usage("--nats URL is required (or `nats` in the config's [bridge])".into())
    })?;
    let store_url = args
        .store
        .or(section.store)
        .unwrap_or_else(|| format!("bsvp2p-peers-{network}.json"));
    let peers = if args.peers.is_empty() {
        section.peers
    } else {
        args.peers
    };
    let instance = args
        .instance
        .or(section.instance)
        .unwrap_or_else(|| format!("bridge-{}", std::process::id()));
    let mut options = PumpOptions::default();
    if let Some(mib) = args.buffer_mib.or(section.buffer_mib) {
        options.buffer_bytes = mib.saturating_mul(1024 * 1024).max(1);
    }
    options.from_height = args.from_height.or(section.from_height);
    if !config.relay {
        tracing::warn!(network = %network, "relay is off: peers announce no transactions");
    }
    config
        .validate()
        .map_err(|e| CliError::Usage(e.to_string()))?;

    let store = open_store(&store_url, &config).await?;
    let mut sink_config = NatsSinkConfig::new(network);
    sink_config.instance = instance.clone();
    let sink = NatsSink::connect(&nats, sink_config)
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    let manager = Arc::new(if peers.is_empty() {
        Manager::new(config, store)
    } else {
        Manager::with_fixed_peers(config, store, peers)
    });
    let mut interrupt = Interrupt::install()
        .map_err(|e| CliError::Other(format!("cannot listen for Ctrl-C: {e}")))?;
    manager
        .start()
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    let responder = serve_broadcasts(sink.client().clone(), Arc::clone(&manager), network)
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    crate::output::line(&format!(
        "# bridging {network} to {nats} as {instance}: stream {}, subjects bsv.{network}.*, \
         store {store_url}; Ctrl-C drains and stops",
        sink.config().stream
    ));
    let pump = Pump::spawn(Arc::clone(&manager), Arc::new(sink), options);
    let mut tick = tokio::time::interval(args.status_every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = tick.tick() => crate::output::line(&format!(
                "{} peers; {}",
                manager.connection_count(),
                status(&pump.stats())
            )),
        }
    }
    crate::output::line("# draining: waiting for JetStream to acknowledge what is in flight");
    let stats = pump.shutdown().await;
    responder.abort();
    let _ = manager.shutdown().await;
    crate::output::line(&format!("# stopped: {}", status(&stats)));
    if stats.unacknowledged > 0 {
        return Err(CliError::Other(format!(
            "{} records were never acknowledged by NATS",
            stats.unacknowledged
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_postgres_store_url_is_refused_with_a_clear_message() {
        let config = bitcoinsv::p2p::ManagerConfig::default();
        let e = open_store("postgres://db/peers", &config)
            .await
            .err()
            .expect("refused");
        assert!(
            e.to_string().contains("built without PostgreSQL support"),
            "{e}"
        );
    }

    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn an_unreachable_postgres_store_is_a_clear_error_naming_the_url() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let config = bitcoinsv::p2p::ManagerConfig::default();
        let url = "postgres://bsv@127.0.0.1:1/peers";
        let e = open_store(url, &config).await.err().expect("refused");
        assert!(e.to_string().contains(url), "{e}");
    }

    #[test]
    fn the_bridge_table_is_read_and_the_rest_configures_the_manager() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("bridge.toml");
        std::fs::write(
            &p,
            "network = \"regtest\"\ntarget_connections = 3\n[bridge]\nnats = \"nats://127.0.0.1:4222\"\npeers = [\"127.0.0.1:18444\"]\nbuffer_mib = 8\n",
        )
        .expect("written");
        let (c, s) = load_config(Some(&p), None).expect("loads");
        assert_eq!(c.network, Network::Regtest);
        assert_eq!(c.target_connections, 3);
        assert_eq!(s.nats.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(s.peers.len(), 1);
        assert_eq!(s.buffer_mib, Some(8));
    }

    #[test]
    fn an_unknown_bridge_setting_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[bridge]\nnat = \"x\"\n").expect("written");
        let e = load_config(Some(&p), None).expect_err("refused");
        assert!(e.to_string().contains("[bridge]"), "{e}");
    }
}
