//! One TCP session of a connection actor: the thin driver of [`PeerProtocol`]. It splits the
//! socket, lets a writer task drain the [`Outbox`] so reading never waits on writing, decodes
//! frames, feeds the machine messages, codec errors, bytes and ticks, and performs the
//! [`Action`]s it returns: queue a frame, deliver to subscribers, update statistics, emit events,
//! report facts. It decides nothing about the protocol.
//!
//! Tracing: the session runs inside its connection's `peer` span (the writer task too), and
//! everything from socket open until the handshake completes or fails inside a `handshake` span
//! (field `flow`). Nothing is logged per message above TRACE: what a peer can trigger at any rate
//! (codec errors, undecodable messages, offences, busy rejects) is logged at TRACE and summed
//! into one DEBUG line at most every [`NOISE_SUMMARY_EVERY`] per connection.

use bytes::Bytes;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, trace, warn, Instrument, Span};

use super::actor::Actor;
use super::link::{Mailbox, Offence, Report};
use super::outbox::Out;
use super::protocol::{Action, Learned, PeerProtocol, ProtocolSettings};
use super::session_block::{self, Flow, InboundBlock};
use super::{
    ConnectionState, ConnectionStats, Direction, DisconnectReason, HandshakeFlow, Outbox,
    OutboxError, PeerDetails,
};
use crate::bitcoin::NetAddress;
use crate::p2p::codec::{is_close, Decoded, FrameReader, MessageCodec, RecvLimits};
use crate::p2p::events::{BitcoinMessageEvent, ControlEvent};
use crate::p2p::limits::{DELIVERY_BURST, PROTOCOL_VERSION, WRITER_FLUSH_TIMEOUT};
use crate::p2p::messages::{AssociationId, VersionMessage};
use crate::p2p::metrics::Tally;
use crate::p2p::peer::{unix_now, BanReason};
use crate::p2p::services::ServiceInput;
use crate::p2p::Message;

/// How a session ended.
#[derive(Debug)]
pub(crate) struct SessionEnd {
    /// Why.
    pub reason: DisconnectReason,
    /// Whether the handshake had completed.
    pub connected: bool,
    /// Whether the rules banned the peer.
    pub banned: bool,
}

use crate::p2p::limits::NOISE_SUMMARY_EVERY;

/// What a busy or hostile peer can make happen at any rate, counted so that it is logged as one
/// DEBUG summary at most every [`NOISE_SUMMARY_EVERY`] (the first at once) instead of a line
/// each.
#[derive(Debug, Default)]
struct Noise {
    codec_errors: u64,
    dropped_messages: u64,
    offences: u64,
    busy_rejects: u64,
    last_summary: Option<Instant>,
}

impl Noise {
    /// Logs the summary if one is due.
    fn maybe_log(&mut self, now: Instant) {
        if self
            .last_summary
            .is_none_or(|t| now.saturating_duration_since(t) >= NOISE_SUMMARY_EVERY)
        {
            self.log(now);
        }
    }

    /// Logs the counts since the last summary, if any, and starts counting afresh.
    fn log(&mut self, now: Instant) {
        if self.codec_errors + self.dropped_messages + self.offences + self.busy_rejects == 0 {
            return;
        }
        debug!(
            codec_errors = self.codec_errors,
            dropped_messages = self.dropped_messages,
            offences = self.offences,
            busy_rejects = self.busy_rejects,
            "peer errors since last summary"
        );
        *self = Noise {
            last_summary: Some(now),
            ..Noise::default()
        };
    }
}

pub(super) struct Session {
    pub(super) protocol: PeerProtocol,
    /// Encodes what we send (the reader has its own decoder).
    codec: MessageCodec,
    outbox: Outbox,
    started: Instant,
    banned: bool,
    noise: Noise,
    /// Message counts not yet added to the metrics.
    tally: Tally,
    /// The block being streamed in, if any (docs/GUIDE.md, "Blocks of any size"). Boxed: an
    /// idle connection should not carry a streaming decoder's room in its task.
    pub(super) inbound: Option<Box<InboundBlock>>,
    /// Messages decoded from the reads so far, delivered together as one batch once the read
    /// is drained (at most [`DELIVERY_BURST`]): each subscriber and the services' hub get one
    /// channel item, so one wake-up, per read instead of per message (docs/BENCHMARKS.md,
    /// "Small messages").
    pending: Vec<Message>,
}

