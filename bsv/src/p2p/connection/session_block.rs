//! The session's side of a streamed block (docs/GUIDE.md, "Blocks of any size"): once the codec
//! hands over a `block` frame above the threshold, the session reads the 80-byte header, offers
//! the stream to the block service, then passes the payload through a
//! [`BlockStreamDecoder`] as it arrives and queues what the receiver asked for, waiting for room
//! (back-pressure) with the stall guard paused. What the peer sent wrong is judged by the same
//! rules as a buffered block: a payload that does not parse goes to
//! `PeerProtocol::on_codec_error` as the whole-frame decoder's error would, a bad checksum too,
//! and a bad merkle root to the block service, which charges `bad-txnmrklroot` as it does for a
//! buffered block. Nothing is decided here.

use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, trace};

use super::actor::Actor;
use super::checksum::ChecksumWorker;
use super::session::{apply, Session};
use super::stall::StallGuard;
use crate::bitcoin::{BlockHeader, Decode, Hash};
use crate::p2p::codec::{
    BlockEvent, BlockStreamConfig, BlockStreamDecoder, BlockStreamError, ChecksumStatus,
    CodecError, FrameHeader, FrameReader, TxMode,
};
use crate::p2p::connection::DisconnectReason;
use crate::p2p::limits::{MAX_TX_SIZE, STREAM_CHUNK};
use crate::p2p::services::blocks::stream::{
    self, cost, BlockPart, BlockStreamFailure, BlockStreamMode, Queued, StreamInfo, StreamOffer,
    StreamOutcome, StreamSender,
};
use crate::p2p::services::ServiceInput;

/// A block being streamed in.
#[derive(Debug)]
pub(super) struct InboundBlock {
    frame: FrameHeader,
    hash: Option<Hash>,
    decoder: Option<BlockStreamDecoder>,
    to: Option<(StreamSender, BlockStreamMode)>,
    stall: StallGuard,
    /// Hashes the payload for a basic frame's checksum on another core.
    checksum: Option<ChecksumWorker>,
    /// The payload failed to decode: the rest is skipped.
    failed: bool,
}

/// What the stream needs next.
pub(super) enum Flow {
    /// More bytes from the socket.
    NeedBytes,
    /// The payload is complete: frames are decoded again.
    Done,
    /// The session ends.
    End(super::session::SessionEnd),
}

impl InboundBlock {
    /// A block whose frame header (`frame`) has just been read.
    pub(super) fn new(actor: &Actor, frame: FrameHeader) -> Self {
        let (period, rate) = actor
            .ctx
            .streaming
            .as_ref()
            .map(|s| (s.config.stall_timeout, s.config.stall_min_rate))
            .unwrap_or((
                crate::p2p::limits::DEFAULT_BLOCK_STALLING_TIMEOUT,
                crate::p2p::limits::DEFAULT_BLOCK_STALLING_MIN_RATE,
            ));
        trace!(bytes = frame.length, "streaming a block");
        InboundBlock {
            frame,
            hash: None,
            decoder: None,
            to: None,
            stall: StallGuard::new(period, rate, Instant::now()),
            checksum: None,
            failed: false,
        }
    }

    /// Bytes arrived from the socket.
    pub(super) fn on_bytes(&mut self, n: usize) {
        self.stall.on_bytes(n);
    }

    /// When the stall rule must next be checked.
    pub(super) fn deadline(&self) -> Instant {
        self.stall.deadline()
    }

    /// Checks the stall rule; the disconnect reason when the peer stalls.
    pub(super) fn check_stall(&mut self, now: Instant) -> Option<DisconnectReason> {
        self.stall
            .check(now)
            .err()
            .map(|s| DisconnectReason::BlockStalled {
                received: s.received,
                within: s.within,
            })
    }

