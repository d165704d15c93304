//! Authenticated-connection messages between miners (docs/PROTOCOL.md §3.13): `authch`, which the
//! node sends to every peer after its `verack` and a library may ignore, and `authresp`.

use bytes::{BufMut, Bytes};
use serde::Serialize;

use crate::bitcoin::{var_bytes_len, write_var_bytes, Decode, DecodeError, Encode, Reader};

/// The `authch` challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthChallenge {
    /// Message version (1).
    pub version: u32,
    /// The random challenge (32 bytes from the node), preceded on the wire by a u32 length.
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub challenge: Bytes,
}

impl Encode for AuthChallenge {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_u32_le(self.version);
        out.put_u32_le(self.challenge.len() as u32);
        out.put_slice(&self.challenge);
    }
    fn encoded_len(&self) -> usize {
        8 + self.challenge.len()
    }
}

impl Decode for AuthChallenge {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.read_u32_le()?;
        let len = r.read_u32_le()? as usize;
        Ok(AuthChallenge {
            version,
            challenge: r.read_bytes(len)?,
        })
    }
}

/// The `authresp` response (compact-size lengths, as the node's code has it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthResponse {
    /// Compressed public key (33 bytes).
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub public_key: Bytes,
    /// Non-zero client nonce.
    pub nonce: u64,
    /// DER signature over dSHA256(challenge ‖ nonce).
    #[serde(with = "crate::bitcoin::serde_hex")]
    pub signature: Bytes,
}

impl Encode for AuthResponse {
    fn encode<B: BufMut>(&self, out: &mut B) {
        write_var_bytes(out, &self.public_key);
        out.put_u64_le(self.nonce);
        write_var_bytes(out, &self.signature);
    }
    fn encoded_len(&self) -> usize {
        var_bytes_len(self.public_key.len()) + 8 + var_bytes_len(self.signature.len())
    }
}

impl Decode for AuthResponse {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(AuthResponse {
            public_key: r.read_var_bytes()?,
            nonce: r.read_u64_le()?,
            signature: r.read_var_bytes()?,
        })
    }
}
