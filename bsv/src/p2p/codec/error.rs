//! Codec errors. Each says whether the byte stream is still usable ([`CodecError::is_fatal`]):
//! a bad checksum or a malformed payload consumes exactly one frame, so the connection can carry
//! on as the node does; a bad magic or an oversized header leaves us unable (or unwilling) to find
//! the next frame, and the node bans for both.

use crate::bitcoin::{DecodeError, Magic, Network};

/// An error from framing or message decoding/encoding.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The frame's magic is not the one expected. `network` names the BSV network the magic
    /// belongs to, if any (another network → network mismatch; none → another blockchain).
    #[error("bad magic {}: expected {}{}", hex::encode(received), expected.map(hex::encode).unwrap_or_else(|| "a BSV network".into()), network.map(|n| format!(" (the magic of {n})")).unwrap_or_else(|| " (not a BSV network)".into()))]
    BadMagic {
        /// The magic we expected, if a specific one.
        expected: Option<Magic>,
        /// The magic received.
        received: Magic,
        /// The BSV network the received magic belongs to.
        network: Option<Network>,
    },
    /// The frame's magic belongs to no BSV network (asked to detect the network).
    #[error(
        "unknown network: magic {} is not used by any BSV network",
        hex::encode(magic)
    )]
    UnknownNetwork {
        /// The magic seen.
        magic: Magic,
    },
    /// The command field is not printable ASCII followed by NUL padding. The frame was skipped.
    #[error("malformed command field {}", hex::encode(raw))]
    BadCommand {
        /// The raw 12 bytes.
        raw: [u8; 12],
    },
    /// The payload does not match the header's checksum. The frame was skipped.
    #[error(
        "bad checksum on {command}: header says {}, payload hashes to {}",
        hex::encode(expected),
        hex::encode(actual)
    )]
    BadChecksum {
        /// The command.
        command: String,
        /// Checksum in the header.
        expected: [u8; 4],
        /// Checksum of the payload received.
        actual: [u8; 4],
    },
    /// A header declared a payload above the limit for its command. Nothing past the header
    /// was buffered; the node bans for this.
    #[error("oversized {command}: declared {length} bytes, limit {limit}")]
    Oversized {
        /// The command.
        command: String,
        /// The declared length.
        length: u64,
        /// The limit that applies.
        limit: u64,
    },
    /// A payload failed to parse. The frame was skipped.
    #[error("malformed {command} payload at offset {offset}: {source}")]
    Malformed {
        /// The command.
        command: String,
        /// Offset in the payload.
        offset: usize,
        /// What was wrong.
        source: DecodeError,
    },
    /// A var int in the payload was not canonical. The frame was skipped.
    #[error("non-canonical var int in {command} at offset {offset}")]
    NonCanonicalVarInt {
        /// The command.
        command: String,
        /// Offset in the payload.
        offset: usize,
    },
    /// A var int in the payload exceeded 0xFFFFFFFF (misbehaviour +1 at the node).
    #[error("var int {value} in {command} at offset {offset} exceeds 0xFFFFFFFF")]
    VarIntTooLarge {
        /// The command.
        command: String,
        /// Offset in the payload.
        offset: usize,
        /// The value.
        value: u64,
    },
    /// Refused to encode a message larger than the peer accepts for its command.
    #[error("refusing to send {command} of {length} bytes: the peer accepts at most {limit}")]
    SendOversized {
        /// The command.
        command: String,
        /// The payload length.
        length: u64,
        /// The peer's limit.
        limit: u64,
    },
    /// Refused to encode a message whose command cannot be framed: longer than 12 bytes, not
    /// printable ASCII, or starting with `extmsg` (which marks an extended header, so a receiver
    /// would misread the frame).
    #[error("refusing to send command {command:?}: not a valid command field")]
    BadCommandName {
        /// The command.
        command: String,
    },
    /// An I/O error from the underlying transport.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// Whether the stream can no longer be read (or the node would ban for it): bad magic,
    /// unknown network, oversized header, I/O. Other errors skip exactly one frame.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            CodecError::BadMagic { .. }
                | CodecError::UnknownNetwork { .. }
                | CodecError::Oversized { .. }
                | CodecError::Io(_)
        )
    }

    /// Wraps a payload decode error with the command it came from.
    pub fn from_decode(command: &str, e: DecodeError) -> Self {
        let command = command.to_string();
        match e {
            DecodeError::NonCanonicalVarInt { offset } => {
                CodecError::NonCanonicalVarInt { command, offset }
            }
            DecodeError::VarIntTooLarge { offset, value } => CodecError::VarIntTooLarge {
                command,
                offset,
                value,
            },
            e => CodecError::Malformed {
                command,
                offset: e.offset(),
                source: e,
            },
        }
    }
}
