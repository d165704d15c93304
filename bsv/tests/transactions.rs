//! The transaction services against the simnet over loopback sockets: a broadcast's per-peer
//! report (each `getdata`, a `reject`, the relay back), the stream delivering each announced
//! transaction once, losslessly even to a slow subscriber, and `mempool` refused where the
//! peer would disconnect us. Tokio's clock is paused: timers run in virtual time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::{Hash, OutPoint, Transaction, TxIn, TxOut};
use bitcoinsv::p2p::{
    BroadcastOptions, Delivery, InMemoryPeerStore, Manager, ManagerConfig, Network, P2pError,
    RejectCode, TransactionError,
};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};

/// The bound on any wait, in virtual time.
const WAIT: Duration = Duration::from_secs(600);

/// A transaction no other test makes: spends output `n` of a made-up txid.
fn tx(n: u32) -> Transaction {
    Transaction::new(
        1,
        vec![TxIn {
            prevout: OutPoint {
                txid: Hash::default(),
                vout: n,
            },
            script_sig: vec![0x51; 8].into(),
            sequence: 0xffff_ffff,
        }],
        vec![TxOut {
            value: 1000,
            script_pubkey: vec![0x51].into(),
        }],
        0,
    )
}

/// A simnet of `nodes` nodes (with `modes`), a manager connected to all, and every node has
/// read our `verack` (a node announces only to peers it counts as connected).
async fn setup(nodes: usize, modes: &[(usize, Misbehaviour)]) -> (SimNet, Manager) {
    let mut config = SimNetConfig::default().nodes(nodes).blocks(1);
    for (i, m) in modes {
        config = config.with_misbehaviour(*i, m.clone());
    }
    let net = SimNet::start(config).await.unwrap();
    let mut c = ManagerConfig::new(Network::Regtest);
    c.dns_seeds.clear();
    let manager = Manager::with_fixed_peers(
        c,
        Arc::new(InMemoryPeerStore::new()),
        net.addresses().to_vec(),
    );
    manager.start().await.unwrap();
    manager.wait_for_connections(nodes, WAIT).await.unwrap();
    for n in net.nodes() {
        n.wait_for_stats(WAIT, |s| s.handshakes >= 1).await.unwrap();
    }
    (net, manager)
}

#[tokio::test(start_paused = true)]
async fn a_broadcast_to_eight_nodes_reports_each_getdata_a_reject_and_the_relay_back() {
    let (net, manager) = setup(8, &[(7, Misbehaviour::RejectAllTx)]).await;
    let t = tx(1);
    let report = manager.broadcast_transaction(t.clone()).await.unwrap();
    assert_eq!(report.txid, t.txid());
    assert_eq!(report.peers.len(), 8, "{report}");
    assert!(report.completed_early, "{report}");
    assert!(net.mempool_contains(&t.txid()));
    for (i, node) in net.nodes().iter().enumerate() {
        let p = report
            .peers
            .iter()
            .find(|p| p.address == node.address())
            .unwrap();
        assert_eq!(p.delivery, Delivery::Announced, "{report}");
        // Exactly the nodes that asked are reported as having asked.
        let asked = node.stats().sent("getdata") > 0;
        assert_eq!(p.requested, asked, "node {i}: {report}");
        if i == 7 {
            let r = p.rejected.as_ref().expect("node 7 rejects every tx");
            assert_eq!(r.code, RejectCode::Invalid);
            assert_eq!(r.reason, "bad-txns-inputs-missingorspent");
        } else {
            assert!(p.rejected.is_none(), "{report}");
        }
    }
    assert!(report.relayed_back_by().count() >= 1, "{report}");
    assert!(report.to_string().contains("rejected 0x10"), "{report}");
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_peer_whose_feefilter_exceeds_our_rate_is_skipped() {
    let (net, manager) = setup(2, &[(0, Misbehaviour::FeeFilter(5_000))]).await;
    // Our side learns the filter from the message that follows the handshake.
    let filtered = net.node(0).address();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !manager.connected_peers().iter().any(|p| {
        p.address == filtered && p.details.as_ref().and_then(|d| d.fee_filter) == Some(5_000)
    }) {
        assert!(tokio::time::Instant::now() < deadline, "no feefilter seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let options = BroadcastOptions {
        fee_rate: Some(1_000),
        ..BroadcastOptions::default()
    };
    let report = manager
        .broadcast_transaction_with(tx(3), options)
        .await
        .unwrap();
    for p in &report.peers {
        if p.address == filtered {
            assert!(
                matches!(p.delivery, Delivery::SkippedFeeFilter { .. }),
                "{report}"
            );
            assert!(!p.requested, "{report}");
        } else {
            assert_eq!(p.delivery, Delivery::Announced, "{report}");
            assert!(p.requested, "{report}");
        }
    }
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_pushed_transaction_needs_no_getdata() {
    let (net, manager) = setup(2, &[]).await;
    let options = BroadcastOptions {
        push: true,
        ..BroadcastOptions::default()
    };
    let report = manager
        .broadcast_transaction_with(tx(2), options)
        .await
        .unwrap();
    for p in &report.peers {
        assert_eq!(p.delivery, Delivery::Pushed, "{report}");
        assert!(!p.requested, "{report}");
    }
    assert!(net.mempool_contains(&tx(2).txid()));
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_stream_delivers_each_of_1000_transactions_announced_by_5_nodes_exactly_once() {
    let (net, manager) = setup(5, &[]).await;
    let mut rx = manager.subscribe_transactions(2000);
    let sent: HashSet<Hash> = (0..1000).map(|n| tx(1000 + n).txid()).collect();
    for n in 0..1000 {
        assert!(net.inject_tx(0, tx(1000 + n)).unwrap());
    }
    let mut got = HashSet::new();
    while got.len() < 1000 {
        let e = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(got.insert(e.transaction.txid()), "delivered twice");
    }
    assert_eq!(got, sent);
    // Past the re-request interval nothing more arrives, and each was fetched once.
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert!(rx.try_recv().is_err());
    let served: u64 = net.nodes().iter().map(|n| n.stats().sent("tx")).sum();
    assert_eq!(served, 1000);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_loses_nothing() {
    let (net, manager) = setup(3, &[]).await;
    let mut rx = manager.subscribe_transactions(10);
    for n in 0..300 {
        net.inject_tx(1, tx(5000 + n)).unwrap();
    }
    let mut got = HashSet::new();
    while got.len() < 300 {
        let e = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(got.insert(e.transaction.txid()), "delivered twice");
        // A slow reader: 100 ms per transaction.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.len(), 300);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_mempool_request_is_refused_for_a_peer_without_node_bloom() {
    let (net, manager) = setup(1, &[]).await;
    let peer = manager.connected_peers()[0].peer_id;
    let err = manager.request_mempool(peer).await.unwrap_err();
    assert!(
        matches!(
            err,
            P2pError::Transaction(TransactionError::MempoolRefused { .. })
        ),
        "{err}"
    );
    // Nothing was sent: the node did not disconnect us.
    assert_eq!(net.node(0).stats().received("mempool"), 0);
    assert_eq!(manager.connection_count(), 1);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}
