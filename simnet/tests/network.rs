//! The simnet as a network: address discovery through `getaddr`, transaction relay between
//! nodes, mining pooled transactions, and stopping and restarting nodes on the same port.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;

use bitcoinsv::bitcoin::InvVect;
use bitcoinsv::p2p::Message;
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use common::*;
use tokio::net::TcpStream;

#[tokio::test]
async fn getaddr_from_one_node_returns_all_the_others() {
    let net = SimNet::start(SimNetConfig::default().nodes(12))
        .await
        .unwrap();
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    c.send(&Message::GetAddr).await;
    let Message::Addr(addrs) = c.recv().await else {
        panic!("expected addr")
    };
    let got: HashSet<SocketAddr> = addrs.iter().map(|a| a.addr.socket_addr()).collect();
    let want: HashSet<SocketAddr> = net.addresses().into_iter().skip(1).collect();
    assert_eq!(got, want);
    assert_eq!(addrs.len(), 11);
    assert!(addrs.iter().all(|a| a.addr.services == 0x21 && a.time > 0));
    // Answered once per connection: a second `getaddr` gets nothing.
    c.send(&Message::GetAddr).await;
    assert!(c.sync(1).await.is_empty());
    net.shutdown().await;
}

#[tokio::test]
async fn getaddr_includes_unreachable_loopback_addresses_when_configured() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(3)
            .include_unreachable_addrs(4),
    )
    .await
    .unwrap();
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    c.send(&Message::GetAddr).await;
    let Message::Addr(addrs) = c.recv().await else {
        panic!("expected addr")
    };
    assert_eq!(addrs.len(), 2 + 4);
    let live: HashSet<SocketAddr> = net.addresses().into_iter().collect();
    let dead: Vec<SocketAddr> = addrs
        .iter()
        .map(|a| a.addr.socket_addr())
        .filter(|a| !live.contains(a))
        .collect();
    assert_eq!(dead.len(), 4);
    for addr in dead {
        assert!(addr.ip().is_loopback());
        assert!(TcpStream::connect(addr).await.is_err(), "{addr} refuses");
    }
    net.shutdown().await;
}

#[tokio::test]
async fn transaction_sent_to_one_node_is_announced_by_inv_on_another() {
    let net = SimNet::start(SimNetConfig::default().nodes(3))
        .await
        .unwrap();
    let mut sender = Client::connect(net.node(0).address()).await;
    sender.handshake().await;
    let mut watcher = Client::connect(net.node(1).address()).await;
    watcher.handshake().await;
    let tx = sample_tx(1);
    sender.send(&Message::Tx(tx.clone())).await;
    assert_eq!(
        watcher.recv().await,
        Message::Inv(vec![InvVect::tx(tx.txid())])
    );
    watcher
        .send(&Message::GetData(vec![InvVect::tx(tx.txid())]))
        .await;
    assert_eq!(watcher.recv().await, Message::Tx(tx.clone()));
    // The sender is not told about its own transaction.
    assert!(sender.sync(7).await.is_empty());
    assert!(net.mempool_contains(&tx.txid()));
    net.shutdown().await;
}

#[tokio::test]
async fn announced_transaction_is_requested_by_getdata() {
    let net = SimNet::start(SimNetConfig::default().nodes(1))
        .await
        .unwrap();
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    let tx = sample_tx(2);
    c.send(&Message::Inv(vec![InvVect::tx(tx.txid())])).await;
    assert_eq!(
        c.recv().await,
        Message::GetData(vec![InvVect::tx(tx.txid())])
    );
    c.send(&Message::Tx(tx.clone())).await;
    assert!(c.sync(8).await.is_empty());
    assert!(net.mempool_contains(&tx.txid()));
    net.shutdown().await;
}

#[tokio::test]
async fn getdata_for_an_unknown_transaction_gets_notfound() {
    let net = SimNet::start(SimNetConfig::default().nodes(1))
        .await
        .unwrap();
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    let missing = InvVect::tx(sample_tx(3).txid());
    c.send(&Message::GetData(vec![missing])).await;
    assert_eq!(c.recv().await, Message::NotFound(vec![missing]));
    net.shutdown().await;
}

