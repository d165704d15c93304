//! Framing: turning [`Message`]s into frames and back, with every limit checked before a payload
//! is buffered (docs/PROTOCOL.md §1).
//!
//! [`MessageCodec`] works on a [`BytesMut`] with no I/O ([`MessageCodec::decode`],
//! [`MessageCodec::encode`]) and also implements `tokio_util::codec::{Decoder, Encoder}`.
//! Decoding reads the way a careful node does: look at the header, check the magic and the
//! per-command size limit, then wait for the payload without reserving memory for it beyond what
//! has actually arrived, verify the checksum (basic frames only), and parse once. Payloads are
//! split off the read buffer without copying, so a block's transactions share the frame's memory.

pub mod block_stream;
mod error;
mod framed;
mod header;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use block_stream::{
    BlockEnd, BlockEvent, BlockStreamConfig, BlockStreamDecoder, BlockStreamError, ChecksumStatus,
    TxMode,
};
pub use error::CodecError;
pub use framed::{is_close, FrameReader, FramedStream, ReadError};
pub use header::{is_sendable_command, parse_command, FrameHeader};

use crate::bitcoin::{sha256d, Magic, Network};
use crate::p2p::limits::*;
use crate::p2p::messages::{commands, Message};

/// Receive limits: the largest payload accepted per class of command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvLimits {
    /// Non-block messages (`-maxprotocolrecvpayloadlength`, default 2 MiB).
    pub max_payload: u64,
    /// Block-like messages: `block`, `cmpctblock`, `blocktxn`, `getblocktxn`, `hdrsen`.
    pub max_block: u64,
    /// `tx` and `datareftx` (1,000,000,000 at the node).
    pub max_tx: u64,
}

impl Default for RecvLimits {
    fn default() -> Self {
        RecvLimits {
            max_payload: DEFAULT_MAX_RECV_PAYLOAD,
            max_block: DEFAULT_MAX_BLOCK_SIZE,
            max_tx: MAX_TX_SIZE,
        }
    }
}

/// How a command's size is limited (`NetMsgType::GetMaxMessageLength`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeClass {
    /// `protoconf`: always 1 MiB.
    Protoconf,
    /// `tx`, `datareftx`.
    Tx,
    /// Block-like messages.
    Block,
    /// Everything else, unknown commands included.
    Other,
}

impl SizeClass {
    /// The class of a command.
    pub fn of(command: &str) -> SizeClass {
        match command {
            commands::PROTOCONF => SizeClass::Protoconf,
            commands::TX | commands::DATAREFTX => SizeClass::Tx,
            commands::BLOCK
            | commands::CMPCTBLOCK
            | commands::BLOCKTXN
            | commands::GETBLOCKTXN
            | commands::HDRSEN => SizeClass::Block,
            _ => SizeClass::Other,
        }
    }
}

impl RecvLimits {
    /// The largest payload accepted for `command`.
    pub fn limit_for(&self, command: &str) -> u64 {
        match SizeClass::of(command) {
            SizeClass::Protoconf => LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH,
            SizeClass::Tx => self.max_tx,
            SizeClass::Block => self.max_block,
            SizeClass::Other => self.max_payload,
        }
    }
}

/// A frame split off the buffer: its header and payload, checksum verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The header.
    pub header: FrameHeader,
    /// The payload.
    pub payload: Bytes,
}

impl RawFrame {
    /// Parses the payload as a message.
    pub fn message(&self) -> Result<Message, CodecError> {
        Message::decode_payload(&self.header.command, self.payload.clone())
            .map_err(|e| CodecError::from_decode(&self.header.command, e))
    }
}

/// What [`MessageCodec::decode_next`] split off the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame.
    Frame(RawFrame),
    /// The header of a `block` frame larger than the streaming threshold
    /// ([`MessageCodec::set_stream_threshold`]): the header has been consumed and checked
    /// against the limits; the next `header.length` bytes of the stream are its payload, which
    /// the caller reads itself (e.g. through a [`BlockStreamDecoder`]) before decoding again.
    BlockStart(FrameHeader),
}

