//! The transfer services against the official node: `Manager::broadcast_transaction` of a
//! spendable `regtest.sh tx` transaction ends in the node's mempool with the report saying the
//! node asked for it, and a block mined while we listen is fetched with `Manager::get_block`
//! and equals the node's own serialization. As in every real-node test, the node charged us
//! nothing meanwhile.

use bitcoinsv::bitcoin::{Decode, Encode, Hash, Transaction};
use bitcoinsv::p2p::{BroadcastOptions, Delivery};

use super::{node, spendable_coinbase_height, Guard, Session, MINER_ADDRESS, STEP};

#[tokio::test]
async fn broadcast_transaction_reaches_the_mempool_and_reports_the_node_s_getdata() {
    let test = &listed!("broadcast_transaction_reaches_the_mempool_and_reports_the_node_s_getdata");
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let k = spendable_coinbase_height(&node).await;
    let raw = hex::decode(node.regtest_sh("tx", &[&k.to_string()]).await).unwrap();
    let tx = Transaction::decode_exact(&raw).unwrap();
    let txid = tx.txid();
    let mut s = Session::outbound(&node).await;

    // One peer, which never announces our own transaction back to us: the report ends with the
    // window, so keep it short.
    let options = BroadcastOptions {
        window: std::time::Duration::from_secs(3),
        ..BroadcastOptions::default()
    };
    let report = s
        .manager
        .broadcast_transaction_with(tx, options)
        .await
        .unwrap();
    assert_eq!(report.txid, txid);
    assert_eq!(report.peers.len(), 1, "{report}");
    let p = &report.peers[0];
    assert_eq!(p.delivery, Delivery::Announced, "{report}");
    assert!(p.requested, "{report}");
    assert!(p.rejected.is_none(), "{report}");

    let mempool = node.cli_json(&["getrawmempool"]).await;
    assert!(
        mempool
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == &txid.to_string()),
        "{txid} not in the node's mempool: {mempool}"
    );
    s.round_trip().await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}

#[tokio::test]
async fn a_block_mined_while_we_listen_is_fetched_equal_to_the_node_s_serialization() {
    let test =
        &listed!("a_block_mined_while_we_listen_is_fetched_equal_to_the_node_s_serialization");
    let Some(node) = node(test, true) else {
        return;
    };
    let guard = Guard::new(&node).await;
    let mut s = Session::outbound(&node).await;
    let mined = node
        .cli_json(&["generatetoaddress", "1", MINER_ADDRESS])
        .await;
    let hash: Hash = mined[0].as_str().unwrap().parse().unwrap();
    let expected = node.cli(&["getblock", &hash.to_string(), "0"]).await;

    let block = tokio::time::timeout(STEP, s.manager.get_block(hash))
        .await
        .expect("get_block within a step")
        .unwrap();
    assert_eq!(block.hash(), hash);
    assert_eq!(hex::encode(block.to_vec()), expected);
    s.round_trip().await;
    guard.assert_no_misbehaviour();
    s.shutdown().await;
}