    /// The session ends mid-block: the receiver learns why.
    pub(super) fn abandon(self, reason: &DisconnectReason) {
        if let Some((tx, _)) = self.to {
            let failure = match reason {
                DisconnectReason::BlockStalled { received, within } => {
                    BlockStreamFailure::Stalled {
                        received: *received,
                        within: *within,
                    }
                }
                r => BlockStreamFailure::Disconnected(r.clone()),
            };
            tx.finish(Queued::Failed(failure));
        }
    }
}

/// Moves the streamed block on with what is buffered.
pub(super) async fn pump(
    actor: &mut Actor,
    rd: &mut FrameReader<OwnedReadHalf>,
    s: &mut Session,
) -> Flow {
    let Some(mut ib) = s.inbound.take() else {
        return Flow::Done;
    };
    let flow = pump_inner(actor, rd, s, &mut ib).await;
    match &flow {
        Flow::NeedBytes => s.inbound = Some(ib),
        Flow::Done => {}
        Flow::End(end) => ib.abandon(&end.reason),
    }
    flow
}

async fn pump_inner(
    actor: &mut Actor,
    rd: &mut FrameReader<OwnedReadHalf>,
    s: &mut Session,
    ib: &mut InboundBlock,
) -> Flow {
    if ib.decoder.is_none() {
        let need = ib.frame.length.min(80) as usize;
        let head = rd.stream_bytes(80);
        if head.len() < need {
            return Flow::NeedBytes;
        }
        let mode = match BlockHeader::decode_exact(head) {
            Ok(header) => {
                ib.hash = Some(header.hash());
                // Before the handshake nobody is offered anything: the block is read and
                // checked, and dropped.
                if s.protocol.is_established() {
                    ib.to = route(actor, &ib.frame, header).await;
                }
                ib.to.as_ref().map(|(_, m)| *m)
            }
            // The decoder reports it, with its offset.
            Err(_) => None,
        };
        let window = actor
            .ctx
            .streaming
            .as_ref()
            .map_or(crate::p2p::limits::DEFAULT_BLOCK_STREAM_WINDOW, |st| {
                st.config.max_whole_tx
            });
        let config = BlockStreamConfig {
            mode: mode.map_or(TxMode::TxidOnly, BlockStreamMode::tx_mode),
            window,
            max_tx_size: MAX_TX_SIZE,
        };
        let mut decoder = BlockStreamDecoder::for_frame(&ib.frame, config);
        if decoder.expected_checksum().is_some() {
            decoder.checksum_elsewhere();
            ib.checksum = Some(ChecksumWorker::spawn());
        }
        ib.decoder = Some(decoder);
    }
    let window = actor
        .ctx
        .streaming
        .as_ref()
        .map_or(usize::MAX, |st| st.config.window);
    loop {
        if ib.failed {
            let n = rd.stream_bytes(usize::MAX).len();
            rd.consume_stream(n);
            return if rd.stream_left() == 0 {
                Flow::Done
            } else {
                Flow::NeedBytes
            };
        }
        let Some(decoder) = ib.decoder.as_mut() else {
            return Flow::Done;
        };
        let raw = matches!(ib.to, Some((_, BlockStreamMode::Raw)));
        let (fed, chunk) = if raw || ib.checksum.is_some() {
            // The chunk is shared (no copy) with the checksum worker and the raw receiver.
            let Some(chunk) = rd.take_stream_chunk(STREAM_CHUNK) else {
                return Flow::NeedBytes;
            };
            if let Some(worker) = ib.checksum.as_ref() {
                let Some(handed) =
                    off_the_clock(actor, &mut ib.stall, worker.feed(chunk.clone())).await
                else {
                    return Flow::End(s.end(DisconnectReason::Requested));
                };
                if !handed {
                    ib.checksum = None;
                }
            }
            let Some(decoder) = ib.decoder.as_mut() else {
                return Flow::Done;
            };
            (decoder.feed(&chunk), raw.then_some(chunk))
        } else {
            let bytes = rd.stream_bytes(STREAM_CHUNK);
            if bytes.is_empty() {
                return Flow::NeedBytes;
            }
            let n = bytes.len();
            let fed = decoder.feed(bytes);
            rd.consume_stream(n);
            (fed, None)
        };
        // Hand over what the chunk completed, in order, in as few batches as the window
        // allows (one per chunk unless the window is smaller than a chunk's parts).
        let mut batch = Vec::new();
        let mut batch_cost = 0usize;
        if let Some(chunk) = chunk {
            batch_cost = chunk.len();
            batch.push(BlockPart::Bytes(chunk));
        }
        let mut ended = None;
        while let Some(event) = ib.decoder.as_mut().and_then(|d| d.next_event()) {
            let (part, c) = match event {
                BlockEvent::Header(_) | BlockEvent::TxCount(_) => continue,
                BlockEvent::Transaction {
                    index,
                    offset,
                    txid,
                    tx,
                } => {
                    let len = crate::bitcoin::Encode::encoded_len(&tx) as u64;
                    let part = BlockPart::Transaction {
                        index,
                        offset,
                        txid,
                        tx,
                    };
                    let c = cost(&part, len);
                    (part, c)
                }
                BlockEvent::TxId {
                    index,
                    txid,
                    offset,
                    length,
                } => {
                    let part = BlockPart::TxId {
                        index,
                        txid,
                        offset,
                        length,
                    };
                    let c = cost(&part, length);
                    (part, c)
                }
                BlockEvent::End(end) => {
                    ended = Some(end);
                    break;
                }
            };
            if !batch.is_empty() && batch_cost.saturating_add(c) > window {
                let full = std::mem::take(&mut batch);
                if queue(actor, ib, full, std::mem::take(&mut batch_cost))
                    .await
                    .is_err()
                {
                    return Flow::End(s.end(DisconnectReason::Requested));
                }
            }
            batch.push(part);
            batch_cost = batch_cost.saturating_add(c);
        }
        if queue(actor, ib, batch, batch_cost).await.is_err() {
            return Flow::End(s.end(DisconnectReason::Requested));
        }
        if let Some(end) = ended {
            return finish(actor, s, ib, end).await;
        }
        if let Err(e) = fed {
            debug!(error = %e, "streamed block is malformed");
            ib.failed = true;
            ib.checksum = None;
            let failure = match e {
                BlockStreamError::TxExceedsWindow {
                    index,
                    size,
                    window,
                    ..
                } => BlockStreamFailure::TransactionTooLarge {
                    index,
                    size,
                    limit: window,
                },
                ref e => BlockStreamFailure::Malformed(e.clone()),
            };
            if let Some((tx, _)) = ib.to.take() {
                tx.finish(Queued::Failed(failure.clone()));
            }
            report_end(actor, ib, StreamOutcome::Failed(failure)).await;
            if let Some(ce) = e.to_codec_error() {
                let actions = s.protocol.on_codec_error(&ce, Instant::now());
                if let Some(end) = apply(actor, s, actions).await {
                    return Flow::End(end);
                }
            }
        }
    }
}

