//! Every protocol constant and limit in one place, each with the node constant it mirrors
//! (bitcoin-sv 1.2.2; docs/PROTOCOL.md §1.4, §2.1, §5). Changing one of these changes how we look to
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
/// Default window of the streaming block decoder (`codec::block_stream`): the most payload bytes
/// it holds at once, so the largest transaction it delivers whole. Ours: three times the node's
/// policy limit on a transaction it relays or mines (`DEFAULT_MAX_TX_SIZE_POLICY_AFTER_GENESIS`,
/// 10 MB, `src/policy/policy.h`), so every transaction a default node mines fits, while a block
/// costs at most this much memory whatever its size. Larger transactions (up to the consensus
/// [`MAX_TX_SIZE`]) are read in txid-only mode.
pub const DEFAULT_BLOCK_STREAM_WINDOW: usize = 32 * 1024 * 1024;
/// Largest payload a basic header can describe; larger ones need `extmsg`.
pub const MAX_BASIC_PAYLOAD: u64 = 0xFFFF_FFFF;

/// Most headers in one `headers`/`hdrsen` (`MAX_HEADERS_RESULTS`); more costs +20.
pub const MAX_HEADERS_RESULTS: usize = 2000;
/// Most headers in a block announcement (`MAX_BLOCKS_TO_ANNOUNCE`, `src/net/net_processing.h`):
/// a `headers` of at most this many whose first header does not connect is an "unconnecting"
/// announcement (answered with `getheaders`); a longer one is `prev-blk-not-found` (+10).
pub const MAX_BLOCKS_TO_ANNOUNCE: usize = 8;
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
/// The node's `NODE_BLOOM` service bit: without it, `filterload`/`filteradd` are misbehaviour.
pub const NODE_BLOOM: u64 = 0x04;
/// Peers at or above this version must see `NODE_BLOOM` before sending bloom messages
/// (`NO_BLOOM_VERSION`); older ones are only disconnected.
pub const NO_BLOOM_VERSION: i32 = 70011;
/// Peers at or above this version get our `protoconf` (`PROTOCONF_VERSION`, the same as
/// `EXTENDED_PAYLOAD_VERSION` in 1.2.2); older ones would see an unknown command.
pub const PROTOCONF_VERSION: i32 = 70016;

/// Longest user agent accepted, in raw bytes (`MAX_SUBVERSION_LENGTH`).
pub const MAX_SUBVERSION_LENGTH: usize = 256;
/// Longest `reject` reason, in raw bytes (`MAX_REJECT_MESSAGE_LENGTH`).
pub const MAX_REJECT_MESSAGE_LENGTH: usize = 111;

/// Largest bloom filter a `filterload` may carry (`MAX_BLOOM_FILTER_SIZE`, `src/bloom.h`).
pub const MAX_BLOOM_FILTER_SIZE: usize = 36_000;
/// Most hash functions a `filterload` may ask for (`MAX_HASH_FUNCS`, `src/bloom.h`).
pub const MAX_HASH_FUNCS: u32 = 50;
/// Largest element a `filteradd` may carry (`MAX_SCRIPT_ELEMENT_SIZE_BEFORE_GENESIS`).
pub const MAX_FILTERADD_ELEMENT: usize = 520;

