//! The header chain (`Manager::header_chain`) against the official node: it reaches the node's
//! tip, sees a block mined while it listens, and reports the reorganisation the node makes when
//! its tip is invalidated and a longer branch mined (`invalidateblock`, then two blocks). Each
//! test ends with the log check: the node charged us nothing for the chain's `getheaders`.

use bitcoinsv::bitcoin::Hash;
use bitcoinsv::p2p::{ChainEvent, HeaderChain};
use tokio::sync::broadcast;

use super::{node, Guard, Session, MINER_ADDRESS, STEP};

/// Another regtest address (version 0x6f, key hash twenty 0x42 bytes; nobody holds its key):
/// mining the replacement branch to it gives its first block another coinbase than the
/// invalidated block's, which the node would otherwise rebuild byte for byte within the same
/// second and refuse as already invalid ("ProcessNewBlock, block not accepted").
const OTHER_ADDRESS: &str = "mmZJGTYyMqVoMYQZvY5jzF9uWREKyk1bPj";

/// The next event `pick` accepts, within [`STEP`].
async fn next_event<T>(
    events: &mut broadcast::Receiver<ChainEvent>,
    what: &str,
    mut pick: impl FnMut(&ChainEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {STEP:?}"))
            .expect("chain events open");
        if let Some(v) = pick(&e) {
            return v;
        }
    }
}

/// A session whose header chain has synced to the node's tip.
async fn synced(node: &super::Node) -> (Session, HeaderChain) {
    let s = Session::outbound(node).await;
    let chain = s.manager.header_chain();
    let tip = chain.sync(STEP).await.expect("the chain syncs");
    assert_eq!(tip.hash, node.best_block_hash().await);
    assert_eq!(u64::from(tip.height), node.block_count().await);
    (s, chain)
}

#[tokio::test]
async fn the_header_chain_reaches_the_nodes_tip() {
    let test = &listed!("the_header_chain_reaches_the_nodes_tip");
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let (mut s, chain) = synced(&node).await;
    assert_eq!(
        chain.header_at(0).map(|h| h.hash),
        Some(node.network.genesis_hash())
    );
    s.round_trip().await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}

#[tokio::test]
async fn a_block_mined_while_we_listen_arrives_through_subscribe() {
    let test = &listed!("a_block_mined_while_we_listen_arrives_through_subscribe");
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let (mut s, chain) = synced(&node).await;
    let mut events = chain.subscribe();
    let mined = node
        .cli_json(&["generatetoaddress", "1", MINER_ADDRESS])
        .await;
    let hash: Hash = mined[0].as_str().unwrap().parse().unwrap();
    let height = next_event(&mut events, "the new tip", |e| match e {
        ChainEvent::NewTip { height, hash: h } if *h == hash => Some(*height),
        _ => None,
    })
    .await;
    assert_eq!(u64::from(height), node.block_count().await);
    assert_eq!(chain.announced_by(&hash), Some(s.peer.peer_id));
    s.round_trip().await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}

#[tokio::test]
async fn invalidating_the_tip_and_mining_two_blocks_is_a_reorg_of_depth_one() {
    let test = &listed!("invalidating_the_tip_and_mining_two_blocks_is_a_reorg_of_depth_one");
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let (mut s, chain) = synced(&node).await;
    let old_tip = chain.tip();
    let mut events = chain.subscribe();
    node.cli(&["invalidateblock", &old_tip.hash.to_string()])
        .await;
    let mined = node
        .cli_json(&["generatetoaddress", "2", OTHER_ADDRESS])
        .await;
    let new_tip: Hash = mined[1].as_str().unwrap().parse().unwrap();
    let reorg = next_event(&mut events, "the reorg", |e| {
        matches!(e, ChainEvent::Reorg { .. }).then_some(*e)
    })
    .await;
    assert_eq!(
        reorg,
        ChainEvent::Reorg {
            old_tip: old_tip.hash,
            new_tip,
            fork_height: old_tip.height - 1,
            depth: 1,
        }
    );
    next_event(&mut events, "the new tip after the reorg", |e| {
        (*e == ChainEvent::NewTip {
            height: old_tip.height + 1,
            hash: new_tip,
        })
        .then_some(())
    })
    .await;
    // The invalidated block stays known, off the best chain.
    assert!(!chain.header(&old_tip.hash).unwrap().best);
    s.round_trip().await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}
