//! `bsvp2p simnet`: run a simulated BSV network on loopback in the foreground, for other tools
//! (or another `bsvp2p`) to connect to. Prints each node's address, optionally mines a block
//! every few seconds, and shuts every node down cleanly on Ctrl-C.

use std::time::Duration;

use bitcoinsv::p2p::Network;
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use serde_json::json;

use crate::error::CliError;

/// Arguments of `bsvp2p simnet`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 8)]
    pub nodes: usize,
    /// Port of the first node; the others take the following ports. Default: free ports.
    #[arg(long)]
    pub port: Option<u16>,
    /// Generated blocks after the regtest genesis.
    #[arg(long, default_value_t = 200)]
    pub blocks: u32,
    /// Mine a block every this many seconds (announced by every node).
    #[arg(long, value_name = "SECONDS")]
    pub mine_every: Option<f64>,
    /// Filler transactions per generated block.
    #[arg(long, default_value_t = 0)]
    pub txs_per_block: u32,
    /// Chain seed: the same seed gives the same block hashes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The network whose magic the nodes speak (the chain is a regtest chain regardless).
    #[arg(long, default_value = "regtest")]
    pub network: Network,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand until Ctrl-C.
pub fn run(args: Args) -> Result<(), CliError> {
    if args.nodes == 0 {
        return Err(CliError::Usage("--nodes must be at least 1".into()));
    }
    let mine_every = match args.mine_every {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(CliError::Usage(format!(
                "--mine-every {s}: expected a positive number of seconds"
            )))
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    // Logs go to stderr (main installs the subscriber: RUST_LOG, else --log-level, else
    // warnings only), so stdout stays the list of addresses.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(args, mine_every))
}

async fn serve(args: Args, mine_every: Option<Duration>) -> Result<(), CliError> {
    let config = SimNetConfig::default()
        .nodes(args.nodes)
        .base_port(args.port.unwrap_or(0))
        .blocks(args.blocks)
        .txs_per_block(args.txs_per_block)
        .seed(args.seed)
        .network(args.network);
    let simnet = SimNet::start(config)
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    // Install the Ctrl-C handler (on the future's first poll) before announcing the addresses,
    // so that a Ctrl-C sent by whoever reads them is caught rather than killing the process.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut stop = tokio::select! {
        biased;
        _ = &mut ctrl_c => true,
        _ = std::future::ready(()) => false,
    };
    let chain = simnet.chain();
    if args.json {
        println!(
            "{}",
            json!({
                "event": "started",
                "network": args.network.to_string(),
                "nodes": simnet.len(),
                "height": chain.tip_height(),
                "tip": chain.tip_hash().to_string(),
            })
        );
        for node in simnet.nodes() {
            println!(
                "{}",
                json!({ "event": "node", "index": node.index(), "address": node.address().to_string() })
            );
        }
    } else {
        println!(
            "simnet: {} node(s) speaking {}, chain height {} (tip {})",
            simnet.len(),
            args.network,
            chain.tip_height(),
            chain.tip_hash()
        );
        for node in simnet.nodes() {
            println!("node {:>4}  {}", node.index(), node.address());
        }
        println!("press Ctrl-C to stop");
    }
    let mut miner = mine_every.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    while !stop {
        tokio::select! {
            signal = &mut ctrl_c => {
                if let Err(e) = signal {
                    eprintln!("error: cannot listen for Ctrl-C ({e}); stopping");
                }
                stop = true;
            }
            _ = async {
                match miner.as_mut() {
                    Some(t) => { t.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {
                let block = simnet.mine_block();
                let height = simnet.chain().tip_height();
                if args.json {
                    println!(
                        "{}",
                        json!({
                            "event": "mined",
                            "height": height,
                            "hash": block.hash().to_string(),
                            "transactions": block.transactions.len(),
                        })
                    );
                } else {
                    println!("mined block {height} {}", block.hash());
                }
            }
        }
    }
    simnet.shutdown().await;
    if args.json {
        println!("{}", json!({ "event": "stopped" }));
    } else {
        println!("simnet stopped");
    }
    Ok(())
}