/// Bad checksums closer together than this count as a run (`-invalidcsinterval`,
/// `DEFAULT_MIN_TIME_INTERVAL_CHECKSUM_MS`); a longer gap resets the run.
pub const INVALID_CHECKSUM_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// Bad checksums in a run that cost nothing (`-invalidcsfreq`,
/// `DEFAULT_INVALID_CHECKSUM_FREQUENCY`); each one after that costs +1.
pub const INVALID_CHECKSUM_FREQUENCY: u32 = 100;
/// Every this many `headers` announcements that do not connect cost +20
/// (`MAX_UNCONNECTING_HEADERS`).
pub const MAX_UNCONNECTING_HEADERS: u32 = 10;
/// `authresp` messages a peer may send at once before the rate limit applies: the node's leaky
/// bucket (`src/net/authconn.h`) allows about six an hour (measured: the 7th costs +10). The
/// node applies the same bucket to `authch` only with a miner-ID database, which we never have.
pub const AUTH_MESSAGE_BURST: u32 = 6;
/// How fast the `authresp` bucket drains: one message every ten minutes (six an hour).
pub const AUTH_MESSAGE_DRAIN: std::time::Duration = std::time::Duration::from_secs(600);
/// How long to hold back requests after `reject` 0x44 `REJECT_TOOBUSY`
/// (`TOOBUSY_RETRY_DELAY`).
pub const TOOBUSY_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(5);
/// Peers at or below [`BIP0031_VERSION`] get nonce-less pings and never pong, so the only sign
/// of life is traffic: the node allows them 90 minutes of silence (`CNode::ServiceSockets`).
pub const LEGACY_RECEIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90 * 60);
/// The largest fee rate a `feefilter` may carry (`MAX_MONEY`, 21 million BSV in satoshis);
/// values outside 0..=MAX_MONEY are ignored.
pub const MAX_MONEY: i64 = 21_000_000 * 100_000_000;

/// Bytes of bulk data a connection may have queued for its socket before senders wait: enough
/// for a few large messages, small enough that 125 connections stay under a gigabyte.
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Commands a connection buffers before the manager's sends wait.
pub const CONNECTION_COMMAND_CAPACITY: usize = 64;
/// Inputs (peer up/down, messages) the services' hub buffers before connections wait for it
/// (they stop reading their sockets meanwhile, as for a lossless subscriber). Ours: the node
/// processes each peer's messages in its own thread and has no such queue.
pub const SERVICE_CHANNEL_CAPACITY: usize = 4096;
/// How often the services check their timeouts and retries. Ours; the node's message handler
/// wakes every 100 ms (`CConnman::ThreadMessageHandler`), a second is plenty for timeouts
/// measured in seconds.
pub const SERVICE_TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// Reports (facts) from connections the manager buffers before connections wait for it.
pub const REPORT_CHANNEL_CAPACITY: usize = 1024;
/// Stream policies we advertise in `protoconf`: we open no extra streams (docs/PROTOCOL.md §7).
pub const STREAM_POLICIES: &str = "Default";
/// How long a closing connection's writer may flush what is queued (a final `reject`, a
/// `pong`) before it is stopped: long enough for a healthy socket, short enough that a peer
/// which stopped reading cannot hold the close up.
pub const WRITER_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Peers at or above this version understand compact blocks; the node sends them `sendcmpct`
/// (`SHORT_IDS_BLOCKS_VERSION`).
pub const SHORT_IDS_BLOCKS_VERSION: i32 = 70014;

// --- Timing and buffers of the manager and connections (our own choices) ---

/// How often the supervisor re-checks the pool even when nothing happened.
pub const REEVALUATE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How often expired bans are lifted.
pub const BAN_EXPIRY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How long shutdown waits for connections to close before aborting them.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Connections the kernel may hold completed for us before we accept them: the node's
/// `listen(SOMAXCONN)` (Linux caps it at `net.core.somaxconn`). Tokio's and the standard
/// library's `bind` use 128, so a burst of a few hundred dials overflowed the queue, the kernel
/// dropped their SYNs, and those peers only got in on their retransmission a second or more
/// later.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Over-capacity handshakes allowed at once; past this, extra sockets are closed unanswered so a
/// flood cannot make us spend unbounded work on peers we will refuse anyway.
pub const MAX_CONCURRENT_REFUSALS: usize = 256;

/// Cap on queued control replies; past it the peer is not reading and is disconnected.
pub const MAX_PRIORITY_BYTES: usize = 1024 * 1024;

/// Free room kept in the read buffer before each read. Ours. Every connection holds a buffer of
/// this size from its first read on, so it is most of an idle connection's memory: 16 KiB
/// cost an idle manager connection 16.8–18.5 KiB resident, 4 KiB costs 13.4–13.6 KiB, with the
/// same small-message and `inv`-flood throughput in the same runs (docs/BENCHMARKS.md, "10,000
/// connections"). It is room, not a cap: the buffer grows to hold a whole message, and a
/// streamed block reads with [`STREAM_READ_ROOM`].
pub const READ_ROOM: usize = 4 * 1024;

