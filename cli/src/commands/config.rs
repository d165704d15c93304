//! `bsvp2p config --print-default`: the complete default [`ManagerConfig`] of a network as
//! TOML, each setting under a comment saying what it does, ready to edit and pass as
//! `--config FILE`.
//!
//! The values come from the configuration's own serde serialization, so they cannot drift from
//! the defaults; the comments come from the tables below, and a unit test fails when a setting
//! has no comment. Settings that are unset by default (`dns_nameservers`, `peer_store_path`,
//! `telemetry_endpoint`) are shown commented out with an example value.

use bitcoinsv::p2p::ManagerConfig;

use crate::config_file::ConfigArgs;
use crate::error::CliError;

/// Arguments of `bsvp2p config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the default configuration as commented TOML.
    #[arg(long, required = true)]
    pub print_default: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// One documented setting: its key, what it does, and an example for settings unset by default.
type Doc = (&'static str, &'static str, Option<&'static str>);

/// The manager's settings, in the order they are printed.
const MANAGER_DOCS: &[Doc] = &[
    ("network", "Network to join: mainnet, testnet, regtest or stn.", None),
    ("target_connections", "Outbound connections are opened while the total (inbound + outbound) is below this.", None),
    ("max_connections", "Most connections, inbound + outbound (the node's 125); at least target_connections.", None),
    ("dns_seeds", "Host names queried for peer addresses (the network's seeds by default).", None),
    ("default_port", "Port given to addresses learned from DNS seeds (the network's port by default).", None),
    ("dns_nameservers", "DNS servers to query (ip:port); leave unset to use the system resolver.", Some("[\"127.0.0.1:53\"]")),
    ("dns_discovery_interval", "How often DNS seeds are queried again.", None),
    ("peer_store_path", "File the peer store is saved to; leave unset to keep peers in memory only.", Some("\"peers.json\"")),
    ("save_interval", "How often the peer store is saved to peer_store_path.", None),
    ("enable_listener", "Accept inbound connections.", None),
    ("listener_address", "Address the listener binds.", None),
    ("listener_port", "Port the listener binds (the network's port by default).", None),
    ("banned_user_agents", "User agents banned (case-insensitive substrings, or * wildcards over the whole agent); setting any replaces the defaults, as the node does.", None),
    ("ban_duration", "How long a ban lasts.", None),
    ("whitelist", "IPs and CIDR ranges that are never banned.", None),
    ("user_agent", "User agent we announce; must not contain a banned pattern, or peers ban us.", None),
    ("services", "Service bits we announce (0: a pure client without NODE_NETWORK).", None),
    ("relay", "Ask peers to announce transactions to us.", None),
    ("start_height", "Block height we announce.", None),
    ("event_channel_capacity", "Capacity of each broadcast channel (control events, bitcoin messages); slow receivers lose events beyond it.", None),
    ("log_level", "Log level: trace, debug, info, warn, error or off.", None),
    ("enable_telemetry", "Export OpenTelemetry metrics over OTLP even without telemetry_endpoint (then to OTEL_EXPORTER_OTLP_ENDPOINT or http://localhost:4318).", None),
    ("telemetry_endpoint", "OTLP/HTTP endpoint (collector base URL; /v1/metrics is appended) to export metrics to; leave unset to disable export.", Some("\"http://127.0.0.1:4318\"")),
    ("service_name", "Service name reported to OpenTelemetry.", None),
    ("max_stored_peers", "Most peers kept in the store; the oldest Unknown, then Inaccessible, are evicted first.", None),
    ("inaccessible_retry_delay", "How long an Inaccessible peer rests before it may be tried again.", None),
];

/// The per-connection settings (`[connection]`), in the order they are printed.
const CONNECTION_DOCS: &[Doc] = &[
    ("handshake_timeout", "Deadline for the version/verack handshake.", None),
    ("connect_timeout", "Deadline for the TCP connect.", None),
    ("ping_interval", "How often a connected peer is pinged.", None),
    ("ping_timeout", "How long to wait for a pong (with no bytes received) before closing; a pong may queue behind a large block.", None),
    ("initial_backoff", "Delay before the first reconnection attempt.", None),
    ("backoff_multiplier", "Factor applied to the delay after each failed attempt (at least 1).", None),
    ("max_backoff", "Longest reconnection delay.", None),
    ("backoff_jitter", "Random spread of each delay, as a fraction in [0, 1).", None),
    ("max_retries", "Failed connection attempts before a peer is marked Inaccessible.", None),
    ("max_restarts", "Immediate reconnections after network failures allowed per restart_window.", None),
    ("restart_window", "The window max_restarts is counted over.", None),
    ("max_recv_payload", "Largest non-block message accepted, in bytes; advertised in our protoconf (1 MiB to 1,000,000,000).", None),
    ("max_block_size", "Largest block message accepted, in bytes.", None),
];

/// The header chain's settings (`[header_chain]`).
const HEADER_CHAIN_DOCS: &[Doc] = &[
    ("enabled", "Follow the chain from the manager's start; otherwise from the first Manager::header_chain call.", None),
    ("sync_timeout", "How long the sync peer may take to answer getheaders before another peer is asked.", None),
    ("store_path", "File the headers are appended to and reloaded from on restart; leave unset to keep them in memory only.", Some("\"headers.dat\"")),
    ("checkpoint", "Trusted header to start from instead of genesis (height and the 80-byte header in hex); the example is mainnet's genesis.", Some("{ height = 0, header = \"0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c\" }")),
];

/// Block fetching's settings (`[block_fetch]`).
const BLOCK_FETCH_DOCS: &[Doc] = &[
    ("attempt_timeout", "How long one peer has to deliver a requested block before the next is asked (a node sends nothing for a block it lacks).", None),
    ("timeout", "How long get_block waits in all, over every peer asked.", None),
    ("max_in_flight_per_peer", "Blocks requested from one peer at once (the node's MAX_BLOCKS_IN_TRANSIT_PER_PEER is 16).", None),
    ("announcements_per_peer", "Block hashes remembered per peer from its inv/headers announcements, to ask peers that have a block first.", None),
];

/// Block streaming's settings (`[block_streaming]`).
const BLOCK_STREAMING_DOCS: &[Doc] = &[
    ("threshold", "Block payloads above this many bytes are streamed (Manager::get_block_stream, subscribe_block_streams), never buffered whole.", None),
    ("window", "Bytes of one streamed block that may wait for the application before its connection stops reading (back-pressure).", None),
    ("budget", "Bytes all streamed blocks together may have waiting, so several peers streaming at once cannot multiply the window.", None),
    ("max_whole_tx", "Largest transaction a stream delivers parsed; larger ones need the TxIds or Raw mode.", None),
    ("stall_timeout", "A streamed block must arrive at stall_min_rate over every such period of waiting for the peer (the node's -blockstallingtimeout, 10 s).", None),
    ("stall_min_rate", "Slowest acceptable block download in bytes per second (the node's -blockstallingmindownloadspeed, 100 kB/s); slower peers are disconnected.", None),
];

/// The transaction services' settings (`[transactions]`).
const TRANSACTIONS_DOCS: &[Doc] = &[
    ("relay_cache_bytes", "Bytes of broadcast transactions kept to answer peers' getdata (each for 15 minutes, the node's relay memory).", None),
    ("seen_capacity", "Transaction ids the stream remembers having delivered, so each is delivered once.", None),
    ("max_pending_announcements", "Announced transactions the stream remembers while it cannot request them yet (back-pressure).", None),
    ("stream_queue_bytes", "Bytes of undropped events a stream subscriber may hold before requests pause.", None),
];

/// Peer learning's settings (`[addresses]`).
const ADDRESSES_DOCS: &[Doc] = &[
    ("learn", "Learn peers from addr and send one getaddr after each outbound handshake (Normal mode only; a fixed peer list never asks).", None),
    ("max_candidates", "Learning stops while the store holds this many Unknown (never tried) peers, so a flooding peer cannot crowd out the candidates we have.", None),
];

const LIMITS_DOCS: &[Doc] = &[
    ("message_channel_bytes", "Bytes the lossy message stream may hold for its slowest subscriber; a message that would exceed it is dropped (64 MiB: 32 of the node's largest non-block messages).", None),
    ("lossless_queue_bytes", "Bytes each lossless message subscriber may have queued before connections stop reading (back-pressure).", None),
    ("max_inbound_handshakes", "Inbound connections that may be in their handshake at once, apart from established ones.", None),
    ("handshake_evict_age", "An inbound handshake still running after this may be evicted for a newcomer (an honest one takes a round trip or two).", None),
    ("max_inbound_per_ip", "Most inbound connections from one IP; 127.0.0.1, ::1 and the whitelist are exempt; 0 disables.", None),
    ("accept_rate", "Sockets the listener admits per second, sustained; beyond it they are closed at once.", None),
    ("accept_burst", "Sockets the listener admits at once before accept_rate applies.", None),
    ("evict_established", "When full, evict an established inbound peer for a newcomer as the node's AttemptToEvictConnection does (long-lived, low-ping, useful peers protected).", None),
];

/// The tables below the manager's settings: key, heading comment, settings.
const SECTIONS: &[(&str, &str, &[Doc])] = &[
    (
        "connection",
        "Settings of each peer connection.",
        CONNECTION_DOCS,
    ),
    (
        "header_chain",
        "The header chain (Manager::header_chain, bsvp2p headers and monitor).",
        HEADER_CHAIN_DOCS,
    ),
    (
        "block_fetch",
        "Block fetching (Manager::get_block, bsvp2p getblock).",
        BLOCK_FETCH_DOCS,
    ),
    (
        "block_streaming",
        "Blocks of any size as streams, in bounded memory.",
        BLOCK_STREAMING_DOCS,
    ),
    (
        "transactions",
        "Transaction broadcast and the transaction stream.",
        TRANSACTIONS_DOCS,
    ),
    (
        "addresses",
        "Peer learning from addr messages.",
        ADDRESSES_DOCS,
    ),
    (
        "limits",
        "What peers can make us hold, and who gets an inbound slot (docs/SECURITY.md).",
        LIMITS_DOCS,
    ),
];

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let config = args.config.load()?;
    crate::output::line(&commented_toml(&config)?);
    Ok(())
}

