//! The task behind one connection of a simulated node. It moves bytes and timers and nothing
//! else: frames are decoded with `bitcoinsv`'s codec, handed to [`PeerState`], and the
//! resulting actions carried out. The misbehaviour modes that act on raw bytes (magic, garbage,
//! stalls, oversized headers, disconnect-after, floods, slow reading) live here, since they
//! are about the wire rather than the protocol.
//!
//! Error handling follows the node's receive pipeline (docs/PROTOCOL.md §1.5): an oversized header
//! or a wrong magic bans the IP at once; a bad command field or checksum drops the frame; a
//! payload that fails to parse gets `reject` 0x01; unknown commands are ignored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::bitcoin::{Hash, InvVect, NetAddress, TimestampedNetAddress};
use bitcoinsv::p2p::codec::{FrameReader, MessageCodec};
use bitcoinsv::p2p::limits::COMMAND_LEN;
use bitcoinsv::p2p::{CodecError, Message};
use bytes::{BufMut, BytesMut};
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, trace, warn, Instrument};

use crate::misbehaviour::Misbehaviour;
use crate::protocol::{nonzero_nonce, Action, Ctx, Direction, PeerState, NODE_SERVICES};
use crate::shared::{ConnEvent, NetShared, NodeShared};

/// BTC's wire magic: used by [`Misbehaviour::WrongMagic`] since no BSV network has it.
const BTC_MAGIC: [u8; 4] = [0xf9, 0xbe, 0xb4, 0xd9];
/// Payload size declared by [`Misbehaviour::OversizedHeader`]: 32 MiB, over the 2 MiB limit.
const OVERSIZED_LENGTH: u32 = 32 * 1024 * 1024;
/// Bytes sent by [`Misbehaviour::Garbage`].
const GARBAGE_LEN: usize = 1024;
/// Entries per flood message (the node's `addr` maximum).
const FLOOD_ENTRIES: usize = 1000;
/// Receive buffer of a [`Misbehaviour::SlowReader`] socket.
const SLOW_RCVBUF: usize = 4096;
/// Read granularity of the normal read loop.
const READ_CHUNK: usize = 16 * 1024;
/// Queued replies are written out once they reach this size.
const FLUSH_AT: usize = 256 * 1024;
/// A write buffer grown past this (by a block) is released after the write.
const WRITE_BUF_KEEP: usize = 1024 * 1024;

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// Closed, by us or the peer.
    Closed(String),
    /// The peer's IP is to be banned.
    Ban(String),
}

/// Runs one connection to completion.
pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    direction: Direction,
    node: Arc<NodeShared>,
    net: Arc<NetShared>,
) {
    let span = tracing::debug_span!(
        "simnet_connection",
        node = node.index,
        peer_address = %peer,
        direction = ?direction
    );
    async move {
        let (mut registration, events) = node.register(peer, direction);
        let mode = node.misbehaviour();
        // As the node does (`SetSocketNoDelay`): small messages go out at once.
        let _ = stream.set_nodelay(true);
        let nonce = nonzero_nonce();
        if direction == Direction::Outbound {
            registration.set_local_nonce(nonce);
        }
        debug!(mode = mode.name(), "connection open");
        if let Misbehaviour::SlowReader { .. } = mode {
            let _ = socket2::SockRef::from(&stream).set_recv_buffer_size(SLOW_RCVBUF);
        }
        // The library's own framing loop reads for the simulated node too.
        let (rd, writer) = stream.into_split();
        let mut conn = Connection {
            reader: FrameReader::new(rd, MessageCodec::new(net.config.network)),
            writer,
            encoder: MessageCodec::with_magic(match &mode {
                Misbehaviour::WrongMagic => BTC_MAGIC,
                Misbehaviour::OtherNetworkMagic(n) => n.magic(),
                _ => net.config.network.magic(),
            }),
            state: PeerState::new(direction, peer, mode.clone(), nonce),
            peer,
            direction,
            conn_id: registration.id,
            node: Arc::clone(&node),
            net,
            mode,
            write_buf: BytesMut::new(),
            sent: 0,
            silent: false,
        };
        let end = conn.drive(events).await;
        match end {
            End::Ban(reason) => {
                node.ban(peer.ip(), conn.net.config.ban_duration, &reason);
            }
            End::Closed(reason) => debug!(%reason, "connection closed"),
        }
        drop(conn);
        drop(registration);
    }
    .instrument(span)
    .await
}

struct Connection {
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    peer: SocketAddr,
    direction: Direction,
    conn_id: u64,
    node: Arc<NodeShared>,
    net: Arc<NetShared>,
    mode: Misbehaviour,
    encoder: MessageCodec,
    state: PeerState,
    write_buf: BytesMut,
    /// Messages sent (for [`Misbehaviour::DisconnectAfter`]).
    sent: u32,
    /// After a wire-level misbehaviour the node only reads and counts.
    silent: bool,
}