/// How often at most a connection logs its summary of peer-triggered errors at DEBUG (a busy or
/// hostile peer must not flood the logs: each event alone is TRACE).
pub const NOISE_SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// A connection adds its message counts to the shared metrics after this many messages...
pub const METRICS_FLUSH_EVERY_MESSAGES: u32 = 1024;
/// ...or after this long, whichever comes first (and when it ends): recording each message into
/// an OpenTelemetry SDK cost 18 % of the throughput (docs/BENCHMARKS.md).
pub const METRICS_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Blocks we ask one peer for at once: the node's `MAX_BLOCKS_IN_TRANSIT_PER_PEER`
/// (`src/net/net_processing.h`); more would queue behind each other on its one send queue.
pub const MAX_BLOCKS_IN_TRANSIT_PER_PEER: usize = 16;
/// How long one peer has to deliver a requested block before the fetch moves to the next peer.
/// The node sends nothing for a block it lacks (§3.4), so silence is the usual "not found".
/// The node's own stall timeout is 10 s without progress (`-blockstallingtimeout`); we see no
/// progress inside a message, so we allow more for a large block.
pub const BLOCK_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long `Manager::get_block` waits in all, over every attempt.
pub const BLOCK_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Block hashes remembered per peer from its `inv`/`headers` announcements (oldest forgotten
/// first): a peer cannot make us hold more than this many hashes (32 bytes each).
pub const ANNOUNCED_BLOCKS_PER_PEER: usize = 1024;
/// Block fetches waiting for a peer at once (each a hash and its waiters); past it
/// `get_block` fails at once instead of queueing.
pub const MAX_PENDING_BLOCK_FETCHES: usize = 4096;

/// How long we keep serving a broadcast transaction to peers' `getdata`: the node's relay
/// memory of 15 min (`SendTxnInventory`, `src/net/net_processing.cpp`, `mapRelay` expiry).
pub const TX_RELAY_MEMORY: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Bytes of broadcast transactions the relay cache holds at most (oldest evicted first).
pub const TX_RELAY_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// How long `broadcast_transaction` collects answers by default.
pub const BROADCAST_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// After every announced peer has answered and a relay-back was seen, how long a broadcast
/// still waits for late `reject`s (the node sends them once validation finishes, §3.7).
pub const BROADCAST_SETTLE: std::time::Duration = std::time::Duration::from_millis(500);
/// A requested transaction not delivered by then is asked of another announcer: the node's
/// `TXN_REREQUEST_INTERVAL` (`src/net/net.h`).
pub const TXN_REREQUEST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// An announced transaction not delivered by then is forgotten: the node's
/// `TXN_EXPIRY_INTERVAL` (`src/net/net.h`).
pub const TXN_EXPIRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Transaction ids the stream remembers having delivered (oldest forgotten first), so each is
/// delivered once even when several peers announce it.
pub const TX_SEEN_CAPACITY: usize = 200_000;
/// Announced transactions the stream remembers while it cannot request them (back-pressure) or
/// waits for them; past it further announcements are ignored until room frees (a later
/// announcement of the same txid is taken again).
pub const MAX_PENDING_TX_ANNOUNCEMENTS: usize = 100_000;
/// Bytes of delivered transactions a stream subscriber may hold undropped before we stop
/// requesting more.
pub const TX_STREAM_QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// Announcers remembered per pending transaction, to re-request from: the first few are
/// enough (ours; the node keeps every announcer's request queue, `CNode::AskFor`).
pub const ANNOUNCERS_PER_TX: usize = 8;
/// The `NODE_NETWORK_LIMITED` service bit (BIP159, `src/protocol.h`): serves recent blocks, so
/// block fetching may ask it.
pub const NODE_NETWORK_LIMITED: u64 = 0x400;
/// Most transactions asked for in one `getdata` by the stream.
pub const MAX_TX_GETDATA_BATCH: usize = 1000;
// --- The header chain (our own choices) ---

/// How long the header chain waits for its sync peer's `headers` reply before asking another
/// peer. Ours: the node gives a headers-sync peer 15 minutes plus 1 ms per expected header
/// (`HEADERS_DOWNLOAD_TIMEOUT_BASE`, `src/net/net_processing.cpp`) because it cannot tell a
/// slow peer from a busy one; a reply of 2000 headers is 162 kB, so 30 s is generous.
pub const DEFAULT_HEADER_SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Header chain events (`ChainEvent`) buffered per subscriber before the oldest is dropped: a
/// tip a minute apart on a busy regtest, hours of mainnet blocks.
pub const CHAIN_EVENT_CAPACITY: usize = 1024;
// --- Peer learning from `addr` (docs/PROTOCOL.md §3.3) ---

/// `addr` entries a peer may send us unasked at once: the node's `ProcessAddrMessage` (1.2.2)
/// has no rate limit, so we follow Bitcoin Core 22's (`MAX_ADDR_PROCESSING_TOKEN_BUCKET`,
/// `src/net_processing.cpp`): a bucket of tokens, one per entry, refilled slowly and never above
/// this. Entries beyond the tokens are dropped, which bounds what one peer can make us store.
pub const ADDR_TOKEN_BUCKET_MAX: f64 = 1000.0;
/// How fast a peer's `addr` bucket refills: one entry every ten seconds (Bitcoin Core's
/// `MAX_ADDR_RATE_PER_SECOND`, 0.1). A node relays at most a few fresh addresses per minute.
pub const ADDR_TOKENS_PER_SECOND: f64 = 0.1;
/// Tokens a peer starts with, so its own address (the node advertises itself once after the
/// handshake, `AdvertiseLocal`) gets through (Bitcoin Core starts the bucket at 1).
pub const ADDR_INITIAL_TOKENS: f64 = 1.0;
/// Tokens our `getaddr` adds: the one solicited reply, up to the node's `MAX_ADDR_TO_SEND`
/// (the node answers `getaddr` with at most 1000 addresses, §3.3).
pub const ADDR_SOLICITED_TOKENS: f64 = MAX_ADDR as f64;
/// An `addr` entry whose timestamp is at or below this (Unix seconds, 1973) or more than
/// [`ADDR_MAX_FUTURE`] ahead gets [`ADDR_PENALTY_AGE`] instead (`ProcessAddrMessage`).
pub const ADDR_MIN_TIMESTAMP: u32 = 100_000_000;
/// How far in the future an `addr` timestamp may be (`ProcessAddrMessage`: 10 minutes).
pub const ADDR_MAX_FUTURE: u64 = 10 * 60;
/// The age given to entries with an implausible timestamp (`ProcessAddrMessage`: 5 days).
pub const ADDR_PENALTY_AGE: u64 = 5 * 24 * 60 * 60;
/// Entries last seen longer ago than this are not worth a store entry: the address manager
/// calls them terrible (`ADDRMAN_HORIZON_DAYS`, 30 days, `src/addrman.h`).
pub const ADDR_HORIZON: u64 = 30 * 24 * 60 * 60;
/// Default cap on peers learned from `addr` that were never tried (stored `Unknown`): enough to
/// find the few dozen reachable BSV nodes many times over, small enough that a flooding peer
/// cannot push DNS-seeded candidates out of the store (which evicts the oldest `Unknown` peer
/// when full). Ours; the node's address manager holds up to 65,536 "new" entries.
pub const DEFAULT_MAX_LEARNED_CANDIDATES: usize = 1000;

// ---- Streaming blocks (p2p::services::blocks::stream, docs/GUIDE.md "Blocks of any size") ----

/// Free room kept in the read buffer while a block is streamed: bigger reads than [`READ_ROOM`]
/// (fewer system calls per gigabyte), still a fixed cost per streaming connection.
pub const STREAM_READ_ROOM: usize = 256 * 1024;
/// `block` frames with a payload above this are streamed rather than buffered whole. Ours: the
/// blocks of the BSV network's quiet days fit whole (and arrive as `Message::Block`, as ever),
/// while a block of gigabytes costs a bounded window. Equal to the decoder's window so that a
/// block we buffer whole is never larger than one we would hold while streaming.
pub const DEFAULT_STREAM_THRESHOLD: u64 = DEFAULT_BLOCK_STREAM_WINDOW as u64;
/// Bytes of one streamed block that may wait for the application (transactions decoded, or raw
/// chunks) before the connection stops reading: the back-pressure window per stream.
pub const DEFAULT_STREAM_WINDOW: usize = 16 * 1024 * 1024;
/// Bytes all streamed blocks together may have waiting for the application, so that N peers
/// streaming at once cannot multiply [`DEFAULT_STREAM_WINDOW`]: past it every stream waits.
pub const DEFAULT_STREAM_BUDGET: usize = 64 * 1024 * 1024;
/// A streamed block must arrive at [`DEFAULT_BLOCK_STALLING_MIN_RATE`] measured over this much
/// time spent waiting for the peer (time waiting for the application does not count): the
/// node's `-blockstallingtimeout` default (10 s; docs/PROTOCOL.md §5), after which it
/// disconnects a peer that stalls a block download.
pub const DEFAULT_BLOCK_STALLING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The slowest acceptable block download, in bytes per second: the node's
/// `-blockstallingmindownloadspeed` default (100 kB/s; docs/PROTOCOL.md §5).
pub const DEFAULT_BLOCK_STALLING_MIN_RATE: u64 = 100_000;
/// Largest chunk of payload handed over at once in raw mode (and fed to the decoder at once).
pub const STREAM_CHUNK: usize = 1024 * 1024;
/// Messages decoded from one read that wait to be delivered together (`connection/session.rs`,
/// `flush_deliveries`): enough that a subscriber is woken once for a read's worth of small
/// messages (a 64 KiB read holds about 1,000 one-entry `inv`s), few enough that what waits is a
/// small multiple of the read buffer, which already bounds it.
pub const DELIVERY_BURST: usize = 256;
/// Chunks of a streamed block that may wait for the checksum worker (`connection/checksum.rs`):
/// two keep it busy while the session decodes the next, and bound what it holds to two
/// [`STREAM_CHUNK`]s per streamed block.
pub const CHECKSUM_QUEUE_CHUNKS: usize = 2;
// --- PostgreSQL peer store (`PostgresPeerStore`, cargo feature `postgres`) ---
// Ours: the node keeps its ban list in a local file (`banlist.dat`, `src/net/net.cpp`
// `DumpBanlist`) and has no shared store; these bound how we use a shared database.

/// Default connections a `PostgresPeerStore` opens for its calls (besides the one that listens
/// for bans). The manager writes from one task and reads from a few (listener, supervisor,
/// metrics gauge), so four let reads proceed while a write waits on the server; further calls
/// wait for a free connection instead of opening more, which keeps a fleet of instances well
/// under PostgreSQL's default `max_connections` (100).
pub const DEFAULT_POSTGRES_CONNECTIONS: usize = 4;
/// How long opening a PostgreSQL connection may take before the call fails with
/// `StoreUnavailable` (unless the URL sets `connect_timeout`). A server on the same network
/// answers in milliseconds; a dead host would otherwise hold a call for the kernel's TCP
/// connect timeout (about two minutes on Linux).
pub const POSTGRES_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// First wait before the ban listener reconnects after losing its connection, doubled after
/// each failure up to [`POSTGRES_LISTEN_RETRY_MAX`]: short, because a notice missed while
/// disconnected is recovered only once it is back.
pub const POSTGRES_LISTEN_RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(100);
/// Longest wait between the ban listener's reconnection attempts while the server is down.
pub const POSTGRES_LISTEN_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);
/// After reconnecting, the ban listener re-announces the bans stamped this long before it lost
/// its connection or later: notices sent meanwhile were lost, and the instances' clocks (which
/// stamp `status_timestamp`) may differ by this much.
pub const POSTGRES_RESYNC_MARGIN_SECS: u64 = 60;
/// Ban notices buffered per subscriber before the oldest is dropped (`RecvError::Lagged`). A
/// manager handles each in microseconds; a thousand covers a burst of bans from a whole fleet.
pub const BAN_NOTICE_CAPACITY: usize = 1024;
/// The largest `NOTIFY` payload PostgreSQL accepts is 8000 bytes (`NOTIFY_PAYLOAD_MAX_LENGTH`,
/// `src/backend/commands/async.c`, less its terminating zero). A notice whose reason does not
/// fit (a long `Manual` note) is sent with the address only and receivers read the ban from the
/// table.
pub const POSTGRES_NOTIFY_PAYLOAD_MAX: usize = 7999;
// --- Hardening: what peers can make us hold, and who gets a slot (issue 14, docs/SECURITY.md) ---

