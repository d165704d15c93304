//! The NATS bridge against a real `nats-server` (JetStream, loopback, temporary store) and the
//! simnet over loopback sockets: two bridges publishing into one stream store every block and
//! transaction once, through a bridge's crash and restart; a NATS restart loses nothing while
//! the bridge holds its byte budget and slows, not drops, its peers; a 256 MiB block reaches
//! the Object Store and checks out from a consumer; a broadcast request over NATS reaches the
//! simnet's mempool and is answered with the report. tests/common/mod.rs has the contract with
//! `.ci/run` (BSV_TEST_NATS_SERVER, markers). Real time: the server is an external process.

mod common;

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::{Encode, Hash, Network};
use bitcoinsv::p2p::codec::{BlockEvent, BlockStreamConfig, BlockStreamDecoder};
use bitcoinsv::p2p::sink::{BlockPayload, BlockSource, BusRecord, BusSink, PumpOptions};
use bitcoinsv::p2p::ControlEvent;
use bitcoinsv_nats::{
    serve_broadcasts, BlockRef, BroadcastReply, NatsSink, NatsSinkConfig, HEADER_BLOCK_BODY,
};
use bitcoinsv_simnet::{sample_transaction, SimNet, SimNetConfig, SyntheticBlock};
use common::{mark_ran, nats_server_or_skip, wait_until, Bridge, Consumer, NatsServer};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The bound on any wait.
const WAIT: Duration = Duration::from_secs(60);

/// Every block from height 1, so the expected set does not depend on when a bridge synced.
fn from_genesis() -> PumpOptions {
    PumpOptions {
        from_height: Some(1),
        ..PumpOptions::default()
    }
}

