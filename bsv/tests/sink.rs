//! The bus sink's pump against the simnet over loopback sockets, publishing into an in-memory
//! bus (a `BusSink` that stores by id and can be switched off): every transaction and block
//! once, retries while the bus is down with the held bytes within the budget, and a shutdown
//! that drains, or gives up after its timeout and says how much. Tokio's clock is paused: the
//! retry backoff and the drain timeout run in virtual time. The NATS implementation has its own
//! tests against a real server (nats/tests/jetstream.rs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bitcoinsv::bitcoin::Encode;
use bitcoinsv::p2p::sink::{
    Ack, BlockPayload, BusRecord, BusSink, Pump, PumpOptions, SinkError, Topic,
};
use bitcoinsv::p2p::{InMemoryPeerStore, Manager, ManagerConfig, Network};
use bitcoinsv_simnet::{sample_transaction, SimNet, SimNetConfig};

/// The bound on any wait, in virtual time.
const WAIT: Duration = Duration::from_secs(600);

/// A bus in memory: stores each id once, refuses everything while `down`.
#[derive(Default)]
struct MemoryBus {
    down: AtomicBool,
    stored: Mutex<HashMap<String, (Topic, usize)>>,
    blocks: Mutex<Vec<(String, Vec<u8>)>>,
    /// Blocks that came as a stream (read through `BlockSource::open`).
    streamed: Mutex<Vec<(String, Vec<u8>)>>,
}

#[async_trait]
impl BusSink for MemoryBus {
    async fn publish(&self, record: BusRecord) -> Result<Ack, SinkError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(SinkError::Unavailable {
                reason: "switched off".into(),
            });
        }
        if let BusRecord::Block {
            hash,
            payload: BlockPayload::Whole(b),
            ..
        } = &record
        {
            self.blocks
                .lock()
                .unwrap()
                .push((hash.to_string(), b.to_vec()));
        }
        if let BusRecord::Block {
            hash,
            payload: BlockPayload::Stream(source),
            ..
        } = &record
        {
            use tokio::io::AsyncReadExt;
            let mut bytes = Vec::new();
            source
                .open()
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| SinkError::Unavailable {
                    reason: e.to_string(),
                })?;
            self.streamed
                .lock()
                .unwrap()
                .push((hash.to_string(), bytes));
        }
        let Some(id) = record.dedup_id() else {
            return Ok(Ack::default());
        };
        let mut stored = self.stored.lock().unwrap();
        let entry = stored.entry(id).or_insert((record.topic(), 0));
        entry.1 += 1;
        Ok(Ack {
            duplicate: entry.1 > 1,
        })
    }
}

impl MemoryBus {
    fn ids(&self, topic: Topic) -> HashMap<String, usize> {
        self.stored
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (t, _))| *t == topic)
            .map(|(id, (_, n))| (id.clone(), *n))
            .collect()
    }
}

async fn setup(nodes: usize) -> (SimNet, Arc<Manager>) {
    setup_with(nodes, ManagerConfig::new(Network::Regtest)).await
}

