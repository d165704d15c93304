//! # bitcoinsv-simnet
//!
//! Simulated Bitcoin SV nodes on loopback, for tests, demos and benchmarks: nothing in this
//! project can reach the real network, so every test that needs peers gets them here. The nodes
//! behave on the wire as the official node (bitcoin-sv 1.2.2) does, as docs/PROTOCOL.md describes
//! it, so code that works against the simnet works against a real node.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bitcoinsv_simnet::SimNetError> {
//! use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};
//!
//! let config = SimNetConfig::default()
//!     .nodes(24)
//!     .with_misbehaviour(3, Misbehaviour::NeverPong);
//! let simnet = SimNet::start(config).await?;
//! println!("first node at {}", simnet.node(0).address());
//! let block = simnet.mine_block(); // announced by every node
//! # let _ = block;
//! simnet.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## How it is built
//!
//! * [`chain`]: one deterministic regtest chain (real genesis, generated blocks with real merkle
//!   roots and valid proof of work), generated once and shared by every node.
//! * `protocol`: the node's per-connection behaviour as a state machine without I/O: handshake
//!   order, misbehaviour scores, `getheaders`/`getdata`/`getaddr` answers, announcements.
//! * `shared`: the state the tasks share: per node (registry of connections, bans, counters)
//!   and across the simnet (chain, transaction pool, every node for relay).
//! * `connection`: one tokio task per connection that moves bytes between the socket and the
//!   state machine with `bitcoinsv`'s codec, and applies the wire-level [`Misbehaviour`]s.
//! * `node`: one supervisor task per node that owns the listener and the node's connection
//!   tasks; [`NodeHandle`] exposes its address, counters ([`NodeStats`]), bans, misbehaviour
//!   mode and outbound dialling.
//! * [`SimNet`]: starts the nodes, mines blocks, injects transactions, stops and restarts nodes
//!   (a restarted node gets its port back), and shuts everything down. Transactions accepted by
//!   any node go into one shared pool and are announced by every node, as if the nodes were
//!   connected to each other.
//! * [`synthetic`]: [`SyntheticBlock`], deterministic blocks of any size (gigabytes) generated
//!   on the fly as bounded chunks, with a real merkle root and proof of work (or a chosen
//!   [`Corruption`]); registered ones are served by every node (below).
//!
//! ## Blocks of any size
//!
//! [`SimNet::add_synthetic_block`] registers a [`SyntheticBlock`] that every node serves on
//! `getdata(MSG_BLOCK, hash)`, so a client can be tested against 256 MiB, 1 GiB or 5 GiB blocks
//! that nobody holds in memory: the connection writes the frame header, then streams the
//! generator's output into the socket 1 MiB at a time, reading the peer meanwhile; frames
//! produced during the block wait behind it. A payload over 0xFFFFFFFF bytes goes out with the
//! `extmsg` header, to peers of version 70016 or later only (older peers get `notfound`).
//! Registered blocks are not part of the chain; by default their
//! parent is the tip, so a header chain can accept them. [`Corruption`] makes a block fail a
//! receiver's checks in a chosen way, and [`Misbehaviour::TrickleBlocks`] sends it slowly.
//!
//! ```no_run
//! # async fn demo(simnet: &bitcoinsv_simnet::SimNet) -> Result<(), bitcoinsv_simnet::SimNetError> {
//! use bitcoinsv_simnet::{Corruption, SyntheticSpec};
//!
//! // Costs a pass over the payload for the merkle root and one for the checksum.
//! let big = simnet.add_synthetic_block(SyntheticSpec::new(256 << 20)).await?;
//! simnet.announce_synthetic(&big.hash)?;
//! let bad = simnet
//!     .add_synthetic_block(
//!         SyntheticSpec::new(1 << 20).corruption(Corruption::MerkleMismatch { tx_index: 3 }),
//!     )
//!     .await?;
//! # let _ = bad;
//! # Ok(()) }
//! ```
//!
//! Where the simnet departs from the node, for the sake of tests: `getaddr` is answered at once
//! (the node waits about 30 s), misbehaving loopback peers are banned (the node only disconnects
//! local peers), the association ID is always empty (no extra streams), and transactions and
//! blocks are not validated; a synthetic block over 4 GiB asked for by a peer below 70016 gets
//! `notfound` (the node logs and sends nothing). Every node listens on 127.0.0.1 and dials
//! loopback addresses only.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
mod config;
mod connection;
mod error;
mod misbehaviour;
mod node;
mod protocol;
mod shared;
mod stats;
pub mod synthetic;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bitcoinsv::bitcoin::{Block, BlockHeader, Hash, Transaction};
use tracing::info;

