//! # broadcaster: broadcast a transaction and print what each peer did
//!
//! Connects a [`Manager`] to the peers, calls [`Manager::broadcast_transaction`] and prints
//! its [`BroadcastReport`](bitcoinsv::p2p::BroadcastReport): per peer, whether the transaction
//! was announced or skipped (and why), whether the peer asked for it with `getdata`, whether it
//! rejected it (code and reason), and whether it announced it back to us (evidence that it
//! accepted it and is relaying it).
//!
//! Against the simnet (the default) the example broadcasts a made-up transaction to four nodes,
//! one of which rejects every transaction, so the report shows requests, a reject and the relay
//! back. Against a real network it broadcasts the transaction whose hex is in the environment
//! variable `BROADCAST_TX_HEX` (a real, signed transaction: it will be mined).
//!
//! ```text
//! # against an in-process simulated network (no network access, about a second):
//! cargo run -p bitcoinsv --example broadcaster
//! # a real transaction to given testnet peers:
//! BROADCAST_TX_HEX=0100... cargo run -p bitcoinsv --example broadcaster -- --network testnet 203.0.113.7:18333
//! ```

mod common;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::{Decode, Transaction};
use bitcoinsv::p2p::{InMemoryPeerStore, Manager, ManagerConfig, Network};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};

use common::{Args, Target};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .init();
    let args = Args::parse("broadcaster");
    let mut simnet = None;
    let (config, store, peers) = match &args.target {
        Target::SimNet => {
            let net = SimNet::start(
                SimNetConfig::default()
                    .nodes(4)
                    .blocks(1)
                    .with_misbehaviour(3, Misbehaviour::RejectAllTx),
            )
            .await?;
            let store = common::store_with(&net.addresses()).await;
            let n = net.len();
            simnet = Some(net);
            (ManagerConfig::new(Network::Regtest), store, n)
        }
        Target::Peers { network, peers } => {
            let mut config = ManagerConfig::new(*network);
            config.dns_seeds.clear();
            (config, common::store_with(peers).await, peers.len().min(8))
        }
        Target::Dns { network } => (
            ManagerConfig::new(*network),
            Arc::new(InMemoryPeerStore::new()),
            4,
        ),
    };
    let tx = match &simnet {
        Some(_) => bitcoinsv_simnet::sample_transaction(1),
        None => {
            let hex = std::env::var("BROADCAST_TX_HEX")
                .map_err(|_| "set BROADCAST_TX_HEX to the transaction to broadcast")?;
            Transaction::decode_exact(&hex::decode(hex.trim())?)?
        }
    };
    let manager = Manager::new(config, store);
    manager.start().await?;
    manager
        .wait_for_connections(peers, Duration::from_secs(30))
        .await?;
    if let Some(net) = &simnet {
        // A node announces only to peers whose `verack` it has read.
        for node in net.nodes() {
            node.wait_for_stats(Duration::from_secs(10), |s| s.handshakes >= 1)
                .await
                .ok_or("a simnet node never completed its handshake with us")?;
        }
    }
    let report = manager.broadcast_transaction(tx).await?;
    println!("{report}");
    println!(
        "broadcaster: {} requested, {} rejected, {} relayed back",
        report.requested_by().count(),
        report.rejected_by().count(),
        report.relayed_back_by().count()
    );
    manager.shutdown().await?;
    if let Some(net) = simnet {
        net.shutdown().await;
    }
    Ok(())
}
