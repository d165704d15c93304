//! Configuration: the defaults of SPEC §5, TOML files, and every validation rule.

use std::path::PathBuf;
use std::time::Duration;

use bitcoinsv::p2p::config::LimitsConfig;
use bitcoinsv::p2p::{
    AddressConfig, BlockFetchConfig, BlockStreamingConfig, ConnectionConfig, HeaderChainConfig,
    ManagerConfig, Network, P2pError, TransactionConfig, Whitelist,
};

fn manager_error(config: &ManagerConfig) -> String {
    match config.validate() {
        Err(P2pError::InvalidConfiguration(msg)) => msg,
        other => panic!("expected InvalidConfiguration, got {other:?}"),
    }
}

fn connection_error(config: &ConnectionConfig) -> String {
    match config.validate() {
        Err(P2pError::InvalidConfiguration(msg)) => msg,
        other => panic!("expected InvalidConfiguration, got {other:?}"),
    }
}

fn with(f: impl FnOnce(&mut ManagerConfig)) -> ManagerConfig {
    let mut c = ManagerConfig::default();
    f(&mut c);
    c
}

fn with_conn(f: impl FnOnce(&mut ConnectionConfig)) -> ConnectionConfig {
    let mut c = ConnectionConfig::default();
    f(&mut c);
    c
}

/// A change to a valid configuration that makes it invalid.
type ChangeManager = fn(&mut ManagerConfig);
/// A change to a valid connection configuration that makes it invalid.
type ChangeConnection = fn(&mut ConnectionConfig);

const MIN: u64 = 60;
const HOUR: u64 = 3600;