#[tokio::test]
async fn injected_transaction_is_announced_by_every_node_and_mined_into_the_next_block() {
    let net = SimNet::start(SimNetConfig::default().nodes(4))
        .await
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = Client::connect(net.node(i).address()).await;
        c.handshake().await;
        clients.push(c);
    }
    let tx = sample_tx(4);
    assert!(net.inject_tx(2, tx.clone()).unwrap());
    assert!(!net.inject_tx(2, tx.clone()).unwrap(), "already pooled");
    for c in &mut clients {
        assert_eq!(c.recv().await, Message::Inv(vec![InvVect::tx(tx.txid())]));
    }
    let block = net.mine_block();
    assert_eq!(block.transactions.len(), 2);
    assert_eq!(block.transactions[1], tx);
    block.check_merkle_root().unwrap();
    assert_eq!(net.mempool_len(), 0);
    assert!(net.inject_tx(9, tx).is_err());
    net.shutdown().await;
}

#[tokio::test]
async fn restarted_node_listens_on_the_same_port_again() {
    let net = SimNet::start(SimNetConfig::default().nodes(2))
        .await
        .unwrap();
    let addr = net.node(1).address();
    let mut c = Client::connect(addr).await;
    c.handshake().await;
    net.stop_node(1).await.unwrap();
    assert!(!net.node(1).is_running());
    assert!(
        c.closed_within(WAIT).await,
        "stopping closes live connections"
    );
    assert!(TcpStream::connect(addr).await.is_err(), "nothing listens");
    assert!(
        net.node(1).dial(addr).await.is_err(),
        "a stopped node cannot dial"
    );
    net.restart_node(1).await.unwrap();
    assert_eq!(net.node(1).address(), addr);
    let mut again = Client::connect(addr).await;
    assert_eq!(again.handshake().await.len(), 7);
    net.node(1)
        .wait_for_stats(WAIT, |s| s.handshakes == 2 && s.active_connections == 1)
        .await
        .expect("counters survive the restart");
    // Restarting a running node works too (it is stopped first).
    net.restart_node(1).await.unwrap();
    assert!(again.closed_within(WAIT).await);
    let mut third = Client::connect(addr).await;
    assert_eq!(third.handshake().await.len(), 7);
    net.shutdown().await;
}

#[tokio::test]
async fn fixed_base_port_gives_consecutive_ports() {
    // Find a free range by binding a probe, then ask for the ports after it.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = probe.local_addr().unwrap().port().wrapping_add(1);
    drop(probe);
    let Ok(net) = SimNet::start(SimNetConfig::default().nodes(3).base_port(base)).await else {
        // Another process took one of the ports meanwhile; nothing to check.
        return;
    };
    let ports: Vec<u16> = net.addresses().iter().map(SocketAddr::port).collect();
    assert_eq!(ports, [base, base + 1, base + 2]);
    net.shutdown().await;
}

#[tokio::test]
async fn counters_record_messages_by_command() {
    let net = SimNet::start(SimNetConfig::default().nodes(1))
        .await
        .unwrap();
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    c.sync(1).await;
    let stats = net
        .node(0)
        .wait_for_stats(WAIT, |s| s.sent("pong") == 1)
        .await
        .unwrap();
    for cmd in [
        "version",
        "verack",
        "protoconf",
        "authch",
        "sendheaders",
        "sendcmpct",
        "ping",
    ] {
        assert_eq!(stats.sent(cmd), 1, "{cmd}");
    }
    assert_eq!(stats.received("version"), 1);
    assert_eq!(stats.received("ping"), 1);
    assert_eq!(stats.active_connections, 1);
    drop(c);
    net.node(0)
        .wait_for_stats(WAIT, |s| s.active_connections == 0 && s.disconnects == 1)
        .await
        .unwrap();
    net.shutdown().await;
}