pub use chain::{sample_transaction, Chain, ChainHandle};
pub use config::{SimNetConfig, DEFAULT_USER_AGENT};
pub use error::SimNetError;
pub use misbehaviour::{Misbehaviour, BCH_USER_AGENT};
pub use node::NodeHandle;
pub use protocol::{NODE_SERVICES, STREAM_POLICIES};
pub use stats::NodeStats;
pub use synthetic::{
    Corruption, SharedSyntheticChunks, SyntheticBlock, SyntheticChunks, SyntheticReader,
};

use protocol::Mempool;
use shared::{NetShared, NodeShared};

/// Default transaction size of a [`SyntheticSpec`]: 1 MB, so a GiB block has about a thousand
/// transactions (few hashing calls per byte, as in a large real block of big transactions).
pub const DEFAULT_SYNTHETIC_TX_SIZE: u64 = 1_000_000;

/// What synthetic block to register with [`SimNet::add_synthetic_block`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticSpec {
    /// Payload size in bytes (exact for every size from a few hundred bytes up, see
    /// [`synthetic`]).
    pub size: u64,
    /// Transaction size in bytes (raised to [`synthetic::MIN_TX_SIZE`]).
    pub tx_size: u64,
    /// Seed of the deterministic content.
    pub seed: u64,
    /// The parent hash; `None` for the chain's tip at registration, so a header chain can
    /// accept the block.
    pub prev_hash: Option<Hash>,
    /// A deliberate defect, for tests of a receiver's checks.
    pub corruption: Option<Corruption>,
}

impl SyntheticSpec {
    /// A block of `size` payload bytes of [`DEFAULT_SYNTHETIC_TX_SIZE`]-byte transactions,
    /// seed 0, on the chain's tip, intact.
    pub fn new(size: u64) -> Self {
        SyntheticSpec {
            size,
            tx_size: DEFAULT_SYNTHETIC_TX_SIZE,
            seed: 0,
            prev_hash: None,
            corruption: None,
        }
    }

    /// With transactions of `tx_size` bytes.
    pub fn tx_size(mut self, tx_size: u64) -> Self {
        self.tx_size = tx_size;
        self
    }

    /// With content derived from `seed`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// On `prev_hash` rather than the chain's tip.
    pub fn prev_hash(mut self, prev_hash: Hash) -> Self {
        self.prev_hash = Some(prev_hash);
        self
    }

    /// With `corruption`.
    pub fn corruption(mut self, corruption: Corruption) -> Self {
        self.corruption = Some(corruption);
        self
    }
}

/// A registered synthetic block, as [`SimNet::add_synthetic_block`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticInfo {
    /// The block hash (what to ask for with `getdata(MSG_BLOCK)`).
    pub hash: Hash,
    /// The block header.
    pub header: BlockHeader,
    /// The exact payload length in bytes.
    pub len: u64,
    /// The number of transactions, the coinbase included.
    pub tx_count: u64,
    /// Whether it is sent with the 44-byte `extmsg` header (payload over 0xFFFFFFFF bytes;
    /// only to peers of version 70016 or later, others get `notfound`).
    pub extended: bool,
    /// The frame checksum of the basic header; `None` for an `extmsg` frame.
    pub checksum: Option<[u8; 4]>,
    /// The block itself (the generator), to regenerate or check its bytes in a test.
    pub block: Arc<SyntheticBlock>,
}

/// A running simulated network.
///
/// Dropping it aborts every task and closes every socket; [`SimNet::shutdown`] does the same
/// and waits until it is done.
#[derive(Debug)]
pub struct SimNet {
    net: Arc<NetShared>,
    nodes: Vec<NodeHandle>,
}

/// The unreachable addresses appended to `getaddr` answers: 127.0.0.2 and up with the nodes'
/// ports. The nodes bind 127.0.0.1 only, and while they hold a port nothing can bind it on
/// 0.0.0.0 either, so these refuse connections.
fn unreachable_addrs(count: usize, nodes: &[SocketAddr]) -> Vec<SocketAddr> {
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    (0..count)
        .filter_map(|k| {
            let port = nodes.get(k % nodes.len().max(1))?.port();
            let ip = Ipv4Addr::from(base.saturating_add((k / nodes.len().max(1)) as u32));
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        })
        .collect()
}