impl Session {
    pub(super) fn end(&self, reason: DisconnectReason) -> SessionEnd {
        SessionEnd {
            reason,
            connected: self.protocol.is_established(),
            banned: self.banned,
        }
    }
}

fn our_version(actor: &Actor) -> VersionMessage {
    let l = &actor.ctx.local;
    VersionMessage {
        version: PROTOCOL_VERSION,
        services: l.services,
        timestamp: unix_now() as i64,
        receiver: NetAddress::new(actor.peer.socket_addr(), 0),
        sender: NetAddress {
            services: l.services,
            ..NetAddress::UNSPECIFIED
        },
        nonce: rand::thread_rng().gen_range(1..=u64::MAX),
        user_agent: l.user_agent.clone(),
        start_height: l.start_height,
        relay: l.relay,
        // Empty until streams are supported (docs/PROTOCOL.md §9.5).
        association_id: Some(AssociationId::Empty),
    }
}

fn recv_limits(actor: &Actor) -> RecvLimits {
    RecvLimits {
        max_payload: actor.ctx.config.max_recv_payload,
        max_block: actor.ctx.config.max_block_size,
        ..RecvLimits::default()
    }
}

fn settings(actor: &Actor, flow: HandshakeFlow) -> ProtocolSettings {
    let list = actor.ctx.banned_agents.clone();
    let c = &actor.ctx.config;
    ProtocolSettings {
        flow,
        network: actor.ctx.network,
        ours: our_version(actor),
        nonces: actor.ctx.nonces.clone(),
        banned_agent: std::sync::Arc::new(move |ua: &str| list.is_banned(ua)),
        handshake_timeout: c.handshake_timeout,
        ping_interval: c.ping_interval,
        ping_timeout: c.ping_timeout,
        max_recv_payload: c.max_recv_payload,
        whitelisted: actor.ctx.whitelist.contains(actor.peer.ip),
        ask_for_addresses: actor.ctx.ask_for_addresses && flow == HandshakeFlow::Outbound,
    }
}

/// Runs one session on `stream` until it ends.
pub(crate) async fn run(actor: &mut Actor, stream: TcpStream, flow: HandshakeFlow) -> SessionEnd {
    let (rd, wr) = stream.into_split();
    let outbox = Outbox::new(actor.ctx.send_queue_bytes);
    let writer = tokio::spawn(
        write_loop(
            wr,
            outbox.clone(),
            actor.shared.stats.clone(),
            actor.ctx.metrics.clone(),
        )
        .in_current_span(),
    );
    let started = Instant::now();
    let mut decoder = MessageCodec::new(actor.ctx.network).with_recv_limits(recv_limits(actor));
    if let Some(streaming) = &actor.ctx.streaming {
        decoder.set_stream_threshold(Some(streaming.config.threshold));
    }
    let mut rd = FrameReader::new(rd, decoder);
    let mut s = Session {
        protocol: PeerProtocol::new(settings(actor, flow), started),
        codec: MessageCodec::new(actor.ctx.network),
        outbox,
        started,
        banned: false,
        noise: Noise::default(),
        tally: Tally::new(),
        inbound: None,
        pending: Vec::new(),
    };
    let handshake = tracing::info_span!("handshake", flow = ?flow);
    let end = session_loop(actor, &mut rd, &mut s, handshake).await;
    if let Some(inbound) = s.inbound.take() {
        inbound.abandon(&end.reason);
    }
    actor.ctx.metrics.flush(&mut s.tally);
    s.noise.log(Instant::now());
    if let Ok(mut g) = actor.shared.session.lock() {
        *g = None;
    }
    s.outbox.close();
    // Let the writer flush what is queued (a final reject, a pong) briefly, then stop it.
    let mut writer = writer;
    if timeout(WRITER_FLUSH_TIMEOUT, &mut writer).await.is_err() {
        writer.abort();
    }
    end
}

