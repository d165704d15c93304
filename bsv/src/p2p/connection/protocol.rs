//! [`PeerProtocol`]: every rule of one connection, from its first byte to its close, as a
//! sans-I/O state machine with the clock passed in (docs/PROTOCOL.md §1.5, §2, §3, §5).
//!
//! The driver (the connection actor, a test, a tool) feeds it what happened — a decoded
//! message, a codec error, bytes arriving, a tick of the clock — and performs the [`Action`]s it
//! returns, in order: send a message, deliver one to the application, record misbehaviour, ban,
//! disconnect, adopt the peer's limits, remember what the peer told us. The machine owns:
//! * the handshake ([`Handshake`], three flows) and, once it completes, our `protoconf` and
//!   `sendheaders`;
//! * keepalive ([`Keepalive`]): pings with nonces, or nonce-less ones for peers at or below
//!   version 60000, and the dead-peer timeout;
//! * the codec-error policy of the node's receive pipeline (§1.5): bans for a wrong magic or an
//!   oversized header, silence for bad checksums (until a run of them), `reject` 0x01 for a
//!   payload that does not parse, +1 for an over-long var int;
//! * the post-handshake catalogue of §5 and the score: every offence adds the node's points,
//!   and at 100 the peer is banned and disconnected (unless whitelisted: the node warns and
//!   keeps such peers).
//!
//! After it returns [`Action::Disconnect`] the machine is closed and ignores further input.

use std::time::Duration;

use tokio::time::Instant;

use super::rules::{self, ChecksumRun, LeakyBucket, UnconnectingHeaders};
use super::{
    DisconnectReason, Handshake, HandshakeFailure, HandshakeFlow, HandshakeOutput, Keepalive,
    KeepaliveAction, Misbehavior, NonceRegistry, ProtocolViolation, UserAgentFilter,
};
use crate::bitcoin::{InvType, Network};
use crate::p2p::codec::CodecError;
use crate::p2p::limits::{
    BAN_SCORE_THRESHOLD, BIP0031_VERSION, COMMAND_LEN, LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH,
    LEGACY_RECEIVE_TIMEOUT, MAX_ADDR, MAX_HEADERS_RESULTS, MAX_MONEY, NODE_BLOOM, NO_BLOOM_VERSION,
    PROTOCONF_VERSION, SENDHEADERS_VERSION, STREAM_POLICIES, TOOBUSY_RETRY_DELAY,
};
use crate::p2p::messages::{Protoconf, Reject, RejectCode, VersionMessage};
use crate::p2p::peer::BanReason;
use crate::p2p::Message;

/// What a connection needs to know to follow the rules.
#[derive(Clone)]
pub(crate) struct ProtocolSettings {
    /// Which handshake to run.
    pub flow: HandshakeFlow,
    /// Our network (a frame of another network's magic is a ban).
    pub network: Network,
    /// The `version` we send.
    pub ours: VersionMessage,
    /// Our in-flight nonces (self-connection detection).
    pub nonces: NonceRegistry,
    /// User agents to ban.
    pub banned_agent: UserAgentFilter,
    /// How long the handshake may take.
    pub handshake_timeout: Duration,
    /// How often we ping.
    pub ping_interval: Duration,
    /// How long a ping may go unanswered (with no traffic either).
    pub ping_timeout: Duration,
    /// The receive limit we advertise in `protoconf`.
    pub max_recv_payload: u64,
    /// Whitelisted peers are never banned or disconnected for score.
    pub whitelisted: bool,
    /// Send one `getaddr` after an outbound handshake, as the node does
    /// (`ProcessVersionMessage`): set by a manager that learns peers (Normal mode).
    pub ask_for_addresses: bool,
}

/// Something the peer told us about itself after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// It sent `sendheaders`.
    WantsHeaders,
    /// Its `sendcmpct`.
    CompactBlocks {
        /// High-bandwidth announcements wanted.
        announce: bool,
        /// Compact-block version.
        version: u64,
    },
    /// Its `feefilter` (satoshis per 1000 bytes).
    FeeFilter(i64),
    /// A ping round trip.
    Rtt(Duration),
    /// Its `protoconf` receive limit: the largest non-block message we may send it.
    MaxRecv(u64),
}

