//! The pump: follows a manager's services and publishes what they see into a [`BusSink`].
//!
//! Three producer tasks turn the services' streams into records: the chain follower
//! (`HeaderChain::subscribe`: a [`BusRecord::Tip`] per new tip, a [`BusRecord::Reorg`] per
//! reorganisation, and each new block of the best chain fetched with `Manager::get_block`,
//! by height, so a lagging subscription loses no block), the transaction forwarder
//! (`Manager::subscribe_transactions`, lossless) and the event forwarder
//! (`Manager::subscribe_control_events`). Each record takes its bytes from a budget (a
//! semaphore of [`PumpOptions::buffer_bytes`] permits) before it is queued and gives them back
//! when the bus acknowledged it. With the budget spent a producer waits: the transaction
//! forwarder stops reading, the stream's queue fills, and the manager stops requesting
//! transactions from peers until room frees (its back-pressure, docs/GUIDE.md). One publisher
//! task runs up to [`PumpOptions::max_in_flight`] publishes at once; a publish the bus could
//! not take is tried again with backoff, under the same id, until it is acknowledged.
//!
//! Shutdown drains: the producers stop taking input (the transaction forwarder first takes
//! what its queue already holds), and the pump waits until everything queued is acknowledged
//! or [`PumpOptions::drain_timeout`] passes, after which the rest is counted in
//! [`SinkStats::unacknowledged`] and logged: never dropped silently.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{BlockPayload, BusRecord, BusSink};
use crate::p2p::limits::{
    DEFAULT_SINK_BUFFER_BYTES, DEFAULT_SINK_DRAIN_TIMEOUT, DEFAULT_SINK_MAX_IN_FLIGHT,
    DEFAULT_SINK_SYNC_TIMEOUT, DEFAULT_SINK_TX_QUEUE, SINK_BLOCK_FETCH_ATTEMPTS,
    SINK_RETRY_INITIAL, SINK_RETRY_MAX,
};
use crate::p2p::text::printable;
use crate::p2p::{BlockPart, BlockStreamMode, ChainEvent, ControlEvent, Manager};

/// How a [`Pump`] runs.
#[derive(Clone, Debug)]
pub struct PumpOptions {
    /// Bytes of records held unacknowledged at most (see the module doc).
    pub buffer_bytes: usize,
    /// Publishes awaiting acknowledgement at once.
    pub max_in_flight: usize,
    /// Room of the transaction-stream subscription.
    pub tx_queue: usize,
    /// Publish tips, reorganisations and blocks.
    pub blocks: bool,
    /// Publish the transaction stream.
    pub transactions: bool,
    /// Publish control events.
    pub events: bool,
    /// The first height whose block is published; `None`: the block after the tip the header
    /// chain has once synced (or after [`PumpOptions::sync_timeout`]).
    pub from_height: Option<u32>,
    /// How long to wait for the header chain to sync before following tips.
    pub sync_timeout: Duration,
    /// How long shutdown waits for in-flight records to be acknowledged.
    pub drain_timeout: Duration,
}

impl Default for PumpOptions {
    fn default() -> Self {
        PumpOptions {
            buffer_bytes: DEFAULT_SINK_BUFFER_BYTES,
            max_in_flight: DEFAULT_SINK_MAX_IN_FLIGHT,
            tx_queue: DEFAULT_SINK_TX_QUEUE,
            blocks: true,
            transactions: true,
            events: true,
            from_height: None,
            sync_timeout: DEFAULT_SINK_SYNC_TIMEOUT,
            drain_timeout: DEFAULT_SINK_DRAIN_TIMEOUT,
        }
    }
}