/// Runs the session until it ends; every step before the handshake completes runs inside
/// `handshake`, which is closed (dropped) once it has.
async fn session_loop(
    actor: &mut Actor,
    rd: &mut FrameReader<OwnedReadHalf>,
    s: &mut Session,
    handshake: Span,
) -> SessionEnd {
    let actions = handshake.in_scope(|| s.protocol.start());
    if let Some(end) = Box::pin(apply(actor, s, actions))
        .instrument(handshake.clone())
        .await
    {
        handshake.in_scope(|| debug!(error = %end.reason, "handshake failed"));
        return end;
    }
    let mut handshake = Some(handshake);
    loop {
        if handshake.is_some() && s.protocol.is_established() {
            handshake = None;
        }
        let next = step(actor, rd, s);
        let mut r = match &handshake {
            Some(h) => next.instrument(h.clone()).await,
            None => next.await,
        };
        // What the step decoded is delivered before anything else happens, even when the
        // session ends (the messages a peer sent before it broke a rule are still its). Boxed,
        // as the session's other deep awaits: inline it would size every idle connection's
        // task (docs/BENCHMARKS.md, "10,000 connections").
        if Box::pin(flush_deliveries(actor, s)).await.is_err() && r.is_none() {
            r = Some(s.end(DisconnectReason::Requested));
        }
        if let Some(end) = r {
            if let (Some(h), false) = (&handshake, end.connected) {
                h.in_scope(|| debug!(error = %end.reason, "handshake failed"));
            }
            return end;
        }
    }
}

/// Waits for one thing to happen (bytes, a command, a timer, cancellation) and handles it.
///
/// What handles it is boxed: the handlers' awaits (delivering to subscribers and services,
/// streaming a block) are deep, and inline they would size the task of every connection, idle
/// or not, at their deepest (6 KiB then, against 3 KiB now; docs/BENCHMARKS.md, "10,000
/// connections"). One allocation per read, not per message: a read drains every frame it
/// brought.
async fn step(
    actor: &mut Actor,
    rd: &mut FrameReader<OwnedReadHalf>,
    s: &mut Session,
) -> Option<SessionEnd> {
    let protocol_deadline = s.protocol.deadline();
    let mut deadline = match s.tally.flush_due() {
        Some(due) => protocol_deadline.min(due),
        None => protocol_deadline,
    };
    if let Some(inbound) = &s.inbound {
        deadline = deadline.min(inbound.deadline());
    }
    tokio::select! {
        biased;
        _ = actor.shared.cancel.cancelled() => Some(s.end(DisconnectReason::Requested)),
        r = rd.read_more() => {
            match r {
                Ok(0) => return Some(s.end(DisconnectReason::PeerClosed)),
                Err(e) => return Some(s.end(read_error(e))),
                Ok(n) => {
                    actor.shared.stats.add_bytes_in(n);
                    s.protocol.on_bytes_received(Instant::now());
                    if let Some(inbound) = s.inbound.as_mut() {
                        inbound.on_bytes(n);
                        // Also here: a peer sending tiny pieces often could keep the timer
                        // branch below from ever being chosen.
                        if let Some(reason) = inbound.check_stall(Instant::now()) {
                            debug!(error = %reason, "peer stalled a block download");
                            return Some(s.end(reason));
                        }
                    }
                }
            }
            Box::pin(drain_frames(actor, rd, s)).await
        }
        cmd = actor.cmd_rx.recv() => {
            match cmd {
                None => Some(s.end(DisconnectReason::Requested)),
                Some(c) => match on_command(actor, c, rd, s) {
                    Some(actions) => Box::pin(apply(actor, s, actions)).await,
                    None => None,
                },
            }
        }
        _ = sleep_until(deadline) => {
            let now = Instant::now();
            if s.tally.flush_due().is_some_and(|due| now >= due) {
                actor.ctx.metrics.flush(&mut s.tally);
            }
            if let Some(reason) = s.inbound.as_mut().and_then(|i| i.check_stall(now)) {
                debug!(error = %reason, "peer stalled a block download");
                return Some(s.end(reason));
            }
            if now < protocol_deadline {
                return None;
            }
            let actions = s.protocol.on_tick(now, || rand::thread_rng().gen());
            Box::pin(apply(actor, s, actions)).await
        }
    }
}

