//! What a simulated node says on one connection, as the official node does (docs/PROTOCOL.md §2–3),
//! free of I/O: [`PeerState`] takes a received message and returns [`Action`]s (messages to
//! send, a transaction to accept, a ban, a disconnect). The connection task only moves bytes
//! and timers; everything testable about the node's behaviour is here.
//!
//! Handshake, node side (docs/PROTOCOL.md §2.5 inbound, §2.6 outbound):
//!
//! * inbound: peer `version` → `version`, `verack`, `protoconf`; peer `verack` → `authch`,
//!   `sendheaders`, `sendcmpct(0,1)`, and the first `ping`;
//! * outbound: we send `version` at once; peer `version` → `verack`, `protoconf`, `getaddr`;
//!   peer `verack` → as inbound.
//!
//! Before the peer's `version`, only `version`, `reject`, `createstrm` and `streamack` are
//! handled; between `version` and `verack` also `verack`, `authch`, `authresp`; anything else is
//! dropped with misbehaviour +1 (§2.8). At a score of 100 the peer is banned.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoinsv::bitcoin::{
    Block, BlockHeader, BlockLocator, Hash, InvType, InvVect, NetAddress, TimestampedNetAddress,
    Transaction,
};
use bitcoinsv::p2p::limits::{
    BAN_SCORE_THRESHOLD, BIP0031_VERSION, DEFAULT_MAX_RECV_PAYLOAD, EXTENDED_PAYLOAD_VERSION,
    LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH, MAX_ADDR, MAX_BLOCKS_TO_ANNOUNCE, MAX_GETBLOCKS_RESULTS,
    MAX_HEADERS_RESULTS, MIN_PEER_PROTO_VERSION, NODE_BITCOIN_CASH, NODE_NETWORK, NO_BLOOM_VERSION,
    PROTOCOL_VERSION, SENDHEADERS_VERSION, SHORT_IDS_BLOCKS_VERSION,
};
use bitcoinsv::p2p::messages::{
    AssociationId, AuthChallenge, Protoconf, Reject, RejectCode, SendCmpct,
};
use bitcoinsv::p2p::{Message, Misbehavior, VersionMessage};
use bytes::Bytes;

use crate::chain::ChainHandle;
use crate::misbehaviour::{Misbehaviour, BCH_USER_AGENT};
use crate::synthetic::SyntheticBlock;

/// The synthetic blocks every node serves on `getdata`, by hash (`SimNet::add_synthetic_block`).
pub(crate) type SyntheticBlocks = Mutex<HashMap<Hash, Arc<SyntheticBlock>>>;

/// Services the node advertises: `NODE_NETWORK | NODE_BITCOIN_CASH` (docs/PROTOCOL.md §2.4).
pub const NODE_SERVICES: u64 = NODE_NETWORK | NODE_BITCOIN_CASH;
/// The node's default stream-policy list (`-multistreampolicies`).
pub const STREAM_POLICIES: &str = "BlockPriority,Default";

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer connected to the node.
    Inbound,
    /// The node dialled the peer.
    Outbound,
}

/// Transactions the simnet knows but has not mined: the nodes' shared relay pool.
#[derive(Debug, Default)]
pub(crate) struct Mempool {
    order: Vec<Hash>,
    txs: HashMap<Hash, Transaction>,
}

impl Mempool {
    /// Adds `tx`; false when it was already there.
    pub(crate) fn insert(&mut self, tx: Transaction) -> bool {
        let txid = tx.txid();
        if self.txs.contains_key(&txid) {
            return false;
        }
        self.order.push(txid);
        self.txs.insert(txid, tx);
        true
    }

    /// The transaction with `txid`.
    pub(crate) fn get(&self, txid: &Hash) -> Option<Transaction> {
        self.txs.get(txid).cloned()
    }

    /// Whether `txid` is in the pool.
    pub(crate) fn contains(&self, txid: &Hash) -> bool {
        self.txs.contains_key(txid)
    }

    /// Takes every transaction out, oldest first (for a mined block).
    pub(crate) fn drain(&mut self) -> Vec<Transaction> {
        let mut txs = std::mem::take(&mut self.txs);
        std::mem::take(&mut self.order)
            .into_iter()
            .filter_map(|h| txs.remove(&h))
            .collect()
    }

    /// Number of transactions.
    pub(crate) fn len(&self) -> usize {
        self.txs.len()
    }
}

/// What the node knows beyond the connection: the chain, the pool, the addresses it hands
/// out, its identity.
pub(crate) struct Ctx<'a> {
    /// The shared chain.
    pub chain: &'a ChainHandle,
    /// The shared transaction pool.
    pub mempool: &'a Mutex<Mempool>,
    /// What `getaddr` is answered with, less `own_addr`: every node of the simnet, then the
    /// unreachable addresses. One list shared by all nodes, so memory stays linear in nodes.
    pub addresses: &'a [SocketAddr],
    /// The node's own listening address (left out of `getaddr` answers).
    pub own_addr: SocketAddr,
    /// The configured user agent.
    pub user_agent: &'a str,
    /// Nonces of the node's own outbound `version`s (to detect connecting to itself).
    pub local_nonces: &'a Mutex<HashSet<u64>>,
    /// Registered synthetic blocks, served on `getdata(MSG_BLOCK)` only.
    pub synthetic: &'a SyntheticBlocks,
}

