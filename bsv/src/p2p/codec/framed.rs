//! Frames over a byte stream: the one reading loop shared by the connection actor, the crawler
//! and the simulated network, so that all three buffer, check limits and skip bad frames the
//! same way.
//!
//! [`FrameReader`] owns the read half of a stream, a decoder and the read buffer. Its two steps,
//! [`FrameReader::read_more`] (await bytes) and [`FrameReader::decode`] (split off one frame if
//! a whole one is buffered), are separate so a driver can count bytes, note that the peer is
//! alive, and `select!` on the read while doing other work: `read_more` is cancel-safe, since
//! every byte read is kept in the buffer. The buffer keeps a fixed amount of free room, so a
//! large payload arrives in big reads, and it grows with what arrives, never with what a header
//! declares. [`FramedStream`] adds the write half and an encoder for request/response tools.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use super::{CodecError, Decoded, MessageCodec, RawFrame};
use crate::p2p::limits::{READ_ROOM, STREAM_READ_ROOM};
use crate::p2p::Message;

/// Reads frames from the read half of a stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    rd: R,
    codec: MessageCodec,
    buf: BytesMut,
    /// Payload bytes of a streamed block ([`Decoded::BlockStart`]) still to be taken with
    /// [`FrameReader::take_stream_chunk`] before frames are decoded again.
    stream_left: u64,
}

/// Why [`FramedStream::next_frame`] returned no frame.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing complete arrived before the deadline.
    #[error("timed out")]
    Timeout,
    /// The peer closed the stream (or reset it).
    #[error("closed by the peer")]
    Closed,
    /// The stream cannot be read any further: a fatal codec error or an I/O error.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader decoding with `codec`.
    pub fn new(rd: R, codec: MessageCodec) -> Self {
        FrameReader {
            rd,
            codec,
            buf: BytesMut::with_capacity(READ_ROOM),
            stream_left: 0,
        }
    }

    /// The decoder, to change its limits or record the peer's version.
    pub fn codec_mut(&mut self) -> &mut MessageCodec {
        &mut self.codec
    }

    /// Waits for more bytes; returns how many arrived, 0 when the peer closed the stream.
    /// Cancel-safe.
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        // A streamed block passes through in big reads; frames keep the small room.
        let room = if self.stream_left > 0 {
            STREAM_READ_ROOM
        } else {
            READ_ROOM
        };
        if self.buf.capacity() - self.buf.len() < room {
            self.buf.reserve(room);
        }
        self.rd.read_buf(&mut self.buf).await
    }

    /// As [`FrameReader::read_more`], reading at most `limit` bytes (for throttled readers such as
    /// the simulated network's slow-reader mode). Cancel-safe.
    pub async fn read_more_at_most(&mut self, limit: usize) -> std::io::Result<usize> {
        self.buf.reserve(limit.min(READ_ROOM));
        (&mut self.rd)
            .take(limit as u64)
            .read_buf(&mut self.buf)
            .await
    }

    /// Splits one frame off the buffer if a whole one has arrived (`Ok(None)`: read more).
    pub fn decode(&mut self) -> Result<Option<RawFrame>, CodecError> {
        self.codec.decode_frame(&mut self.buf)
    }

    /// Splits one frame off the buffer, or hands over the header of a `block` frame above the
    /// codec's streaming threshold ([`MessageCodec::set_stream_threshold`]); after
    /// [`Decoded::BlockStart`], the payload is taken with [`FrameReader::take_stream_chunk`] /
    /// [`FrameReader::stream_bytes`] and nothing is decoded until all of it has been.
    pub fn decode_next(&mut self) -> Result<Option<Decoded>, CodecError> {
        if self.stream_left > 0 {
            return Ok(None);
        }
        let decoded = self.codec.decode_next(&mut self.buf)?;
        if let Some(Decoded::BlockStart(header)) = &decoded {
            self.stream_left = header.length;
        }
        Ok(decoded)
    }

    /// Payload bytes of the streamed block not yet taken (0: no block is being streamed).
    pub fn stream_left(&self) -> u64 {
        self.stream_left
    }

    /// The streamed block's payload bytes buffered now, at most `max`, to look at before
    /// [`FrameReader::consume_stream`].
    pub fn stream_bytes(&self, max: usize) -> &[u8] {
        let n = self.stream_chunk_len(max);
        &self.buf[..n]
    }

    /// Drops `n` bytes of the streamed block's payload from the buffer (after
    /// [`FrameReader::stream_bytes`]); the buffer's memory is reused.
    pub fn consume_stream(&mut self, n: usize) {
        let n = self.stream_chunk_len(n);
        bytes::Buf::advance(&mut self.buf, n);
        self.stream_left -= n as u64;
    }

    /// Takes up to `max` buffered bytes of the streamed block's payload, without copying
    /// (`None` when none is buffered or the block is complete).
    pub fn take_stream_chunk(&mut self, max: usize) -> Option<Bytes> {
        let n = self.stream_chunk_len(max);
        if n == 0 {
            return None;
        }
        self.stream_left -= n as u64;
        Some(self.buf.split_to(n).freeze())
    }

    fn stream_chunk_len(&self, max: usize) -> usize {
        let left = usize::try_from(self.stream_left).unwrap_or(usize::MAX);
        self.buf.len().min(left).min(max)
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame before `until`. Frames the codec skips (bad checksum, bad command
    /// field) are passed over, as the node does; a payload that does not parse is the caller's
    /// to find, since the frame is returned before parsing.
    pub async fn next_frame(&mut self, until: Instant) -> Result<RawFrame, ReadError> {
        loop {
            match self.decode() {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) if e.is_fatal() => return Err(ReadError::Codec(e)),
                Err(_) => continue,
            }
            match timeout_at(until, self.read_more()).await {
                Err(_) => return Err(ReadError::Timeout),
                Ok(Ok(0)) => return Err(ReadError::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) if is_close(&e) => return Err(ReadError::Closed),
                Ok(Err(e)) => return Err(ReadError::Codec(CodecError::Io(e))),
            }
        }
    }
}