/// Decodes every complete frame buffered and hands each to the protocol.
async fn drain_frames(
    actor: &mut Actor,
    rd: &mut FrameReader<OwnedReadHalf>,
    s: &mut Session,
) -> Option<SessionEnd> {
    loop {
        if s.inbound.is_some() {
            // Boxed, as every rare and deep path of the session: the task's size is that of its
            // deepest await, paid by every idle connection (docs/BENCHMARKS.md, "10,000
            // connections").
            match Box::pin(session_block::pump(actor, rd, s)).await {
                Flow::NeedBytes => return None,
                Flow::Done => continue,
                Flow::End(end) => return Some(end),
            }
        }
        let now = Instant::now();
        let frame = match rd.decode_next() {
            Ok(Some(Decoded::Frame(f))) => f,
            Ok(Some(Decoded::BlockStart(header))) => {
                let size = usize::try_from(header.length)
                    .unwrap_or(usize::MAX)
                    .saturating_add(header.wire_len());
                actor.shared.stats.count_received(&header.command, size);
                if s.tally.record(true, &header.command, size) {
                    actor.ctx.metrics.flush(&mut s.tally);
                }
                // Before the block's stream may wait for its reader: an application reading
                // the messages that came first must have them.
                if Box::pin(flush_deliveries(actor, s)).await.is_err() {
                    return Some(s.end(DisconnectReason::Requested));
                }
                s.inbound = Some(Box::new(InboundBlock::new(actor, header)));
                continue;
            }
            Ok(None) => return None,
            Err(e) => {
                trace!(error = %e, "codec error");
                s.noise.codec_errors += 1;
                s.noise.maybe_log(now);
                let actions = s.protocol.on_codec_error(&e, now);
                if let Some(end) = apply(actor, s, actions).await {
                    return Some(end);
                }
                continue;
            }
        };
        let size = frame.header.wire_len() + frame.payload.len();
        actor
            .shared
            .stats
            .count_received(&frame.header.command, size);
        if s.tally.record(true, &frame.header.command, size) {
            actor.ctx.metrics.flush(&mut s.tally);
        }
        let actions = match frame.message() {
            Ok(msg) => {
                trace!(command = %frame.header.command, bytes = size, "received");
                if let Some(tap) = &actor.ctx.tap {
                    let _ = tap.send(BitcoinMessageEvent {
                        peer_id: actor.peer.id,
                        message: msg.clone(),
                    });
                }
                s.protocol.on_message(msg, now)
            }
            Err(e) => {
                trace!(command = %frame.header.command, error = %e, "dropping message");
                s.noise.dropped_messages += 1;
                s.noise.maybe_log(now);
                s.protocol.on_codec_error(&e, now)
            }
        };
        if let Some(end) = apply(actor, s, actions).await {
            return Some(end);
        }
        if s.pending.len() >= DELIVERY_BURST && Box::pin(flush_deliveries(actor, s)).await.is_err()
        {
            return Some(s.end(DisconnectReason::Requested));
        }
    }
}

/// Delivers the messages decoded so far, in order. The list is handed over and a new one
/// starts empty, so an idle connection keeps no capacity from its busiest read. Fails when the
/// connection is cancelled meanwhile.
async fn flush_deliveries(actor: &Actor, s: &mut Session) -> Result<(), ()> {
    if s.pending.is_empty() {
        return Ok(());
    }
    deliver(actor, std::mem::take(&mut s.pending)).await
}