/// What the connection task must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this message.
    Send(Message),
    /// Stream this synthetic block as a `block` message (the connection writes it in bounded
    /// memory; frames queued after it wait until it is written).
    SendSynthetic(Arc<SyntheticBlock>),
    /// Put this transaction into the pool and announce it to the other peers.
    AcceptTx(Transaction),
    /// The peer's `protoconf` limit: never send it a larger non-block message.
    SetPeerMaxRecv(u64),
    /// The peer's protocol version (for `extmsg`).
    SetPeerVersion(i32),
    /// The handshake has just completed.
    HandshakeComplete,
    /// The peer earned misbehaviour points.
    Misbehaving {
        /// Points added.
        score: u32,
        /// The node's reason string.
        reason: &'static str,
    },
    /// Ban the peer's IP and close.
    Ban(String),
    /// Close without a ban.
    Disconnect(String),
}

/// The peer's `version`, as far as the node uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerVersion {
    /// Protocol version.
    pub version: i32,
    /// Whether it wants transaction `inv`s.
    pub relay: bool,
    /// Its user agent.
    pub user_agent: String,
    /// Its start height.
    pub start_height: i32,
}

/// The node's state for one connection.
#[derive(Debug)]
pub struct PeerState {
    direction: Direction,
    peer_addr: SocketAddr,
    mode: Misbehaviour,
    nonce: u64,
    peer: Option<PeerVersion>,
    verack_received: bool,
    sendheaders: bool,
    sendhdrsen: bool,
    protoconf_received: bool,
    getaddr_answered: bool,
    score: u32,
    ping: Option<(u64, Instant)>,
    hash_continue: Option<Hash>,
}