/// What a pump has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Records the bus acknowledged as new.
    pub published: u64,
    /// Records the bus acknowledged as already held (published by another listener or try).
    pub duplicates: u64,
    /// Blocks acknowledged (new or duplicate).
    pub blocks: u64,
    /// Transactions acknowledged (new or duplicate).
    pub transactions: u64,
    /// Publishes tried again after the bus was unavailable.
    pub retries: u64,
    /// Records the bus refused (logged with their id).
    pub refused: u64,
    /// Blocks of the best chain that could not be fetched from any peer (logged).
    pub blocks_missed: u64,
    /// Control events lost because the pump fell behind their broadcast channel.
    pub events_lagged: u64,
    /// Records still unacknowledged when a shutdown's drain timed out (logged).
    pub unacknowledged: u64,
    /// Times the byte budget was spent and intake paused (the peers were slowed).
    pub times_blocked: u64,
    /// Bytes held unacknowledged now.
    pub buffered_bytes: usize,
    /// The most bytes held unacknowledged at once (never above the budget).
    pub max_buffered_bytes: usize,
    /// Whether the bus is unreachable now (a publish is being retried).
    pub bus_unavailable: bool,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    duplicates: AtomicU64,
    blocks: AtomicU64,
    transactions: AtomicU64,
    retries: AtomicU64,
    refused: AtomicU64,
    blocks_missed: AtomicU64,
    events_lagged: AtomicU64,
    unacknowledged: AtomicU64,
    times_blocked: AtomicU64,
    buffered_bytes: AtomicUsize,
    max_buffered_bytes: AtomicUsize,
    bus_unavailable: AtomicBool,
    blocked: AtomicBool,
}

impl Counters {
    fn snapshot(&self) -> SinkStats {
        SinkStats {
            published: self.published.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            blocks: self.blocks.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            blocks_missed: self.blocks_missed.load(Ordering::Relaxed),
            events_lagged: self.events_lagged.load(Ordering::Relaxed),
            unacknowledged: self.unacknowledged.load(Ordering::Relaxed),
            times_blocked: self.times_blocked.load(Ordering::Relaxed),
            buffered_bytes: self.buffered_bytes.load(Ordering::Relaxed),
            max_buffered_bytes: self.max_buffered_bytes.load(Ordering::Relaxed),
            bus_unavailable: self.bus_unavailable.load(Ordering::Relaxed),
        }
    }
}

/// A record with its share of the byte budget, returned when it is dropped.
struct Work {
    record: BusRecord,
    _permit: OwnedSemaphorePermit,
    lease: Lease,
}