/// What the driver must do, in order.
// Actions live for one call and are consumed at once; boxing messages would only add
// allocations on the receive path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send this message ahead of bulk data.
    Send(Message),
    /// Hand this message to the application.
    Deliver(Message),
    /// The handshake completed; the peer's `version` is attached.
    Established(Box<VersionMessage>),
    /// The peer broke a rule; `score` is its total now.
    Misbehaving {
        /// The rule.
        offence: Misbehavior,
        /// The running total.
        score: u32,
    },
    /// Ban the peer's IP (a fact for whoever owns the peer store). A `Disconnect` follows.
    Ban(BanReason),
    /// Close the connection; the machine is closed.
    Disconnect(DisconnectReason),
    /// Something the peer told us.
    Learned(Learned),
    /// The peer is too busy (`reject` 0x44): hold back requests until then.
    BackOff(Instant),
}

/// The rules of one connection. See the module documentation.
pub(crate) struct PeerProtocol {
    settings: ProtocolSettings,
    handshake: Handshake,
    keepalive: Option<Keepalive>,
    peer_version: i32,
    /// The peer's `version` has been accepted (during the handshake or after it).
    version_seen: bool,
    score: u32,
    closed: bool,
    protoconf_seen: bool,
    sendheaders_seen: bool,
    sendhdrsen_seen: bool,
    checksums: ChecksumRun,
    authresp: LeakyBucket,
    unconnecting: UnconnectingHeaders,
}

impl std::fmt::Debug for PeerProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerProtocol")
            .field("handshake", &self.handshake)
            .field("established", &self.keepalive.is_some())
            .field("score", &self.score)
            .field("closed", &self.closed)
            .finish()
    }
}

fn reject(command: &str, code: RejectCode, reason: &str) -> Message {
    Message::Reject(Reject {
        message: command.chars().take(COMMAND_LEN).collect(),
        code,
        reason: reason.into(),
        hash: None,
    })
}

impl PeerProtocol {
    /// A connection entering `AwaitingHandshake` at `now`.
    pub(crate) fn new(settings: ProtocolSettings, now: Instant) -> Self {
        let handshake = Handshake::new(
            settings.flow,
            settings.network,
            settings.ours.clone(),
            settings.nonces.clone(),
            settings.banned_agent.clone(),
            settings.handshake_timeout,
            now,
        );
        PeerProtocol {
            settings,
            handshake,
            keepalive: None,
            peer_version: 0,
            version_seen: false,
            score: 0,
            closed: false,
            protoconf_seen: false,
            sendheaders_seen: false,
            sendhdrsen_seen: false,
            checksums: ChecksumRun::new(now),
            authresp: LeakyBucket::default(),
            unconnecting: UnconnectingHeaders::default(),
        }
    }

    /// What to send as soon as the socket is open (our `version` when we dialled).
    pub(crate) fn start(&mut self) -> Vec<Action> {
        let out = self.handshake.start();
        self.apply_handshake(
            out,
            self.handshake.deadline() - self.settings.handshake_timeout,
        )
    }

    /// Whether the handshake has completed (and the connection not closed).
    pub(crate) fn is_established(&self) -> bool {
        self.keepalive.is_some() && !self.closed
    }

    /// Whether the machine has decided to close.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// The peer's misbehaviour score.
    #[cfg(test)]
    pub(crate) fn score(&self) -> u32 {
        self.score
    }

    /// When [`PeerProtocol::on_tick`] next has something to do.
    pub(crate) fn deadline(&self) -> Instant {
        match &self.keepalive {
            Some(k) => k.next_deadline(),
            None => self.handshake.deadline(),
        }
    }

    /// Bytes arrived from the peer: traffic is a sign of life.
    pub(crate) fn on_bytes_received(&mut self, now: Instant) {
        if let Some(k) = self.keepalive.as_mut() {
            k.on_bytes_received(now);
        }
    }

    /// New ping timing from a configuration update.
    pub(crate) fn set_ping_timing(&mut self, interval: Duration, timeout: Duration, now: Instant) {
        self.settings.ping_interval = interval;
        self.settings.ping_timeout = timeout;
        if self.peer_version > BIP0031_VERSION {
            if let Some(k) = self.keepalive.as_mut() {
                k.set_timing(interval, timeout, now);
            }
        }
    }