/// Waits until every simnet node has completed `n` handshakes (a node announces only to peers
/// it counts as connected).
async fn handshakes(net: &SimNet, n: u64) {
    for node in net.nodes() {
        node.wait_for_stats(WAIT, |s| s.handshakes >= n)
            .await
            .expect("handshakes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_store_every_block_and_transaction_once_through_a_bridge_crash() {
    const NAME: &str = "two_bridges_store_every_block_and_transaction_once_through_a_bridge_crash";
    let Some(bin) = nats_server_or_skip(NAME) else {
        return;
    };
    let nats = NatsServer::start(bin).await;
    let url = nats.url();
    let net = SimNet::start(SimNetConfig::default().nodes(2).blocks(1))
        .await
        .expect("simnet");
    let a = Bridge::start(&url, "a", net.addresses(), from_genesis()).await;
    let b = Bridge::start(&url, "b", net.addresses(), from_genesis()).await;
    handshakes(&net, 2).await;
    let mut consumer = Consumer::durable(&url, "indexer").await;

    let txs: Vec<_> = (0..1000u32).map(sample_transaction).collect();
    let mut b = Some(b);
    for (i, tx) in txs.iter().enumerate() {
        assert!(net.inject_tx(i % 2, tx.clone()).expect("injected"));
        if i % 100 == 99 {
            // Paced, so the crash falls mid-stream; a block every 250 transactions.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if i % 250 == 249 {
            // A mined transaction leaves the simnet's pool, and a node answers a later
            // `getdata` for it with `notfound`: mine once bridge a has what was announced.
            let want = i as u64 + 1;
            wait_until("bridge a has the transactions so far", WAIT, || {
                a.pump.stats().transactions >= want
            })
            .await;
            net.mine_block();
        }
        if i == 399 {
            b.take().expect("b runs").kill().await;
        }
        if i == 699 {
            b = Some(Bridge::start(&url, "b", net.addresses(), from_genesis()).await);
            handshakes(&net, 3).await;
        }
    }
    let tip = net.chain().tip_height();
    let blocks: HashSet<String> = (1..=tip)
        .map(|h| {
            net.chain()
                .hash_at(h)
                .expect("block on the chain")
                .to_string()
        })
        .collect();
    let txids: HashSet<String> = txs.iter().map(|t| t.txid().to_string()).collect();

    consumer
        .until("every block and transaction", WAIT, |r| {
            let seen: HashSet<&str> = r.iter().filter_map(|m| m.msg_id.as_deref()).collect();
            txids.iter().all(|t| seen.contains(t.as_str()))
                && blocks.iter().all(|h| seen.contains(h.as_str()))
        })
        .await;
    // Both bridges drain; then everything the stream holds has been read.
    let stats_a = a.pump.shutdown().await;
    let stats_b = b.expect("b restarted").pump.shutdown().await;
    consumer.drain().await;

    let tx_counts = consumer.counts("bsv.regtest.tx");
    let block_counts = consumer.counts("bsv.regtest.block");
    let tx_ids: HashSet<String> = tx_counts.keys().cloned().collect();
    let block_ids: HashSet<String> = block_counts.keys().cloned().collect();
    let dup_tx = tx_counts.values().filter(|&&n| n > 1).count();
    let dup_blocks = block_counts.values().filter(|&&n| n > 1).count();
    eprintln!(
        "consumer: {} blocks, {} transactions, {} duplicate blocks, {} duplicate transactions; \
         bridge a: {stats_a:?}; bridge b (restarted): {stats_b:?}",
        block_ids.len(),
        tx_ids.len(),
        dup_blocks,
        dup_tx
    );
    assert_eq!(tx_ids, txids, "every transaction, nothing else");
    assert_eq!(block_ids, blocks, "every block of the chain");
    assert_eq!(dup_tx, 0, "no transaction twice");
    assert_eq!(dup_blocks, 0, "no block twice");
    assert_eq!(stats_a.unacknowledged + stats_b.unacknowledged, 0);
    assert_eq!(stats_a.refused + stats_b.refused, 0);
    // Both bridges saw the blocks: the second publish of each was recognised as a duplicate.
    assert!(
        stats_a.duplicates + stats_b.duplicates > 0,
        "{stats_a:?} {stats_b:?}"
    );
    mark_ran(NAME);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_loses_nothing_and_slows_the_peers_within_the_budget() {
    const NAME: &str = "a_nats_restart_loses_nothing_and_slows_the_peers_within_the_budget";
    let Some(bin) = nats_server_or_skip(NAME) else {
        return;
    };
    const BUDGET: usize = 32 * 1024;
    let mut nats = NatsServer::start(bin).await;
    let url = nats.url();
    let net = SimNet::start(SimNetConfig::default().nodes(2).blocks(1))
        .await
        .expect("simnet");
    let options = PumpOptions {
        buffer_bytes: BUDGET,
        max_in_flight: 32,
        from_height: Some(1),
        ..PumpOptions::default()
    };
    let bridge = Bridge::start(&url, "a", net.addresses(), options).await;
    handshakes(&net, 1).await;
    let mut events = bridge.manager.subscribe_control_events();

    let txs: Vec<_> = (0..600u32)
        .map(|n| sample_transaction(10_000 + n))
        .collect();
    for tx in &txs[..200] {
        net.inject_tx(0, tx.clone()).expect("injected");
    }
    wait_until("200 transactions acknowledged", WAIT, || {
        bridge.pump.stats().transactions >= 200
    })
    .await;

    nats.stop();
    for tx in &txs[200..] {
        net.inject_tx(1, tx.clone()).expect("injected");
    }
    wait_until("the bridge notices and fills its budget", WAIT, || {
        let s = bridge.pump.stats();
        s.bus_unavailable && s.times_blocked >= 1
    })
    .await;
    let during = bridge.pump.stats();
    assert!(during.buffered_bytes <= BUDGET, "{during:?}");
    nats.restart().await;
    wait_until(
        "every transaction acknowledged after the restart",
        WAIT,
        || bridge.pump.stats().transactions >= 600,
    )
    .await;
    // Mined only now: a mined transaction leaves the simnet's pool (`notfound` to a late
    // `getdata`), and while the budget was spent the stream asked for nothing.
    net.mine_block();

    let mut consumer = Consumer::durable(&url, "indexer").await;
    let txids: HashSet<String> = txs.iter().map(|t| t.txid().to_string()).collect();
    let tip = net.chain().tip_height();
    consumer
        .until("every transaction and block after the restart", WAIT, |r| {
            let tx: HashSet<&str> = r
                .iter()
                .filter(|m| m.subject == "bsv.regtest.tx")
                .filter_map(|m| m.msg_id.as_deref())
                .collect();
            let blocks = r
                .iter()
                .filter(|m| m.subject == "bsv.regtest.block")
                .count();
            tx.len() == txids.len() && blocks as u32 >= tip
        })
        .await;
    let stats = bridge.pump.shutdown().await;
    consumer.drain().await;
    let counts = consumer.counts("bsv.regtest.tx");
    eprintln!("after a NATS restart: {stats:?}");
    assert_eq!(
        counts.keys().cloned().collect::<HashSet<_>>(),
        txids,
        "nothing lost"
    );
    assert!(counts.values().all(|&n| n == 1), "nothing twice");
    assert!(stats.retries > 0, "{stats:?}");
    assert!(stats.max_buffered_bytes <= BUDGET, "{stats:?}");
    assert_eq!(stats.unacknowledged + stats.refused, 0, "{stats:?}");
    // Slowed, not dropped: no connection ended while NATS was away.
    assert_eq!(bridge.manager.connection_count(), 2);
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, ControlEvent::ConnectionLost { .. }),
            "a peer was dropped: {e:?}"
        );
    }
    mark_ran(NAME);
    let _ = bridge.manager.shutdown().await;
    net.shutdown().await;
}