/// The network a buffer's first frame belongs to, from its magic.
pub fn detect_network(buf: &[u8]) -> Result<Network, CodecError> {
    let magic: Magic = match buf.get(..4) {
        Some(m) => [m[0], m[1], m[2], m[3]],
        None => {
            return Err(CodecError::Malformed {
                command: "frame".into(),
                offset: buf.len(),
                source: crate::bitcoin::DecodeError::UnexpectedEnd {
                    offset: buf.len(),
                    needed: 4 - buf.len(),
                },
            })
        }
    };
    Network::from_magic(magic).ok_or(CodecError::UnknownNetwork { magic })
}

/// Encodes and decodes frames for one connection.
#[derive(Debug, Clone)]
pub struct MessageCodec {
    magic: Option<Magic>,
    recv: RecvLimits,
    peer_max_recv: u64,
    peer_extended: bool,
    /// The peer is at or below `BIP0031_VERSION`: its pings carry no nonce.
    peer_legacy_ping: bool,
    pending: Option<FrameHeader>,
    skip: Option<(u64, [u8; 12])>,
    /// `block` frames with a payload above this are handed over as [`Decoded::BlockStart`].
    stream_threshold: Option<u64>,
}

impl MessageCodec {
    /// A codec for `network` with default limits. Until the peer's `protoconf` is recorded
    /// ([`MessageCodec::set_peer_max_recv`]) non-block messages we send are capped at 1 MiB.
    pub fn new(network: Network) -> Self {
        Self::with_magic(network.magic())
    }

    /// A codec expecting an explicit magic (e.g. a `-magicbytes` test network).
    pub fn with_magic(magic: Magic) -> Self {
        MessageCodec {
            magic: Some(magic),
            recv: RecvLimits::default(),
            peer_max_recv: LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH,
            peer_extended: false,
            peer_legacy_ping: false,
            pending: None,
            skip: None,
            stream_threshold: None,
        }
    }

    /// A codec that accepts frames of any magic (for tools that inspect captures). Encoding
    /// uses mainnet's magic.
    pub fn any_magic() -> Self {
        MessageCodec {
            magic: None,
            ..Self::new(Network::Mainnet)
        }
    }

    /// Sets the receive limits.
    pub fn with_recv_limits(mut self, limits: RecvLimits) -> Self {
        self.recv = limits;
        self
    }

    /// The receive limits in force.
    pub fn recv_limits(&self) -> RecvLimits {
        self.recv
    }

    /// Changes the receive limits (applies to the next header).
    pub fn set_recv_limits(&mut self, limits: RecvLimits) {
        self.recv = limits;
    }

    /// Makes [`MessageCodec::decode_next`] hand over `block` frames whose payload is larger than
    /// `threshold` as [`Decoded::BlockStart`] instead of buffering them (`None`: never).
    pub fn set_stream_threshold(&mut self, threshold: Option<u64>) {
        self.stream_threshold = threshold;
    }

    /// Records the peer's `protoconf` limit: the largest non-block message we may send it.
    pub fn set_peer_max_recv(&mut self, limit: u64) {
        self.peer_max_recv = limit;
    }

    /// The largest non-block payload we may send the peer.
    pub fn peer_max_recv(&self) -> u64 {
        self.peer_max_recv
    }

    /// Records the peer's protocol version: `extmsg` is only sent to peers ≥ 70016, and a
    /// `ping` to a peer at or below 60000 carries no nonce (docs/PROTOCOL.md §3.2).
    pub fn set_peer_version(&mut self, version: i32) {
        self.peer_extended = version >= EXTENDED_PAYLOAD_VERSION;
        self.peer_legacy_ping = version <= BIP0031_VERSION;
    }