#[test]
fn defaults_match_spec_section_5() {
    let c = ManagerConfig::default();
    assert_eq!(c.network, Network::Mainnet);
    assert_eq!(c.target_connections, 8);
    assert_eq!(c.max_connections, 125);
    assert_eq!(
        c.dns_seeds,
        vec![
            "seed.bitcoinsv.io",
            "seed.satoshisvision.network",
            "seed.bitcoinseed.directory"
        ]
    );
    assert_eq!(c.default_port, 8333);
    assert_eq!(c.dns_nameservers, None);
    assert_eq!(c.dns_discovery_interval, Duration::from_secs(HOUR));
    assert_eq!(c.peer_store_path, None);
    assert_eq!(c.save_interval, Duration::from_secs(5 * MIN));
    assert!(!c.enable_listener);
    assert_eq!(c.listener_address.to_string(), "0.0.0.0");
    assert_eq!(c.listener_port, 8333);
    assert_eq!(c.banned_user_agents, vec!["abc", "cash", "bch"]);
    assert_eq!(c.ban_duration, Duration::from_secs(24 * HOUR));
    assert_eq!(c.whitelist, Whitelist::new());
    assert_eq!(
        c.user_agent,
        format!("/bitcoinsv-rs:{}/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!((c.services, c.relay, c.start_height), (0, true, 0));
    assert_eq!(c.event_channel_capacity, 1000);
    assert_eq!(c.log_level, "info");
    assert!(!c.enable_telemetry);
    assert_eq!(c.telemetry_endpoint, None);
    assert_eq!(c.service_name, "bsv-p2p-manager");
    assert_eq!(c.max_stored_peers, 10_000);
    assert_eq!(c.inaccessible_retry_delay, Duration::from_secs(HOUR));

    let k = &c.connection;
    assert_eq!(k, &ConnectionConfig::default());
    assert_eq!(k.handshake_timeout, Duration::from_secs(60));
    assert_eq!(k.connect_timeout, Duration::from_secs(5));
    assert_eq!(k.ping_interval, Duration::from_secs(120));
    assert_eq!(k.ping_timeout, Duration::from_secs(20 * MIN));
    assert_eq!(k.initial_backoff, Duration::from_secs(5));
    assert_eq!(k.backoff_multiplier, 2.0);
    assert_eq!(k.max_backoff, Duration::from_secs(HOUR));
    assert_eq!(k.backoff_jitter, 0.2);
    assert_eq!(k.max_retries, 10);
    assert_eq!(k.max_restarts, 3);
    assert_eq!(k.restart_window, Duration::from_secs(HOUR));
    assert_eq!(k.max_recv_payload, 2 * 1024 * 1024);
    assert_eq!(k.max_block_size, 4 * 1024 * 1024 * 1024);

    c.validate().unwrap();
}

#[test]
fn new_takes_seeds_and_ports_from_the_network() {
    let t = ManagerConfig::new(Network::Testnet);
    assert_eq!(t.network, Network::Testnet);
    assert_eq!((t.default_port, t.listener_port), (18333, 18333));
    assert_eq!(t.dns_seeds[0], "testnet-seed.bitcoinsv.io");
    let r = ManagerConfig::new(Network::Regtest);
    assert_eq!((r.default_port, r.listener_port), (18444, 18444));
    assert!(r.dns_seeds.is_empty());
    let s = ManagerConfig::new(Network::Stn);
    assert_eq!((s.default_port, s.dns_seeds.len()), (9333, 2));
    for n in Network::ALL {
        ManagerConfig::new(n).validate().unwrap();
    }
}

#[test]
fn empty_toml_file_is_the_default_configuration() {
    let c: ManagerConfig = toml::from_str("").unwrap();
    assert_eq!(c, ManagerConfig::default());
}

#[test]
fn partial_toml_file_takes_network_values_from_its_network() {
    let c: ManagerConfig = toml::from_str(
        r#"
        network = "testnet"
        target_connections = 4
        [connection]
        ping_interval = "30s"
        "#,
    )
    .unwrap();
    let mut expected = ManagerConfig::new(Network::Testnet);
    expected.target_connections = 4;
    expected.connection.ping_interval = Duration::from_secs(30);
    assert_eq!(c, expected);

    // A value the file sets wins over the network's.
    let c: ManagerConfig =
        toml::from_str("network = \"regtest\"\nlistener_port = 0\ndns_seeds = [\"localhost\"]")
            .unwrap();
    assert_eq!(
        (c.default_port, c.listener_port, c.dns_seeds),
        (18444, 0, vec!["localhost".to_string()])
    );
}

#[test]
fn toml_file_with_every_setting_round_trips() {
    let c = ManagerConfig {
        network: Network::Stn,
        target_connections: 3,
        max_connections: 40,
        dns_seeds: vec!["seed.example".into()],
        default_port: 9999,
        dns_nameservers: Some(vec![
            "127.0.0.1:5353".parse().unwrap(),
            "[::1]:53".parse().unwrap(),
        ]),
        dns_discovery_interval: Duration::from_secs(90 * MIN),
        peer_store_path: Some(PathBuf::from("/var/lib/bsv/peers.json")),
        save_interval: Duration::from_secs(30),
        enable_listener: true,
        listener_address: "::".parse().unwrap(),
        listener_port: 19999,
        banned_user_agents: vec!["Bitcoin ABC*".into(), "bchd".into()],
        ban_duration: Duration::from_secs(2 * HOUR),
        whitelist: Whitelist::parse(&["10.0.0.0/8", "2001:db8::1"]).unwrap(),
        user_agent: "/my-indexer:2.0/".into(),
        services: 1,
        relay: false,
        start_height: 800_000,
        event_channel_capacity: 64,
        log_level: "debug".into(),
        enable_telemetry: true,
        telemetry_endpoint: Some("http://localhost:4317".into()),
        service_name: "indexer".into(),
        max_stored_peers: 500,
        inaccessible_retry_delay: Duration::from_secs(10 * MIN),
        connection: ConnectionConfig {
            handshake_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_millis(2500),
            ping_interval: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(5 * MIN),
            initial_backoff: Duration::from_secs(1),
            backoff_multiplier: 1.5,
            max_backoff: Duration::from_secs(10 * MIN),
            backoff_jitter: 0.1,
            max_retries: 4,
            max_restarts: 1,
            restart_window: Duration::from_secs(30 * MIN),
            max_recv_payload: 4 * 1024 * 1024,
            max_block_size: 1 << 40,
        },
        header_chain: HeaderChainConfig {
            enabled: true,
            sync_timeout: Duration::from_secs(45),
            store_path: Some("headers.dat".into()),
            checkpoint: Some(bitcoinsv::p2p::Checkpoint {
                height: 0,
                header: Network::Regtest.genesis_header(),
            }),
        },
        block_fetch: BlockFetchConfig {
            attempt_timeout: Duration::from_secs(45),
            timeout: Duration::from_secs(3 * MIN),
            max_in_flight_per_peer: 8,
            announcements_per_peer: 512,
        },
        block_streaming: BlockStreamingConfig {
            threshold: 8 << 20,
            window: 4 << 20,
            budget: 32 << 20,
            max_whole_tx: 2 << 20,
            stall_timeout: Duration::from_secs(20),
            stall_min_rate: 50_000,
        },
        transactions: TransactionConfig {
            relay_cache_bytes: 1 << 20,
            seen_capacity: 1000,
            max_pending_announcements: 500,
            stream_queue_bytes: 1 << 22,
        },
        addresses: AddressConfig {
            learn: false,
            max_candidates: 250,
        },
        limits: LimitsConfig {
            message_channel_bytes: 1 << 20,
            lossless_queue_bytes: 1 << 21,
            max_inbound_handshakes: 10,
            handshake_evict_age: Duration::from_secs(3),
            max_inbound_per_ip: 2,
            accept_rate: 5.0,
            accept_burst: 20,
            evict_established: false,
        },
    };
    c.validate().unwrap();
    let text = toml::to_string(&c).unwrap();
    for expected in [
        "dns_discovery_interval = \"1h 30m\"",
        "connect_timeout = \"2s 500ms\"",
        "ping_timeout = \"5m\"",
        "whitelist = [\"10.0.0.0/8\", \"2001:db8::1\"]",
        "[connection]",
        "attempt_timeout = \"45s\"",
        "[transactions]",
        "[addresses]\nlearn = false\nmax_candidates = 250",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    let back: ManagerConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, c);

    // Every setting is written out: 26 manager settings, 13 connection settings, 5 header
    // chain lines (enabled, sync_timeout, store_path, checkpoint height and header), 4 of block
    // fetching, 6 of block streaming, 4 of the transaction services, 2 of peer learning and
    // 8 limits.
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" = ")).collect();
    assert_eq!(lines.len(), 26 + 13 + 5 + 4 + 6 + 4 + 2 + 8, "{text}");
}