/// Counts a record's bytes in [`SinkStats::buffered_bytes`] until dropped.
struct Lease {
    bytes: usize,
    counters: Arc<Counters>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.counters
            .buffered_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Takes budget for records and queues them for the publisher.
#[derive(Clone)]
struct Intake {
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    // Unbounded in count: the byte budget is the bound.
    queue: mpsc::UnboundedSender<Work>,
    counters: Arc<Counters>,
}

impl Intake {
    /// Queues `record`, waiting while the budget is spent. `false` once the publisher is gone.
    async fn push(&self, record: BusRecord) -> bool {
        // A record larger than the whole budget takes all of it (it still goes through, alone).
        let bytes = record.buffered_bytes().min(self.budget_bytes).max(1);
        let permit = match Arc::clone(&self.budget).try_acquire_many_owned(bytes as u32) {
            Ok(p) => p,
            Err(_) => {
                if !self.counters.blocked.swap(true, Ordering::Relaxed) {
                    let n = self.counters.times_blocked.fetch_add(1, Ordering::Relaxed);
                    // Warned once per outage (and on the first pause); a bus catching up
                    // pauses and resumes many times a second, which is debug detail.
                    if n == 0 || self.counters.bus_unavailable.load(Ordering::Relaxed) {
                        warn!(
                            buffered_bytes = self.counters.buffered_bytes.load(Ordering::Relaxed),
                            budget_bytes = self.budget_bytes,
                            "bus sink buffer full: intake paused, peers are slowed until the bus \
                         acknowledges"
                        );
                    } else {
                        debug!(budget_bytes = self.budget_bytes, "bus sink buffer full");
                    }
                }
                match Arc::clone(&self.budget)
                    .acquire_many_owned(bytes as u32)
                    .await
                {
                    Ok(p) => p,
                    Err(_) => return false,
                }
            }
        };
        if self.counters.blocked.swap(false, Ordering::Relaxed) {
            debug!("bus sink buffer has room again: intake resumed");
        }
        let now = self
            .counters
            .buffered_bytes
            .fetch_add(bytes, Ordering::Relaxed)
            + bytes;
        self.counters
            .max_buffered_bytes
            .fetch_max(now, Ordering::Relaxed);
        let lease = Lease {
            bytes,
            counters: Arc::clone(&self.counters),
        };
        self.queue
            .send(Work {
                record,
                _permit: permit,
                lease,
            })
            .is_ok()
    }
}

/// A running pump (see the module doc). Dropping it without [`Pump::shutdown`] leaves it
/// running until the runtime ends; [`Pump::abort`] stops it at once.
#[derive(Debug)]
pub struct Pump {
    counters: Arc<Counters>,
    stop_intake: CancellationToken,
    give_up: CancellationToken,
    drain_timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
    publisher: JoinHandle<()>,
}

impl Pump {
    /// Starts publishing what `manager`'s services see into `sink`.
    pub fn spawn(manager: Arc<Manager>, sink: Arc<dyn BusSink>, options: PumpOptions) -> Pump {
        let counters = Arc::new(Counters::default());
        let budget_bytes = options.buffer_bytes.clamp(1, Semaphore::MAX_PERMITS);
        // Permits are u32 per acquire: the budget is capped so one record can take all of it.
        let budget_bytes = budget_bytes.min(u32::MAX as usize);
        let (queue, work) = mpsc::unbounded_channel();
        let intake = Intake {
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            queue,
            counters: Arc::clone(&counters),
        };
        let stop_intake = CancellationToken::new();
        let give_up = CancellationToken::new();
        let mut tasks = Vec::new();
        if options.transactions {
            let rx = manager.subscribe_transactions(options.tx_queue.max(1));
            tasks.push(tokio::spawn(forward_transactions(
                rx,
                intake.clone(),
                stop_intake.clone(),
            )));
        }
        if options.events {
            let rx = manager.subscribe_control_events();
            tasks.push(tokio::spawn(forward_events(
                rx,
                intake.clone(),
                stop_intake.clone(),
            )));
        }
        if options.blocks {
            tasks.push(tokio::spawn(follow_chain(
                Arc::clone(&manager),
                intake.clone(),
                options.clone(),
                stop_intake.clone(),
            )));
        }
        drop(intake);
        let publisher = tokio::spawn(publish_all(
            work,
            sink,
            options.max_in_flight.max(1),
            Arc::clone(&counters),
            give_up.clone(),
        ));
        Pump {
            counters,
            stop_intake,
            give_up,
            drain_timeout: options.drain_timeout,
            tasks,
            publisher,
        }
    }

    /// What the pump has done so far.
    pub fn stats(&self) -> SinkStats {
        self.counters.snapshot()
    }

    /// Stops taking input, waits until what was taken is acknowledged (or the drain timeout
    /// passes: the rest is counted as unacknowledged and logged), and returns the final counts.
    pub async fn shutdown(self) -> SinkStats {
        self.stop_intake.cancel();
        let Pump {
            counters,
            give_up,
            drain_timeout,
            tasks,
            publisher,
            ..
        } = self;
        // One future for the whole drain, so the timeout also covers a producer waiting for
        // budget that only an acknowledgement (or giving up) frees.
        let all = async move {
            for t in tasks {
                let _ = t.await;
            }
            let _ = publisher.await;
        };
        tokio::pin!(all);
        if tokio::time::timeout(drain_timeout, &mut all).await.is_err() {
            give_up.cancel();
            all.await;
        }
        let stats = counters.snapshot();
        if stats.unacknowledged > 0 {
            error!(
                unacknowledged = stats.unacknowledged,
                "bus sink shut down with records the bus never acknowledged"
            );
        } else {
            info!(
                published = stats.published,
                duplicates = stats.duplicates,
                "bus sink drained"
            );
        }
        stats
    }