async fn setup_with(nodes: usize, mut c: ManagerConfig) -> (SimNet, Arc<Manager>) {
    let net = SimNet::start(SimNetConfig::default().nodes(nodes).blocks(1))
        .await
        .unwrap();
    c.dns_seeds.clear();
    let manager = Manager::with_fixed_peers(c, Arc::new(InMemoryPeerStore::new()), net.addresses());
    manager.start().await.unwrap();
    manager.wait_for_connections(nodes, WAIT).await.unwrap();
    for n in net.nodes() {
        n.wait_for_stats(WAIT, |s| s.handshakes >= 1).await.unwrap();
    }
    (net, Arc::new(manager))
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_pump_publishes_each_transaction_and_block_once_with_its_tip() {
    let (net, manager) = setup(2).await;
    let bus = Arc::new(MemoryBus::default());
    let options = PumpOptions {
        from_height: Some(1),
        ..PumpOptions::default()
    };
    let pump = Pump::spawn(Arc::clone(&manager), bus.clone(), options);
    let txs: Vec<_> = (0..50u32).map(|n| sample_transaction(500 + n)).collect();
    for (i, tx) in txs.iter().enumerate() {
        net.inject_tx(i % 2, tx.clone()).unwrap();
    }
    wait_until(|| pump.stats().transactions >= 50).await;
    let block = net.mine_block();
    wait_until(|| pump.stats().blocks >= 2).await;
    let stats = pump.shutdown().await;
    assert_eq!(stats.unacknowledged, 0);

    let tx_ids = bus.ids(Topic::Tx);
    assert_eq!(tx_ids.len(), 50);
    assert!(tx_ids.values().all(|&n| n == 1));
    for tx in &txs {
        assert!(tx_ids.contains_key(&tx.txid().to_string()));
    }
    // Both blocks of the chain, the new one byte for byte, and the tip record.
    let blocks = bus.blocks.lock().unwrap().clone();
    assert_eq!(blocks.len(), 2, "heights 1 and 2");
    let (hash, bytes) = blocks.last().unwrap();
    assert_eq!(hash, &block.hash().to_string());
    assert_eq!(bytes, &block.to_vec());
    assert!(bus
        .ids(Topic::Tip)
        .contains_key(&format!("tip.{}", block.hash())));
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

/// A block above `[block_streaming] threshold` (lowered here so the simnet's blocks of a few
/// KiB count as large) is published as a stream the sink reads from the peer, never whole in
/// the pump; the bytes the bus reads are the block's.
#[tokio::test(start_paused = true)]
async fn a_block_above_the_streaming_threshold_is_published_as_a_stream_read_from_the_peer() {
    let mut c = ManagerConfig::new(Network::Regtest);
    c.block_streaming.threshold = 1024;
    let (net, manager) = setup_with(1, c).await;
    let bus = Arc::new(MemoryBus::default());
    let options = PumpOptions {
        from_height: Some(1),
        ..PumpOptions::default()
    };
    let pump = Pump::spawn(Arc::clone(&manager), bus.clone(), options);
    for n in 0..20u32 {
        net.inject_tx(0, sample_transaction(900 + n)).unwrap();
    }
    wait_until(|| pump.stats().transactions >= 20).await;
    let block = net.mine_block();
    assert!(block.to_vec().len() > 1024, "large enough to stream");
    wait_until(|| pump.stats().blocks >= 2).await;
    let stats = pump.shutdown().await;
    assert_eq!(stats.unacknowledged, 0);
    let streamed = bus.streamed.lock().unwrap().clone();
    let (hash, bytes) = streamed.last().expect("the new block came as a stream");
    assert_eq!(hash, &block.hash().to_string());
    assert_eq!(bytes, &block.to_vec());
    assert!(
        bus.blocks.lock().unwrap().iter().all(|(h, _)| h != hash),
        "never whole"
    );
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn while_the_bus_is_down_the_pump_holds_its_budget_retries_and_loses_nothing() {
    const BUDGET: usize = 8 * 1024;
    let (net, manager) = setup(1).await;
    let bus = Arc::new(MemoryBus::default());
    bus.down.store(true, Ordering::SeqCst);
    let options = PumpOptions {
        buffer_bytes: BUDGET,
        from_height: Some(1),
        ..PumpOptions::default()
    };
    let pump = Pump::spawn(Arc::clone(&manager), bus.clone(), options);
    for n in 0..200u32 {
        net.inject_tx(0, sample_transaction(2_000 + n)).unwrap();
    }
    wait_until(|| {
        let s = pump.stats();
        s.bus_unavailable && s.times_blocked >= 1 && s.retries >= 10
    })
    .await;
    let during = pump.stats();
    assert!(during.buffered_bytes <= BUDGET, "{during:?}");
    assert_eq!(during.transactions, 0);
    assert_eq!(
        manager.connection_count(),
        1,
        "the peer is slowed, not dropped"
    );

    bus.down.store(false, Ordering::SeqCst);
    wait_until(|| pump.stats().transactions >= 200).await;
    let stats = pump.shutdown().await;
    assert!(stats.max_buffered_bytes <= BUDGET, "{stats:?}");
    assert!(!stats.bus_unavailable);
    let ids = bus.ids(Topic::Tx);
    assert_eq!(ids.len(), 200);
    assert!(ids.values().all(|&n| n == 1));
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_with_the_bus_down_and_the_budget_spent_gives_up_after_the_drain_timeout_and_counts_the_rest(
) {
    let (net, manager) = setup(1).await;
    let bus = Arc::new(MemoryBus::default());
    bus.down.store(true, Ordering::SeqCst);
    // Transactions only, so the count held is exact.
    // A budget of about three transactions: the forwarder waits for room when shutdown comes.
    let options = PumpOptions {
        buffer_bytes: 1024,
        blocks: false,
        events: false,
        drain_timeout: Duration::from_secs(30),
        ..PumpOptions::default()
    };
    let pump = Pump::spawn(Arc::clone(&manager), bus.clone(), options);
    for n in 0..10u32 {
        net.inject_tx(0, sample_transaction(3_000 + n)).unwrap();
    }
    // The budget is spent and what it holds has been retried many times.
    wait_until(|| pump.stats().times_blocked >= 1 && pump.stats().retries >= 100).await;
    let started = tokio::time::Instant::now();
    let stats = pump.shutdown().await;
    assert!(started.elapsed() >= Duration::from_secs(30));
    // Every transaction taken from the stream is accounted for: none acknowledged, none lost
    // silently.
    assert_eq!(stats.unacknowledged, 10, "{stats:?}");
    assert_eq!(stats.buffered_bytes, 0);
    manager.shutdown().await.unwrap();
    net.shutdown().await;
}