#[test]
fn toml_file_durations_are_human_readable() {
    let c: ManagerConfig = toml::from_str(
        "ban_duration = \"1day\"\nsave_interval = \"90s\"\n[connection]\nhandshake_timeout = \"1m 30s\"",
    )
    .unwrap();
    assert_eq!(c.ban_duration, Duration::from_secs(24 * HOUR));
    assert_eq!(c.save_interval, Duration::from_secs(90));
    assert_eq!(c.connection.handshake_timeout, Duration::from_secs(90));
    assert!(toml::from_str::<ManagerConfig>("save_interval = \"soon\"").is_err());
}

#[test]
fn toml_file_with_an_unknown_setting_is_refused() {
    let err = toml::from_str::<ManagerConfig>("target_conections = 4")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `target_conections`"), "{err}");
    let err = toml::from_str::<ManagerConfig>("[connection]\nping = \"1s\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `ping`"), "{err}");
}

#[test]
fn toml_file_with_a_bad_whitelist_entry_is_refused() {
    let err = toml::from_str::<ManagerConfig>("whitelist = [\"10.0.0.0/8\", \"10.0.0.300\"]")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("whitelist: entry \"10.0.0.300\" is neither an IP address nor a CIDR range"),
        "{err}"
    );
}

#[test]
fn target_above_max_is_refused() {
    let c = with(|c| {
        c.target_connections = 10;
        c.max_connections = 9;
    });
    assert_eq!(
        manager_error(&c),
        "target_connections (10) is greater than max_connections (9)"
    );
    with(|c| {
        c.target_connections = 9;
        c.max_connections = 9;
    })
    .validate()
    .unwrap();
    with(|c| c.target_connections = 0).validate().unwrap();
}