/// The payload is complete: the receiver gets the verdict, the block service the outcome, and
/// a bad checksum goes to the protocol as for a buffered frame.
async fn finish(
    actor: &mut Actor,
    s: &mut Session,
    ib: &mut InboundBlock,
    mut end: crate::p2p::codec::BlockEnd,
) -> Flow {
    let expected = ib.decoder.as_ref().and_then(|d| d.expected_checksum());
    if let (Some(worker), Some(expected)) = (ib.checksum.take(), expected) {
        let Some(digest) = off_the_clock(actor, &mut ib.stall, worker.finish()).await else {
            return Flow::End(s.end(DisconnectReason::Requested));
        };
        match digest {
            Some(d) => end.checksum = ChecksumStatus::judge(expected, &d),
            None => debug!(
                "the checksum worker ended early: the streamed block's checksum is unchecked"
            ),
        }
    }
    let outcome = match stream::verdict(&end) {
        Ok(()) => StreamOutcome::Verified { len: end.length },
        Err(f) => StreamOutcome::Failed(f),
    };
    trace!(
        bytes = end.length,
        transactions = end.tx_count,
        ?outcome,
        "streamed block ended"
    );
    if let Some((tx, _)) = ib.to.take() {
        tx.finish(Queued::End(end));
    }
    report_end(actor, ib, outcome).await;
    if let ChecksumStatus::Mismatched { expected, actual } = end.checksum {
        let e = CodecError::BadChecksum {
            command: crate::p2p::messages::commands::BLOCK.to_string(),
            expected,
            actual,
        };
        let actions = s.protocol.on_codec_error(&e, Instant::now());
        if let Some(end) = apply(actor, s, actions).await {
            return Flow::End(end);
        }
    }
    Flow::Done
}

