//! The `reject` message and its codes (docs/PROTOCOL.md §3.16, §8).

use std::fmt;

use bytes::BufMut;
use serde::{Serialize, Serializer};

use crate::bitcoin::{var_bytes_len, write_var_bytes, Decode, DecodeError, Encode, Hash, Reader};

/// Longest reject reason the node reads (`MAX_REJECT_MESSAGE_LENGTH`).
pub const MAX_REJECT_REASON_LEN: usize = crate::p2p::limits::MAX_REJECT_MESSAGE_LENGTH;
/// Longest rejected-command name (the 12-byte command field).
pub const MAX_REJECT_MESSAGE_LEN: usize = 12;

/// A reject code. Codes ≥ 0x100 are internal to the node and never appear on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// 0x01: the payload failed to parse.
    Malformed,
    /// 0x10: consensus failure.
    Invalid,
    /// 0x11: obsolete version.
    Obsolete,
    /// 0x12: duplicate (e.g. a second `version`).
    Duplicate,
    /// 0x13: spends frozen outputs.
    SoftConsensusFreeze,
    /// 0x40: policy (non-standard).
    Nonstandard,
    /// 0x41: dust outputs.
    Dust,
    /// 0x42: fee too low / mempool full.
    InsufficientFee,
    /// 0x43: checkpoint mismatch.
    Checkpoint,
    /// 0x44: too busy; back off.
    TooBusy,
    /// 0x45: rate exceeded.
    RateExceeded,
    /// 0x60: stream / association setup failure.
    StreamSetup,
    /// 0x70: authenticated connection setup failure.
    AuthConnSetup,
    /// Any other code.
    Other(u8),
}

impl RejectCode {
    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            RejectCode::Malformed => 0x01,
            RejectCode::Invalid => 0x10,
            RejectCode::Obsolete => 0x11,
            RejectCode::Duplicate => 0x12,
            RejectCode::SoftConsensusFreeze => 0x13,
            RejectCode::Nonstandard => 0x40,
            RejectCode::Dust => 0x41,
            RejectCode::InsufficientFee => 0x42,
            RejectCode::Checkpoint => 0x43,
            RejectCode::TooBusy => 0x44,
            RejectCode::RateExceeded => 0x45,
            RejectCode::StreamSetup => 0x60,
            RejectCode::AuthConnSetup => 0x70,
            RejectCode::Other(v) => v,
        }
    }

    /// The code for a wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0x01 => RejectCode::Malformed,
            0x10 => RejectCode::Invalid,
            0x11 => RejectCode::Obsolete,
            0x12 => RejectCode::Duplicate,
            0x13 => RejectCode::SoftConsensusFreeze,
            0x40 => RejectCode::Nonstandard,
            0x41 => RejectCode::Dust,
            0x42 => RejectCode::InsufficientFee,
            0x43 => RejectCode::Checkpoint,
            0x44 => RejectCode::TooBusy,
            0x45 => RejectCode::RateExceeded,
            0x60 => RejectCode::StreamSetup,
            0x70 => RejectCode::AuthConnSetup,
            v => RejectCode::Other(v),
        }
    }

    /// The node's constant name, e.g. `REJECT_INVALID`.
    pub fn name(self) -> &'static str {
        match self {
            RejectCode::Malformed => "REJECT_MALFORMED",
            RejectCode::Invalid => "REJECT_INVALID",
            RejectCode::Obsolete => "REJECT_OBSOLETE",
            RejectCode::Duplicate => "REJECT_DUPLICATE",
            RejectCode::SoftConsensusFreeze => "REJECT_SOFT_CONSENSUS_FREEZE",
            RejectCode::Nonstandard => "REJECT_NONSTANDARD",
            RejectCode::Dust => "REJECT_DUST",
            RejectCode::InsufficientFee => "REJECT_INSUFFICIENTFEE",
            RejectCode::Checkpoint => "REJECT_CHECKPOINT",
            RejectCode::TooBusy => "REJECT_TOOBUSY",
            RejectCode::RateExceeded => "REJECT_RATE_EXCEEDED",
            RejectCode::StreamSetup => "REJECT_STREAM_SETUP",
            RejectCode::AuthConnSetup => "REJECT_AUTH_CONN_SETUP",
            RejectCode::Other(_) => "REJECT_UNKNOWN",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#04x})", self.name(), self.to_u8())
    }
}

impl Serialize for RejectCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The `reject` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reject {
    /// The command being rejected, e.g. `tx`.
    pub message: String,
    /// Why.
    pub code: RejectCode,
    /// Human-readable reason, e.g. `bad-txns-inputs-missingorspent`.
    pub reason: String,
    /// The txid or block hash, for rejected `tx`/`block` messages.
    pub hash: Option<Hash>,
}

impl Encode for Reject {
    fn encode<B: BufMut>(&self, out: &mut B) {
        write_var_bytes(out, self.message.as_bytes());
        out.put_u8(self.code.to_u8());
        write_var_bytes(out, self.reason.as_bytes());
        if let Some(h) = &self.hash {
            out.put_slice(&h.0);
        }
    }
    fn encoded_len(&self) -> usize {
        var_bytes_len(self.message.len())
            + 1
            + var_bytes_len(self.reason.len())
            + self.hash.map_or(0, |_| 32)
    }
}

impl Decode for Reject {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let message = r.read_var_str_max("reject message", MAX_REJECT_MESSAGE_LEN)?;
        let code = RejectCode::from_u8(r.read_u8()?);
        let reason = r.read_var_str_max("reject reason", MAX_REJECT_REASON_LEN)?;
        // The hash is present for block/tx rejects; the node reads it only then and ignores the
        // rest, so accept it whenever 32 bytes follow.
        let hash = if r.remaining() >= 32 {
            Some(r.read()?)
        } else {
            None
        };
        let _ = r.read_rest();
        Ok(Reject {
            message,
            code,
            reason,
            hash,
        })
    }
}
