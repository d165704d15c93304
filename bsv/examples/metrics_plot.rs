//! Records the library's metrics during a real run and writes them as a time series, for the
//! picture in docs/OBSERVABILITY.md (`docs/observability.png`, drawn by
//! `docs/plot_metrics.py`).
//!
//! Installs an OpenTelemetry `SdkMeterProvider` whose reader is the OpenTelemetry Prometheus
//! exporter (so the series carry the names Prometheus sees), starts a simnet of 10 nodes on their
//! own loopback addresses (two banned at once for their user agent and an oversized frame, one
//! that never answers pings, one that drops every connection after a few messages, six honest),
//! runs a Fixed-mode `Manager` against all of them for `SECONDS` (default 60) while the chain
//! grows a block every 3 s, bans one honest peer by hand half-way, sends a burst of 20 pings a
//! second to every peer for 5 s at two thirds, and every second writes the
//! whole Prometheus text page as rows `t<TAB>series<TAB>value` to `FILE` (default
//! `metrics.tsv`).
//!
//! ```text
//! cargo run -p bitcoinsv --features metrics --example metrics_plot -- metrics.tsv 60
//! python3 docs/plot_metrics.py metrics.tsv docs/observability.png
//! ```

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{BanReason, InMemoryPeerStore, Manager, ManagerConfig, Message, Network};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "metrics.tsv".into());
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(60);

    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_target_info()
        .build()?;
    let provider = SdkMeterProvider::builder().with_reader(exporter).build();
    opentelemetry::global::set_meter_provider(provider.clone());

    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(10)
            .blocks(20)
            .distinct_ips(true)
            .with_misbehaviour(6, Misbehaviour::BchUserAgent)
            .with_misbehaviour(7, Misbehaviour::OversizedHeader)
            .with_misbehaviour(8, Misbehaviour::NeverPong)
            .with_misbehaviour(9, Misbehaviour::DisconnectAfter(6)),
    )
    .await?;
    let mut config = ManagerConfig::new(Network::Regtest);
    config.target_connections = 10;
    config.connection.ping_interval = Duration::from_secs(2);
    config.connection.ping_timeout = Duration::from_secs(5);
    // The node that drops connections is restarted twice per 10 s, then given up and re-dialled.
    config.connection.max_restarts = 2;
    config.connection.restart_window = Duration::from_secs(10);
    let manager =
        Manager::with_fixed_peers(config, Arc::new(InMemoryPeerStore::new()), net.addresses());
    manager.start().await?;

    let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut banned_by_hand = false;
    for t in 0..=seconds {
        tick.tick().await;
        if t > 0 && t % 3 == 0 {
            net.mine_block();
        }
        if !banned_by_hand && t >= seconds / 2 {
            if let Some(p) = manager.connected_peers().first() {
                let note = "metrics_plot: half-way".to_string();
                manager
                    .ban_peer(p.peer_id, BanReason::Manual { note })
                    .await?;
                banned_by_hand = true;
            }
        }
        if (seconds * 2 / 3..seconds * 2 / 3 + 5).contains(&t) {
            // Bounded: a peer whose send queue is full makes `broadcast_message` wait for room.
            let burst = async {
                for n in 0..20 {
                    manager.broadcast_message(Message::Ping(t * 100 + n)).await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_millis(500), burst).await;
        }
        let mut page = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut page)?;
        let at = started.elapsed().as_secs_f64();
        for line in String::from_utf8(page)?.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some((series, value)) = line.rsplit_once(' ') {
                writeln!(file, "{at:.3}\t{series}\t{value}")?;
            }
        }
        file.flush()?;
    }
    manager.shutdown().await?;
    net.shutdown().await;
    provider.shutdown()?;
    eprintln!("wrote {out}");
    Ok(())
}