#[test]
fn zero_limits_are_refused() {
    let cases: [(ChangeManager, &str); 4] = [
        (
            |c| {
                c.max_connections = 0;
                c.target_connections = 0;
            },
            "max_connections must be at least 1",
        ),
        (
            |c| c.event_channel_capacity = 0,
            "event_channel_capacity must be at least 1",
        ),
        (
            |c| c.max_stored_peers = 0,
            "max_stored_peers must be at least 1",
        ),
        (|c| c.default_port = 0, "default_port must not be 0"),
    ];
    for (change, message) in cases {
        assert_eq!(manager_error(&with(change)), message);
    }
}

#[test]
fn zero_manager_intervals_are_refused() {
    let cases: [(ChangeManager, &str); 4] = [
        (
            |c| c.dns_discovery_interval = Duration::ZERO,
            "dns_discovery_interval",
        ),
        (|c| c.save_interval = Duration::ZERO, "save_interval"),
        (|c| c.ban_duration = Duration::ZERO, "ban_duration"),
        (
            |c| c.inaccessible_retry_delay = Duration::ZERO,
            "inaccessible_retry_delay",
        ),
    ];
    for (change, name) in cases {
        assert_eq!(
            manager_error(&with(change)),
            format!("{name} must be greater than zero")
        );
    }
}

#[test]
fn empty_nameserver_list_is_refused() {
    assert_eq!(
        manager_error(&with(|c| c.dns_nameservers = Some(vec![]))),
        "dns_nameservers is an empty list: leave it out to use the system resolver"
    );
    with(|c| c.dns_nameservers = Some(vec!["127.0.0.1:53".parse().unwrap()]))
        .validate()
        .unwrap();
}

#[test]
fn unparseable_ban_pattern_is_refused() {
    assert_eq!(
        manager_error(&with(
            |c| c.banned_user_agents = vec!["abc".into(), "".into()]
        )),
        "banned_user_agents: pattern \"\" is empty and would ban every peer"
    );
    assert_eq!(
        manager_error(&with(|c| c.banned_user_agents = vec!["*".into()])),
        "banned_user_agents: pattern \"*\" matches every user agent"
    );
    with(|c| c.banned_user_agents = vec![]).validate().unwrap();
}

#[test]
fn user_agent_containing_a_banned_pattern_is_refused() {
    assert_eq!(
        manager_error(&with(|c| c.user_agent = "/Cashier:1.0/".into())),
        "user_agent \"/Cashier:1.0/\" contains the banned pattern \"cash\": peers would ban us"
    );
    assert_eq!(
        manager_error(&with(|c| {
            c.banned_user_agents = vec!["/bitcoinsv-rs*".into()];
        })),
        format!(
            "user_agent \"/bitcoinsv-rs:{}/\" contains the banned pattern \"/bitcoinsv-rs*\": \
             peers would ban us",
            env!("CARGO_PKG_VERSION")
        )
    );
    // With the node's list replaced, the old patterns no longer apply.
    with(|c| {
        c.user_agent = "/cashier:1.0/".into();
        c.banned_user_agents = vec!["bch".into()];
    })
    .validate()
    .unwrap();
}

#[test]
fn user_agent_longer_than_the_node_reads_is_refused() {
    let c = with(|c| c.user_agent = format!("/{}/", "x".repeat(255)));
    assert_eq!(
        manager_error(&c),
        "user_agent is 257 bytes, longer than the 256 the node reads"
    );
}