/// Reads what is available; in slow mode at most `rate` bytes per second.
async fn read_some(
    reader: &mut FrameReader<OwnedReadHalf>,
    slow: Option<u32>,
    next_read: &mut Instant,
) -> std::io::Result<usize> {
    match slow {
        None => reader.read_more().await,
        Some(rate) => {
            tokio::time::sleep_until(*next_read).await;
            let rate = rate.max(1);
            // Read in slices of a tenth of a second's allowance (at least one byte).
            let chunk = (rate as usize / 10).clamp(1, READ_CHUNK);
            let n = reader.read_more_at_most(chunk).await?;
            let pause = Duration::from_secs_f64(n as f64 / f64::from(rate));
            *next_read = Instant::now() + pause;
            Ok(n)
        }
    }
}

/// The time for the state machine, on tokio's clock (the one its timers run on), so that a
/// paused clock in a test moves the ping timeout along with the ping timer.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// The node's view for the state machine (a free function so that it borrows only the node
/// and the simnet, not the connection's state).
fn ctx<'a>(node: &'a NodeShared, net: &'a NetShared) -> Ctx<'a> {
    Ctx {
        chain: &net.chain,
        mempool: &net.mempool,
        addresses: &net.addresses,
        own_addr: node.address,
        user_agent: &net.config.user_agent,
        local_nonces: &node.local_nonces,
    }
}