/// A random nonce that is never zero (zero has a meaning in `pong`, docs/PROTOCOL.md §3.2).
pub(crate) fn nonzero_nonce() -> u64 {
    loop {
        let n: u64 = rand::random();
        if n != 0 {
            return n;
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether a user agent matches the node's default ban list (case-insensitive substrings).
pub(crate) fn is_banned_user_agent(ua: &str) -> bool {
    bitcoinsv::p2p::UserAgentBanList::default().is_banned(ua)
}

fn reject(message: &str, code: RejectCode, reason: &str, hash: Option<Hash>) -> Message {
    Message::Reject(Reject {
        message: message.to_string(),
        code,
        reason: reason.to_string(),
        hash,
    })
}

impl PeerState {
    /// State for a new connection. `nonce` goes into the node's `version`.
    pub fn new(
        direction: Direction,
        peer_addr: SocketAddr,
        mode: Misbehaviour,
        nonce: u64,
    ) -> Self {
        PeerState {
            direction,
            peer_addr,
            mode,
            nonce,
            peer: None,
            verack_received: false,
            sendheaders: false,
            sendhdrsen: false,
            protoconf_received: false,
            getaddr_answered: false,
            score: 0,
            ping: None,
            hash_continue: None,
        }
    }

    /// Whether the handshake has completed (the peer's `version` and `verack` received).
    pub fn is_connected(&self) -> bool {
        self.peer.is_some() && self.verack_received
    }

    /// The peer's `version`, once received.
    pub fn peer_version(&self) -> Option<&PeerVersion> {
        self.peer.as_ref()
    }

    /// The peer's misbehaviour score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// The node's `version` for this connection (docs/PROTOCOL.md §2.2): 70016, services 0x21, the
    /// peer's address (services 0 for an inbound peer), an all-zero `addr_from` with our
    /// services, the chain height, relay on, and an empty association ID (`0x00`) since the
    /// simnet does not open extra streams.
    pub fn version_message(&self, ctx: &Ctx<'_>) -> VersionMessage {
        let user_agent = if self.mode == Misbehaviour::BchUserAgent {
            BCH_USER_AGENT.to_string()
        } else {
            ctx.user_agent.to_string()
        };
        let receiver_services = match self.direction {
            Direction::Inbound => 0,
            Direction::Outbound => NODE_NETWORK,
        };
        VersionMessage {
            version: PROTOCOL_VERSION,
            services: NODE_SERVICES,
            timestamp: unix_now(),
            receiver: NetAddress::new(self.peer_addr, receiver_services),
            sender: NetAddress {
                services: NODE_SERVICES,
                ..NetAddress::UNSPECIFIED
            },
            nonce: self.nonce,
            user_agent,
            start_height: ctx.chain.tip_height() as i32,
            relay: true,
            association_id: Some(AssociationId::Empty),
        }
    }

    /// What the node sends when the connection opens: nothing inbound (the node never speaks
    /// first), its `version` outbound.
    pub fn start(&mut self, ctx: &Ctx<'_>) -> Vec<Action> {
        match self.direction {
            Direction::Inbound => Vec::new(),
            Direction::Outbound => vec![Action::Send(Message::Version(self.version_message(ctx)))],
        }
    }

    /// Scores an offence as the node does: its points and its reason come from the library's
    /// catalogue ([`Misbehavior`]), so the simulated node and the library cannot drift apart.
    fn misbehave(&mut self, offence: Misbehavior, out: &mut Vec<Action>) {
        let score = offence.score();
        let reason = offence.node_reason();
        let before = self.score;
        self.score = self.score.saturating_add(score);
        out.push(Action::Misbehaving { score, reason });
        if before < BAN_SCORE_THRESHOLD && self.score >= BAN_SCORE_THRESHOLD {
            out.push(Action::Ban(format!(
                "misbehaviour score {} ({reason})",
                self.score
            )));
        }
    }

    /// Handles one received message.
    pub fn on_message(&mut self, msg: Message, ctx: &Ctx<'_>, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        // Handled at any time (§2.8).
        match msg {
            Message::Version(v) => {
                self.on_version(v, ctx, &mut out);
                return out;
            }
            Message::Reject(_) | Message::CreateStream(_) | Message::StreamAck(_) => return out,
            _ => {}
        }
        if self.peer.is_none() {
            self.misbehave(Misbehavior::MissingVersion, &mut out);
            return out;
        }
        if !self.verack_received {
            match msg {
                Message::Verack => self.on_verack(now, &mut out),
                Message::AuthCh(_) | Message::AuthResp(_) => {}
                _ => self.misbehave(Misbehavior::MissingVerack, &mut out),
            }
            return out;
        }
        self.on_connected_message(msg, ctx, &mut out);
        out
    }

    fn on_version(&mut self, v: VersionMessage, ctx: &Ctx<'_>, out: &mut Vec<Action>) {
        if self.peer.is_some() {
            out.push(Action::Send(reject(
                "version",
                RejectCode::Duplicate,
                "Duplicate version message",
                None,
            )));
            self.misbehave(Misbehavior::MultipleVersion, out);
            return;
        }
        if v.version < MIN_PEER_PROTO_VERSION {
            out.push(Action::Send(reject(
                "version",
                RejectCode::Obsolete,
                &format!("Version must be {MIN_PEER_PROTO_VERSION} or greater"),
                None,
            )));
            out.push(Action::Disconnect(format!(
                "obsolete version {}",
                v.version
            )));
            return;
        }
        if self.direction == Direction::Inbound
            && ctx
                .local_nonces
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&v.nonce)
        {
            out.push(Action::Disconnect("connected to self".into()));
            return;
        }
        if is_banned_user_agent(&v.user_agent) {
            self.misbehave(Misbehavior::InvalidUserAgent, out);
            return;
        }
        self.peer = Some(PeerVersion {
            version: v.version,
            relay: v.relay,
            user_agent: v.user_agent,
            start_height: v.start_height,
        });
        out.push(Action::SetPeerVersion(v.version));
        if self.direction == Direction::Inbound {
            out.push(Action::Send(Message::Version(self.version_message(ctx))));
        }
        if self.mode == Misbehaviour::NeverVerack {
            return;
        }
        out.push(Action::Send(Message::Verack));
        out.push(Action::Send(Message::Protoconf(Protoconf::new(
            DEFAULT_MAX_RECV_PAYLOAD as u32,
            STREAM_POLICIES,
        ))));
        if self.direction == Direction::Outbound {
            out.push(Action::Send(Message::GetAddr));
        }
    }

    /// The messages the node sends on a `verack` (`ProcessVerAckMessage`).
    fn verack_replies(&self, out: &mut Vec<Action>) {
        /// `FEEFILTER_VERSION` (`src/version.h`).
        const FEEFILTER_VERSION: i32 = 70013;
        let version = self.peer.as_ref().map_or(0, |p| p.version);
        let challenge: [u8; 32] = rand::random();
        out.push(Action::Send(Message::AuthCh(AuthChallenge {
            version: 1,
            challenge: Bytes::copy_from_slice(&challenge),
        })));
        if version >= SENDHEADERS_VERSION {
            out.push(Action::Send(Message::SendHeaders));
        }
        if version >= SHORT_IDS_BLOCKS_VERSION {
            out.push(Action::Send(Message::SendCmpct(SendCmpct {
                announce: false,
                version: 1,
            })));
        }
        // `SendFeeFilter` (`src/net/net_processing.cpp`): only to peers at 70013 or later.
        if let Misbehaviour::FeeFilter(rate) = self.mode {
            if version >= FEEFILTER_VERSION {
                out.push(Action::Send(Message::FeeFilter(rate)));
            }
        }
    }

    fn on_verack(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.verack_received = true;
        self.verack_replies(out);
        out.push(Action::HandshakeComplete);
        // The first ping is due at once after the handshake (`SendPings`).
        out.extend(self.ping_now(now));
    }

    fn ping_now(&mut self, now: Instant) -> Option<Action> {
        let version = self.peer.as_ref().map_or(0, |p| p.version);
        if version <= BIP0031_VERSION {
            // Nonce-less pings to ancient peers are not simulated.
            return None;
        }
        let nonce = nonzero_nonce();
        self.ping = Some((nonce, now));
        Some(Action::Send(Message::Ping(nonce)))
    }

    /// The ping timer fired: ping if none is outstanding; close if one is overdue.
    pub fn on_ping_timer(&mut self, now: Instant, timeout: Duration) -> Vec<Action> {
        if !self.is_connected() {
            return Vec::new();
        }
        match self.ping {
            Some((_, sent)) if now.saturating_duration_since(sent) >= timeout => {
                vec![Action::Disconnect("ping timeout".into())]
            }
            Some(_) => Vec::new(),
            None => self.ping_now(now).into_iter().collect(),
        }
    }

    /// The outstanding ping's nonce, if any.
    #[cfg(test)]
    pub fn outstanding_ping(&self) -> Option<u64> {
        self.ping.map(|(n, _)| n)
    }

    fn on_connected_message(&mut self, msg: Message, ctx: &Ctx<'_>, out: &mut Vec<Action>) {
        match msg {
            Message::Verack => self.verack_replies(out),
            Message::Ping(nonce) => {
                let version = self.peer.as_ref().map_or(0, |p| p.version);
                if self.mode != Misbehaviour::NeverPong && version > BIP0031_VERSION {
                    out.push(Action::Send(Message::Pong(nonce)));
                }
            }
            Message::Pong(nonce) => {
                if let Some((expected, _)) = self.ping {
                    // A matching nonce completes the ping; zero cancels it (§3.2).
                    if nonce == expected || nonce == 0 {
                        self.ping = None;
                    }
                }
            }
            // Answered once per connection, for inbound peers only (§3.3).
            Message::GetAddr if self.direction == Direction::Inbound && !self.getaddr_answered => {
                self.getaddr_answered = true;
                let time = unix_now() as u32;
                let addrs: Vec<TimestampedNetAddress> = ctx
                    .addresses
                    .iter()
                    .filter(|a| **a != ctx.own_addr)
                    .map(|a| TimestampedNetAddress {
                        time,
                        addr: NetAddress::new(*a, NODE_SERVICES),
                    })
                    .collect();
                for chunk in addrs.chunks(MAX_ADDR) {
                    out.push(Action::Send(Message::Addr(chunk.to_vec())));
                }
            }
            Message::Addr(a) if a.len() > MAX_ADDR => {
                self.misbehave(Misbehavior::OversizedAddr, out);
            }
            // A node in initial block download does not answer at all (§3.5).
            Message::GetHeaders(_) if self.mode == Misbehaviour::IgnoreGetHeaders => {}
            Message::GetHeaders(locator) => self.on_getheaders(&locator, ctx, out),
            Message::GetBlocks(locator) => self.on_getblocks(&locator, ctx, out),
            Message::GetData(items) => self.on_getdata(&items, ctx, out),
            Message::Inv(items) => self.on_inv(&items, ctx, out),
            Message::Tx(tx) => {
                if self.mode == Misbehaviour::RejectAllTx {
                    out.push(Action::Send(reject(
                        "tx",
                        RejectCode::Invalid,
                        "bad-txns-inputs-missingorspent",
                        Some(tx.txid()),
                    )));
                } else {
                    out.push(Action::AcceptTx(tx));
                }
            }
            Message::Headers(h) if h.len() > MAX_HEADERS_RESULTS => {
                self.misbehave(Misbehavior::TooManyHeaders, out);
            }
            Message::SendHeaders => {
                if self.sendheaders {
                    self.misbehave(Misbehavior::InvalidSendHeaders, out);
                }
                self.sendheaders = true;
            }
            Message::SendHdrsEn => {
                if self.sendhdrsen {
                    self.misbehave(Misbehavior::InvalidSendHdrsEn, out);
                }
                self.sendhdrsen = true;
            }
            Message::Protoconf(p) => {
                if self.protoconf_received {
                    out.push(Action::Disconnect("second protoconf".into()));
                } else if p.number_of_fields == 0 {
                    out.push(Action::Disconnect("protoconf with no fields".into()));
                } else if u64::from(p.max_recv_payload_length) < LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH
                {
                    out.push(Action::Disconnect(format!(
                        "protoconf limit {} below {}",
                        p.max_recv_payload_length, LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH
                    )));
                } else {
                    self.protoconf_received = true;
                    out.push(Action::SetPeerMaxRecv(u64::from(p.max_recv_payload_length)));
                }
            }
            Message::Mempool(None) => {
                out.push(Action::Disconnect("legacy mempool request".into()));
            }
            Message::FilterLoad(_) | Message::FilterAdd(_) => {
                let version = self.peer.as_ref().map_or(0, |p| p.version);
                if version >= NO_BLOOM_VERSION {
                    self.misbehave(Misbehavior::NoBloomVersion, out);
                } else {
                    out.push(Action::Disconnect("bloom filter without NODE_BLOOM".into()));
                }
            }
            // Recorded or ignored by the node; unknown commands are ignored (§1.5 step 6).
            _ => {}
        }
    }

    /// `getheaders`: up to 2000 headers after the fork point, through `stop_hash` (§3.5).
    fn on_getheaders(&mut self, locator: &BlockLocator, ctx: &Ctx<'_>, out: &mut Vec<Action>) {
        let chain = ctx.chain.read();
        if locator.hashes.is_empty() {
            // Empty locator: just the stop block's header, or nothing if it is unknown.
            if let Some(h) = chain.height_of(&locator.stop_hash) {
                let headers: Vec<BlockHeader> = chain.header_at(h).into_iter().collect();
                out.push(Action::Send(Message::Headers(headers)));
            }
            return;
        }
        let from = chain.fork_height(locator).saturating_add(1);
        let mut headers = Vec::new();
        for header in chain.headers_from(from, MAX_HEADERS_RESULTS) {
            let hash = header.hash();
            headers.push(header);
            if hash == locator.stop_hash {
                break;
            }
        }
        out.push(Action::Send(Message::Headers(headers)));
    }

    /// `getblocks`: an `inv` of up to 500 blocks after the fork point, stopping before
    /// `stop_hash`; when the batch is full, remember its last hash so serving that block also
    /// announces the tip (`hashContinue`, §3.4).
    fn on_getblocks(&mut self, locator: &BlockLocator, ctx: &Ctx<'_>, out: &mut Vec<Action>) {
        let chain = ctx.chain.read();
        let from = chain.fork_height(locator).saturating_add(1);
        let mut inv = Vec::new();
        let mut height = from;
        while let Some(hash) = chain.hash_at(height) {
            if hash == locator.stop_hash {
                break;
            }
            inv.push(InvVect::block(hash));
            if inv.len() >= MAX_GETBLOCKS_RESULTS {
                self.hash_continue = Some(hash);
                break;
            }
            height += 1;
        }
        if !inv.is_empty() {
            out.push(Action::Send(Message::Inv(inv)));
        }
    }

    /// `getdata`: blocks in request order, unknown blocks skipped silently; known transactions
    /// as `tx`, unknown ones in one `notfound` at the end; other types ignored (§3.4).
    fn on_getdata(&mut self, items: &[InvVect], ctx: &Ctx<'_>, out: &mut Vec<Action>) {
        let mut notfound = Vec::new();
        for item in items {
            match item.inv_type {
                // A compact-block request far from the tip gets a full block; the simnet
                // always answers with the full block.
                InvType::Block | InvType::CompactBlock => {
                    match self.mode {
                        Misbehaviour::SilentOnBlockGetData => continue,
                        Misbehaviour::NotFoundBlocks => {
                            notfound.push(*item);
                            continue;
                        }
                        _ => {}
                    }
                    if let Some(block) = ctx.chain.block(&item.hash) {
                        let block = if self.mode == Misbehaviour::CorruptBlocks {
                            corrupt(&block)
                        } else {
                            (*block).clone()
                        };
                        out.push(Action::Send(Message::Block(block)));
                        if self.hash_continue == Some(item.hash) {
                            self.hash_continue = None;
                            out.push(Action::Send(Message::Inv(vec![InvVect::block(
                                ctx.chain.tip_hash(),
                            )])));
                        }
                    } else if item.inv_type == InvType::Block {
                        self.serve_synthetic(item, ctx, out, &mut notfound);
                    }
                }
                InvType::Tx => {
                    let tx = ctx
                        .mempool
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&item.hash);
                    match tx {
                        Some(tx) => out.push(Action::Send(Message::Tx(tx))),
                        None => notfound.push(*item),
                    }
                }
                InvType::DataRefTx => notfound.push(*item),
                _ => {}
            }
        }
        if !notfound.is_empty() {
            out.push(Action::Send(Message::NotFound(notfound)));
        }
    }

    /// A block `getdata` for a hash the chain does not hold: a registered synthetic block is
    /// streamed; one that needs the `extmsg` header (over 4 GiB) goes only to a peer of
    /// version ≥ 70016 (`CMessageHeader::GetMaxPayloadLength`, docs/PROTOCOL.md §1.2). To an
    /// older peer the node logs and sends nothing; the simnet answers `notfound` instead, so
    /// a test sees the refusal at once rather than waiting for a timeout. Unknown hashes stay
    /// unanswered, as before.
    fn serve_synthetic(
        &self,
        item: &InvVect,
        ctx: &Ctx<'_>,
        out: &mut Vec<Action>,
        notfound: &mut Vec<InvVect>,
    ) {
        let block = ctx
            .synthetic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&item.hash)
            .cloned();
        let Some(block) = block else {
            return;
        };
        let version = self.peer.as_ref().map_or(0, |p| p.version);
        if block.needs_extended_header() && version < EXTENDED_PAYLOAD_VERSION {
            notfound.push(*item);
        } else {
            out.push(Action::SendSynthetic(block));
        }
    }

    /// `inv`: unknown transactions are requested with `getdata`; an unknown block makes the
    /// node ask for headers; any type other than tx and block disconnects (§3.4).
    fn on_inv(&mut self, items: &[InvVect], ctx: &Ctx<'_>, out: &mut Vec<Action>) {
        let mut wanted = Vec::new();
        for item in items {
            match item.inv_type {
                InvType::Tx => {
                    // A node that rejects every transaction never has one in its pool (the
                    // simnet's pool is shared by its nodes): it asks for each it is offered.
                    let known = self.mode != Misbehaviour::RejectAllTx
                        && ctx
                            .mempool
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .contains(&item.hash);
                    if !known {
                        wanted.push(*item);
                    }
                }
                InvType::Block => {
                    if ctx.chain.height_of(&item.hash).is_none() {
                        let chain = ctx.chain.read();
                        out.push(Action::Send(Message::GetHeaders(BlockLocator {
                            version: PROTOCOL_VERSION as u32,
                            hashes: chain.locator(),
                            stop_hash: item.hash,
                        })));
                    }
                }
                other => {
                    out.push(Action::Disconnect(format!("inv of unknown type {other}")));
                    return;
                }
            }
        }
        if !wanted.is_empty() {
            out.push(Action::Send(Message::GetData(wanted)));
        }
    }

    /// A payload failed to parse (§1.5 step 5): `reject` 0x01, +1 for an over-long var int; a
    /// bad `version` aborts the handshake with `reject` 0x60 instead (§2.2).
    pub fn on_malformed(&mut self, command: &str, var_int_too_large: bool) -> Vec<Action> {
        let mut out = Vec::new();
        if command == "version" && self.peer.is_none() {
            out.push(Action::Send(reject(
                "version",
                RejectCode::StreamSetup,
                "Badly formatted version message",
                None,
            )));
            out.push(Action::Disconnect("malformed version".into()));
            return out;
        }
        let message: String = command.chars().take(12).collect();
        out.push(Action::Send(reject(
            &message,
            RejectCode::Malformed,
            "error parsing message",
            None,
        )));
        if var_int_too_large {
            self.misbehave(Misbehavior::OverLongSize, &mut out);
        }
        out
    }

    /// A block was added to the chain: `headers` to a peer that sent `sendheaders`, otherwise
    /// an `inv` of the block (§3.6).
    pub fn on_new_block(&self, header: &BlockHeader) -> Vec<Action> {
        if !self.is_connected() {
            return Vec::new();
        }
        let msg = if self.sendheaders {
            Message::Headers(vec![*header])
        } else {
            Message::Inv(vec![InvVect::block(header.hash())])
        };
        vec![Action::Send(msg)]
    }

    /// The chain was reorganised onto `headers` (the new branch, oldest first): as the node
    /// does (`SendBlockHeaders`, docs/PROTOCOL.md §3.6), `headers` with the whole branch when
    /// it is at most 8 (`MAX_BLOCKS_TO_ANNOUNCE`) and the peer sent `sendheaders`, otherwise
    /// an `inv` of the new tip only.
    pub fn on_new_branch(&self, headers: &[BlockHeader]) -> Vec<Action> {
        let Some(tip) = headers.last() else {
            return Vec::new();
        };
        if !self.is_connected() {
            return Vec::new();
        }
        let msg = if self.sendheaders && headers.len() <= MAX_BLOCKS_TO_ANNOUNCE {
            Message::Headers(headers.to_vec())
        } else {
            Message::Inv(vec![InvVect::block(tip.hash())])
        };
        vec![Action::Send(msg)]
    }

    /// A transaction entered the pool: announce it by `inv` unless the peer asked for no
    /// transaction relay.
    pub fn on_new_tx(&self, txid: Hash) -> Vec<Action> {
        // A node that rejects every transaction accepts and relays none.
        if self.mode == Misbehaviour::RejectAllTx {
            return Vec::new();
        }
        match &self.peer {
            Some(p) if self.verack_received && p.relay => {
                vec![Action::Send(Message::Inv(vec![InvVect::tx(txid)]))]
            }
            _ => Vec::new(),
        }
    }
}