    /// Stops at once, publishing nothing more (what was in flight may or may not have reached
    /// the bus): a crash, as far as the bus can tell.
    pub fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.publisher.abort();
    }
}

async fn forward_transactions(
    mut rx: mpsc::Receiver<crate::p2p::TransactionEvent>,
    intake: Intake,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        if !intake.push(tx_record(&event)).await {
            return;
        }
    }
    // Drain: nothing new is requested for us, and what the queue holds was taken from peers.
    rx.close();
    while let Some(event) = rx.recv().await {
        if !intake.push(tx_record(&event)).await {
            return;
        }
    }
}

fn tx_record(event: &crate::p2p::TransactionEvent) -> BusRecord {
    BusRecord::Tx {
        txid: event.transaction.txid(),
        peer_id: Some(event.peer_id),
        raw: event.transaction.raw().clone(),
    }
}

async fn forward_events(
    mut rx: broadcast::Receiver<ControlEvent>,
    intake: Intake,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            e = rx.recv() => e,
        };
        match event {
            Ok(event) => {
                let detail = printable(&format!("{event:?}"));
                let record = BusRecord::Event {
                    kind: event_kind(&detail),
                    detail,
                };
                if !intake.push(record).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                intake
                    .counters
                    .events_lagged
                    .fetch_add(n, Ordering::Relaxed);
                warn!(lost = n, "bus sink fell behind the control events");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// `ConnectionLost { .. }` → `connection_lost`.
fn event_kind(debug: &str) -> String {
    let name = debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("event");
    let mut kind = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                kind.push('_');
            }
            kind.push(c.to_ascii_lowercase());
        } else {
            kind.push(c);
        }
    }
    if kind.is_empty() {
        kind.push_str("event");
    }
    kind
}

async fn follow_chain(
    manager: Arc<Manager>,
    intake: Intake,
    options: PumpOptions,
    stop: CancellationToken,
) {
    let chain = manager.header_chain();
    // Subscribe before syncing, so no tip between the two is missed.
    let mut events = chain.subscribe();
    let mut next = match options.from_height {
        Some(h) => h,
        None => {
            let synced = tokio::select! {
                _ = stop.cancelled() => return,
                r = chain.sync(options.sync_timeout) => r,
            };
            let tip = match synced {
                Ok(tip) => tip,
                Err(e) => {
                    warn!(error = %e, "header chain not synced; following from the tip we have");
                    chain.tip()
                }
            };
            tip.height.saturating_add(1)
        }
    };
    info!(from_height = next, "bus sink following the best chain");
    // Catch up at once when asked to start below the tip.
    if !publish_blocks_up_to(&manager, &intake, &mut next, chain.tip().height, &stop).await {
        return;
    }
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            e = events.recv() => e,
        };
        let tip = match event {
            Ok(ChainEvent::NewTip { height, hash }) => {
                if !intake.push(BusRecord::Tip { height, hash }).await {
                    return;
                }
                height
            }
            Ok(ChainEvent::Reorg {
                old_tip,
                new_tip,
                fork_height,
                depth,
            }) => {
                let record = BusRecord::Reorg {
                    old_tip,
                    new_tip,
                    fork_height,
                    depth,
                };
                if !intake.push(record).await {
                    return;
                }
                // The new branch's blocks follow with its tip.
                next = next.min(fork_height.saturating_add(1));
                continue;
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Blocks go by height, so none is lost; only intermediate tip records are.
                warn!(lost = n, "bus sink fell behind the chain events");
                chain.tip().height
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !publish_blocks_up_to(&manager, &intake, &mut next, tip, &stop).await {
            return;
        }
    }
}