impl Connection {
    async fn drive(&mut self, mut events: mpsc::Receiver<ConnEvent>) -> End {
        if self.mode == Misbehaviour::DisconnectAfter(0) {
            return End::Closed("disconnect-after 0".into());
        }
        let slow = match self.mode {
            Misbehaviour::SlowReader { bytes_per_second } => Some(bytes_per_second),
            _ => None,
        };
        let mut next_read = Instant::now();
        if self.direction == Direction::Outbound {
            let speak = match self.mode {
                Misbehaviour::Garbage
                | Misbehaviour::StallMidMessage
                | Misbehaviour::OversizedHeader => self.misbehave_on_wire().await,
                _ => {
                    let actions = self.state.start(&ctx(&self.node, &self.net));
                    self.apply(actions).await
                }
            };
            if let Err(end) = speak {
                return end;
            }
        }
        let config = &self.net.config;
        let handshake_deadline = tokio::time::sleep(config.handshake_timeout);
        tokio::pin!(handshake_deadline);
        let ping_interval = config.ping_interval.max(Duration::from_millis(1));
        let ping_timeout = config.ping_timeout;
        let mut ping_timer =
            tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ping_timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let flood = matches!(self.mode, Misbehaviour::FloodInv | Misbehaviour::FloodAddr);
        let mut was_connected = false;
        loop {
            let connected = self.state.is_connected();
            if connected && !was_connected {
                // The first ping went out with the handshake; the next is one interval later.
                ping_timer.reset();
                was_connected = true;
                let burst = self.header_misbehaviour();
                if !burst.is_empty() {
                    if let Err(end) = self.apply(burst).await {
                        return end;
                    }
                }
            }
            let result = tokio::select! {
                biased;
                _ = &mut handshake_deadline, if !connected => {
                    Err(End::Closed("handshake timeout".into()))
                }
                read = read_some(&mut self.reader, slow, &mut next_read) => {
                    match read {
                        Ok(0) => Err(End::Closed("peer closed the connection".into())),
                        Ok(_) => self.process_input().await,
                        Err(e) => Err(End::Closed(format!("read error: {e}"))),
                    }
                }
                Some(event) = events.recv() => self.on_event(event).await,
                _ = ping_timer.tick(), if connected && !self.silent => {
                    let actions = self.state.on_ping_timer(now(), ping_timeout);
                    self.apply(actions).await
                }
                _ = std::future::ready(()), if flood && connected && !self.silent => {
                    let msg = self.flood_message();
                    let sent = self.apply(vec![Action::Send(msg)]).await;
                    // A flood must not starve the runtime: on a single-threaded runtime (a
                    // test's) the peer could never read, nor could the node be stopped.
                    tokio::task::yield_now().await;
                    sent
                }
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    async fn on_event(&mut self, event: ConnEvent) -> Result<(), End> {
        if let ConnEvent::Kick(reason) = event {
            return Err(End::Closed(reason));
        }
        if self.silent {
            return Ok(());
        }
        let actions = match event {
            ConnEvent::NewBlock(header) => self.state.on_new_block(&header),
            ConnEvent::NewBranch(headers) => self.state.on_new_branch(&headers),
            ConnEvent::NewTx(txid) => self.state.on_new_tx(txid),
            ConnEvent::Kick(_) => Vec::new(),
        };
        self.apply(actions).await
    }

    /// Decodes and handles every complete frame in the read buffer.
    async fn process_input(&mut self) -> Result<(), End> {
        loop {
            match self
                .reader
                .decode()
                .and_then(|f| f.map(|f| f.message()).transpose())
            {
                Ok(Some(msg)) => {
                    trace!(command = msg.command(), "received");
                    self.node.counters.message_in(msg.command());
                    self.on_message(msg).await?;
                }
                Ok(None) => return Ok(()),
                Err(e) => self.on_codec_error(e).await?,
            }
        }
    }

    async fn on_message(&mut self, msg: Message) -> Result<(), End> {
        if self.silent {
            return Ok(());
        }
        if matches!(msg, Message::Version(_)) && self.state.peer_version().is_none() {
            match self.mode {
                Misbehaviour::NeverAnswerVersion => {
                    debug!("not answering version (never-answer-version)");
                    self.silent = true;
                    return Ok(());
                }
                Misbehaviour::Garbage
                | Misbehaviour::StallMidMessage
                | Misbehaviour::OversizedHeader
                    if self.direction == Direction::Inbound =>
                {
                    return self.misbehave_on_wire().await;
                }
                _ => {}
            }
        }
        let actions = self
            .state
            .on_message(msg, &ctx(&self.node, &self.net), now());
        self.apply(actions).await
    }

    async fn on_codec_error(&mut self, e: CodecError) -> Result<(), End> {
        debug!(error = %e, "bad frame");
        if e.is_fatal() {
            if self.silent {
                return Err(End::Closed(e.to_string()));
            }
            return match e {
                CodecError::BadMagic { .. } | CodecError::UnknownNetwork { .. } => {
                    Err(End::Ban("INVALID MESSAGESTART".into()))
                }
                CodecError::Oversized { .. } => Err(End::Ban("Oversized header detected".into())),
                other => Err(End::Closed(other.to_string())),
            };
        }
        self.node.counters.update(|s| s.bad_frames += 1);
        if self.silent {
            return Ok(());
        }
        let actions = match e {
            CodecError::Malformed { command, .. }
            | CodecError::NonCanonicalVarInt { command, .. } => {
                self.state.on_malformed(&command, false)
            }
            CodecError::VarIntTooLarge { command, .. } => self.state.on_malformed(&command, true),
            // Bad checksum or command field: the frame is dropped silently (§1.3, §1.5).
            _ => Vec::new(),
        };
        self.apply(actions).await
    }

    async fn apply(&mut self, actions: Vec<Action>) -> Result<(), End> {
        for action in actions {
            match action {
                Action::Send(msg) => {
                    if let Err(end) = self.queue(&msg).await {
                        self.flush().await?;
                        return Err(end);
                    }
                }
                Action::AcceptTx(tx) => {
                    self.net
                        .accept_tx(tx, Some((self.node.index, self.conn_id)));
                }
                Action::SetPeerMaxRecv(n) => self.encoder.set_peer_max_recv(n),
                Action::SetPeerVersion(v) => self.encoder.set_peer_version(v),
                Action::HandshakeComplete => {
                    let ua = self
                        .state
                        .peer_version()
                        .map(|p| p.user_agent.clone())
                        .unwrap_or_default();
                    info!(user_agent = %ua, "handshake complete");
                    self.node.counters.update(|s| s.handshakes += 1);
                }
                Action::Misbehaving { score, reason } => {
                    debug!(score, reason, total = self.state.score(), "misbehaviour");
                    self.node
                        .counters
                        .update(|s| s.misbehaviour_score += u64::from(score));
                }
                // Whatever was queued (a `reject`, say) goes out before the close.
                Action::Ban(reason) => {
                    self.flush().await?;
                    return Err(End::Ban(reason));
                }
                Action::Disconnect(reason) => {
                    self.flush().await?;
                    return Err(End::Closed(reason));
                }
            }
        }
        self.flush().await
    }

    /// Encodes one message into the write buffer and counts it; writes the buffer out once it
    /// holds [`FLUSH_AT`] bytes. Replies to one received message are written together, as the
    /// node's send queue does, so a handshake reply is one segment rather than three.
    /// Enforces [`Misbehaviour::DisconnectAfter`] (the caller flushes before closing).
    async fn queue(&mut self, msg: &Message) -> Result<(), End> {
        if let Err(e) = self.encoder.encode(msg, &mut self.write_buf) {
            // Only a message over the peer's limit fails; the node drops those unsent.
            warn!(command = msg.command(), error = %e, "not sending");
            return Ok(());
        }
        trace!(command = msg.command(), "sent");
        self.node.counters.message_out(msg.command());
        self.sent += 1;
        if let Misbehaviour::DisconnectAfter(n) = self.mode {
            if self.sent >= n {
                return Err(End::Closed(format!("disconnect-after {n}")));
            }
        }
        if self.write_buf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes out the write buffer.
    async fn flush(&mut self) -> Result<(), End> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let result = self.writer.write_all(&self.write_buf).await;
        self.write_buf.clear();
        if self.write_buf.capacity() > WRITE_BUF_KEEP {
            self.write_buf = BytesMut::new();
        }
        result.map_err(|e| End::Closed(format!("write error: {e}")))
    }

    /// The wire-level misbehaviours: send the broken bytes, then only read.
    async fn misbehave_on_wire(&mut self) -> Result<(), End> {
        self.write_buf.clear();
        match self.mode {
            Misbehaviour::Garbage => {
                let mut garbage: Vec<u8> = (0..GARBAGE_LEN).map(|_| rand::random::<u8>()).collect();
                // No network's magic starts with 0x00, so this can never be read as a frame.
                if let Some(first) = garbage.first_mut() {
                    *first = 0x00;
                }
                self.write_buf.put_slice(&garbage);
            }
            Misbehaviour::StallMidMessage => {
                let version =
                    Message::Version(self.state.version_message(&ctx(&self.node, &self.net)));
                let mut frame = BytesMut::new();
                let _ = self.encoder.encode(&version, &mut frame);
                let half = frame.len() / 2;
                self.write_buf
                    .put_slice(frame.get(..half).unwrap_or_default());
            }
            Misbehaviour::OversizedHeader => {
                self.write_buf.put_slice(&self.net.config.network.magic());
                let mut command = [0u8; COMMAND_LEN];
                command[..3].copy_from_slice(b"inv");
                self.write_buf.put_slice(&command);
                self.write_buf.put_u32_le(OVERSIZED_LENGTH);
                self.write_buf.put_slice(&[0u8; 4]);
            }
            _ => return Ok(()),
        }
        debug!(
            mode = self.mode.name(),
            bytes = self.write_buf.len(),
            "misbehaving on the wire"
        );
        self.silent = true;
        self.flush().await
    }

    /// The `headers` a header-misbehaviour mode sends once the handshake completes.
    fn header_misbehaviour(&self) -> Vec<Action> {
        let genesis = bitcoinsv::p2p::Network::Regtest.genesis_header();
        match self.mode {
            Misbehaviour::BadPowHeader => {
                let mut h = bitcoinsv::bitcoin::BlockHeader {
                    version: 0x2000_0000,
                    prev_hash: genesis.hash(),
                    merkle_root: Hash([0xba; 32]),
                    time: genesis.time.saturating_add(600),
                    bits: genesis.bits,
                    nonce: 0,
                };
                while h.check_proof_of_work() {
                    h.nonce = h.nonce.wrapping_add(1);
                }
                vec![Action::Send(Message::Headers(vec![h]))]
            }
            Misbehaviour::UnconnectingHeaders(n) => {
                let mut rng = rand::thread_rng();
                (0..n)
                    .map(|_| {
                        let h = bitcoinsv::bitcoin::BlockHeader {
                            prev_hash: Hash(rng.gen()),
                            ..genesis
                        };
                        Action::Send(Message::Headers(vec![h]))
                    })
                    .collect()
            }
            Misbehaviour::UnconnectingBatch => {
                let mut rng = rand::thread_rng();
                let mut prev = Hash(rng.gen());
                let batch = (0..9)
                    .map(|_| {
                        let h = bitcoinsv::bitcoin::BlockHeader {
                            prev_hash: prev,
                            ..genesis
                        };
                        prev = h.hash();
                        h
                    })
                    .collect();
                vec![Action::Send(Message::Headers(batch))]
            }
            _ => Vec::new(),
        }
    }

    /// One flood message: 1,000 random tx hashes, or 1,000 random loopback addresses.
    fn flood_message(&self) -> Message {
        let mut rng = rand::thread_rng();
        if self.mode == Misbehaviour::FloodAddr {
            let time = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(0);
            Message::Addr(
                (0..FLOOD_ENTRIES)
                    .map(|_| {
                        let [_, a, b, c] = rng.gen::<[u8; 4]>();
                        let ip = IpAddr::V4(Ipv4Addr::new(127, a, b, c));
                        let port = rng.gen::<u16>().max(1024);
                        TimestampedNetAddress {
                            time,
                            addr: NetAddress::new(SocketAddr::new(ip, port), NODE_SERVICES),
                        }
                    })
                    .collect(),
            )
        } else {
            Message::Inv(
                (0..FLOOD_ENTRIES)
                    .map(|_| InvVect::tx(Hash(rng.gen())))
                    .collect(),
            )
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}
