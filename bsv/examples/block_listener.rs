//! # block_listener: follow the best chain, print each new tip and reorganisation
//!
//! Takes the manager's [`HeaderChain`], syncs it (`HeaderChain::sync`), then prints every
//! [`ChainEvent`]: `NewTip` for each new best block, `Reorg` (with its fork height and depth)
//! when another branch takes over, and which peer announced the new tip first. Each new tip's
//! block is fetched with [`Manager::get_block`] (hash and merkle root verified) and its
//! transaction count printed: what a block indexer does.
//!
//! Against the simnet the example makes things happen while it listens: it mines two blocks,
//! then reorganises the chain (three blocks replacing the last two), so a reorg shows.
//!
//! ```text
//! # against an in-process simulated network (no network access, about a second):
//! cargo run -p bitcoinsv --example block_listener
//! # against mainnet (peers from its DNS seeds) for ten minutes:
//! cargo run -p bitcoinsv --example block_listener -- --network mainnet --seconds 600
//! # against given peers (mainnet unless --network says otherwise):
//! cargo run -p bitcoinsv --example block_listener -- 203.0.113.7:8333
//! ```

mod common;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{ChainEvent, HeaderChain, InMemoryPeerStore, Manager, ManagerConfig, Network};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use tokio::sync::broadcast::error::RecvError;

use common::{Args, Target};

/// What the example does to the simnet while it listens: two blocks, then a reorg.
async fn make_things_happen(net: &SimNet) -> Result<(), Box<dyn Error>> {
    // The node announces by `headers` only to peers whose `sendheaders` it has read.
    for node in net.nodes() {
        node.wait_for_stats(Duration::from_secs(10), |s| s.received("sendheaders") >= 1)
            .await
            .ok_or("a simnet node never got our sendheaders")?;
    }
    for _ in 0..2 {
        let block = net.mine_block();
        println!("(simnet) mined block {}", block.hash());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fork = net.chain().tip_height() - 2;
    let branch = net.reorg(fork, 3)?;
    println!(
        "(simnet) reorganised: {} blocks on height {fork}",
        branch.len()
    );
    Ok(())
}

/// Prints chain events until `watch` has passed (or the events end).
async fn listen(
    manager: &Manager,
    chain: &HeaderChain,
    watch: Duration,
    want_reorg: bool,
) -> (usize, usize) {
    let mut events = chain.subscribe();
    let deadline = tokio::time::sleep(watch);
    tokio::pin!(deadline);
    let (mut tips, mut reorgs) = (0, 0);
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(ChainEvent::NewTip { height, hash }) => {
                    tips += 1;
                    let from = chain
                        .announced_by(&hash)
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".into());
                    println!("new tip {height} {hash} (first from {from})");
                    // A tip a later reorg replaces may be gone by then: the fetch just fails.
                    match manager.get_block(hash).await {
                        Ok(block) => println!(
                            "block {height} {hash}: {} transactions, merkle root verified",
                            block.transactions.len()
                        ),
                        Err(e) => println!("block {height} {hash}: not fetched ({e})"),
                    }
                    if want_reorg && reorgs > 0 {
                        break;
                    }
                }
                Ok(ChainEvent::Reorg { old_tip, new_tip, fork_height, depth }) => {
                    reorgs += 1;
                    println!("reorg at {fork_height}, depth {depth}: {old_tip} -> {new_tip}");
                }
                Err(RecvError::Lagged(n)) => println!("(missed {n} events)"),
                Err(RecvError::Closed) => break,
            },
            _ = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    (tips, reorgs)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .init();
    let args = Args::parse("block_listener");
    let watch = args.duration(Duration::from_secs(10), Duration::from_secs(600));

    let mut simnet = None;
    let (config, store) = match &args.target {
        Target::SimNet => {
            let net = SimNet::start(SimNetConfig::default().nodes(3).blocks(50)).await?;
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
    manager.start().await?;
    let chain = manager.header_chain();
    let tip = chain.sync(Duration::from_secs(600)).await?;
    println!("synced: tip {} {}", tip.height, tip.hash);

    let (tips, reorgs) = match &simnet {
        Some(net) => {
            let (counts, scenario) = tokio::join!(
                listen(&manager, &chain, watch, true),
                make_things_happen(net)
            );
            scenario?;
            counts
        }
        None => listen(&manager, &chain, watch, false).await,
    };
    let tip = chain.tip();
    manager.shutdown().await?;
    if let Some(net) = simnet {
        net.shutdown().await;
    }
    println!(
        "block_listener: {tips} new tips, {reorgs} reorgs, tip {} {}",
        tip.height, tip.hash
    );
    Ok(())
}