/// Default bytes the lossy message channel (`Manager::subscribe_bitcoin_messages`) may hold for
/// its slowest subscriber. Ours: the tokio ring holds up to `event_channel_capacity` *messages*
/// whatever their size (1,000 `inv`s of 50,000 entries are 1.8 GB), so a send that would take
/// the ring past this is dropped and counted as an overflow, as a full ring would. 64 MiB is 32
/// messages of the node's largest non-block payload (`DEFAULT_MAX_PROTOCOL_RECV_PAYLOAD_LENGTH`,
/// 2 MiB) and thousands of ordinary ones.
pub const DEFAULT_MESSAGE_CHANNEL_BYTES: usize = 64 * 1024 * 1024;
/// Default bytes each lossless subscriber (`Manager::subscribe_messages_lossless`) may have
/// queued before the connections that feed it stop reading (back-pressure): the count bound
/// alone would let a subscriber's queue of 1,000 big messages hold gigabytes. Same size as
/// [`DEFAULT_MESSAGE_CHANNEL_BYTES`], for the same reason.
pub const DEFAULT_LOSSLESS_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// What a queued message event is assumed to cost beyond its payload: the event, the enum and
/// the allocations' headers. Ours, measured roughly (`size_of::<BitcoinMessageEvent>()` is well
/// under this).
pub const MESSAGE_EVENT_OVERHEAD: usize = 256;
/// Decoded messages take more memory than their wire form (an `inv` entry is 36 bytes on the
/// wire and 40 in memory, an `addr` entry 30 and about 48): the byte bounds count the payload
/// length times this. Ours.
pub const MESSAGE_MEMORY_FACTOR: usize = 2;
/// Default inbound connections that may be in their handshake at once, apart from established
/// ones. Ours: the node has no such budget (it counts a slot from accept, `CConnman::AcceptConnection`),
/// which is what lets a slowloris hold its slots; 64 is far more than honest peers ever need at
/// once (a handshake takes one or two round trips) and below `max_connections`' default.
pub const DEFAULT_MAX_INBOUND_HANDSHAKES: usize = 64;
/// Default age after which an inbound connection still in its handshake may be evicted to make
/// room for a new one. Ours: an honest handshake is one or two round trips (well under a second
/// across the world); a peer sending a byte a second needs 24 s for one message header. The
/// node's own limit is the 60 s handshake timeout (`-peertimeout`), which we keep as the upper
/// bound for peers nobody needs the room of.
pub const DEFAULT_HANDSHAKE_EVICT_AGE: std::time::Duration = std::time::Duration::from_secs(5);
/// Default cap on inbound connections from one IP (the host itself, `127.0.0.1`/`::1`, and the
/// whitelist are exempt). Ours: the node has none; one address never needs more than a couple
/// of connections, and 8 leaves room for NAT'd hosts.
pub const DEFAULT_MAX_INBOUND_PER_IP: usize = 8;
/// Default sustained rate at which the listener admits sockets, per second. Ours: an honest
/// node sees a few inbound connections a minute; 100 a second stays far above that and far below
/// what a connect-and-drop loop can do (thousands a second on loopback).
pub const DEFAULT_ACCEPT_RATE: f64 = 100.0;
/// Default burst of sockets the listener admits at once before the rate applies (a restart of a
/// busy host's peers, a test's 300 simultaneous dials). Ours.
pub const DEFAULT_ACCEPT_BURST: usize = 500;
/// Protected from eviction: peers from the 4 address groups picked by a keyed hash
/// (`AttemptToEvictConnection`, `src/net/net.cpp`), so an attacker cannot predict them.
pub const EVICT_PROTECT_NETGROUP: usize = 4;
/// Protected from eviction: the 8 peers with the lowest ping (`AttemptToEvictConnection`).
pub const EVICT_PROTECT_PING: usize = 8;
/// Protected from eviction: the 4 peers that most recently sent us useful messages (the node
/// protects 4 by last transaction and 4 by last block; we have one measure, bytes received).
pub const EVICT_PROTECT_USEFUL: usize = 4;
/// How long the listener waits for an evicted peer's slot to free before refusing the newcomer.
/// Ours: an evicted connection closes in well under this.
pub const EVICT_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How soon a failed peer-store save is retried (a full disk, a read-only file), instead of
/// waiting a whole `save_interval`. Ours.
pub const STORE_SAVE_RETRY: std::time::Duration = std::time::Duration::from_secs(30);
/// Bytes of peers' messages queued for the services' hub (`services::ServiceTx`) before
/// connections wait: the channel's [`SERVICE_CHANNEL_CAPACITY`] of 4,096 messages alone would
/// let 4,096 `inv`s of 50,000 entries (7 GB) queue while the hub is busy. Ours; 64 MiB is
/// dozens of the largest non-block messages.
pub const SERVICE_CHANNEL_BYTES: usize = 64 * 1024 * 1024;
// ---- Bus sink (`p2p::sink`, issue 15) ----
// Ours: the node has no message bus. The numbers size a bridge between a listener and a bus
// (docs/FLEET.md).