impl SimNet {
    /// Starts `config.nodes` nodes on 127.0.0.1 and returns once every one is listening.
    pub async fn start(config: SimNetConfig) -> Result<SimNet, SimNetError> {
        if config.nodes == 0 {
            return Err(SimNetError::NoNodes);
        }
        if config.base_port != 0
            && !config.distinct_ips
            && usize::from(config.base_port) + config.nodes - 1 > 65535
        {
            return Err(SimNetError::PortRange {
                base_port: config.base_port,
                nodes: config.nodes,
            });
        }
        let started = std::time::Instant::now();
        let chain = ChainHandle::new(Chain::generate(
            config.seed,
            config.blocks,
            config.txs_per_block,
        ));
        let mut listeners = Vec::with_capacity(config.nodes);
        for i in 0..config.nodes {
            let port = if config.base_port == 0 || config.distinct_ips {
                config.base_port
            } else {
                config.base_port + i as u16
            };
            listeners.push(node::bind(SocketAddr::new(config.node_ip(i), port))?);
        }
        let addresses: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| {
                l.local_addr().map_err(|source| SimNetError::Bind {
                    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let shared: Vec<Arc<NodeShared>> = addresses
            .iter()
            .enumerate()
            .map(|(i, addr)| Arc::new(NodeShared::new(i, *addr, config.misbehaviour_of(i))))
            .collect();
        let mut all_addresses = addresses.clone();
        all_addresses.extend(unreachable_addrs(config.unreachable_addrs, &addresses));
        all_addresses.extend(config.extra_addrs.iter().copied());
        let net = Arc::new(NetShared {
            config,
            chain,
            addresses: all_addresses,
            mempool: Mutex::new(Mempool::default()),
            nodes: shared.clone(),
            synthetic: Mutex::new(std::collections::HashMap::new()),
        });
        let nodes: Vec<NodeHandle> = shared
            .into_iter()
            .map(|s| NodeHandle::new(s, Arc::clone(&net)))
            .collect();
        for (node, listener) in nodes.iter().zip(listeners) {
            node.start_with(listener);
        }
        info!(
            nodes = nodes.len(),
            height = net.chain.tip_height(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "simnet started"
        );
        Ok(SimNet { net, nodes })
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes (never true for a started simnet).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node's listening address, by index.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(NodeHandle::address).collect()
    }

    /// Node `index`.
    ///
    /// # Panics
    ///
    /// If there is no such node (a test bug); see [`SimNet::get`] for the checked form.
    pub fn node(&self, index: usize) -> &NodeHandle {
        &self.nodes[index]
    }

    /// Node `index`, if it exists.
    pub fn get(&self, index: usize) -> Option<&NodeHandle> {
        self.nodes.get(index)
    }

    /// Every node.
    pub fn nodes(&self) -> &[NodeHandle] {
        &self.nodes
    }

    /// The shared chain (read access; grows with [`SimNet::mine_block`]).
    pub fn chain(&self) -> &ChainHandle {
        &self.net.chain
    }

    /// The configuration the simnet was started with.
    pub fn config(&self) -> &SimNetConfig {
        &self.net.config
    }

    /// Mines a block on the shared chain holding a coinbase and every transaction in the pool,
    /// and announces it on every node: `headers` to peers that sent `sendheaders`, an `inv`
    /// to the others. Returns the block.
    pub fn mine_block(&self) -> Arc<Block> {
        self.net.mine_block()
    }

    /// Reorganises the shared chain: replaces every block above `fork_height` with `blocks`
    /// new empty blocks (hashes distinct from the old branch's) and announces the new branch on
    /// every node as the node does (docs/PROTOCOL.md §3.6): `headers` of the whole branch to
    /// peers that sent `sendheaders` when it has at most 8 blocks, otherwise an `inv` of the new
    /// tip. For peers to switch, the new branch must be longer than the old one
    /// (`blocks > tip height − fork_height`); otherwise [`SimNetError::ShortReorg`].
    pub fn reorg(&self, fork_height: u32, blocks: u32) -> Result<Vec<Arc<Block>>, SimNetError> {
        let tip = self.net.chain.tip_height();
        if fork_height > tip || blocks <= tip - fork_height {
            return Err(SimNetError::ShortReorg {
                tip,
                fork_height,
                blocks,
            });
        }
        Ok(self.net.reorg(fork_height, blocks))
    }

    /// Registers a synthetic block (see [`synthetic`]) that every node serves on
    /// `getdata(MSG_BLOCK, hash)`, streaming it from the generator in bounded memory (1 MiB at
    /// a time per connection); a block over 0xFFFFFFFF bytes is framed with `extmsg` and sent
    /// only to peers of version 70016 or later (others get `notfound`). The block is not part
    /// of the chain: it is neither announced (see [`SimNet::announce_synthetic`]) nor
    /// returned by `getheaders`, and the chain's tip does not move. Registering a block with
    /// the hash of one already registered replaces it.
    ///
    /// Cost: generation is CPU-bound and runs on tokio's blocking pool. It makes one pass over
    /// the payload for the txids (merkle root), and, for a block sent with a basic header, a
    /// second one for the frame checksum, so that serving starts at once; a block over 4 GiB
    /// (`extmsg`, no checksum) or one with [`Corruption::PlaceholderMerkleRoot`] skips those
    /// passes. Each pass hashes every payload byte with SHA-256, so registering takes time
    /// linear in the size, which is long for big blocks in a debug build.
    pub async fn add_synthetic_block(
        &self,
        spec: SyntheticSpec,
    ) -> Result<SyntheticInfo, SimNetError> {
        let prev_hash = spec.prev_hash.unwrap_or_else(|| self.net.chain.tip_hash());
        let block = tokio::task::spawn_blocking(move || {
            let block = SyntheticBlock::with_corruption(
                spec.seed,
                prev_hash,
                spec.size,
                spec.tx_size,
                spec.corruption,
            );
            let checksum = (!block.needs_extended_header()).then(|| block.checksum());
            (block, checksum)
        })
        .await
        .map_err(|e| SimNetError::SyntheticTask(e.to_string()))?;
        let (block, checksum) = block;
        let block = Arc::new(block);
        let info = SyntheticInfo {
            hash: block.hash(),
            header: *block.header(),
            len: block.len(),
            tx_count: block.tx_count(),
            extended: block.needs_extended_header(),
            checksum,
            block: Arc::clone(&block),
        };
        self.net
            .synthetic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.hash, block);
        info!(
            hash = %info.hash,
            bytes = info.len,
            txs = info.tx_count,
            extended = info.extended,
            "simnet registered synthetic block"
        );
        Ok(info)
    }

    /// Forgets a synthetic block (connections already streaming it finish). Returns whether
    /// it was registered.
    pub fn remove_synthetic_block(&self, hash: &Hash) -> bool {
        self.net
            .synthetic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash)
            .is_some()
    }

    /// Announces a registered synthetic block by `inv` on every node's connections that have
    /// completed the handshake (as the node announces a block to a peer that did not ask for
    /// `headers`); a peer that wants it asks with `getdata`.
    pub fn announce_synthetic(&self, hash: &Hash) -> Result<(), SimNetError> {
        let known = self
            .net
            .synthetic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(hash);
        if !known {
            return Err(SimNetError::UnknownSyntheticBlock(*hash));
        }
        let event = shared::ConnEvent::AnnounceBlock(*hash);
        for node in &self.net.nodes {
            node.broadcast(&event, None);
        }
        Ok(())
    }

    /// Hands `tx` to node `node_index` as if it had arrived from the network: it enters the
    /// shared pool and every node announces it by `inv` to its peers. Returns whether the
    /// transaction was new.
    pub fn inject_tx(&self, node_index: usize, tx: Transaction) -> Result<bool, SimNetError> {
        let node = self
            .nodes
            .get(node_index)
            .ok_or(SimNetError::NoSuchNode(node_index))?;
        info!(node = node.index(), txid = %tx.txid(), "simnet transaction injected");
        Ok(self.net.accept_tx(tx, None))
    }

    /// Transactions in the shared pool (accepted, not yet mined).
    pub fn mempool_len(&self) -> usize {
        self.net
            .mempool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether the pool holds `txid`.
    pub fn mempool_contains(&self, txid: &bitcoinsv::bitcoin::Hash) -> bool {
        self.net
            .mempool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(txid)
    }

    /// Stops node `index`: closes its listener and connections and waits for its tasks. Its
    /// port stays reserved for [`SimNet::restart_node`] only in the sense that the simnet will
    /// ask for it again; another program could take it meanwhile.
    pub async fn stop_node(&self, index: usize) -> Result<(), SimNetError> {
        let node = self
            .nodes
            .get(index)
            .ok_or(SimNetError::NoSuchNode(index))?;
        node.stop().await;
        Ok(())
    }

    /// Restarts node `index` on the same port (stopping it first if it is running). Bans and
    /// counters survive the restart.
    pub async fn restart_node(&self, index: usize) -> Result<(), SimNetError> {
        let node = self
            .nodes
            .get(index)
            .ok_or(SimNetError::NoSuchNode(index))?;
        node.restart().await
    }

    /// Stops every node and waits until every task has ended and every socket is closed.
    pub async fn shutdown(self) {
        // Signal every node first so they wind down in parallel, then wait for each.
        let tasks: Vec<_> = self
            .nodes
            .iter()
            .filter_map(NodeHandle::begin_stop)
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        info!(nodes = self.nodes.len(), "simnet shut down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_addresses_use_other_loopback_ips_and_node_ports() {
        let nodes: Vec<SocketAddr> = vec![
            "127.0.0.1:4000".parse().unwrap(),
            "127.0.0.1:4001".parse().unwrap(),
        ];
        let u = unreachable_addrs(3, &nodes);
        assert_eq!(
            u,
            vec![
                "127.0.0.2:4000".parse::<SocketAddr>().unwrap(),
                "127.0.0.2:4001".parse().unwrap(),
                "127.0.0.3:4000".parse().unwrap(),
            ]
        );
    }
}