/// Performs the protocol's actions in order; returns the end of the session if one of them
/// closes it.
pub(super) async fn apply(
    actor: &mut Actor,
    s: &mut Session,
    actions: Vec<Action>,
) -> Option<SessionEnd> {
    for action in actions {
        match action {
            Action::Send(m) => {
                if let Some(end) = send_control(actor, s, &m) {
                    return Some(end);
                }
            }
            // Delivered once the read is drained (`flush_deliveries`).
            Action::Deliver(m) => s.pending.push(m),
            Action::Established(v) => Box::pin(established(actor, s, &v)).await,
            Action::Misbehaving { offence, score } => {
                trace!(score, reason = %offence, "peer misbehaved");
                s.noise.offences += 1;
                s.noise.maybe_log(Instant::now());
                actor.ctx.metrics.misbehavior(offence);
                actor.shared.stats.set_score(score);
                actor.emit(ControlEvent::PeerMisbehavior {
                    peer_id: actor.peer.id,
                    score,
                    reason: offence,
                });
            }
            Action::Ban(reason) => {
                s.banned = true;
                Box::pin(report_ban(actor, reason)).await;
            }
            Action::Disconnect(reason) => return Some(s.end(reason)),
            Action::Learned(l) => learned(actor, s, l),
            Action::BackOff(until) => {
                trace!("peer is too busy: holding back requests");
                s.noise.busy_rejects += 1;
                s.noise.maybe_log(Instant::now());
                if let Ok(mut g) = actor.shared.busy_until.lock() {
                    *g = Some(until);
                }
            }
        }
    }
    None
}

/// Hands a batch of messages, in order, to the services (those they use), the lossless
/// subscribers (waiting for room: reading pauses and TCP pushes back) and the broadcast
/// channel. Each of the first two gets the batch as one channel item. Fails when the connection
/// is cancelled meanwhile.
async fn deliver(actor: &Actor, messages: Vec<Message>) -> Result<(), ()> {
    let ctx = &actor.ctx;
    // With no subscriber to hand them to afterwards, the services take the messages
    // themselves rather than deep copies (an `addr` is a 40 KB `Vec`; 10,000 peers answering
    // `getaddr` at once held two each while the hub caught up; docs/BENCHMARKS.md, "10,000
    // connections").
    let others = !ctx.sinks.is_empty() || ctx.message_tx.receiver_count() > 0;
    let mut messages = messages;
    if let Some(services) = &ctx.services {
        let wanted: Vec<Message> = if others {
            messages
                .iter()
                .filter(|m| crate::p2p::services::wants(m))
                .cloned()
                .collect()
        } else {
            let (wanted, rest) = std::mem::take(&mut messages)
                .into_iter()
                .partition(crate::p2p::services::wants);
            messages = rest;
            wanted
        };
        if !wanted.is_empty() {
            let input = ServiceInput::Messages {
                peer_id: actor.peer.id,
                messages: wanted,
            };
            tokio::select! {
                r = services.send(input) => { let _ = r; }
                _ = actor.shared.cancel.cancelled() => return Err(()),
            }
        }
    }
    let events: Vec<BitcoinMessageEvent> = messages
        .into_iter()
        .map(|message| BitcoinMessageEvent {
            peer_id: actor.peer.id,
            message,
        })
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    if !ctx.sinks.is_empty() {
        tokio::select! {
            waited = ctx.sinks.deliver(&events) => if waited { ctx.metrics.backpressure() },
            _ = actor.shared.cancel.cancelled() => return Err(()),
        }
    }
    for event in events {
        ctx.metrics
            .send_counted(&ctx.message_tx, ctx.event_capacity, "messages", event);
    }
    Ok(())
}