    /// The largest payload we may send the peer for `command`.
    pub fn send_limit_for(&self, command: &str) -> u64 {
        match SizeClass::of(command) {
            SizeClass::Protoconf => LEGACY_MAX_PROTOCOL_PAYLOAD_LENGTH,
            SizeClass::Tx => MAX_TX_SIZE,
            SizeClass::Block if self.peer_extended => u64::MAX,
            SizeClass::Block => MAX_BASIC_PAYLOAD,
            SizeClass::Other => self.peer_max_recv,
        }
    }

    /// The header of a `block` frame of `length` payload bytes whose payload the caller writes
    /// itself (streamed from a file): an `extmsg` header above 0xFFFFFFFF bytes, refused
    /// ([`CodecError::SendOversized`]) unless the peer is at 70016 or later; a basic header
    /// otherwise, which carries `checksum` (the first 4 bytes of the payload's sha256d).
    pub fn block_frame_header(&self, length: u64, checksum: [u8; 4]) -> Result<Bytes, CodecError> {
        let limit = self.send_limit_for(commands::BLOCK);
        if length > limit {
            return Err(CodecError::SendOversized {
                command: commands::BLOCK.to_string(),
                length,
                limit,
            });
        }
        let extended = length > MAX_BASIC_PAYLOAD;
        let header = FrameHeader {
            magic: self.magic.unwrap_or(Network::Mainnet.magic()),
            command: commands::BLOCK.to_string(),
            length,
            checksum: if extended { [0; 4] } else { checksum },
            extended,
        };
        let mut b = BytesMut::with_capacity(header.wire_len());
        header.encode(&mut b);
        Ok(b.freeze())
    }

    /// Checks that `msg` may be sent to the peer, without encoding it.
    pub fn check_send(&self, msg: &Message) -> Result<(), CodecError> {
        if !is_sendable_command(msg.command()) {
            return Err(CodecError::BadCommandName {
                command: msg.command().to_string(),
            });
        }
        let length = msg.payload_len() as u64;
        let limit = self.send_limit_for(msg.command());
        if length > limit {
            return Err(CodecError::SendOversized {
                command: msg.command().to_string(),
                length,
                limit,
            });
        }
        Ok(())
    }

    /// Appends `msg` as one frame. Fails, writing nothing, when the payload is larger than the
    /// peer accepts for its command (the node would ban us for it), or when the command name
    /// cannot be framed ([`is_sendable_command`]).
    pub fn encode(&self, msg: &Message, buf: &mut BytesMut) -> Result<(), CodecError> {
        self.check_send(msg)?;
        let legacy_ping = self.peer_legacy_ping && matches!(msg, Message::Ping(_));
        let length = if legacy_ping {
            0
        } else {
            msg.payload_len() as u64
        };
        let magic = self.magic.unwrap_or(Network::Mainnet.magic());
        let mut header = FrameHeader {
            magic,
            command: msg.command().to_string(),
            length,
            checksum: [0; 4],
            extended: length > MAX_BASIC_PAYLOAD,
        };
        let start = buf.len();
        buf.reserve(header.wire_len() + msg.payload_len());
        header.encode(buf);
        let payload_start = buf.len();
        if !legacy_ping {
            msg.encode_payload(buf);
        }
        if !header.extended {
            let sum = sha256d(&buf[payload_start..]);
            buf[start + 20..start + 24].copy_from_slice(&sum.0[..4]);
            header.checksum = [sum.0[0], sum.0[1], sum.0[2], sum.0[3]];
        }
        Ok(())
    }

    /// Encodes `msg` into a fresh buffer.
    pub fn encode_to_bytes(&self, msg: &Message) -> Result<Bytes, CodecError> {
        let mut b = BytesMut::new();
        self.encode(msg, &mut b)?;
        Ok(b.freeze())
    }

    /// Splits one complete frame off `buf`. `Ok(None)` means more bytes are needed; by then the
    /// header has been checked, and nothing has been allocated for the payload still to come.
    pub fn decode_frame(&mut self, buf: &mut BytesMut) -> Result<Option<RawFrame>, CodecError> {
        match self.decode_inner(buf, false)? {
            Some(Decoded::Frame(f)) => Ok(Some(f)),
            // Not asked for: `allow_stream` is false.
            Some(Decoded::BlockStart(_)) | None => Ok(None),
        }
    }

