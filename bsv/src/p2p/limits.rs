//! Every protocol constant and limit in one place, each with the node constant it mirrors
//! (bitcoin-sv 1.2.2; PROTOCOL.md §1.4, §2.1, §5). Changing one of these changes how we look to
//! a node on the wire, so each says why it has its value.

/// Protocol version we advertise: the node's `PROTOCOL_VERSION`.
pub const PROTOCOL_VERSION: i32 = 70016;
/// Oldest peer version the node talks to (`MIN_PEER_PROTO_VERSION`); older ones are refused.
pub const MIN_PEER_PROTO_VERSION: i32 = 31800;
/// First version that understands `extmsg` headers (`EXTENDED_PAYLOAD_VERSION`); sending one to
/// an older peer gets us banned.
pub const EXTENDED_PAYLOAD_VERSION: i32 = 70016;
/// Peers above this version get nonce-carrying pings and answer with `pong` (`BIP0031_VERSION`).
pub const BIP0031_VERSION: i32 = 60000;
/// Peers at or above this version understand `sendheaders` (`SENDHEADERS_VERSION`).
pub const SENDHEADERS_VERSION: i32 = 70012;

/// Size of the basic frame header.
pub const HEADER_LEN: usize = 24;
/// Size of the extended (`extmsg`) frame header.
pub const EXT_HEADER_LEN: usize = 44;
/// Size of the command field.
pub const COMMAND_LEN: usize = 12;

/// What a peer is assumed to accept before its `protoconf` arrives, and the largest `protoconf`
/// anyone may send (`LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH`). Exceeding a peer's limit is a 24 h ban.
pub const LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH: u64 = 1024 * 1024;
/// Default receive limit for non-block messages (`DEFAULT_MAX_PROTOCOL_RECV_PAYLOAD_LENGTH`),
/// which we also advertise in our `protoconf`.
pub const DEFAULT_MAX_RECV_PAYLOAD: u64 = 2 * 1024 * 1024;
/// Largest `tx`/`datareftx` payload (`MAX_TX_SIZE_CONSENSUS_AFTER_GENESIS`).
pub const MAX_TX_SIZE: u64 = 1_000_000_000;
/// Our default cap for block-like messages. The node accepts up to INT64_MAX; we stop at 4 GiB
/// so a peer cannot make us buffer more than that unless the application opts in.
pub const DEFAULT_MAX_BLOCK_SIZE: u64 = 4 * 1024 * 1024 * 1024;
/// Largest payload a basic header can describe; larger ones need `extmsg`.
pub const MAX_BASIC_PAYLOAD: u64 = 0xFFFF_FFFF;

/// Most headers in one `headers`/`hdrsen` (`MAX_HEADERS_RESULTS`); more costs +20.
pub const MAX_HEADERS_RESULTS: usize = 2000;
/// Most block hashes in a `getblocks` reply.
pub const MAX_GETBLOCKS_RESULTS: usize = 500;
/// Most entries in one `addr` (`MAX_ADDR_TO_SEND`); more costs +20.
pub const MAX_ADDR: usize = 1000;
/// Ban-score threshold (`DEFAULT_BANSCORE_THRESHOLD`).
pub const BAN_SCORE_THRESHOLD: u32 = 100;
/// Default ban duration in seconds (`DEFAULT_MISBEHAVING_BANTIME`).
pub const DEFAULT_BAN_SECONDS: u64 = 86_400;
/// The node's `NODE_NETWORK` service bit.
pub const NODE_NETWORK: u64 = 0x01;
/// The legacy `NODE_BITCOIN_CASH` bit every BSV node still sets.
pub const NODE_BITCOIN_CASH: u64 = 0x20;
