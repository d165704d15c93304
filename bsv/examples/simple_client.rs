//! # simple_client: the seed's example program, made runnable
//!
//! The smallest complete use of the [`Manager`]: create it with a peer store, subscribe to its
//! control events and bitcoin messages, start it, wait for a connection, ping the peer and
//! read its `pong`, ban the peer, and shut down, printing every event and message on the way.
//! Logging goes through `tracing_subscriber` at DEBUG, as in the original request, so the
//! manager's own structured logs show each step.
//!
//! ```text
//! # against an in-process simulated network (no network access, a few seconds):
//! cargo run -p bitcoinsv --example simple_client
//! # against one real peer (mainnet unless --network says otherwise):
//! cargo run -p bitcoinsv --example simple_client -- 203.0.113.7:8333
//! # against mainnet, peers from its DNS seeds:
//! cargo run -p bitcoinsv --example simple_client -- --network mainnet
//! ```

mod common;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{
    BanReason, ControlEvent, InMemoryPeerStore, Manager, ManagerConfig, Message, Network,
};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::timeout;

use common::{summary, Args, Target};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Initialize tracing
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .init();
    let args = Args::parse("simple_client");
    let wait = args.duration(Duration::from_secs(10), Duration::from_secs(60));

    // Where the peers come from: a simnet we start here, given addresses, or DNS seeds.
    let mut simnet = None;
    let (config, peer_store) = match &args.target {
        Target::SimNet => {
            let net = SimNet::start(SimNetConfig::default().nodes(3).blocks(10)).await?;
            let store = common::store_with(&net.addresses()).await;
            simnet = Some(net);
            // Regtest has no DNS seeds: the manager dials only what the store holds.
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

    // Create manager - logs at INFO level
    let manager = Manager::new(config, peer_store);

    // Subscribe to events (before start, so that nothing is missed)
    let mut control_rx = manager.subscribe_control_events();
    let mut message_rx = manager.subscribe_bitcoin_messages();
    let printer = tokio::spawn(async move {
        loop {
            tokio::select! {
                e = control_rx.recv() => match e {
                    Ok(e) => println!("event: {e:?}"),
                    Err(RecvError::Lagged(n)) => println!("event: ({n} events missed)"),
                    Err(RecvError::Closed) => break,
                },
                m = message_rx.recv() => match m {
                    Ok(m) => println!("message from {}: {}", m.peer_id, summary(&m.message)),
                    Err(RecvError::Lagged(n)) => println!("message: ({n} messages missed)"),
                    Err(RecvError::Closed) => break,
                },
            }
        }
    });

    // Start manager - logs lifecycle events; peers connect in the background.
    manager.start().await?;
    let count = manager.wait_for_connections(1, wait).await?;
    let peer = manager.connected_peers().remove(0);
    let peer_id = peer.peer_id;
    let agent = peer.details.as_ref().map(|d| d.user_agent.as_str());
    println!(
        "connected to {} peer(s); using {} ({})",
        count,
        peer.address,
        agent.unwrap_or("?")
    );

    // Ping the peer and wait for its pong (the pong to our own ping reaches the message stream).
    let mut replies = manager.subscribe_bitcoin_messages();
    let nonce: u64 = rand::random::<u64>() | 1;
    let sent = std::time::Instant::now();
    manager.send_message(peer_id, Message::Ping(nonce)).await?;
    timeout(wait, async {
        loop {
            match replies.recv().await {
                Ok(m) if m.peer_id == peer_id && m.message == Message::Pong(nonce) => break,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    })
    .await?;
    println!("pong from {} after {:?}", peer.address, sent.elapsed());

    // Ban the peer: its IP (every port) is refused and every connection from it is closed.
    let mut events = manager.subscribe_control_events();
    manager
        .ban_peer(
            peer_id,
            BanReason::Manual {
                note: "banned by the simple_client example".into(),
            },
        )
        .await?;
    timeout(wait, async {
        loop {
            match events.recv().await {
                Ok(ControlEvent::ConnectionLost { peer_id: p, .. }) if p == peer_id => break,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    })
    .await?;
    println!("banned {} and it was disconnected", peer.address);

    // Shutdown - logs final state, closes every connection and waits for every task.
    manager.shutdown().await?;
    let banned = manager
        .get_peers()
        .await?
        .iter()
        .filter(|p| p.status.kind() == bitcoinsv::p2p::PeerStatusKind::Banned)
        .count();
    println!("peers banned in the store: {banned}");
    // Dropping the manager closes the channels, which ends the printer.
    drop(manager);
    let _ = timeout(Duration::from_secs(5), printer).await;
    if let Some(net) = simnet {
        net.shutdown().await;
    }
    println!("simple_client: done");
    Ok(())
}