/// Fetches and queues the best chain's blocks from `*next` to `tip`. `false` when stopping.
async fn publish_blocks_up_to(
    manager: &Arc<Manager>,
    intake: &Intake,
    next: &mut u32,
    tip: u32,
    stop: &CancellationToken,
) -> bool {
    let chain = manager.header_chain();
    while *next <= tip {
        let height = *next;
        let Some(header) = chain.header_at(height) else {
            // The chain moved under us (a reorg to a shorter branch): the next tip says more.
            return true;
        };
        let mut fetched = None;
        for attempt in 1..=SINK_BLOCK_FETCH_ATTEMPTS {
            let r = tokio::select! {
                _ = stop.cancelled() => return false,
                r = fetch_payload(manager, header.hash) => r,
            };
            match r {
                Ok(payload) => {
                    fetched = Some(payload);
                    break;
                }
                Err(e) => warn!(
                    height,
                    hash = %header.hash,
                    attempt,
                    error = %e,
                    "bus sink could not fetch a block"
                ),
            }
        }
        match fetched {
            Some(payload) => {
                debug!(height, hash = %header.hash, bytes = payload.len(), "bus sink publishing a block");
                let record = BusRecord::Block {
                    hash: header.hash,
                    height,
                    payload,
                };
                if !intake.push(record).await {
                    return false;
                }
            }
            None => {
                intake
                    .counters
                    .blocks_missed
                    .fetch_add(1, Ordering::Relaxed);
                error!(height, hash = %header.hash, "bus sink missed a block: no peer served it");
            }
        }
        *next = height.saturating_add(1);
    }
    true
}

/// A block of the best chain as a payload: whole when it is at most the streaming threshold
/// (`[block_streaming] threshold`), otherwise a [`ManagerBlockSource`] that streams it from a
/// peer as the sink reads it, so a block of any size never sits whole in the pump.
async fn fetch_payload(
    manager: &Arc<Manager>,
    hash: crate::bitcoin::Hash,
) -> crate::p2p::Result<BlockPayload> {
    let mut stream = manager.get_block_stream(hash, BlockStreamMode::Raw).await?;
    if stream.len() > manager.config().block_streaming.threshold {
        return Ok(BlockPayload::Stream(Arc::new(ManagerBlockSource {
            manager: manager.clone(),
            hash,
            len: stream.len(),
            first: std::sync::Mutex::new(Some(stream)),
        })));
    }
    let mut whole = bytes::BytesMut::with_capacity(usize::try_from(stream.len()).unwrap_or(0));
    while let Some(part) = stream.next().await {
        match part {
            Ok(BlockPart::Bytes(b)) => whole.extend_from_slice(&b),
            Ok(_) => {}
            Err(e) => {
                return Err(crate::p2p::P2pError::BlockFetch(
                    crate::p2p::BlockFetchError::StreamFailed {
                        hash,
                        peer_id: stream.peer_id(),
                        address: stream.address(),
                        failure: Box::new(e),
                    },
                ))
            }
        }
    }
    Ok(BlockPayload::Whole(whole.freeze()))
}

/// A large block read from a peer while the sink publishes it (docs/GUIDE.md, "Blocks of any
/// size"): the first `open` reads the stream the pump already started; a retry (the sink
/// reopens after a failed upload) fetches the block again. The stream verifies the checksum and
/// merkle root as it passes; a failure is an I/O error of the reader, so the upload fails
/// rather than publishing a block that is not the one named.
struct ManagerBlockSource {
    manager: Arc<Manager>,
    hash: crate::bitcoin::Hash,
    len: u64,
    first: std::sync::Mutex<Option<crate::p2p::BlockStream>>,
}