/// Whether an I/O error is how the peer closed the stream: most peers reset a socket that
/// still has data in flight.
pub fn is_close(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// A whole stream speaking frames: a [`FrameReader`] plus the write half and an encoder.
/// Each write is one `write_all` of whole frames.
#[derive(Debug)]
pub struct FramedStream<R, W> {
    reader: FrameReader<R>,
    wr: W,
    encoder: MessageCodec,
}

impl FramedStream<tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf> {
    /// Frames over a TCP stream: `decoder` reads, `encoder` writes (they differ when a tool
    /// reads any magic but writes its own network's).
    pub fn tcp(
        stream: tokio::net::TcpStream,
        decoder: MessageCodec,
        encoder: MessageCodec,
    ) -> Self {
        let (rd, wr) = stream.into_split();
        FramedStream {
            reader: FrameReader::new(rd, decoder),
            wr,
            encoder,
        }
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> FramedStream<R, W> {
    /// The reading side.
    pub fn reader(&mut self) -> &mut FrameReader<R> {
        &mut self.reader
    }

    /// The encoder, to record the peer's limits.
    pub fn encoder_mut(&mut self) -> &mut MessageCodec {
        &mut self.encoder
    }

    /// Sends messages in one write, so they leave in as few segments as possible.
    pub async fn send_all(&mut self, msgs: &[Message]) -> Result<(), CodecError> {
        let mut out = BytesMut::new();
        for m in msgs {
            self.encoder.encode(m, &mut out)?;
        }
        self.wr.write_all(&out).await?;
        Ok(())
    }

    /// Sends one message.
    pub async fn send(&mut self, m: &Message) -> Result<(), CodecError> {
        self.send_all(std::slice::from_ref(m)).await
    }

    /// The next frame before `until` (see [`FrameReader::next_frame`]).
    pub async fn next_frame(&mut self, until: Instant) -> Result<RawFrame, ReadError> {
        self.reader.next_frame(until).await
    }

    /// The next frame within `wait`.
    pub async fn next_frame_within(&mut self, wait: Duration) -> Result<RawFrame, ReadError> {
        self.reader.next_frame(Instant::now() + wait).await
    }
}
