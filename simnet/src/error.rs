//! The simnet's error type.

use std::net::SocketAddr;

/// Why a simnet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimNetError {
    /// A simnet needs at least one node.
    #[error("a simnet needs at least one node")]
    NoNodes,
    /// `base_port + nodes` does not fit in a port number.
    #[error("{nodes} nodes from port {base_port} run past port 65535")]
    PortRange {
        /// The first port.
        base_port: u16,
        /// The number of nodes.
        nodes: usize,
    },
    /// A node could not listen on its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// There is no node with this index.
    #[error("no node {0} in this simnet")]
    NoSuchNode(usize),
    /// The node is stopped.
    #[error("node {0} is stopped")]
    NodeStopped(usize),
    /// An outbound connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The OS error (or a timeout).
        source: std::io::Error,
    },
    /// A reorganisation must fork at or below the tip and mine a branch longer than the one
    /// it replaces.
    #[error("cannot reorganise at height {fork_height} with {blocks} blocks: the tip is at {tip}")]
    ShortReorg {
        /// The tip's height.
        tip: u32,
        /// The requested fork height.
        fork_height: u32,
        /// The requested branch length.
        blocks: u32,
    },
    /// The simnet only ever talks to loopback addresses.
    #[error("refusing to dial {0}: the simnet only connects to loopback addresses")]
    NotLoopback(SocketAddr),
    /// No synthetic block with this hash is registered.
    #[error("no synthetic block {0} is registered")]
    UnknownSyntheticBlock(bitcoinsv::bitcoin::Hash),
    /// Generating a synthetic block failed (its blocking task panicked or was cancelled).
    #[error("generating synthetic block failed: {0}")]
    SyntheticTask(String),
}
