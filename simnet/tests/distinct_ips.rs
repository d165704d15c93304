//! With `distinct_ips`, every node has its own loopback address (so one can be banned alone),
//! nodes can share one port as real nodes share the default port, and a node dials from its
//! own address.

use std::collections::HashSet;
use std::time::Duration;

use bitcoinsv_simnet::{SimNet, SimNetConfig};
use tokio::net::TcpListener;

#[tokio::test]
async fn nodes_get_their_own_loopback_address_and_can_share_one_port() {
    let probe = std::net::TcpListener::bind("127.1.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(3)
            .blocks(1)
            .distinct_ips(true)
            .base_port(port),
    )
    .await
    .unwrap();
    let addrs = net.addresses();
    let ips: HashSet<_> = addrs.iter().map(|a| a.ip()).collect();
    assert_eq!(ips.len(), 3);
    assert!(addrs.iter().all(|a| a.port() == port));
    assert_eq!(addrs[0].ip().to_string(), "127.1.0.1");
    for a in &addrs {
        tokio::net::TcpStream::connect(a).await.unwrap();
    }
    net.shutdown().await;
}

#[tokio::test]
async fn a_node_dials_from_its_own_address() {
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(2)
            .blocks(1)
            .distinct_ips(true),
    )
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    net.node(1)
        .dial(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (_, from) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from.ip(), net.addresses()[1].ip());
    net.shutdown().await;
}