async fn established(actor: &mut Actor, s: &mut Session, v: &VersionMessage) {
    s.codec.set_peer_version(v.version);
    let details = PeerDetails {
        version: v.version,
        user_agent: v.user_agent.clone(),
        services: v.services,
        start_height: v.start_height,
        relay: v.relay,
        ..PeerDetails::default()
    };
    let took = Instant::now().saturating_duration_since(s.started);
    actor
        .ctx
        .metrics
        .handshake(took, actor.shared.stats.direction());
    // Sendable before it is seen as connected: whoever counts connections may send at once.
    if let Ok(mut g) = actor.shared.session.lock() {
        *g = Some((s.outbox.clone(), s.codec.clone()));
    }
    actor.shared.stats.set_connected(details, took);
    let _ = actor.machine.transition(ConnectionState::Connected);
    debug!(state = %ConnectionState::Connected, "connection state changed");
    actor.was_connected = true;
    actor.retry.on_handshake_complete();
    tracing::info!(user_agent = %crate::p2p::text::printable(&v.user_agent), version = v.version, start_height = v.start_height, "connection established");
    actor.emit(ControlEvent::HandshakeComplete {
        peer_id: actor.peer.id,
    });
    actor.emit(ControlEvent::ConnectionEstablished {
        peer_id: actor.peer.id,
        is_inbound: actor.shared.stats.direction() == Direction::Inbound,
    });
    if let Some(services) = &actor.ctx.services {
        let up = ServiceInput::PeerUp {
            peer_id: actor.peer.id,
        };
        tokio::select! {
            _ = services.send(up) => {}
            _ = actor.shared.cancel.cancelled() => {}
        }
    }
    if let Some(reports) = &actor.ctx.reports {
        let report = Report::Established {
            peer_id: actor.peer.id,
            direction: actor.shared.stats.direction(),
        };
        tokio::select! {
            _ = reports.send(report) => {}
            _ = actor.shared.cancel.cancelled() => {}
        }
    }
}

async fn report_ban(actor: &Actor, reason: BanReason) {
    let ip = actor.peer.ip;
    warn!(%ip, reason = %reason, "banning peer");
    match &actor.ctx.reports {
        Some(reports) => {
            let report = Report::Ban {
                peer_id: actor.peer.id,
                ip,
                reason,
                ack: None,
            };
            // A ban must reach the store even while we are being cancelled (the ban is why).
            let _ = reports.send(report).await;
        }
        // A lone connection has no store to consult: it announces the ban itself.
        None => {
            if !actor.ctx.whitelist.contains(ip) {
                actor.emit(ControlEvent::PeerBanned {
                    peer_id: actor.peer.id,
                    ip,
                    reason,
                });
            }
        }
    }
}

fn learned(actor: &Actor, s: &mut Session, l: Learned) {
    let stats = &actor.shared.stats;
    match l {
        Learned::WantsHeaders => stats.update_details(|d| d.wants_headers = true),
        Learned::CompactBlocks { announce, version } => {
            stats.update_details(|d| d.compact_blocks = Some((announce, version)))
        }
        Learned::FeeFilter(f) => stats.update_details(|d| d.fee_filter = Some(f)),
        Learned::Rtt(rtt) => {
            trace!(rtt_ms = rtt.as_millis() as u64, "pong");
            actor.ctx.metrics.rtt(rtt);
            stats.set_rtt(rtt);
        }
        Learned::MaxRecv(limit) => {
            s.codec.set_peer_max_recv(limit);
            if let Ok(mut g) = actor.shared.session.lock() {
                if let Some((_, codec)) = g.as_mut() {
                    codec.set_peer_max_recv(limit);
                }
            }
            stats.update_details(|d| d.max_recv_payload = Some(limit));
        }
    }
}

fn on_command(
    actor: &mut Actor,
    cmd: Mailbox,
    rd: &mut FrameReader<OwnedReadHalf>,
    s: &mut Session,
) -> Option<Vec<Action>> {
    match cmd {
        Mailbox::UpdateConfig(c) => {
            debug!("connection settings updated");
            actor.ctx.config = *c;
            rd.codec_mut().set_recv_limits(recv_limits(actor));
            s.protocol.set_ping_timing(
                actor.ctx.config.ping_interval,
                actor.ctx.config.ping_timeout,
                Instant::now(),
            );
            None
        }
        Mailbox::Offence(Offence::UnconnectingHeaders) => {
            Some(s.protocol.on_unconnecting_headers())
        }
        Mailbox::Offence(Offence::Rule(m)) => Some(s.protocol.on_offence(m)),
    }
}

fn send_control(actor: &Actor, s: &mut Session, m: &Message) -> Option<SessionEnd> {
    let frame = match s.codec.encode_to_bytes(m) {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, "cannot encode control message");
            return None;
        }
    };
    trace!(command = m.command(), bytes = frame.len(), "sending");
    actor.shared.stats.count_sent(m.command(), frame.len());
    match s.outbox.push_priority(frame) {
        Ok(()) => None,
        Err(OutboxError::PriorityFull) => Some(s.end(DisconnectReason::NotReading)),
        Err(OutboxError::Closed) => Some(s.end(DisconnectReason::Io("writer closed".into()))),
    }
}

