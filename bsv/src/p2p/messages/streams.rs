//! Multistream setup messages (docs/PROTOCOL.md §7): `createstrm` and `streamack`. This library does
//! not open extra streams; the types exist so the messages decode and can be logged.

use bytes::{BufMut, Bytes};
use serde::Serialize;

use crate::bitcoin::{var_bytes_len, write_var_bytes, Decode, DecodeError, Encode, Reader};

/// Longest stream policy name the node reads.
pub const MAX_STREAM_POLICY_NAME_LEN: usize = 64;

/// The `createstrm` message: the first message on a new stream of an association.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateStream {
    /// The association ID (raw var_bytes contents).
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub association_id: Bytes,
    /// Stream type (2 = DATA1).
    pub stream_type: u8,
    /// Policy name, e.g. `BlockPriority`.
    pub policy: String,
}

impl Encode for CreateStream {
    fn encode<B: BufMut>(&self, out: &mut B) {
        write_var_bytes(out, &self.association_id);
        out.put_u8(self.stream_type);
        write_var_bytes(out, self.policy.as_bytes());
    }
    fn encoded_len(&self) -> usize {
        var_bytes_len(self.association_id.len()) + 1 + var_bytes_len(self.policy.len())
    }
}

impl Decode for CreateStream {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CreateStream {
            association_id: r.read_var_bytes()?,
            stream_type: r.read_u8()?,
            policy: r.read_var_str_max("stream policy", MAX_STREAM_POLICY_NAME_LEN)?,
        })
    }
}

/// The `streamack` message: the reply to `createstrm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamAck {
    /// The association ID (raw var_bytes contents).
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub association_id: Bytes,
    /// Stream type acknowledged.
    pub stream_type: u8,
}

impl Encode for StreamAck {
    fn encode<B: BufMut>(&self, out: &mut B) {
        write_var_bytes(out, &self.association_id);
        out.put_u8(self.stream_type);
    }
    fn encoded_len(&self) -> usize {
        var_bytes_len(self.association_id.len()) + 1
    }
}

impl Decode for StreamAck {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(StreamAck {
            association_id: r.read_var_bytes()?,
            stream_type: r.read_u8()?,
        })
    }
}