impl std::fmt::Debug for ManagerBlockSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBlockSource")
            .field("hash", &self.hash)
            .field("len", &self.len)
            .finish()
    }
}

impl super::BlockSource for ManagerBlockSource {
    fn hash(&self) -> crate::bitcoin::Hash {
        self.hash
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn open(&self) -> std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send + '_>> {
        let first = self.first.lock().ok().and_then(|mut g| g.take());
        let parts = futures::stream::unfold((first, false), move |(stream, done)| async move {
            if done {
                return None;
            }
            let mut stream = match stream {
                Some(s) => s,
                None => match self
                    .manager
                    .get_block_stream(self.hash, BlockStreamMode::Raw)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => return Some((Err(std::io::Error::other(e)), (None, true))),
                },
            };
            loop {
                match stream.next().await {
                    Some(Ok(BlockPart::Bytes(b))) => return Some((Ok(b), (Some(stream), false))),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Some((Err(std::io::Error::other(e)), (None, true))),
                    None => return None,
                }
            }
        });
        Box::pin(tokio_util::io::StreamReader::new(Box::pin(parts)))
    }
}

/// Runs publishes, up to `max_in_flight` at once, until the queue closes and all are done.
async fn publish_all(
    mut work: mpsc::UnboundedReceiver<Work>,
    sink: Arc<dyn BusSink>,
    max_in_flight: usize,
    counters: Arc<Counters>,
    give_up: CancellationToken,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            w = work.recv(), if open && in_flight.len() < max_in_flight => match w {
                Some(w) => in_flight.push(publish_one(
                    w,
                    Arc::clone(&sink),
                    Arc::clone(&counters),
                    give_up.clone(),
                )),
                None => open = false,
            },
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            else => break,
        }
    }
}

/// Publishes one record until the bus acknowledges or refuses it, or the drain gives up.
async fn publish_one(
    work: Work,
    sink: Arc<dyn BusSink>,
    counters: Arc<Counters>,
    give_up: CancellationToken,
) {
    let mut delay = SINK_RETRY_INITIAL;
    let id = work
        .record
        .dedup_id()
        .unwrap_or_else(|| format!("{:?}", work.record.topic()).to_lowercase());
    loop {
        let result = tokio::select! {
            biased;
            _ = give_up.cancelled() => {
                counters.unacknowledged.fetch_add(1, Ordering::Relaxed);
                error!(record = %id, "bus sink gave up on a record at shutdown");
                return;
            }
            r = sink.publish(work.record.clone()) => r,
        };
        match result {
            Ok(ack) => {
                if counters.bus_unavailable.swap(false, Ordering::Relaxed) {
                    info!("bus available again");
                }
                if ack.duplicate {
                    counters.duplicates.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.published.fetch_add(1, Ordering::Relaxed);
                }
                match work.record {
                    BusRecord::Block { .. } => counters.blocks.fetch_add(1, Ordering::Relaxed),
                    BusRecord::Tx { .. } => counters.transactions.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                drop(work.lease);
                return;
            }
            Err(e) if e.is_retryable() => {
                counters.retries.fetch_add(1, Ordering::Relaxed);
                if !counters.bus_unavailable.swap(true, Ordering::Relaxed) {
                    warn!(
                        error = %e,
                        buffered_bytes = counters.buffered_bytes.load(Ordering::Relaxed),
                        "bus unavailable: holding records and retrying"
                    );
                }
                tokio::select! {
                    _ = give_up.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(SINK_RETRY_MAX);
            }
            Err(e) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                error!(record = %id, error = %e, "bus refused a record");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::event_kind;

    #[test]
    fn event_kinds_are_the_variant_names_in_snake_case() {
        assert_eq!(
            event_kind("ConnectionLost { peer_id: 1 }"),
            "connection_lost"
        );
        assert_eq!(event_kind("ConfigUpdated"), "config_updated");
        assert_eq!(event_kind(""), "event");
    }
}