    /// As [`MessageCodec::decode_frame`], except that a `block` frame above the streaming
    /// threshold is not waited for: its header is returned as soon as it has been checked, and
    /// its payload is left in `buf` (and in the stream) for the caller.
    pub fn decode_next(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, CodecError> {
        self.decode_inner(buf, true)
    }

    fn decode_inner(
        &mut self,
        buf: &mut BytesMut,
        allow_stream: bool,
    ) -> Result<Option<Decoded>, CodecError> {
        if let Some((remaining, _)) = &mut self.skip {
            let n = (*remaining).min(buf.len() as u64) as usize;
            buf.advance(n);
            *remaining -= n as u64;
            if *remaining > 0 {
                return Ok(None);
            }
            if let Some((_, raw)) = self.skip.take() {
                return Err(CodecError::BadCommand { raw });
            }
        }
        let header = match self.pending.take() {
            Some(h) => h,
            None => {
                let header = match FrameHeader::parse(buf) {
                    Ok(Some(h)) => h,
                    Ok(None) => return Ok(None),
                    Err(CodecError::BadCommand { raw }) => {
                        self.check_magic(buf)?;
                        return self.skip_bad_command(buf, raw, allow_stream);
                    }
                    Err(e) => return Err(e),
                };
                self.check_magic(buf)?;
                let limit = self.recv.limit_for(&header.command);
                if header.length > limit {
                    return Err(CodecError::Oversized {
                        command: header.command,
                        length: header.length,
                        limit,
                    });
                }
                buf.advance(header.wire_len());
                header
            }
        };
        if allow_stream
            && header.command == commands::BLOCK
            && self.stream_threshold.is_some_and(|t| header.length > t)
        {
            return Ok(Some(Decoded::BlockStart(header)));
        }
        // `length` is within a limit that fits in memory terms only if the platform can address
        // it; refuse rather than truncate on 32-bit targets.
        let Ok(len) = usize::try_from(header.length) else {
            return Err(CodecError::Oversized {
                command: header.command,
                length: header.length,
                limit: usize::MAX as u64,
            });
        };
        if buf.len() < len {
            // Reserve nothing for the rest of the payload: whoever reads into `buf` grows it as
            // bytes arrive (amortized doubling), so its size follows what the peer has sent, not
            // what it announced. A reservation here would also stack on that doubling: asking a
            // full buffer for 64 KiB more makes `Vec` double the whole allocation, twice what
            // arrived plus the request.
            self.pending = Some(header);
            return Ok(None);
        }
        let payload = buf.split_to(len).freeze();
        if !header.extended {
            let sum = sha256d(&payload);
            let actual = [sum.0[0], sum.0[1], sum.0[2], sum.0[3]];
            if actual != header.checksum {
                return Err(CodecError::BadChecksum {
                    command: header.command,
                    expected: header.checksum,
                    actual,
                });
            }
        }
        Ok(Some(Decoded::Frame(RawFrame { header, payload })))
    }

    /// Splits one complete frame off `buf` and parses it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        match self.decode_frame(buf)? {
            Some(frame) => frame.message().map(Some),
            None => Ok(None),
        }
    }

    fn check_magic(&self, buf: &[u8]) -> Result<(), CodecError> {
        let received: Magic = [buf[0], buf[1], buf[2], buf[3]];
        match self.magic {
            Some(expected) if expected != received => Err(CodecError::BadMagic {
                expected: Some(expected),
                received,
                network: Network::from_magic(received),
            }),
            _ => Ok(()),
        }
    }

    /// The node drops a frame with a malformed command after reading it; do the same, with the
    /// "everything else" size limit, and report it once the frame has been skipped.
    fn skip_bad_command(
        &mut self,
        buf: &mut BytesMut,
        raw: [u8; 12],
        allow_stream: bool,
    ) -> Result<Option<Decoded>, CodecError> {
        let length = header::peek_length(buf).unwrap_or(0);
        if length > self.recv.max_payload {
            return Err(CodecError::Oversized {
                command: String::from_utf8_lossy(&raw).into_owned(),
                length,
                limit: self.recv.max_payload,
            });
        }
        buf.advance(HEADER_LEN);
        self.skip = Some((length, raw));
        self.decode_inner(buf, allow_stream)
    }
}