/// `config` as TOML with a comment above every setting.
pub fn commented_toml(config: &ManagerConfig) -> Result<String, CliError> {
    let value = toml::Value::try_from(config)
        .map_err(|e| CliError::Other(format!("serializing the configuration: {e}")))?;
    let root = value
        .as_table()
        .ok_or_else(|| CliError::Other("the configuration is not a table".into()))?;
    let mut out = vec![
        format!(
            "# bitcoinsv P2P manager configuration for {} (bsvp2p config --print-default).",
            config.network
        ),
        "# Every setting is optional: a file needs only the ones it changes. Durations are"
            .to_string(),
        "# written as \"90s\", \"20m\", \"1h\".".to_string(),
    ];
    write_settings(&mut out, root, MANAGER_DOCS)?;
    for (key, heading, docs) in SECTIONS {
        let table = root
            .get(*key)
            .and_then(toml::Value::as_table)
            .ok_or_else(|| CliError::Other(format!("the configuration has no [{key}] table")))?;
        out.push(String::new());
        out.push(format!("# {heading}"));
        out.push(format!("[{key}]"));
        write_settings(&mut out, table, docs)?;
    }
    Ok(out.join("\n"))
}

fn write_settings(
    out: &mut Vec<String>,
    table: &toml::Table,
    docs: &[Doc],
) -> Result<(), CliError> {
    for (key, doc, example) in docs {
        out.push(String::new());
        out.push(format!("# {doc}"));
        match (table.get(*key), example) {
            (Some(v), _) => out.push(format!("{key} = {v}")),
            (None, Some(e)) => out.push(format!("# {key} = {e}")),
            (None, None) => {
                return Err(CliError::Other(format!(
                    "setting {key} is missing from the serialized configuration"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bitcoinsv::bitcoin::Network;

    use super::*;

    #[test]
    fn every_serialized_setting_has_a_comment() {
        // Set the optional ones so that they are serialized too.
        let c = ManagerConfig {
            dns_nameservers: Some(vec!["127.0.0.1:53".parse().unwrap()]),
            peer_store_path: Some("peers.json".into()),
            telemetry_endpoint: Some("http://127.0.0.1:4318".into()),
            header_chain: bitcoinsv::p2p::HeaderChainConfig {
                store_path: Some("headers.dat".into()),
                checkpoint: Some(bitcoinsv::p2p::Checkpoint {
                    height: 0,
                    header: Network::Mainnet.genesis_header(),
                }),
                ..Default::default()
            },
            ..ManagerConfig::default()
        };
        let v = toml::Value::try_from(&c).unwrap();
        let root = v.as_table().unwrap();
        let is_section = |k: &str| SECTIONS.iter().any(|(s, ..)| *s == k);
        for key in root.keys().filter(|k| !is_section(k)) {
            assert!(
                MANAGER_DOCS.iter().any(|(k, ..)| k == key),
                "{key} has no comment"
            );
        }
        assert_eq!(root.len() - SECTIONS.len(), MANAGER_DOCS.len());
        for (section, _, docs) in SECTIONS {
            let table = root[*section].as_table().unwrap();
            for key in table.keys() {
                assert!(
                    docs.iter().any(|(k, ..)| k == key),
                    "[{section}] {key} has no comment"
                );
            }
            assert_eq!(table.len(), docs.len(), "[{section}]");
        }
    }

    #[test]
    fn the_printed_defaults_parse_back_to_the_same_configuration() {
        for n in Network::ALL {
            let c = ManagerConfig::new(n);
            let text = commented_toml(&c).unwrap();
            let back: ManagerConfig = toml::from_str(&text).unwrap();
            assert_eq!(back, c, "{n}");
        }
    }

    #[test]
    fn optional_settings_become_working_examples_when_uncommented() {
        let text = commented_toml(&ManagerConfig::default()).unwrap();
        let uncommented = text
            .replace("# dns_nameservers =", "dns_nameservers =")
            .replace("# peer_store_path =", "peer_store_path =")
            .replace("# telemetry_endpoint =", "telemetry_endpoint =")
            .replace("# store_path =", "store_path =")
            .replace("# checkpoint =", "checkpoint =");
        let c: ManagerConfig = toml::from_str(&uncommented).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.header_chain.checkpoint.map(|c| c.header.hash()),
            Some(Network::Mainnet.genesis_hash())
        );
        assert_eq!(
            c.peer_store_path.as_deref(),
            Some(std::path::Path::new("peers.json"))
        );
    }
}