    /// The clock reached `now`: the handshake may time out, a ping may be due or overdue.
    /// `fresh_nonce` is called only when a ping is due.
    pub(crate) fn on_tick(
        &mut self,
        now: Instant,
        fresh_nonce: impl FnOnce() -> u64,
    ) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        let Some(k) = self.keepalive.as_mut() else {
            let out = self.handshake.on_tick(now);
            return self.apply_handshake(out, now);
        };
        match k.on_tick(now, fresh_nonce) {
            KeepaliveAction::SendPing(nonce) => vec![Action::Send(Message::Ping(nonce))],
            KeepaliveAction::TimedOut { waited } => {
                self.close(DisconnectReason::PingTimeout(waited))
            }
            KeepaliveAction::Idle => Vec::new(),
        }
    }

    /// A message arrived.
    pub(crate) fn on_message(&mut self, msg: Message, now: Instant) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        if self.keepalive.is_none() {
            let is_version = matches!(msg, Message::Version(_));
            let out = self.handshake.on_message(&msg);
            let out = self.apply_handshake(out, now);
            // A refused `version` closes the machine; one that stays open was taken.
            self.version_seen |= is_version && !self.closed;
            return out;
        }
        self.on_established_message(msg, now)
    }

    /// The codec could not produce a message: the node's receive pipeline (§1.5) decides.
    pub(crate) fn on_codec_error(&mut self, e: &CodecError, now: Instant) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        match e {
            CodecError::BadMagic { received, .. } => self.wrong_magic(*received, e),
            CodecError::UnknownNetwork { magic } => self.wrong_magic(*magic, e),
            CodecError::Oversized { .. } => {
                let mut out = vec![Action::Ban(BanReason::Misbehavior {
                    score: BAN_SCORE_THRESHOLD,
                    reason: Misbehavior::OversizedHeader.node_reason().to_string(),
                })];
                out.extend(self.close(DisconnectReason::Oversized(e.to_string())));
                out
            }
            CodecError::Io(io) => self.close(DisconnectReason::Io(io.to_string())),
            // The node drops a frame whose command field is malformed without a word.
            CodecError::BadCommand { .. } => Vec::new(),
            CodecError::BadChecksum { .. } => {
                if self.checksums.on_bad_checksum(now) {
                    self.misbehave(Misbehavior::InvalidChecksum)
                } else {
                    Vec::new()
                }
            }
            CodecError::VarIntTooLarge { command, .. }
            | CodecError::Malformed { command, .. }
            | CodecError::NonCanonicalVarInt { command, .. }
                if command == "version" =>
            {
                self.unparsable_version()
            }
            // The node never reads the payload of a message it drops before the handshake.
            CodecError::VarIntTooLarge { command, .. }
            | CodecError::Malformed { command, .. }
            | CodecError::NonCanonicalVarInt { command, .. }
                if self.keepalive.is_none()
                    && !read_before_handshake(command, self.version_seen) =>
            {
                self.premature(command, now)
            }
            // `ProcessRejectMessage` swallows its own parse errors ("Avoid feedback loops by
            // preventing reject messages from triggering a new reject message"): no `reject`
            // back, no score, at any stage.
            CodecError::VarIntTooLarge { command, .. }
            | CodecError::Malformed { command, .. }
            | CodecError::NonCanonicalVarInt { command, .. }
                if command == "reject" =>
            {
                Vec::new()
            }
            CodecError::VarIntTooLarge { command, .. } => {
                let mut out = vec![Action::Send(reject(
                    command,
                    RejectCode::Malformed,
                    "error parsing message",
                ))];
                out.extend(self.misbehave(Misbehavior::OverLongSize));
                out
            }
            CodecError::Malformed { command, .. }
            | CodecError::NonCanonicalVarInt { command, .. } => self.unparsable(command, now),
            // Send-side errors never come from the receive path.
            CodecError::SendOversized { .. } | CodecError::BadCommandName { .. } => Vec::new(),
        }
    }

    /// A `version` that did not parse. The node looks for a duplicate before it reads the
    /// payload (`ProcessVersionMessage`): after the peer's first `version` any `version` is
    /// `multiple-version`, whatever its bytes. A first `version` that does not parse gets
    /// `reject` 0x60 with the parser's complaint and a disconnect, without a score, not even for
    /// an over-long var int (measured on bitcoin-sv 1.2.2,
    /// `a_version_that_does_not_parse_is_refused_without_a_charge` in
    /// `bsv/tests/real_node/rules.rs`).
    fn unparsable_version(&mut self) -> Vec<Action> {
        if self.version_seen || self.keepalive.is_some() {
            return self.duplicate_version();
        }
        let mut out = vec![Action::Send(reject(
            "version",
            RejectCode::StreamSetup,
            "Badly formatted version message",
        ))];
        out.extend(self.violation(ProtocolViolation::MalformedVersion));
        out
    }

    /// A second `version`: `reject` 0x12 and +1 (`ProcessVersionMessage`).
    fn duplicate_version(&mut self) -> Vec<Action> {
        let mut out = vec![Action::Send(reject(
            "version",
            RejectCode::Duplicate,
            "Duplicate version message",
        ))];
        out.extend(self.misbehave(Misbehavior::MultipleVersion));
        out
    }

    /// A message that did not parse, from a peer whose handshake is not complete, of a
    /// command the node does not process at that stage: `ProcessMessage` drops it at +1
    /// (`missing-version` before the peer's `version`, `missing-verack` after it) before its
    /// payload is read, so there is no `reject` and no `Over-long size message protection`.
    /// The handshake judges it as any other early message.
    fn premature(&mut self, command: &str, now: Instant) -> Vec<Action> {
        let early = Message::Unknown {
            command: command.to_string(),
            payload: bytes::Bytes::new(),
        };
        let out = self.handshake.on_message(&early);
        self.apply_handshake(out, now)
    }

    /// The application found that a `headers` announcement from this peer does not connect to
    /// its chain; every tenth costs +20 (`too-many-unconnected-headers`).
    pub(crate) fn on_unconnecting_headers(&mut self) -> Vec<Action> {
        if self.closed || !self.unconnecting.on_unconnecting() {
            return Vec::new();
        }
        self.misbehave(Misbehavior::TooManyUnconnectedHeaders)
    }

    /// A service found that the peer broke `offence` (e.g. a header without proof of work):
    /// scored as any other offence.
    pub(crate) fn on_offence(&mut self, offence: Misbehavior) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        self.misbehave(offence)
    }

    /// A payload that does not parse: `reject` 0x01 "error parsing message", except where the
    /// node's handler catches the error itself.
    fn unparsable(&mut self, command: &str, now: Instant) -> Vec<Action> {
        match command {
            // A nonce-less ping from an old peer: the node does not answer those.
            "ping" if self.keepalive.is_some() && self.peer_version <= BIP0031_VERSION => {
                Vec::new()
            }
            // A short pong cancels the outstanding ping (`ProcessMessage`, "Short payload").
            "pong" if self.keepalive.is_some() => {
                if let Some(k) = self.keepalive.as_mut() {
                    k.on_pong(0, now);
                }
                Vec::new()
            }
            // Without a miner-ID database the node never reads `revokemid` (checked against
            // bitcoin-sv 1.2.2, bsv/tests/real_node/rules.rs): nothing to reject or score.
            "revokemid" if self.keepalive.is_some() => Vec::new(),
            "dsdetected" if self.keepalive.is_some() => {
                self.misbehave(Misbehavior::MalformedDsDetected)
            }
            _ => vec![Action::Send(reject(
                command,
                RejectCode::Malformed,
                "error parsing message",
            ))],
        }
    }

    fn wrong_magic(&mut self, magic: crate::bitcoin::Magic, e: &CodecError) -> Vec<Action> {
        let failure = match self.handshake.on_wrong_magic(magic).pop() {
            Some(HandshakeOutput::Failed(f)) => f,
            _ => HandshakeFailure::BlockchainMismatch { magic },
        };
        let mut out = Vec::new();
        if let Some(ban) = ban_reason(&failure) {
            out.push(Action::Ban(ban));
        }
        let reason = if self.keepalive.is_some() {
            DisconnectReason::BadFrame(e.to_string())
        } else {
            DisconnectReason::Handshake(failure)
        };
        out.extend(self.close(reason));
        out
    }

    fn apply_handshake(&mut self, outputs: Vec<HandshakeOutput>, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for o in outputs {
            match o {
                HandshakeOutput::Send(m) => out.push(Action::Send(m)),
                HandshakeOutput::Misbehaving(offence) => out.extend(self.misbehave(offence)),
                HandshakeOutput::Complete(v) => out.extend(self.established(v, now)),
                HandshakeOutput::Failed(f) => {
                    if let Some(ban) = ban_reason(&f) {
                        out.push(Action::Ban(ban));
                    }
                    out.extend(self.close(DisconnectReason::Handshake(f)));
                }
            }
            if self.closed {
                break;
            }
        }
        out
    }

    fn established(&mut self, v: Box<VersionMessage>, now: Instant) -> Vec<Action> {
        self.peer_version = v.version;
        self.keepalive = Some(if v.version <= BIP0031_VERSION {
            Keepalive::legacy(self.settings.ping_interval, LEGACY_RECEIVE_TIMEOUT, now)
        } else {
            Keepalive::new(self.settings.ping_interval, self.settings.ping_timeout, now)
        });
        let version = v.version;
        let mut out = vec![Action::Established(v)];
        // Our protoconf goes after our verack (§2.5), then sendheaders, each only to peers that
        // know the command.
        if version >= PROTOCONF_VERSION {
            let max = u32::try_from(self.settings.max_recv_payload).unwrap_or(u32::MAX);
            out.push(Action::Send(Message::Protoconf(Protoconf::new(
                max,
                STREAM_POLICIES,
            ))));
        }
        if version >= SENDHEADERS_VERSION {
            out.push(Action::Send(Message::SendHeaders));
        }
        // The node asks every peer it dialled for addresses once (`ProcessVersionMessage`);
        // only outbound peers answer `getaddr` (§3.3).
        if self.settings.ask_for_addresses && self.settings.flow == HandshakeFlow::Outbound {
            out.push(Action::Send(Message::GetAddr));
        }
        out
    }

    /// Scores an offence; at the threshold the peer is banned and disconnected.
    fn misbehave(&mut self, offence: Misbehavior) -> Vec<Action> {
        self.score = self.score.saturating_add(offence.score());
        let mut out = vec![Action::Misbehaving {
            offence,
            score: self.score,
        }];
        if self.score >= BAN_SCORE_THRESHOLD && !self.settings.whitelisted {
            out.push(Action::Ban(BanReason::Misbehavior {
                score: self.score,
                reason: offence.node_reason().to_string(),
            }));
            out.extend(self.close(DisconnectReason::Misbehavior {
                score: self.score,
                reason: offence,
            }));
        }
        out
    }

    fn close(&mut self, reason: DisconnectReason) -> Vec<Action> {
        self.closed = true;
        vec![Action::Disconnect(reason)]
    }

    fn violation(&mut self, v: ProtocolViolation) -> Vec<Action> {
        self.close(DisconnectReason::Protocol(v))
    }

    /// The catalogue after the handshake (§3, §5): consume what is ours, score what breaks a
    /// rule, deliver the rest.
    fn on_established_message(&mut self, msg: Message, now: Instant) -> Vec<Action> {
        let deliver = |m| vec![Action::Deliver(m)];
        match msg {
            Message::Version(_) => self.duplicate_version(),
            Message::Verack => Vec::new(),
            Message::Ping(nonce) => {
                if self.peer_version > BIP0031_VERSION {
                    vec![Action::Send(Message::Pong(nonce))]
                } else {
                    Vec::new()
                }
            }
            Message::Pong(nonce) => {
                match self.keepalive.as_mut().and_then(|k| k.on_pong(nonce, now)) {
                    Some(rtt) => vec![Action::Learned(Learned::Rtt(rtt))],
                    // Not the answer to our ping: the application sent that ping.
                    None => deliver(Message::Pong(nonce)),
                }
            }
            Message::Protoconf(p) => {
                if self.protoconf_seen {
                    return self.violation(ProtocolViolation::DuplicateProtoconf);
                }
                self.protoconf_seen = true;
                let limit = u64::from(p.max_recv_payload_length);
                if limit < LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH {
                    return self.violation(ProtocolViolation::ProtoconfLimitTooLow(
                        p.max_recv_payload_length,
                    ));
                }
                vec![Action::Learned(Learned::MaxRecv(limit))]
            }
            Message::SendHeaders => {
                if self.sendheaders_seen {
                    return self.misbehave(Misbehavior::InvalidSendHeaders);
                }
                self.sendheaders_seen = true;
                vec![Action::Learned(Learned::WantsHeaders)]
            }
            Message::SendHdrsEn => {
                if self.sendhdrsen_seen {
                    return self.misbehave(Misbehavior::InvalidSendHdrsEn);
                }
                self.sendhdrsen_seen = true;
                Vec::new()
            }
            Message::SendCmpct(c) => vec![Action::Learned(Learned::CompactBlocks {
                announce: c.announce,
                version: c.version,
            })],
            Message::FeeFilter(f) => {
                if (0..=MAX_MONEY).contains(&f) {
                    vec![Action::Learned(Learned::FeeFilter(f))]
                } else {
                    Vec::new()
                }
            }
            // A node without a miner-ID database ignores `authch` entirely, rate limit included
            // (checked against bitcoin-sv 1.2.2); so do we. We never send `authch`, so an
            // `authresp` answers nothing, and it is rate-limited as the node does.
            Message::AuthCh(_) => Vec::new(),
            Message::AuthResp(_) => {
                if self.authresp.overflows(now) {
                    return self.misbehave(Misbehavior::AuthRespRateLimit);
                }
                Vec::new()
            }
            Message::Addr(ref entries) if entries.len() > MAX_ADDR => {
                self.misbehave(Misbehavior::OversizedAddr)
            }
            Message::Headers(ref headers) if headers.len() > MAX_HEADERS_RESULTS => {
                self.misbehave(Misbehavior::TooManyHeaders)
            }
            Message::Headers(ref headers) if !rules::headers_are_continuous(headers) => {
                self.misbehave(Misbehavior::DisconnectedHeader)
            }
            Message::Inv(ref items) => {
                match items
                    .iter()
                    .find(|i| !matches!(i.inv_type, InvType::Tx | InvType::Block))
                {
                    Some(bad) => {
                        self.violation(ProtocolViolation::UnsupportedInvType(bad.inv_type.to_u32()))
                    }
                    None => deliver(msg),
                }
            }
            // The node's parser refuses any version but 1, so such a message is "malformed"
            // there, not merely invalid (its reason string differs).
            Message::DsDetected(ref d) if d.version != 1 => {
                self.misbehave(Misbehavior::MalformedDsDetected)
            }
            Message::DsDetected(ref d) if !rules::ds_detected_is_valid(d) => {
                self.misbehave(Misbehavior::InvalidDsDetected)
            }
            Message::FilterLoad(_) | Message::FilterAdd(_)
                if self.settings.ours.services & NODE_BLOOM == 0 =>
            {
                if self.peer_version >= NO_BLOOM_VERSION {
                    self.misbehave(Misbehavior::NoBloomVersion)
                } else {
                    self.violation(ProtocolViolation::BloomWithoutService)
                }
            }
            Message::FilterLoad(ref f) if !rules::filter_load_is_valid(f) => {
                self.misbehave(Misbehavior::OversizedBloomFilter)
            }
            Message::FilterAdd(ref data) if !rules::filter_add_is_valid(data) => {
                self.misbehave(Misbehavior::InvalidFilterAdd)
            }
            Message::CmpctBlock(ref c) if !rules::compact_block_is_valid(c) => {
                self.misbehave(Misbehavior::InvalidCmpctBlock)
            }
            Message::Reject(ref r) if r.code == RejectCode::TooBusy => {
                vec![
                    Action::BackOff(now + TOOBUSY_RETRY_DELAY),
                    Action::Deliver(msg),
                ]
            }
            other => deliver(other),
        }
    }
}

/// Whether the node may read a message of `command` before the handshake completes
/// (`ProcessMessage`, docs/PROTOCOL.md §2.8): `version`, `verack`, `reject` and the stream
/// setup at any time, `authch`/`authresp` once the peer's `version` is in (`version_seen`).
/// Anything else is dropped unread.
fn read_before_handshake(command: &str, version_seen: bool) -> bool {
    match command {
        "version" | "verack" | "reject" | "createstrm" | "streamack" => true,
        "authch" | "authresp" => version_seen,
        _ => false,
    }
}

/// The ban a handshake failure deserves, if any.
pub(crate) fn ban_reason(f: &HandshakeFailure) -> Option<BanReason> {
    match f {
        HandshakeFailure::NetworkMismatch { expected, received } => {
            Some(BanReason::NetworkMismatch {
                expected: *expected,
                received: received.to_string(),
            })
        }
        HandshakeFailure::BlockchainMismatch { magic } => Some(BanReason::BlockchainMismatch {
            received: hex::encode(magic),
        }),
        HandshakeFailure::BannedUserAgent { user_agent } => Some(BanReason::BannedUserAgent {
            user_agent: user_agent.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
