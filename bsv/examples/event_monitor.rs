//! # event_monitor: every control event and a summary of every message
//!
//! Subscribes to both of the [`Manager`]'s broadcast channels before starting it, then prints,
//! with the time since start, every [`ControlEvent`] (connections made, lost, restarted and
//! refused, bans, configuration updates) and a one-line summary of every message the peers
//! send (`inv`, `headers`, `addr`, ...) for a while, and finally a count of each kind.
//!
//! Broadcast receivers are lossy: one that falls behind gets `Lagged(n)` and misses `n` items,
//! which this monitor reports and survives. An application that must see every message uses
//! [`Manager::subscribe_messages_lossless`] instead.
//!
//! Against the simnet the example also makes things happen while it watches: it mines a block,
//! injects a transaction (every node announces it) and stops one node.
//!
//! ```text
//! # against an in-process simulated network (no network access, about two seconds):
//! cargo run -p bitcoinsv --example event_monitor
//! # against mainnet (peers from its DNS seeds) for five minutes:
//! cargo run -p bitcoinsv --example event_monitor -- --network mainnet --seconds 300
//! # against given peers (mainnet unless --network says otherwise):
//! cargo run -p bitcoinsv --example event_monitor -- 203.0.113.7:8333
//! ```

mod common;

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{ControlEvent, InMemoryPeerStore, Manager, ManagerConfig, Network};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use common::{summary, Args, Target};

/// The variant name of an event (`ConnectionEstablished`, ...), for the final counts.
fn kind(e: &ControlEvent) -> String {
    format!("{e:?}")
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect()
}

/// What the example does to the simnet while the monitor watches.
async fn make_things_happen(net: &SimNet, manager: &Manager) -> Result<(), Box<dyn Error>> {
    manager
        .wait_for_connections(net.len(), Duration::from_secs(10))
        .await?;
    // Our side counts a connection once it has the node's `verack`; the node announces only
    // to peers whose `verack` it has read in turn. Wait for that too, so no announcement is
    // made to a peer the node does not yet count.
    for node in net.nodes() {
        node.wait_for_stats(Duration::from_secs(10), |s| s.handshakes >= 1)
            .await
            .ok_or("a simnet node never completed its handshake with us")?;
    }
    let block = net.mine_block();
    println!("(simnet) mined block {}", block.hash());
    let tx = bitcoinsv_simnet::sample_transaction(2);
    net.inject_tx(0, tx.clone())?;
    println!("(simnet) injected tx {}", tx.txid());
    let last = net.len() - 1;
    net.stop_node(last).await?;
    println!("(simnet) stopped node {last}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    let args = Args::parse("event_monitor");
    let watch = args.duration(Duration::from_secs(2), Duration::from_secs(60));

    let mut simnet = None;
    let (config, store) = match &args.target {
        Target::SimNet => {
            let net = SimNet::start(SimNetConfig::default().nodes(4).blocks(10)).await?;
            let store = common::store_with(&net.addresses()).await;
            simnet = Some(net);
            (ManagerConfig::new(Network::Regtest), store)
        }
        Target::Peers { network, peers } => {
            let mut config = ManagerConfig::new(*network);
            config.dns_seeds.clear();
            (config, common::store_with(peers).await)
        }
        Target::Dns { network } => (
            ManagerConfig::new(*network),
            Arc::new(InMemoryPeerStore::new()),
        ),
    };
    let manager = Manager::new(config, store);
    // Subscribe before start: a receiver sees only what is sent after it subscribed.
    let mut control_rx = manager.subscribe_control_events();
    let mut message_rx = manager.subscribe_bitcoin_messages();
    manager.start().await?;
    println!("monitoring for {watch:?} (Ctrl-C to stop early)");

    let started = Instant::now();
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    let mut missed = 0u64;
    let monitor = async {
        let deadline = tokio::time::sleep(watch);
        tokio::pin!(deadline);
        let now = || started.elapsed().as_secs_f64();
        loop {
            tokio::select! {
                e = control_rx.recv() => match e {
                    Ok(e) => {
                        println!("[{:8.3}s] event   {e:?}", now());
                        *events.entry(kind(&e)).or_default() += 1;
                    }
                    Err(RecvError::Lagged(n)) => missed += n,
                    Err(RecvError::Closed) => break,
                },
                m = message_rx.recv() => match m {
                    Ok(m) => {
                        println!("[{:8.3}s] message {} from {}", now(), summary(&m.message), m.peer_id);
                        *messages.entry(m.message.command().to_string()).or_default() += 1;
                    }
                    Err(RecvError::Lagged(n)) => missed += n,
                    Err(RecvError::Closed) => break,
                },
                _ = &mut deadline => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    };
    match &simnet {
        Some(net) => {
            let (_, scenario) = tokio::join!(monitor, make_things_happen(net, &manager));
            scenario?;
        }
        None => monitor.await,
    }

    println!("connections at the end: {}", manager.connection_count());
    manager.shutdown().await?;
    if let Some(net) = simnet {
        net.shutdown().await;
    }
    println!("events by kind:");
    for (k, n) in &events {
        println!("  {k:<28} {n}");
    }
    println!("messages by command:");
    for (k, n) in &messages {
        println!("  {k:<28} {n}");
    }
    if missed > 0 {
        println!("missed (lagged): {missed}");
    }
    println!(
        "event_monitor: {} events, {} messages in {:.1}s",
        events.values().sum::<usize>(),
        messages.values().sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