impl tokio_util::codec::Decoder for MessageCodec {
    type Item = Message;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        MessageCodec::decode(self, src)
    }
}

impl tokio_util::codec::Encoder<Message> for MessageCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        MessageCodec::encode(self, &item, dst)
    }
}

impl tokio_util::codec::Encoder<&Message> for MessageCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        MessageCodec::encode(self, item, dst)
    }
}

/// Appends a frame header for `payload` (computing its checksum) and the payload itself; for
/// tests and tools that build frames by hand.
pub fn frame_bytes(magic: Magic, command: &str, payload: &[u8]) -> Bytes {
    let sum = sha256d(payload);
    let header = FrameHeader {
        magic,
        command: command.to_string(),
        length: payload.len() as u64,
        checksum: [sum.0[0], sum.0[1], sum.0[2], sum.0[3]],
        extended: payload.len() as u64 > MAX_BASIC_PAYLOAD,
    };
    let mut b = BytesMut::with_capacity(header.wire_len() + payload.len());
    header.encode(&mut b);
    b.put_slice(payload);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: while waiting for a payload the decoder used to reserve up to 64 KiB more on
    /// each call; once the buffer was full, `Vec`'s amortized growth doubled that reservation,
    /// giving a buffer of ~128 KiB after a few dozen bytes had arrived.
    #[test]
    fn waiting_for_a_payload_allocates_nothing_for_the_announced_length() {
        let mut frame = frame_bytes(Network::Mainnet.magic(), "block", &[]).to_vec();
        frame[16..20].copy_from_slice(&10_000_000u32.to_le_bytes());
        frame.extend_from_slice(&[0u8; 40]);
        let mut codec = MessageCodec::new(Network::Mainnet);
        let mut buf = BytesMut::new();
        let mut fed = 0;
        for piece in [&frame[..55], &frame[55..56], &frame[56..]] {
            buf.extend_from_slice(piece);
            fed += piece.len();
            assert!(matches!(codec.decode(&mut buf), Ok(None)));
            assert!(
                buf.capacity() <= 2 * fed,
                "capacity {} after {fed} bytes",
                buf.capacity()
            );
        }
    }

    /// Regression: an unknown command starting with `extmsg` was framed in a basic header, which
    /// every receiver (this decoder and the node) reads as an extended header, so the payload's
    /// first bytes were taken for the real command and length.
    #[test]
    fn a_command_that_cannot_be_framed_is_refused_and_nothing_is_written() {
        let codec = MessageCodec::new(Network::Mainnet);
        for command in [
            "extmsg",
            "extmsgfoo",
            "thirteen-char",
            "nul\0inside",
            "tab\there",
        ] {
            let msg = Message::Unknown {
                command: command.to_string(),
                payload: Bytes::from_static(b"0123456789abcdefghijklmnopqrstuvwxyz"),
            };
            let mut buf = BytesMut::new();
            let err = codec.encode(&msg, &mut buf).unwrap_err();
            assert!(
                matches!(err, CodecError::BadCommandName { .. }),
                "{command:?}: {err:?}"
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn the_longest_and_the_empty_command_names_are_framed() {
        let codec = MessageCodec::new(Network::Mainnet);
        for command in ["twelve-chars", "", "extms", " ~"] {
            let msg = Message::Unknown {
                command: command.to_string(),
                payload: Bytes::from_static(b"x"),
            };
            let mut buf = BytesMut::new();
            codec.encode(&msg, &mut buf).unwrap();
            let back = MessageCodec::new(Network::Mainnet)
                .decode(&mut buf)
                .unwrap();
            assert_eq!(back, Some(msg));
        }
    }
}