#[test]
fn unknown_log_level_is_refused_and_known_ones_in_any_case_pass() {
    assert_eq!(
        manager_error(&with(|c| c.log_level = "verbose".into())),
        "log_level \"verbose\" is not one of trace, debug, info, warn, error, off"
    );
    for level in ["TRACE", "Debug", "info", "warn", "error", "off"] {
        with(|c| c.log_level = level.into()).validate().unwrap();
    }
}

#[test]
fn empty_telemetry_endpoint_is_refused() {
    assert_eq!(
        manager_error(&with(|c| c.telemetry_endpoint = Some(" ".into()))),
        "telemetry_endpoint is empty: leave it out to disable export"
    );
}

#[test]
fn manager_validation_includes_the_connection_settings() {
    let c = with(|c| c.connection.ping_interval = Duration::ZERO);
    assert_eq!(manager_error(&c), "ping_interval must be greater than zero");
}

#[test]
fn zero_connection_timeouts_are_refused() {
    let cases: [(ChangeConnection, &str); 7] = [
        (
            |c| c.handshake_timeout = Duration::ZERO,
            "handshake_timeout",
        ),
        (|c| c.connect_timeout = Duration::ZERO, "connect_timeout"),
        (|c| c.ping_interval = Duration::ZERO, "ping_interval"),
        (|c| c.ping_timeout = Duration::ZERO, "ping_timeout"),
        (|c| c.initial_backoff = Duration::ZERO, "initial_backoff"),
        (|c| c.max_backoff = Duration::ZERO, "max_backoff"),
        (|c| c.restart_window = Duration::ZERO, "restart_window"),
    ];
    for (change, name) in cases {
        assert_eq!(
            connection_error(&with_conn(change)),
            format!("{name} must be greater than zero")
        );
    }
}

#[test]
fn backoff_multiplier_below_one_or_not_finite_is_refused() {
    for bad in [0.99, 0.0, -2.0, f64::NAN, f64::INFINITY] {
        let c = with_conn(|c| c.backoff_multiplier = bad);
        assert_eq!(
            connection_error(&c),
            format!("backoff_multiplier is {bad}: it must be a finite number of at least 1.0")
        );
    }
    with_conn(|c| c.backoff_multiplier = 1.0)
        .validate()
        .unwrap();
}

#[test]
fn backoff_jitter_outside_zero_to_one_is_refused() {
    for bad in [-0.01, 1.0, 1.5, f64::NAN] {
        let c = with_conn(|c| c.backoff_jitter = bad);
        assert_eq!(
            connection_error(&c),
            format!("backoff_jitter is {bad}: it must be at least 0 and below 1")
        );
    }
    with_conn(|c| c.backoff_jitter = 0.0).validate().unwrap();
    with_conn(|c| c.backoff_jitter = 0.99).validate().unwrap();
}

#[test]
fn initial_backoff_longer_than_max_backoff_is_refused() {
    let c = with_conn(|c| {
        c.initial_backoff = Duration::from_secs(120);
        c.max_backoff = Duration::from_secs(60);
    });
    assert_eq!(
        connection_error(&c),
        "initial_backoff (2m) is longer than max_backoff (1m)"
    );
}

#[test]
fn receive_limit_outside_the_nodes_range_is_refused() {
    for bad in [0, 1024 * 1024 - 1, 1_000_000_001] {
        let c = with_conn(|c| c.max_recv_payload = bad);
        assert_eq!(
            connection_error(&c),
            format!(
                "max_recv_payload is {bad} bytes: it must be between 1048576 (1 MiB) and \
                 1000000000, the node's limits"
            )
        );
    }
    with_conn(|c| c.max_recv_payload = 1024 * 1024)
        .validate()
        .unwrap();
    with_conn(|c| c.max_recv_payload = 1_000_000_000)
        .validate()
        .unwrap();
}

#[test]
fn zero_max_block_size_is_refused() {
    assert_eq!(
        connection_error(&with_conn(|c| c.max_block_size = 0)),
        "max_block_size must be greater than zero"
    );
}