/// Default bytes of records a sink pump holds unacknowledged (queued or in flight) before it
/// stops taking more and the transaction stream's back-pressure slows the peers: room for a
/// 32 MB block (the node's default `-blockmaxsize`, 32 MB, `DEFAULT_MAX_GENERATED_BLOCK_SIZE_AFTER`)
/// twice over, and a few seconds of a busy transaction stream while the bus fails over.
pub const DEFAULT_SINK_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// Default publishes a pump has awaiting acknowledgement at once: enough to hide a loopback or
/// LAN round trip at thousands of transactions per second, few enough that a bus outage holds
/// little besides the byte budget.
pub const DEFAULT_SINK_MAX_IN_FLIGHT: usize = 256;
/// Default room in the pump's transaction-stream subscription (`subscribe_transactions`).
pub const DEFAULT_SINK_TX_QUEUE: usize = 1024;
/// First wait before publishing a record again after the bus was unavailable; doubled per
/// failure up to [`SINK_RETRY_MAX`].
pub const SINK_RETRY_INITIAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Longest wait between two publishes of one record while the bus is unavailable: a restarted
/// bus is used again within this.
pub const SINK_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);
/// Default time a pump's shutdown waits for what is in flight to be acknowledged before it
/// gives up and reports the rest as unacknowledged.
pub const DEFAULT_SINK_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a pump waits for the header chain to catch up with its peers before it starts
/// following tips (blocks above the tip it then has are published).
pub const DEFAULT_SINK_SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Tries at fetching one block of the best chain (`Manager::get_block`, which itself asks
/// several peers) before the pump logs it as missed and goes on.
pub const SINK_BLOCK_FETCH_ATTEMPTS: u32 = 3;
/// Default JetStream duplicate window of the NATS bridge (`bitcoinsv-nats`): a block or
/// transaction published again within it, by another listener or a restarted one, is stored
/// once. JetStream's own default is 2 minutes; 10 covers a bridge restart and the node's
/// re-announcement of its mempool to a new connection, at the cost of the server remembering
/// 10 minutes of ids.
pub const DEFAULT_BUS_DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
/// Default time the NATS bridge waits for JetStream's acknowledgement of one publish before it
/// counts the bus as unavailable and publishes again (async-nats' own default).
pub const DEFAULT_BUS_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Bytes of a NATS message's maximum payload kept for headers: a block whose serialization
/// does not fit in `max_payload` minus this goes to the Object Store and is announced by
/// reference.
pub const BUS_HEADER_ROOM: usize = 4096;
/// Largest Object Store chunk the NATS bridge writes (half the server's `max_payload` when
/// that is smaller): few round trips per block, each chunk one acknowledged publish.
pub const BUS_MAX_OBJECT_CHUNK: usize = 512 * 1024;
