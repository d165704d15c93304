//! Downloading the simnet's chain as a library would: headers in 2000-header batches, blocks
//! by `getdata`, `getblocks` inventories; and announcements of newly mined blocks.

mod common;

use bitcoinsv::bitcoin::{BlockLocator, Hash, InvVect};
use bitcoinsv::p2p::Message;
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use common::*;

fn locator(hashes: Vec<Hash>) -> BlockLocator {
    BlockLocator {
        version: 70016,
        hashes,
        stop_hash: Hash::ZERO,
    }
}

#[tokio::test]
async fn chain_is_deterministic_for_a_seed() {
    let a = SimNet::start(SimNetConfig::default().nodes(1))
        .await
        .unwrap();
    let b = SimNet::start(SimNetConfig::default().nodes(1))
        .await
        .unwrap();
    let c = SimNet::start(SimNetConfig::default().nodes(1).seed(1))
        .await
        .unwrap();
    assert_eq!(a.chain().tip_height(), 200);
    assert_eq!(
        a.chain().hash_at(0).unwrap().to_string(),
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    );
    assert_eq!(
        a.chain().tip_hash().to_string(),
        "0d998b9ff8919fdc7fac6f573442d3334a39bb7a1a9ae5ec9f5302d1ffd18627"
    );
    assert_eq!(a.chain().tip_hash(), b.chain().tip_hash());
    assert_ne!(a.chain().tip_hash(), c.chain().tip_hash());
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn headers_download_returns_the_whole_chain_in_2000_header_batches() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(4500))
        .await
        .unwrap();
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    let genesis = net.chain().hash_at(0).unwrap();
    let mut tip = genesis;
    let mut batches = Vec::new();
    let mut height = 0u32;
    loop {
        c.send(&Message::GetHeaders(locator(vec![tip]))).await;
        let headers = loop {
            match c.recv().await {
                Message::Headers(h) => break h,
                Message::Ping(n) => c.send(&Message::Pong(n)).await,
                other => panic!("unexpected {other:?}"),
            }
        };
        batches.push(headers.len());
        for h in &headers {
            assert_eq!(h.prev_hash, tip, "headers link");
            assert!(h.check_proof_of_work());
            height += 1;
            tip = h.hash();
            assert_eq!(Some(tip), net.chain().hash_at(height));
        }
        if headers.len() < 2000 {
            break;
        }
    }
    assert_eq!(batches, [2000, 2000, 500]);
    assert_eq!(tip, net.chain().tip_hash());
    // Asking again from the tip gets an empty `headers`: the peer is up to date.
    c.send(&Message::GetHeaders(locator(vec![tip]))).await;
    assert_eq!(c.recv().await, Message::Headers(vec![]));
    net.shutdown().await;
}

#[tokio::test]
async fn getheaders_with_an_empty_locator_returns_just_the_stop_header() {
    let net = SimNet::start(SimNetConfig::default().nodes(1))
        .await
        .unwrap();
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    let stop = net.chain().hash_at(17).unwrap();
    c.send(&Message::GetHeaders(BlockLocator {
        version: 70016,
        hashes: vec![],
        stop_hash: stop,
    }))
    .await;
    assert_eq!(
        c.recv().await,
        Message::Headers(vec![net.chain().header_at(17).unwrap()])
    );
    // An unknown stop hash with an empty locator is ignored.
    c.send(&Message::GetHeaders(BlockLocator {
        version: 70016,
        hashes: vec![],
        stop_hash: Hash([7; 32]),
    }))
    .await;
    assert!(c.sync(3).await.is_empty());
    net.shutdown().await;
}

#[tokio::test]
async fn blocks_arrive_in_request_order_with_valid_merkle_roots_and_unknown_ones_skipped() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(40).txs_per_block(5))
        .await
        .unwrap();
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    let mut wanted: Vec<Hash> = (1..=30)
        .rev()
        .map(|h| net.chain().hash_at(h).unwrap())
        .collect();
    let mut request: Vec<InvVect> = wanted.iter().map(|h| InvVect::block(*h)).collect();
    request.insert(10, InvVect::block(Hash([0xab; 32])));
    c.send(&Message::GetData(request)).await;
    for expected in wanted.drain(..) {
        let Message::Block(b) = c.recv().await else {
            panic!("expected block")
        };
        assert_eq!(b.hash(), expected);
        b.check_merkle_root().unwrap();
        assert!(b.header.check_proof_of_work());
        assert_eq!(b.transactions.len(), 6);
    }
    // The unknown hash produced nothing at all (no `notfound` for blocks).
    assert!(c.sync(4).await.is_empty());
    net.shutdown().await;
}

#[tokio::test]
async fn getblocks_returns_500_block_invs_and_the_last_block_brings_the_tip() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(600))
        .await
        .unwrap();
    let mut c = Client::connect(net.node(0).address()).await;
    c.handshake().await;
    c.send(&Message::GetBlocks(locator(vec![net
        .chain()
        .hash_at(0)
        .unwrap()])))
        .await;
    let Message::Inv(inv) = c.recv().await else {
        panic!("expected inv")
    };
    assert_eq!(inv.len(), 500);
    assert_eq!(inv[0], InvVect::block(net.chain().hash_at(1).unwrap()));
    let last = inv[499];
    assert_eq!(last, InvVect::block(net.chain().hash_at(500).unwrap()));
    c.send(&Message::GetData(vec![last])).await;
    assert!(matches!(c.recv().await, Message::Block(b) if b.hash() == last.hash));
    assert_eq!(
        c.recv().await,
        Message::Inv(vec![InvVect::block(net.chain().tip_hash())])
    );
    net.shutdown().await;
}

#[tokio::test]
async fn mined_block_is_announced_by_headers_or_inv_as_the_peer_asked() {
    let net = SimNet::start(SimNetConfig::default().nodes(2))
        .await
        .unwrap();
    let mut with_headers = Client::connect(net.node(0).address()).await;
    with_headers.handshake().await;
    with_headers.send(&Message::SendHeaders).await;
    assert!(with_headers.sync(5).await.is_empty());
    let mut with_inv = Client::connect(net.node(1).address()).await;
    with_inv.handshake().await;
    let block = net.mine_block();
    assert_eq!(net.chain().tip_height(), 201);
    assert_eq!(net.chain().tip_hash(), block.hash());
    assert_eq!(block.header.prev_hash, net.chain().hash_at(200).unwrap());
    assert_eq!(
        with_headers.recv().await,
        Message::Headers(vec![block.header])
    );
    assert_eq!(
        with_inv.recv().await,
        Message::Inv(vec![InvVect::block(block.hash())])
    );
    // The announced block is served.
    with_inv
        .send(&Message::GetData(vec![InvVect::block(block.hash())]))
        .await;
    assert!(matches!(with_inv.recv().await, Message::Block(b) if b == *block));
    net.shutdown().await;
}

#[tokio::test]
async fn a_new_peer_sees_the_mined_height_in_version() {
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(10))
        .await
        .unwrap();
    net.mine_block();
    net.mine_block();
    let mut c = Client::connect(net.node(0).address()).await;
    let seen = c.handshake().await;
    assert!(matches!(&seen[0], Message::Version(v) if v.start_height == 12));
    net.shutdown().await;
}
