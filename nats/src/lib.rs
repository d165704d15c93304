//! A NATS JetStream bus for the bitcoinsv P2P manager: the sink that publishes what a
//! listener sees, and the responder that broadcasts transactions asked for on the bus.
//!
//! Several listeners (bridges) on several machines publish into one JetStream stream:
//!
//! * [`NatsSink`] implements [`bitcoinsv::p2p::sink::BusSink`]. It creates (or reuses) the
//!   stream `BSV_<NETWORK>` over the subjects `bsv.<network>.tip`, `.reorg`, `.block`, `.tx`
//!   and `.event.>` with a duplicate window, publishes each record with `Nats-Msg-Id` set to
//!   its id (the block hash, the txid) and waits for JetStream's acknowledgement, so each block
//!   and transaction is stored once however many bridges saw it. A block whose serialization
//!   exceeds the server's maximum payload goes to the Object Store bucket `bsv_<network>_blocks`
//!   under its hash and is announced on `.block` by reference ([`BlockRef`]).
//! * [`serve_broadcasts`] answers requests on `bsv.<network>.broadcast` (a raw transaction) by
//!   broadcasting it through `Manager::broadcast_transaction` and replying with the per-peer
//!   report as JSON ([`BroadcastReply`]). Bridges join one queue group, so one of them answers.
//!
//! The library's [`Pump`](bitcoinsv::p2p::sink::Pump) feeds the sink and holds records while
//! NATS is unreachable (within a byte budget, then slowing the peers). docs/FLEET.md shows a
//! deployment and the message formats; the `bsvp2p bridge` command runs both halves.

mod broadcast;
mod error;
mod format;
mod sink;

pub use broadcast::{serve_broadcasts, BroadcastReply, PeerReply};
pub use error::NatsError;
pub use format::{
    subject, BlockRef, EventMessage, ReorgMessage, TipMessage, BROADCAST_QUEUE_GROUP,
    HEADER_BLOCK_BODY, HEADER_BLOCK_HEIGHT, HEADER_KIND, HEADER_PEER_ID,
};
pub use sink::{NatsSink, NatsSinkConfig};
