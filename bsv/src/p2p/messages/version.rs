//! The `version` message (docs/PROTOCOL.md §2.2), parsed leniently the way the node does: every field
//! after `addr_recv` is optional and parsing stops where the payload ends; the association ID
//! that follows the relay byte is validated strictly, since garbage there aborts the node's
//! handshake.

use bytes::BufMut;
use serde::Serialize;

use crate::bitcoin::{
    var_bytes_len, write_var_bytes, Decode, DecodeError, Encode, NetAddress, Reader,
    NET_ADDRESS_SIZE,
};

/// Longest user agent the node accepts (`MAX_SUBVERSION_LENGTH`).
pub const MAX_USER_AGENT_LEN: usize = crate::p2p::limits::MAX_SUBVERSION_LENGTH;
/// Longest association ID the node accepts (`MAX_ASSOCIATION_ID_LENGTH`).
pub const MAX_ASSOCIATION_ID_LEN: usize = 129;

/// The association ID trailing a `version` (multistreams, docs/PROTOCOL.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssociationId {
    /// Empty var_bytes (`0x00`): "I understand the field, no streams". What we send.
    Empty,
    /// A single byte: treated by the node like [`AssociationId::Empty`].
    Short(u8),
    /// Type byte 0 followed by a 16-byte UUID: a proposed or echoed association.
    Uuid(#[serde(with = "uuid_hex")] [u8; 16]),
}

mod uuid_hex {
    pub fn serialize<S: serde::Serializer>(b: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&uuid::Uuid::from_bytes(*b))
    }
}

impl AssociationId {
    fn wire_len(&self) -> usize {
        match self {
            AssociationId::Empty => 0,
            AssociationId::Short(_) => 1,
            AssociationId::Uuid(_) => 17,
        }
    }
}

impl Encode for AssociationId {
    fn encode<B: BufMut>(&self, out: &mut B) {
        match self {
            AssociationId::Empty => write_var_bytes(out, &[]),
            AssociationId::Short(b) => write_var_bytes(out, &[*b]),
            AssociationId::Uuid(u) => {
                out.put_u8(17);
                out.put_u8(0);
                out.put_slice(u);
            }
        }
    }
    fn encoded_len(&self) -> usize {
        var_bytes_len(self.wire_len())
    }
}

impl Decode for AssociationId {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let raw = r.read_var_bytes()?;
        let bad = |detail: String| DecodeError::Invalid {
            field: "association_id",
            offset: at,
            detail,
        };
        match raw.len() {
            0 => Ok(AssociationId::Empty),
            1 => Ok(AssociationId::Short(raw[0])),
            n if n > MAX_ASSOCIATION_ID_LEN => {
                Err(bad(format!("{n} bytes, at most {MAX_ASSOCIATION_ID_LEN}")))
            }
            _ => match raw.first() {
                Some(0) if raw.len() == 17 => {
                    let mut u = [0u8; 16];
                    u.copy_from_slice(&raw[1..]);
                    Ok(AssociationId::Uuid(u))
                }
                Some(0) => Err(bad(format!("UUID of {} bytes, expected 16", raw.len() - 1))),
                Some(t) => Err(bad(format!("unsupported type byte {t:#04x}"))),
                None => Ok(AssociationId::Empty),
            },
        }
    }
}

/// The `version` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionMessage {
    /// Protocol version (70016 for bitcoin-sv 1.2.x).
    pub version: i32,
    /// Service bits offered by the sender.
    pub services: u64,
    /// Sender's clock, Unix seconds.
    pub timestamp: i64,
    /// The receiver's address as the sender sees it.
    pub receiver: NetAddress,
    /// The sender's address (ignored by the node).
    pub sender: NetAddress,
    /// Random per-connection nonce, used to detect connecting to oneself.
    pub nonce: u64,
    /// BIP14 user agent, e.g. `/Bitcoin SV:1.2.2/`.
    pub user_agent: String,
    /// The sender's best block height.
    pub start_height: i32,
    /// Whether the sender wants transaction `inv`s (absent means true).
    pub relay: bool,
    /// The association ID; `None` when the field is absent.
    pub association_id: Option<AssociationId>,
}

impl Encode for VersionMessage {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_i32_le(self.version);
        out.put_u64_le(self.services);
        out.put_i64_le(self.timestamp);
        self.receiver.encode(out);
        self.sender.encode(out);
        out.put_u64_le(self.nonce);
        write_var_bytes(out, self.user_agent.as_bytes());
        out.put_i32_le(self.start_height);
        out.put_u8(u8::from(self.relay));
        if let Some(a) = &self.association_id {
            a.encode(out);
        }
    }
    fn encoded_len(&self) -> usize {
        4 + 8
            + 8
            + 2 * NET_ADDRESS_SIZE
            + 8
            + var_bytes_len(self.user_agent.len())
            + 4
            + 1
            + self.association_id.as_ref().map_or(0, Encode::encoded_len)
    }
}

impl Decode for VersionMessage {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut v = VersionMessage {
            version: r.read_i32_le()?,
            services: r.read_u64_le()?,
            timestamp: r.read_i64_le()?,
            receiver: r.read()?,
            sender: NetAddress::UNSPECIFIED,
            nonce: 0,
            user_agent: String::new(),
            start_height: 0,
            relay: true,
            association_id: None,
        };
        if r.is_empty() {
            return Ok(v);
        }
        v.sender = r.read()?;
        v.nonce = r.read_u64_le()?;
        if r.is_empty() {
            return Ok(v);
        }
        v.user_agent = r.read_var_str_max("user_agent", MAX_USER_AGENT_LEN)?;
        if r.is_empty() {
            return Ok(v);
        }
        v.start_height = r.read_i32_le()?;
        if r.is_empty() {
            return Ok(v);
        }
        // The node reads the relay flag as a plain bool byte: any non-zero value is true.
        v.relay = r.read_u8()? != 0;
        if r.is_empty() {
            return Ok(v);
        }
        v.association_id = Some(r.read()?);
        // Anything after the association ID is ignored, as the node does.
        let _ = r.read_rest();
        Ok(v)
    }
}