/// `block` with its first transaction's lock time changed: same header (and hash), but the
/// transactions no longer hash to its merkle root.
fn corrupt(block: &Block) -> Block {
    let mut block = block.clone();
    if let Some(first) = block.transactions.first_mut() {
        *first = Transaction::new(
            first.version(),
            first.inputs().to_vec(),
            first.outputs().to_vec(),
            first.lock_time().wrapping_add(1),
        );
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;

    struct Fixture {
        chain: ChainHandle,
        mempool: Mutex<Mempool>,
        addrs: Vec<SocketAddr>,
        nonces: Mutex<HashSet<u64>>,
        synthetic: SyntheticBlocks,
    }

    impl Fixture {
        fn new(blocks: u32) -> Self {
            Fixture {
                chain: ChainHandle::new(Chain::generate(0, blocks, 0)),
                mempool: Mutex::new(Mempool::default()),
                addrs: vec![
                    "127.0.0.1:1000".parse().unwrap(),
                    "127.0.0.1:1001".parse().unwrap(),
                ],
                nonces: Mutex::new(HashSet::new()),
                synthetic: Mutex::new(HashMap::new()),
            }
        }
        fn ctx(&self) -> Ctx<'_> {
            Ctx {
                chain: &self.chain,
                mempool: &self.mempool,
                addresses: &self.addrs,
                own_addr: "127.0.0.1:1000".parse().unwrap(),
                user_agent: "/Bitcoin SV:1.2.2/",
                local_nonces: &self.nonces,
                synthetic: &self.synthetic,
            }
        }
    }

    fn peer_version() -> VersionMessage {
        VersionMessage {
            version: 70016,
            services: 0,
            timestamp: 0,
            receiver: NetAddress::UNSPECIFIED,
            sender: NetAddress::UNSPECIFIED,
            nonce: 42,
            user_agent: "/test:0.1/".into(),
            start_height: 0,
            relay: true,
            association_id: None,
        }
    }

    fn state(direction: Direction, mode: Misbehaviour) -> PeerState {
        PeerState::new(direction, "127.0.0.1:5000".parse().unwrap(), mode, 7)
    }

    fn sent(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(m.command()),
                _ => None,
            })
            .collect()
    }

    fn connected(f: &Fixture) -> PeerState {
        let mut s = state(Direction::Inbound, Misbehaviour::None);
        s.on_message(Message::Version(peer_version()), &f.ctx(), Instant::now());
        s.on_message(Message::Verack, &f.ctx(), Instant::now());
        s
    }

    #[test]
    fn inbound_handshake_replies_in_node_order() {
        let f = Fixture::new(5);
        let mut s = state(Direction::Inbound, Misbehaviour::None);
        assert!(s.start(&f.ctx()).is_empty());
        let a = s.on_message(Message::Version(peer_version()), &f.ctx(), Instant::now());
        assert_eq!(sent(&a), ["version", "verack", "protoconf"]);
        let a = s.on_message(Message::Verack, &f.ctx(), Instant::now());
        assert_eq!(sent(&a), ["authch", "sendheaders", "sendcmpct", "ping"]);
        assert!(a.contains(&Action::HandshakeComplete));
        assert!(s.is_connected());
    }

    #[test]
    fn outbound_handshake_sends_version_first_and_getaddr_after_protoconf() {
        let f = Fixture::new(5);
        let mut s = state(Direction::Outbound, Misbehaviour::None);
        assert_eq!(sent(&s.start(&f.ctx())), ["version"]);
        let a = s.on_message(Message::Version(peer_version()), &f.ctx(), Instant::now());
        assert_eq!(sent(&a), ["verack", "protoconf", "getaddr"]);
    }

    #[test]
    fn messages_before_verack_cost_one_point_each_and_ban_at_100() {
        let f = Fixture::new(1);
        let mut s = state(Direction::Inbound, Misbehaviour::None);
        let a = s.on_message(Message::GetAddr, &f.ctx(), Instant::now());
        assert_eq!(
            a,
            [Action::Misbehaving {
                score: 1,
                reason: "missing-version"
            }]
        );
        s.on_message(Message::Version(peer_version()), &f.ctx(), Instant::now());
        for i in 2..100 {
            let a = s.on_message(Message::SendHeaders, &f.ctx(), Instant::now());
            assert_eq!(a.len(), 1, "message {i}");
        }
        let a = s.on_message(Message::SendHeaders, &f.ctx(), Instant::now());
        assert!(matches!(a.last(), Some(Action::Ban(_))));
        assert_eq!(s.score(), 100);
    }

    #[test]
    fn getheaders_returns_at_most_2000_after_the_locator() {
        let f = Fixture::new(2100);
        let mut s = connected(&f);
        let loc = BlockLocator {
            version: 70016,
            hashes: vec![f.chain.hash_at(50).unwrap()],
            stop_hash: Hash::ZERO,
        };
        let a = s.on_message(Message::GetHeaders(loc.clone()), &f.ctx(), Instant::now());
        let Action::Send(Message::Headers(h)) = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(h.len(), 2000);
        assert_eq!(h[0].prev_hash, f.chain.hash_at(50).unwrap());
        let stop = BlockLocator {
            stop_hash: f.chain.hash_at(53).unwrap(),
            ..loc
        };
        let a = s.on_message(Message::GetHeaders(stop), &f.ctx(), Instant::now());
        let Action::Send(Message::Headers(h)) = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn getdata_skips_unknown_blocks_and_notfounds_unknown_txs() {
        let f = Fixture::new(3);
        let mut s = connected(&f);
        let items = vec![
            InvVect::block(f.chain.hash_at(2).unwrap()),
            InvVect::block(Hash([1; 32])),
            InvVect::tx(Hash([2; 32])),
            InvVect::block(f.chain.hash_at(1).unwrap()),
        ];
        let a = s.on_message(Message::GetData(items), &f.ctx(), Instant::now());
        assert_eq!(sent(&a), ["block", "block", "notfound"]);
        let Action::Send(Message::Block(b)) = &a[0] else {
            panic!()
        };
        assert_eq!(b.hash(), f.chain.hash_at(2).unwrap());
    }

    #[test]
    fn block_getdata_modes_stay_silent_answer_notfound_or_serve_a_corrupt_block() {
        let f = Fixture::new(3);
        let hash = f.chain.hash_at(2).unwrap();
        let ask = || Message::GetData(vec![InvVect::block(hash)]);
        let in_mode = |mode: Misbehaviour| {
            let mut s = connected(&f);
            s.mode = mode;
            s.on_message(ask(), &f.ctx(), Instant::now())
        };
        assert!(in_mode(Misbehaviour::SilentOnBlockGetData).is_empty());
        assert_eq!(sent(&in_mode(Misbehaviour::NotFoundBlocks)), ["notfound"]);
        let a = in_mode(Misbehaviour::CorruptBlocks);
        let Some(Action::Send(Message::Block(b))) = a.first() else {
            panic!("{a:?}")
        };
        assert_eq!(b.hash(), hash);
        assert!(b.check_merkle_root().is_err());
    }

    #[test]
    fn getaddr_is_answered_once_and_only_inbound() {
        let f = Fixture::new(1);
        let mut s = connected(&f);
        let a = s.on_message(Message::GetAddr, &f.ctx(), Instant::now());
        assert_eq!(sent(&a), ["addr"]);
        assert!(s
            .on_message(Message::GetAddr, &f.ctx(), Instant::now())
            .is_empty());
        let mut out = state(Direction::Outbound, Misbehaviour::None);
        out.on_message(Message::Version(peer_version()), &f.ctx(), Instant::now());
        out.on_message(Message::Verack, &f.ctx(), Instant::now());
        assert!(out
            .on_message(Message::GetAddr, &f.ctx(), Instant::now())
            .is_empty());
    }

    #[test]
    fn pings_wait_for_the_pong_and_time_out() {
        let f = Fixture::new(1);
        let mut s = connected(&f);
        let nonce = s.outstanding_ping().unwrap();
        assert_ne!(nonce, 0);
        let t = Instant::now();
        assert!(s.on_ping_timer(t, Duration::from_secs(60)).is_empty());
        s.on_message(Message::Pong(nonce + 1), &f.ctx(), t);
        assert_eq!(s.outstanding_ping(), Some(nonce));
        s.on_message(Message::Pong(nonce), &f.ctx(), t);
        assert_eq!(s.outstanding_ping(), None);
        assert_eq!(sent(&s.on_ping_timer(t, Duration::from_secs(60))), ["ping"]);
        let late = t + Duration::from_secs(61);
        assert!(matches!(
            s.on_ping_timer(late, Duration::from_secs(60)).as_slice(),
            [Action::Disconnect(_)]
        ));
    }

    #[test]
    fn bch_user_agent_is_banned_and_advertised_in_bch_mode() {
        let f = Fixture::new(1);
        let mut s = state(Direction::Inbound, Misbehaviour::None);
        let mut v = peer_version();
        v.user_agent = "/Bitcoin Cash Node:24.0/".into();
        let a = s.on_message(Message::Version(v), &f.ctx(), Instant::now());
        assert!(matches!(a.last(), Some(Action::Ban(_))));
        let bch = state(Direction::Inbound, Misbehaviour::BchUserAgent);
        assert_eq!(bch.version_message(&f.ctx()).user_agent, BCH_USER_AGENT);
    }

    #[test]
    fn announcements_follow_sendheaders() {
        let f = Fixture::new(2);
        let mut s = connected(&f);
        let header = f.chain.header_at(2).unwrap();
        assert_eq!(sent(&s.on_new_block(&header)), ["inv"]);
        s.on_message(Message::SendHeaders, &f.ctx(), Instant::now());
        assert_eq!(sent(&s.on_new_block(&header)), ["headers"]);
        assert_eq!(sent(&s.on_new_tx(Hash([3; 32]))), ["inv"]);
    }
}
