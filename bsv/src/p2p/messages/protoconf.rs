//! The `protoconf` message (docs/PROTOCOL.md §3.10): the largest payload the sender accepts and the
//! stream policies it supports. The node sends `numberOfFields` 2, a fixed u32 limit (not a var
//! int, whatever the spec text says) and `BlockPriority,Default`.

use bytes::BufMut;
use serde::Serialize;

use crate::bitcoin::{
    var_bytes_len, write_var_bytes, write_var_int, Decode, DecodeError, Encode, Reader, VarInt,
};

/// Longest stream-policy list the node reads: (64 + 1) × 10 characters.
pub const MAX_STREAM_POLICIES_LEN: usize = 650;

/// The `protoconf` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Protoconf {
    /// Number of fields that follow (2 in every current implementation).
    pub number_of_fields: u64,
    /// Largest non-block payload the sender accepts.
    pub max_recv_payload_length: u32,
    /// Comma-separated stream policy names, e.g. `BlockPriority,Default`.
    pub stream_policies: String,
}

impl Protoconf {
    /// A two-field `protoconf` with the given limit and policies.
    pub fn new(max_recv_payload_length: u32, stream_policies: impl Into<String>) -> Self {
        Protoconf {
            number_of_fields: 2,
            max_recv_payload_length,
            stream_policies: stream_policies.into(),
        }
    }
}

impl Encode for Protoconf {
    fn encode<B: BufMut>(&self, out: &mut B) {
        write_var_int(out, self.number_of_fields);
        if self.number_of_fields >= 1 {
            out.put_u32_le(self.max_recv_payload_length);
        }
        if self.number_of_fields >= 2 {
            write_var_bytes(out, self.stream_policies.as_bytes());
        }
    }
    fn encoded_len(&self) -> usize {
        VarInt::size(self.number_of_fields)
            + if self.number_of_fields >= 1 { 4 } else { 0 }
            + if self.number_of_fields >= 2 {
                var_bytes_len(self.stream_policies.len())
            } else {
                0
            }
    }
}

impl Decode for Protoconf {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let number_of_fields = r.read_var_int()?;
        let mut p = Protoconf {
            number_of_fields,
            max_recv_payload_length: 0,
            stream_policies: String::new(),
        };
        if number_of_fields >= 1 {
            p.max_recv_payload_length = r.read_u32_le()?;
        }
        if number_of_fields >= 2 {
            p.stream_policies = r.read_var_str_max("stream_policies", MAX_STREAM_POLICIES_LEN)?;
        }
        // Fields this version does not understand are ignored, as the node does.
        let _ = r.read_rest();
        Ok(p)
    }
}
