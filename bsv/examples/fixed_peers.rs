//! # fixed_peers: Fixed Peer List mode
//!
//! A [`Manager`] made with [`Manager::with_fixed_peers`] connects to exactly the peers it is
//! given, never to anyone else (no DNS discovery, no addresses from the store), ignores
//! `target_connections`, and keeps those peers connected: when one drops it is redialled, with
//! backoff while it stays down. This is the mode for an application that trusts a few known
//! nodes (its own, or a partner's).
//!
//! Against the simnet the example starts four nodes, fixes the manager to the first three,
//! shows that the fourth is never contacted, then stops one of the three and restarts it and
//! shows the manager reconnecting on its own.
//!
//! ```text
//! # against an in-process simulated network (no network access, a few seconds):
//! cargo run -p bitcoinsv --example fixed_peers
//! # against real peers (mainnet unless --network says otherwise), watched for --seconds:
//! cargo run -p bitcoinsv --example fixed_peers -- 203.0.113.7:8333 198.51.100.4:8333
//! # against the first three addresses of testnet's DNS seeds:
//! cargo run -p bitcoinsv --example fixed_peers -- --network testnet
//! ```

mod common;

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoinsv::p2p::{ControlEvent, InMemoryPeerStore, Manager, ManagerConfig, Network};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::timeout;

use common::{Args, Target};

/// Waits for the first control event that `want` accepts.
async fn wait_for(
    events: &mut broadcast::Receiver<ControlEvent>,
    within: Duration,
    want: impl Fn(&ControlEvent) -> bool,
) -> Result<ControlEvent, Box<dyn Error>> {
    let found = timeout(within, async {
        loop {
            match events.recv().await {
                Ok(e) if want(&e) => return Some(e),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .await?;
    found.ok_or_else(|| "the manager's event channel closed".into())
}

/// Prints the manager's established connections as a table.
fn print_connections(manager: &Manager) {
    println!(
        "{:<22} {:<9} {:<22} {:>7} {:>10}",
        "address", "direction", "user agent", "height", "handshake"
    );
    let mut peers = manager.connected_peers();
    peers.sort_by_key(|p| p.address);
    for p in peers {
        let (agent, height) = p
            .details
            .as_ref()
            .map(|d| (d.user_agent.clone(), d.start_height))
            .unwrap_or_default();
        println!(
            "{:<22} {:<9} {:<22} {:>7} {:>10?}",
            p.address.to_string(),
            p.direction.as_str(),
            agent,
            height,
            p.handshake_duration.unwrap_or_default()
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    let args = Args::parse("fixed_peers");
    let wait = args.duration(Duration::from_secs(10), Duration::from_secs(30));

    let mut simnet = None;
    let (network, fixed): (Network, Vec<SocketAddr>) = match &args.target {
        Target::SimNet => {
            let net = SimNet::start(SimNetConfig::default().nodes(4).blocks(10)).await?;
            let fixed = net.addresses()[..3].to_vec();
            simnet = Some(net);
            (Network::Regtest, fixed)
        }
        Target::Peers { network, peers } => (*network, peers.clone()),
        Target::Dns { network } => {
            let found = common::resolve_seeds(*network).await;
            (*network, found.into_iter().take(3).collect())
        }
    };
    if fixed.is_empty() {
        return Err("no peers to connect to".into());
    }

    let mut config = ManagerConfig::new(network);
    // Redial a dropped peer quickly, and keep trying while it is down.
    config.connection.initial_backoff = Duration::from_millis(200);
    config.connection.max_backoff = Duration::from_secs(5);
    config.connection.max_retries = 100;
    // The store only records what happens to the fixed peers; it is never used to pick peers.
    let store = Arc::new(InMemoryPeerStore::new());
    let manager = Manager::with_fixed_peers(config, store, fixed.clone());
    let mut events = manager.subscribe_control_events();
    println!("fixed peer list: {fixed:?}");
    manager.start().await?;

    let reached = match manager.wait_for_connections(fixed.len(), wait).await {
        Ok(n) => n,
        Err(e) => {
            println!("not every fixed peer answered: {e}");
            manager.connection_count()
        }
    };
    println!("connected to {reached} of {} fixed peer(s):", fixed.len());
    print_connections(&manager);

    if let Some(net) = &simnet {
        // The fourth node is not in the list: nothing ever dials it.
        println!(
            "node 3 ({}), not in the list, saw {} connection(s)",
            net.node(3).address(),
            net.node(3).stats().inbound_connections
        );

        // Take node 0 down: the manager loses it, retries with backoff while it is down, and
        // reconnects once it is back.
        let down = net.node(0).address();
        net.stop_node(0).await?;
        wait_for(&mut events, wait, |e| {
            matches!(e, ControlEvent::ConnectionLost { .. })
        })
        .await?;
        println!("node 0 ({down}) stopped; the manager is redialling it");
        wait_for(&mut events, wait, |e| {
            matches!(e, ControlEvent::ConnectionFailed { .. })
        })
        .await?;
        let back = Instant::now();
        net.restart_node(0).await?;
        wait_for(&mut events, wait, |e| {
            matches!(e, ControlEvent::ConnectionEstablished { .. })
        })
        .await?;
        println!(
            "node 0 ({down}) restarted; reconnected after {:?}",
            back.elapsed()
        );
        print_connections(&manager);
    } else {
        // Real peers: watch the connections for a while, printing what happens to them.
        let watch = args.duration(Duration::from_secs(3), Duration::from_secs(60));
        println!("watching for {watch:?} (Ctrl-C to stop early)");
        let _ = timeout(watch, async {
            loop {
                tokio::select! {
                    e = events.recv() => match e {
                        Ok(e) => println!("event: {e:?}"),
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => break,
                    },
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
        })
        .await;
        print_connections(&manager);
    }

    manager.shutdown().await?;
    if let Some(net) = simnet {
        net.shutdown().await;
    }
    println!("fixed_peers: done");
    Ok(())
}
