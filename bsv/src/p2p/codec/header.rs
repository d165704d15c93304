//! Frame headers: the 24-byte basic header and the 44-byte `extmsg` header (docs/PROTOCOL.md §1.1–1.2),
//! and the command-field format rule (`CheckCommandFormat`).

use bytes::BufMut;

use super::CodecError;
use crate::bitcoin::Magic;
use crate::p2p::limits::{COMMAND_LEN, EXT_HEADER_LEN, HEADER_LEN};
use crate::p2p::messages::commands::EXTMSG;

/// A parsed frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// The magic.
    pub magic: Magic,
    /// The command (for an extended header, the real command).
    pub command: String,
    /// The payload length (for an extended header, the 64-bit length).
    pub length: u64,
    /// The checksum field (zero and unchecked for an extended header).
    pub checksum: [u8; 4],
    /// Whether this was a 44-byte `extmsg` header.
    pub extended: bool,
}

impl FrameHeader {
    /// The size of this header on the wire.
    pub fn wire_len(&self) -> usize {
        if self.extended {
            EXT_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Parses a header at the start of `buf`. `Ok(None)` means more bytes are needed.
    ///
    /// A command field that breaks the format rule yields [`CodecError::BadCommand`]; the caller
    /// still learns the frame's length (from the basic header) to skip it.
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, CodecError> {
        let Some(basic) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let magic: Magic = [basic[0], basic[1], basic[2], basic[3]];
        let raw_cmd = command_field(&basic[4..16]);
        let length = u32::from_le_bytes([basic[16], basic[17], basic[18], basic[19]]);
        let checksum = [basic[20], basic[21], basic[22], basic[23]];
        // The node recognises an extended header by a 6-byte prefix comparison on the command.
        if &raw_cmd[..6] == EXTMSG.as_bytes() {
            let Some(ext) = buf.get(HEADER_LEN..EXT_HEADER_LEN) else {
                return Ok(None);
            };
            let ext_cmd = command_field(&ext[..12]);
            let command = parse_command(&ext_cmd).ok_or(CodecError::BadCommand { raw: ext_cmd })?;
            let mut len = [0u8; 8];
            len.copy_from_slice(&ext[12..20]);
            return Ok(Some(FrameHeader {
                magic,
                command: command.to_string(),
                length: u64::from_le_bytes(len),
                checksum,
                extended: true,
            }));
        }
        let command = parse_command(&raw_cmd).ok_or(CodecError::BadCommand { raw: raw_cmd })?;
        Ok(Some(FrameHeader {
            magic,
            command: command.to_string(),
            length: u64::from(length),
            checksum,
            extended: false,
        }))
    }

    /// Appends this header.
    pub fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_slice(&self.magic);
        if self.extended {
            put_command(out, EXTMSG);
            out.put_u32_le(u32::MAX);
            out.put_u32_le(0);
            put_command(out, &self.command);
            out.put_u64_le(self.length);
        } else {
            put_command(out, &self.command);
            out.put_u32_le(self.length as u32);
            out.put_slice(&self.checksum);
        }
    }
}

/// The declared payload length of a basic header whose command field is malformed, so the frame
/// can be skipped.
pub(crate) fn peek_length(buf: &[u8]) -> Option<u64> {
    let b = buf.get(16..20)?;
    Some(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

fn command_field(b: &[u8]) -> [u8; COMMAND_LEN] {
    let mut c = [0u8; COMMAND_LEN];
    c.copy_from_slice(&b[..COMMAND_LEN]);
    c
}

/// The command name in a 12-byte field, if it follows the node's format rule: printable ASCII
/// up to the first NUL, only NULs after it (a full 12 characters with no NUL is legal).
pub fn parse_command(field: &[u8; COMMAND_LEN]) -> Option<&str> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(COMMAND_LEN);
    let (name, pad) = field.split_at(end);
    if !name.iter().all(|b| (0x20..=0x7e).contains(b)) || pad.iter().any(|&b| b != 0) {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// Whether `command` can be written in a command field and read back as itself: at most 12
/// printable ASCII characters, and not starting with `extmsg`, which receivers take for the
/// marker of an extended header whatever follows it.
pub fn is_sendable_command(command: &str) -> bool {
    command.len() <= COMMAND_LEN
        && command.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !command.starts_with(EXTMSG)
}

/// Writes a command name NUL-padded to 12 bytes (longer names are truncated; callers check
/// [`is_sendable_command`]).
fn put_command<B: BufMut>(out: &mut B, command: &str) {
    let mut field = [0u8; COMMAND_LEN];
    let n = command.len().min(COMMAND_LEN);
    field[..n].copy_from_slice(&command.as_bytes()[..n]);
    out.put_slice(&field);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_format_follows_the_node_rule() {
        let mut f = [0u8; 12];
        f[..4].copy_from_slice(b"ping");
        assert_eq!(parse_command(&f), Some("ping"));
        assert_eq!(parse_command(b"getheadersen"), Some("getheadersen"));
        let mut bad = f;
        bad[6] = b'x'; // non-NUL after the first NUL
        assert_eq!(parse_command(&bad), None);
        let mut ctl = f;
        ctl[0] = 0x07;
        assert_eq!(parse_command(&ctl), None);
    }
}
