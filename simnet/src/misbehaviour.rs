//! Ways a simulated node can be told to misbehave, for chaos tests of the library's connection
//! handling. A node's mode is read when a connection starts (accepted or dialled), so changing
//! it with `NodeHandle::set_misbehaviour` affects the node's next connections and leaves the
//! live ones as they were.
//!
//! Modes that change the bytes on the wire (magic, garbage, stalls, oversized headers) act at
//! the point where the node would first speak: in reply to the peer's `version` on a connection
//! the peer opened, or at once on a connection the node dialled.

use bitcoinsv::p2p::Network;

/// The user agent of a Bitcoin Cash (ABC) node, which BSV nodes ban (docs/PROTOCOL.md §6).
pub const BCH_USER_AGENT: &str = "/Bitcoin ABC:0.22.0/";

/// A misbehaviour mode of a simulated node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Misbehaviour {
    /// Behave as the official node does.
    #[default]
    None,
    /// Frame every message with BTC's magic `f9beb4d9`, which no BSV network uses (a peer of
    /// another blockchain). The node still reads the peer's frames with the right magic, so it
    /// does answer the handshake; the peer sees the wrong magic on the first frame.
    WrongMagic,
    /// Frame every message with the magic of this other BSV network (e.g. a testnet node in a
    /// regtest simnet). Reading is unaffected, as for [`Misbehaviour::WrongMagic`].
    OtherNetworkMagic(Network),
    /// Advertise the user agent `/Bitcoin ABC:0.22.0/` (a BCH node sharing the wire protocol).
    /// Everything else is normal.
    BchUserAgent,
    /// Never answer `version`: accept the connection, read and count what arrives, send
    /// nothing. On a connection the node dials it sends its `version` and then nothing more.
    NeverAnswerVersion,
    /// Answer `version` with `version` only: never send `verack` (nor the `protoconf` that
    /// would follow it), so the peer's handshake never completes.
    NeverVerack,
    /// In reply to `version`, send the first half of the `version` frame (the header and part
    /// of the payload), then nothing; the connection stays open and the node keeps reading.
    StallMidMessage,
    /// In reply to `version`, send 1 KiB of bytes that do not start with any network's magic,
    /// then nothing; the connection stays open and the node keeps reading.
    Garbage,
    /// In reply to `version`, send a frame header with the right magic whose `inv` declares a
    /// 32 MiB payload (over the 2 MiB limit, which the node bans for), then nothing.
    OversizedHeader,
    /// Close the connection as soon as the node has sent this many messages (0: close right
    /// after accepting). With 3, a peer gets `version`, `verack`, `protoconf` and then EOF.
    DisconnectAfter(u32),
    /// Never answer `ping` with `pong`. The node still sends its own pings.
    NeverPong,
    /// Once the handshake completes, send `inv` messages of 1,000 random transaction hashes
    /// back to back, for as long as the peer reads them.
    FloodInv,
    /// Once the handshake completes, send `addr` messages of 1,000 random loopback addresses
    /// (127.x.y.z, so nothing off this machine is ever named) back to back, for as long as the
    /// peer reads them.
    FloodAddr,
    /// Read at most this many bytes per second, with a 4 KiB socket receive buffer, so a peer
    /// writing a large message to the node blocks (a very slow reader).
    SlowReader {
        /// Read rate in bytes per second (at least 1).
        bytes_per_second: u32,
    },
    /// Answer every `tx` with `reject` (code 0x10 `REJECT_INVALID`, reason
    /// `bad-txns-inputs-missingorspent`, the txid), never accept or relay any, and ask for every
    /// transaction offered by `inv` (the pool shared by the simnet's nodes is not its own).
    RejectAllTx,
    /// Behave normally, and after the handshake send `feefilter` with this rate (satoshis per
    /// 1000 bytes) to peers of version 70013 or later, as the node does (§3.15): announcements
    /// of cheaper transactions are unwelcome.
    FeeFilter(i64),
    /// Never answer a block `getdata` (as the node does for a block it does not have, §3.4,
    /// but for every block); transactions are served as usual.
    SilentOnBlockGetData,
    /// Answer every block `getdata` with `notfound` (the node never does; other
    /// implementations may).
    NotFoundBlocks,
    /// Serve blocks whose coinbase is altered, so the transactions no longer hash to the
    /// header's merkle root (`bad-txnmrklroot`); the header, and so the hash, are the real ones.
    CorruptBlocks,
    /// Once the handshake completes, announce (by `headers`) one header on genesis whose hash
    /// does not meet its target: the node's `high-hash` (+50) for a peer that checks.
    BadPowHeader,
    /// Once the handshake completes, send this many `headers` announcements of one header each
    /// whose parent nobody knows (the peer answers each with `getheaders` and counts it; the
    /// node charges +20 for every 10th).
    UnconnectingHeaders(u32),
    /// Once the handshake completes, send one `headers` of 9 headers (more than an
    /// announcement's 8) that chain to each other but whose first's parent nobody knows: the
    /// node's `prev-blk-not-found` (+10).
    UnconnectingBatch,
    /// Never answer `getheaders`, as a node in initial block download does (everything else is
    /// normal).
    IgnoreGetHeaders,
    /// Write synthetic blocks (`SimNet::add_synthetic_block`) at most this many bytes per
    /// second, a tenth of a second's allowance at a time (at least one byte), frame header
    /// included: a peer that stalls mid-block, for a receiver's stall rule. Everything else,
    /// the chain's blocks included, goes out at full speed, though frames queued behind a
    /// trickling block wait for it; the node's own pings too, as at the node, whose ping
    /// timeout (20 minutes by default) runs from when the ping is queued.
    TrickleBlocks {
        /// Write rate in bytes per second (at least 1).
        bytes_per_second: u32,
    },
}

impl Misbehaviour {
    /// A short stable name, for logs and the CLI.
    pub fn name(&self) -> &'static str {
        match self {
            Misbehaviour::None => "none",
            Misbehaviour::WrongMagic => "wrong-magic",
            Misbehaviour::OtherNetworkMagic(_) => "other-network-magic",
            Misbehaviour::BchUserAgent => "bch-user-agent",
            Misbehaviour::NeverAnswerVersion => "never-answer-version",
            Misbehaviour::NeverVerack => "never-verack",
            Misbehaviour::StallMidMessage => "stall-mid-message",
            Misbehaviour::Garbage => "garbage",
            Misbehaviour::OversizedHeader => "oversized-header",
            Misbehaviour::DisconnectAfter(_) => "disconnect-after",
            Misbehaviour::NeverPong => "never-pong",
            Misbehaviour::FloodInv => "flood-inv",
            Misbehaviour::FloodAddr => "flood-addr",
            Misbehaviour::SlowReader { .. } => "slow-reader",
            Misbehaviour::RejectAllTx => "reject-all-tx",
            Misbehaviour::FeeFilter(_) => "fee-filter",
            Misbehaviour::SilentOnBlockGetData => "silent-on-block-getdata",
            Misbehaviour::NotFoundBlocks => "notfound-blocks",
            Misbehaviour::CorruptBlocks => "corrupt-blocks",
            Misbehaviour::BadPowHeader => "bad-pow-header",
            Misbehaviour::UnconnectingHeaders(_) => "unconnecting-headers",
            Misbehaviour::UnconnectingBatch => "unconnecting-batch",
            Misbehaviour::IgnoreGetHeaders => "ignore-getheaders",
            Misbehaviour::TrickleBlocks { .. } => "trickle-blocks",
        }
    }
}