/// A `SyntheticBlock` as a block source: generated again on every read, never held.
#[derive(Debug)]
struct Synthetic(SyntheticBlock);

impl BlockSource for Synthetic {
    fn hash(&self) -> Hash {
        self.0.hash()
    }
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn open(&self) -> Pin<Box<dyn AsyncRead + Send + '_>> {
        Box::pin(self.0.reader())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_block_goes_to_the_object_store_and_its_hash_checks_out() {
    const NAME: &str = "a_256_mib_block_goes_to_the_object_store_and_its_hash_checks_out";
    let Some(bin) = nats_server_or_skip(NAME) else {
        return;
    };
    const SIZE: u64 = 256 * 1024 * 1024;
    let nats = NatsServer::start(bin).await;
    let sink = NatsSink::connect(&nats.url(), NatsSinkConfig::new(Network::Regtest))
        .await
        .expect("sink");
    let block = SyntheticBlock::new(7, Hash::default(), SIZE, 1024 * 1024 + 17);
    let hash = block.hash();
    let source = Arc::new(Synthetic(block));
    let record = BusRecord::Block {
        hash,
        height: 1,
        payload: BlockPayload::Stream(source),
    };
    let ack = sink.publish(record.clone()).await.expect("published");
    assert!(!ack.duplicate);
    // A second bridge publishing the same block: the object is there, the message a duplicate.
    assert!(
        sink.publish(record)
            .await
            .expect("published again")
            .duplicate
    );

    let mut consumer = Consumer::durable(&nats.url(), "indexer").await;
    consumer
        .until("the block's announcement", WAIT, |r| !r.is_empty())
        .await;
    consumer.drain().await;
    assert_eq!(consumer.received.len(), 1, "one announcement");
    let m = &consumer.received[0];
    assert_eq!(m.subject, "bsv.regtest.block");
    assert_eq!(
        m.msg_id.as_deref(),
        Some(hash.to_string().as_str()),
        "{:?}",
        m.headers
    );
    assert_eq!(
        m.headers.get(HEADER_BLOCK_BODY).map(|v| v.as_str()),
        Some("object")
    );
    let reference: BlockRef = serde_json::from_slice(&m.payload).expect("a block reference");
    assert_eq!(reference.size, SIZE);

    // The consumer's side: read the object, decode it as it streams, check header and merkle.
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let js = async_nats::jetstream::new(client);
    let bucket = js
        .get_object_store(&reference.bucket)
        .await
        .expect("bucket");
    let mut object = bucket.get(&reference.object).await.expect("object");
    let mut decoder = BlockStreamDecoder::new(SIZE, None, BlockStreamConfig::txid_only());
    let mut buf = vec![0u8; 1024 * 1024];
    let (mut read, mut header_hash, mut merkle_ok) = (0u64, None, false);
    loop {
        let n = object.read(&mut buf).await.expect("object read");
        if n == 0 {
            break;
        }
        read += n as u64;
        decoder.feed(&buf[..n]).expect("a valid block");
        while let Some(event) = decoder.next_event() {
            match event {
                BlockEvent::Header(h) => header_hash = Some(h.hash()),
                BlockEvent::End(end) => merkle_ok = end.merkle_matches(),
                _ => {}
            }
        }
    }
    assert_eq!(read, SIZE);
    assert_eq!(
        header_hash.map(|h| h.to_string()),
        Some(reference.hash.clone())
    );
    assert_eq!(reference.hash, hash.to_string());
    assert!(
        merkle_ok,
        "the transactions hash to the header's merkle root"
    );
    mark_ran(NAME);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_request_over_nats_reaches_the_mempool_and_is_answered_with_the_report() {
    const NAME: &str =
        "a_broadcast_request_over_nats_reaches_the_mempool_and_is_answered_with_the_report";
    let Some(bin) = nats_server_or_skip(NAME) else {
        return;
    };
    let nats = NatsServer::start(bin).await;
    let net = SimNet::start(SimNetConfig::default().nodes(2).blocks(1))
        .await
        .expect("simnet");
    let manager = common::manager(net.addresses()).await;
    handshakes(&net, 1).await;
    let sink = NatsSink::connect(&nats.url(), NatsSinkConfig::new(Network::Regtest))
        .await
        .expect("sink");
    let responder = serve_broadcasts(
        sink.client().clone(),
        Arc::clone(&manager),
        Network::Regtest,
    )
    .await
    .expect("responder");

    let client = async_nats::connect(nats.url()).await.expect("connects");
    let tx = sample_transaction(77_777);
    let request = async_nats::Request::new()
        .payload(tx.to_vec().into())
        .timeout(Some(WAIT));
    let answer = client
        .send_request("bsv.regtest.broadcast", request)
        .await
        .expect("answered");
    let reply: BroadcastReply = serde_json::from_slice(&answer.payload).expect("JSON report");
    assert_eq!(reply.error, None, "{reply:?}");
    assert_eq!(reply.txid, Some(tx.txid().to_string()));
    assert_eq!(reply.peers.len(), 2, "{reply:?}");
    assert!(reply.peers.iter().any(|p| p.requested), "{reply:?}");
    assert!(net.mempool_contains(&tx.txid()));

    // Not a transaction: answered with an error, nothing broadcast.
    let answer = client
        .request("bsv.regtest.broadcast", "not a transaction".into())
        .await
        .expect("answered");
    let reply: BroadcastReply = serde_json::from_slice(&answer.payload).expect("JSON");
    assert!(reply.error.is_some(), "{reply:?}");
    assert!(reply.peers.is_empty());
    mark_ran(NAME);
    responder.abort();
    let _ = manager.shutdown().await;
    net.shutdown().await;
}

/// Runs `regtest.sh COMMAND DIR ARGS...` against the official node of the real-node suite.
fn regtest(command: &str, args: &[&str]) -> String {
    let sh = std::env::var("BSV_REGTEST_SH").expect("BSV_REGTEST_SH");
    let dir = std::env::var("BSV_TEST_NODE_DIR").expect("BSV_TEST_NODE_DIR");
    let out = std::process::Command::new(sh)
        .arg(command)
        .arg(dir)
        .args(args)
        .output()
        .expect("regtest.sh runs");
    assert!(
        out.status.success(),
        "regtest.sh {command} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A block height whose 50 BSV coinbase is mature and unspent (mempool included), for
/// `regtest.sh tx DIR K` (as the real-node suite's own broadcast test chooses it).
fn spendable_coinbase_height() -> u64 {
    let height: u64 = regtest("cli", &["getblockcount"])
        .parse()
        .expect("a height");
    let mature = (height + 1).saturating_sub(100).min(149);
    for k in (1..=mature).rev() {
        let hash = regtest("cli", &["getblockhash", &k.to_string()]);
        let block: serde_json::Value =
            serde_json::from_str(&regtest("cli", &["getblock", &hash])).expect("JSON");
        let coinbase = block["tx"][0].as_str().expect("a coinbase").to_string();
        if !regtest("cli", &["gettxout", &coinbase, "0"]).is_empty() {
            return k;
        }
    }
    panic!("no unspent mature coinbase below height 150 on the node");
}

/// The same request against the official node (bitcoin-sv 1.2.2) when the real-node suite's
/// variables are set (`.ci/run` sets them): a spendable transaction sent as a NATS request is
/// broadcast by the bridge's manager, the node asks for it, and it is in the node's mempool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_request_over_nats_reaches_the_official_node_s_mempool() {
    const NAME: &str = "a_broadcast_request_over_nats_reaches_the_official_node_s_mempool";
    let Some(bin) = nats_server_or_skip(NAME) else {
        return;
    };
    let Some(node) = std::env::var("BSV_TEST_NODE")
        .ok()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
    else {
        // No marker: `.ci/run`, which always starts the node, fails on the missing one.
        eprintln!("SKIPPED: {NAME}: BSV_TEST_NODE (the official node's P2P address) is not set");
        return;
    };
    let nats = NatsServer::start(bin).await;
    let manager = common::manager(vec![node]).await;
    let sink = NatsSink::connect(&nats.url(), NatsSinkConfig::new(Network::Regtest))
        .await
        .expect("sink");
    let responder = serve_broadcasts(
        sink.client().clone(),
        Arc::clone(&manager),
        Network::Regtest,
    )
    .await
    .expect("responder");
    let k = spendable_coinbase_height();
    let raw = regtest("tx", &[&k.to_string()]);
    let bytes = hex::decode(&raw).expect("hex");
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let request = async_nats::Request::new()
        .payload(bytes.into())
        .timeout(Some(WAIT));
    let answer = client
        .send_request("bsv.regtest.broadcast", request)
        .await
        .expect("answered");
    let reply: BroadcastReply = serde_json::from_slice(&answer.payload).expect("JSON report");
    assert_eq!(reply.error, None, "{reply:?}");
    assert_eq!(reply.peers.len(), 1, "{reply:?}");
    assert!(reply.peers[0].requested, "the node asked for it: {reply:?}");
    let txid = reply.txid.clone().expect("a txid");
    let mempool: serde_json::Value =
        serde_json::from_str(&regtest("cli", &["getrawmempool"])).expect("JSON");
    assert!(
        mempool
            .as_array()
            .expect("an array")
            .iter()
            .any(|t| t == &serde_json::Value::String(txid.clone())),
        "{txid} not in the node's mempool: {mempool}"
    );
    mark_ran(NAME);
    responder.abort();
    let _ = manager.shutdown().await;
}