/// Queues a batch of parts for the receiver, if there still is one, with the stall guard
/// paused while we wait for room. Fails only when the connection is cancelled meanwhile.
async fn queue(
    actor: &Actor,
    ib: &mut InboundBlock,
    parts: Vec<BlockPart>,
    c: usize,
) -> Result<(), ()> {
    let Some((tx, _)) = ib.to.as_ref() else {
        return Ok(());
    };
    if parts.is_empty() {
        return Ok(());
    }
    let sent = off_the_clock(actor, &mut ib.stall, tx.send(parts, c))
        .await
        .ok_or(())?;
    if sent.is_err() {
        // The receiver dropped the stream: the rest is still read and checked.
        ib.to = None;
    }
    Ok(())
}

/// Awaits `f` with the stall guard paused (the wait is ours, not the peer's: the application
/// taking parts, the checksum worker hashing); `None` when the connection is cancelled meanwhile.
async fn off_the_clock<F: std::future::Future>(
    actor: &Actor,
    stall: &mut StallGuard,
    f: F,
) -> Option<F::Output> {
    stall.pause(Instant::now());
    let out = tokio::select! {
        out = f => Some(out),
        _ = actor.shared.cancel.cancelled() => None,
    };
    stall.resume(Instant::now());
    out
}

/// Offers the stream to the block service: the sender and mode when someone takes it.
async fn route(
    actor: &Actor,
    frame: &FrameHeader,
    header: BlockHeader,
) -> Option<(StreamSender, BlockStreamMode)> {
    let streaming = actor.ctx.streaming.as_ref()?;
    let info = StreamInfo {
        hash: header.hash(),
        header,
        peer_id: actor.peer.id,
        address: actor.peer.socket_addr(),
        len: frame.length,
    };
    let (tx, mut stream) = stream::channel(info, streaming.config.window, &streaming.budget);
    if let Some((offers, mode)) = &streaming.offers {
        // A lone connection: its owner takes the stream if it has room for it.
        stream.set_mode(*mode);
        return offers.try_send(stream).ok().map(|()| (tx, *mode));
    }
    let services = actor.ctx.services.as_ref()?;
    let (reply, answer) = oneshot::channel();
    let input = ServiceInput::BlockStream {
        peer_id: actor.peer.id,
        offer: StreamOffer { stream, reply },
    };
    tokio::select! {
        r = services.send(input) => r.ok()?,
        _ = actor.shared.cancel.cancelled() => return None,
    }
    let mode = tokio::select! {
        m = answer => m.ok()?,
        _ = actor.shared.cancel.cancelled() => return None,
    };
    Some((tx, mode))
}

/// Tells the block service how the payload ended.
async fn report_end(actor: &Actor, ib: &InboundBlock, outcome: StreamOutcome) {
    let (Some(services), Some(hash)) = (actor.ctx.services.as_ref(), ib.hash) else {
        return;
    };
    let input = ServiceInput::BlockStreamEnded {
        peer_id: actor.peer.id,
        hash,
        outcome,
    };
    tokio::select! {
        _ = services.send(input) => {}
        _ = actor.shared.cancel.cancelled() => {}
    }
}