/// A reset is how most peers close a socket with data still in flight: report it as a close.
fn read_error(e: std::io::Error) -> DisconnectReason {
    if is_close(&e) {
        DisconnectReason::PeerClosed
    } else {
        DisconnectReason::Io(e.to_string())
    }
}

/// Drains the outbox into the socket until it is closed and empty or the socket fails.
///
/// Outgoing messages are counted for the metrics here, the one place every frame passes
/// (control replies and the application's sends alike), into the writer's own tally.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    outbox: Outbox,
    stats: std::sync::Arc<ConnectionStats>,
    metrics: crate::p2p::metrics::Metrics,
) {
    let mut tally = Tally::new();
    loop {
        // A quiet writer still flushes its tally when due (a ping sent, then nothing for two
        // minutes, showed in no counter). `next` is cancel-safe: it takes a frame only under
        // its lock, and the loop asks again after a flush.
        let next = match tally.flush_due() {
            Some(due) => tokio::select! {
                n = outbox.next() => n,
                _ = tokio::time::sleep_until(due) => {
                    metrics.flush(&mut tally);
                    continue;
                }
            },
            None => outbox.next().await,
        };
        let Some((out, permit)) = next else {
            break;
        };
        let (command, written) = match out {
            Out::Frame(frame) => {
                if let Err(e) = write_frame(&mut wr, &frame).await {
                    debug!(error = %e, "write failed");
                    outbox.close();
                    break;
                }
                (frame_command(&frame).to_string(), frame.len())
            }
            Out::Stream(job) => {
                let header = job.header.len();
                // Boxed: a streamed block is rare, and its copy inline would size the writer
                // task every connection keeps.
                let result = Box::pin(write_stream(&mut wr, job.header, job.body, job.len)).await;
                let ok = result.is_ok();
                let written = result.as_ref().map_or(0, |n| *n);
                let _ = job.done.send(result.map_err(|e| e.to_string()));
                if !ok {
                    // A frame cut short cannot be resumed: the connection is over.
                    debug!("streamed block write failed");
                    outbox.close();
                    break;
                }
                let total = usize::try_from(written)
                    .unwrap_or(usize::MAX)
                    .saturating_add(header);
                (crate::p2p::messages::commands::BLOCK.to_string(), total)
            }
        };
        stats.add_bytes_out(written);
        if tally.record(false, &command, written) {
            metrics.flush(&mut tally);
        }
        drop(permit);
    }
    metrics.flush(&mut tally);
    let _ = wr.shutdown().await;
}

/// The command of a frame we encoded: the basic header's field, or for an `extmsg` header the
/// command it carries (bytes 20..32).
fn frame_command(frame: &[u8]) -> &str {
    let field = |range: std::ops::Range<usize>| {
        frame
            .get(range)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(|s| s.trim_end_matches('\0'))
            .unwrap_or("")
    };
    match field(4..16) {
        crate::p2p::messages::commands::EXTMSG => field(20..32),
        command => command,
    }
}

async fn write_frame(wr: &mut OwnedWriteHalf, frame: &Bytes) -> std::io::Result<()> {
    wr.write_all(frame).await
}

/// Writes a frame header then exactly `len` payload bytes from `body`, through a fixed buffer
/// ([`STREAM_CHUNK`]); returns the payload bytes written.
async fn write_stream(
    wr: &mut OwnedWriteHalf,
    header: Bytes,
    body: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    len: u64,
) -> std::io::Result<u64> {
    wr.write_all(&header).await?;
    let mut body = tokio::io::BufReader::with_capacity(
        crate::p2p::limits::STREAM_CHUNK,
        tokio::io::AsyncReadExt::take(body, len),
    );
    let n = tokio::io::copy_buf(&mut body, wr).await?;
    if n < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the block's source ended after {n} of {len} bytes"),
        ));
    }
    Ok(n)
}
