//! The message catalogue: every command the bitcoin-sv 1.2.2 node knows (docs/PROTOCOL.md §3.1) as a
//! variant of [`Message`], plus [`Message::Unknown`] so that commands this library does not know
//! pass through instead of failing.
//!
//! [`Message::decode_payload`] turns a command name and a payload into a message;
//! [`Message::encode_payload`] does the reverse. Framing (magic, header, checksum, limits) is the
//! codec's job (`crate::p2p::codec`).

mod auth;
mod bloom;
mod compact;
mod double_spend;
mod enriched;
mod lists;
mod protoconf;
mod reject;
mod streams;
mod version;

use bytes::{BufMut, Bytes};
use serde::Serialize;

use crate::bitcoin::{
    list_len, write_list, Block, BlockHeader, BlockLocator, Decode, DecodeError, Encode, InvVect,
    Reader, TimestampedNetAddress, Transaction, VarInt, HEADER_SIZE, INV_VECT_SIZE,
    TIMESTAMPED_NET_ADDRESS_SIZE,
};

pub use auth::{AuthChallenge, AuthResponse};
pub use bloom::{DataRefTx, FilterLoad, MerkleBlock};
pub use compact::{BlockTxn, CompactBlock, GetBlockTxn, PrefilledTx, SendCmpct};
pub use double_spend::{DsBlockDetails, DsDetected, RevokeMid};
pub use enriched::{EnrichedHeader, ProvenTx};
pub use protoconf::{Protoconf, MAX_STREAM_POLICIES_LEN};
pub use reject::{Reject, RejectCode, MAX_REJECT_MESSAGE_LEN, MAX_REJECT_REASON_LEN};
pub use streams::{CreateStream, StreamAck};
pub use version::{AssociationId, VersionMessage, MAX_ASSOCIATION_ID_LEN, MAX_USER_AGENT_LEN};

/// Wire command names, exactly as `src/protocol.cpp` spells them.
pub mod commands {
    #![allow(missing_docs)]
    pub const VERSION: &str = "version";
    pub const VERACK: &str = "verack";
    pub const PING: &str = "ping";
    pub const PONG: &str = "pong";
    pub const ADDR: &str = "addr";
    pub const GETADDR: &str = "getaddr";
    pub const INV: &str = "inv";
    pub const GETDATA: &str = "getdata";
    pub const NOTFOUND: &str = "notfound";
    pub const GETBLOCKS: &str = "getblocks";
    pub const GETHEADERS: &str = "getheaders";
    pub const HEADERS: &str = "headers";
    pub const BLOCK: &str = "block";
    pub const TX: &str = "tx";
    pub const REJECT: &str = "reject";
    pub const SENDHEADERS: &str = "sendheaders";
    pub const FEEFILTER: &str = "feefilter";
    pub const SENDCMPCT: &str = "sendcmpct";
    pub const CMPCTBLOCK: &str = "cmpctblock";
    pub const GETBLOCKTXN: &str = "getblocktxn";
    pub const BLOCKTXN: &str = "blocktxn";
    pub const PROTOCONF: &str = "protoconf";
    pub const MEMPOOL: &str = "mempool";
    pub const AUTHCH: &str = "authch";
    pub const AUTHRESP: &str = "authresp";
    pub const CREATESTREAM: &str = "createstrm";
    pub const STREAMACK: &str = "streamack";
    pub const GETHDRSEN: &str = "gethdrsen";
    pub const HDRSEN: &str = "hdrsen";
    pub const SENDHDRSEN: &str = "sendhdrsen";
    pub const DSDETECTED: &str = "dsdetected";
    pub const REVOKEMID: &str = "revokemid";
    pub const DATAREFTX: &str = "datareftx";
    pub const MERKLEBLOCK: &str = "merkleblock";
    pub const FILTERLOAD: &str = "filterload";
    pub const FILTERADD: &str = "filteradd";
    pub const FILTERCLEAR: &str = "filterclear";
    pub const ALERT: &str = "alert";
    /// The marker command of a 44-byte extended header.
    pub const EXTMSG: &str = "extmsg";
}

/// A peer-to-peer message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", content = "payload", rename_all = "lowercase")]
pub enum Message {
    /// `version`: opens the handshake.
    Version(VersionMessage),
    /// `verack`: acknowledges the peer's `version`.
    Verack,
    /// `ping` with its nonce.
    Ping(u64),
    /// `pong` echoing a ping's nonce.
    Pong(u64),
    /// `addr`: known peer addresses.
    Addr(Vec<TimestampedNetAddress>),
    /// `getaddr`: asks for `addr`.
    #[serde(rename = "getaddr")]
    GetAddr,
    /// `inv`: announces objects.
    Inv(Vec<InvVect>),
    /// `getdata`: requests objects.
    #[serde(rename = "getdata")]
    GetData(Vec<InvVect>),
    /// `notfound`: requested objects that are not available.
    #[serde(rename = "notfound")]
    NotFound(Vec<InvVect>),
    /// `getblocks`: asks for block `inv`s after a locator.
    #[serde(rename = "getblocks")]
    GetBlocks(BlockLocator),
    /// `getheaders`: asks for headers after a locator.
    #[serde(rename = "getheaders")]
    GetHeaders(BlockLocator),
    /// `headers`: up to 2000 headers (each followed on the wire by a zero tx count).
    Headers(Vec<BlockHeader>),
    /// `block`.
    Block(Block),
    /// `tx`.
    Tx(Transaction),
    /// `reject`.
    Reject(Reject),
    /// `sendheaders`: announce new blocks with `headers`.
    #[serde(rename = "sendheaders")]
    SendHeaders,
    /// `feefilter`: minimum fee rate (satoshis per 1000 bytes) for tx announcements.
    #[serde(rename = "feefilter")]
    FeeFilter(i64),
    /// `sendcmpct`.
    #[serde(rename = "sendcmpct")]
    SendCmpct(SendCmpct),
    /// `cmpctblock`.
    #[serde(rename = "cmpctblock")]
    CmpctBlock(CompactBlock),
    /// `getblocktxn`.
    #[serde(rename = "getblocktxn")]
    GetBlockTxn(GetBlockTxn),
    /// `blocktxn`.
    #[serde(rename = "blocktxn")]
    BlockTxn(BlockTxn),
    /// `protoconf`.
    Protoconf(Protoconf),
    /// `mempool`: legacy request (`None`) or mempool-sync request with an age in seconds.
    Mempool(Option<i64>),
    /// `authch`.
    #[serde(rename = "authch")]
    AuthCh(AuthChallenge),
    /// `authresp`.
    #[serde(rename = "authresp")]
    AuthResp(AuthResponse),
    /// `createstrm`.
    #[serde(rename = "createstrm")]
    CreateStream(CreateStream),
    /// `streamack`.
    #[serde(rename = "streamack")]
    StreamAck(StreamAck),
    /// `gethdrsen`: asks for enriched headers.
    #[serde(rename = "gethdrsen")]
    GetHdrsEn(BlockLocator),
    /// `hdrsen`: enriched headers.
    #[serde(rename = "hdrsen")]
    HdrsEn(Vec<EnrichedHeader>),
    /// `sendhdrsen`: announce new blocks with `hdrsen`.
    #[serde(rename = "sendhdrsen")]
    SendHdrsEn,
    /// `dsdetected`.
    #[serde(rename = "dsdetected")]
    DsDetected(DsDetected),
    /// `revokemid`.
    #[serde(rename = "revokemid")]
    RevokeMid(RevokeMid),
    /// `datareftx`.
    #[serde(rename = "datareftx")]
    DataRefTx(DataRefTx),
    /// `merkleblock`.
    #[serde(rename = "merkleblock")]
    MerkleBlock(MerkleBlock),
    /// `filterload` (never send it to a node: +100 misbehaviour).
    #[serde(rename = "filterload")]
    FilterLoad(FilterLoad),
    /// `filteradd` with the data element.
    #[serde(rename = "filteradd")]
    FilterAdd(#[serde(with = "crate::bitcoin::serde_hex")] Bytes),
    /// `filterclear`.
    #[serde(rename = "filterclear")]
    FilterClear,
    /// `alert` (legacy; payload kept raw).
    Alert(#[serde(with = "crate::bitcoin::serde_hex")] Bytes),
    /// A command this library does not know, kept as is.
    Unknown {
        /// The command name.
        command: String,
        /// The raw payload.
        #[serde(with = "crate::bitcoin::serde_hex")]
        payload: Bytes,
    },
}

/// The encoded size of a `headers` list (each header followed by a zero tx count).
fn headers_len(h: &[BlockHeader]) -> usize {
    VarInt::size(h.len() as u64) + h.len() * (HEADER_SIZE + 1)
}

/// Reads a message body that must be consumed exactly.
fn exact<T: Decode>(r: &mut Reader<'_>) -> Result<T, DecodeError> {
    let v = T::decode(r)?;
    r.finish()?;
    Ok(v)
}

fn exact_list<T: Decode>(r: &mut Reader<'_>, min: usize) -> Result<Vec<T>, DecodeError> {
    let v = r.read_list(min)?;
    r.finish()?;
    Ok(v)
}

impl Message {
    /// The wire command name.
    pub fn command(&self) -> &str {
        use commands::*;
        match self {
            Message::Version(_) => VERSION,
            Message::Verack => VERACK,
            Message::Ping(_) => PING,
            Message::Pong(_) => PONG,
            Message::Addr(_) => ADDR,
            Message::GetAddr => GETADDR,
            Message::Inv(_) => INV,
            Message::GetData(_) => GETDATA,
            Message::NotFound(_) => NOTFOUND,
            Message::GetBlocks(_) => GETBLOCKS,
            Message::GetHeaders(_) => GETHEADERS,
            Message::Headers(_) => HEADERS,
            Message::Block(_) => BLOCK,
            Message::Tx(_) => TX,
            Message::Reject(_) => REJECT,
            Message::SendHeaders => SENDHEADERS,
            Message::FeeFilter(_) => FEEFILTER,
            Message::SendCmpct(_) => SENDCMPCT,
            Message::CmpctBlock(_) => CMPCTBLOCK,
            Message::GetBlockTxn(_) => GETBLOCKTXN,
            Message::BlockTxn(_) => BLOCKTXN,
            Message::Protoconf(_) => PROTOCONF,
            Message::Mempool(_) => MEMPOOL,
            Message::AuthCh(_) => AUTHCH,
            Message::AuthResp(_) => AUTHRESP,
            Message::CreateStream(_) => CREATESTREAM,
            Message::StreamAck(_) => STREAMACK,
            Message::GetHdrsEn(_) => GETHDRSEN,
            Message::HdrsEn(_) => HDRSEN,
            Message::SendHdrsEn => SENDHDRSEN,
            Message::DsDetected(_) => DSDETECTED,
            Message::RevokeMid(_) => REVOKEMID,
            Message::DataRefTx(_) => DATAREFTX,
            Message::MerkleBlock(_) => MERKLEBLOCK,
            Message::FilterLoad(_) => FILTERLOAD,
            Message::FilterAdd(_) => FILTERADD,
            Message::FilterClear => FILTERCLEAR,
            Message::Alert(_) => ALERT,
            Message::Unknown { command, .. } => command,
        }
    }

    /// Decodes the payload of a message whose header named `command`.
    ///
    /// Block, transaction and other byte-string fields share `payload`'s memory. Unknown commands
    /// become [`Message::Unknown`]. Bodies without fields (`verack`, `getaddr`, …) ignore any
    /// bytes, as the node does; `version`, `protoconf` and `reject` ignore trailing bytes the way
    /// the node does; every other message must be consumed exactly.
    pub fn decode_payload(command: &str, payload: Bytes) -> Result<Message, DecodeError> {
        use commands::*;
        let mut r = Reader::from_bytes(&payload);
        let r = &mut r;
        Ok(match command {
            VERSION => Message::Version(r.read()?),
            VERACK => Message::Verack,
            PING => Message::Ping(exact_u64(r)?),
            PONG => Message::Pong(exact_u64(r)?),
            ADDR => Message::Addr(exact_list(r, TIMESTAMPED_NET_ADDRESS_SIZE)?),
            GETADDR => Message::GetAddr,
            INV => Message::Inv(lists::read_inv_list(r)?),
            GETDATA => Message::GetData(lists::read_inv_list(r)?),
            NOTFOUND => Message::NotFound(lists::read_inv_list(r)?),
            GETBLOCKS => Message::GetBlocks(exact(r)?),
            GETHEADERS => Message::GetHeaders(exact(r)?),
            HEADERS => Message::Headers(lists::read_headers(r)?),
            BLOCK => Message::Block(exact(r)?),
            TX => Message::Tx(exact(r)?),
            REJECT => Message::Reject(r.read()?),
            SENDHEADERS => Message::SendHeaders,
            FEEFILTER => Message::FeeFilter(exact_u64(r)? as i64),
            SENDCMPCT => Message::SendCmpct(exact(r)?),
            CMPCTBLOCK => Message::CmpctBlock(exact(r)?),
            GETBLOCKTXN => Message::GetBlockTxn(exact(r)?),
            BLOCKTXN => Message::BlockTxn(exact(r)?),
            PROTOCONF => Message::Protoconf(r.read()?),
            MEMPOOL => {
                if r.is_empty() {
                    Message::Mempool(None)
                } else {
                    Message::Mempool(Some(exact_u64(r)? as i64))
                }
            }
            AUTHCH => Message::AuthCh(exact(r)?),
            AUTHRESP => Message::AuthResp(exact(r)?),
            CREATESTREAM => Message::CreateStream(exact(r)?),
            STREAMACK => Message::StreamAck(exact(r)?),
            GETHDRSEN => Message::GetHdrsEn(exact(r)?),
            HDRSEN => Message::HdrsEn(exact_list(r, HEADER_SIZE + 4)?),
            SENDHDRSEN => Message::SendHdrsEn,
            DSDETECTED => Message::DsDetected(exact(r)?),
            REVOKEMID => Message::RevokeMid(exact(r)?),
            DATAREFTX => Message::DataRefTx(exact(r)?),
            MERKLEBLOCK => Message::MerkleBlock(exact(r)?),
            FILTERLOAD => Message::FilterLoad(exact(r)?),
            FILTERADD => {
                let b = r.read_var_bytes()?;
                r.finish()?;
                Message::FilterAdd(b)
            }
            FILTERCLEAR => Message::FilterClear,
            ALERT => Message::Alert(payload.clone()),
            other => Message::Unknown {
                command: other.to_string(),
                payload: payload.clone(),
            },
        })
    }

    /// Appends the payload encoding to `out`.
    pub fn encode_payload<B: BufMut>(&self, out: &mut B) {
        match self {
            Message::Version(v) => v.encode(out),
            Message::Verack
            | Message::GetAddr
            | Message::SendHeaders
            | Message::SendHdrsEn
            | Message::FilterClear
            | Message::Mempool(None) => {}
            Message::Ping(n) | Message::Pong(n) => out.put_u64_le(*n),
            Message::Addr(a) => write_list(out, a),
            Message::Inv(v) | Message::GetData(v) | Message::NotFound(v) => {
                lists::write_inv_list(out, v)
            }
            Message::GetBlocks(l) | Message::GetHeaders(l) | Message::GetHdrsEn(l) => l.encode(out),
            Message::Headers(h) => lists::write_headers(out, h),
            Message::Block(b) => b.encode(out),
            Message::Tx(t) => t.encode(out),
            Message::Reject(r) => r.encode(out),
            Message::FeeFilter(f) => out.put_i64_le(*f),
            Message::SendCmpct(s) => s.encode(out),
            Message::CmpctBlock(c) => c.encode(out),
            Message::GetBlockTxn(g) => g.encode(out),
            Message::BlockTxn(b) => b.encode(out),
            Message::Protoconf(p) => p.encode(out),
            Message::Mempool(Some(age)) => out.put_i64_le(*age),
            Message::AuthCh(a) => a.encode(out),
            Message::AuthResp(a) => a.encode(out),
            Message::CreateStream(c) => c.encode(out),
            Message::StreamAck(s) => s.encode(out),
            Message::HdrsEn(h) => write_list(out, h),
            Message::DsDetected(d) => d.encode(out),
            Message::RevokeMid(m) => m.encode(out),
            Message::DataRefTx(d) => d.encode(out),
            Message::MerkleBlock(m) => m.encode(out),
            Message::FilterLoad(f) => f.encode(out),
            Message::FilterAdd(b) => crate::bitcoin::write_var_bytes(out, b),
            Message::Alert(b) => out.put_slice(b),
            Message::Unknown { payload, .. } => out.put_slice(payload),
        }
    }

    /// The payload size [`Message::encode_payload`] writes, computed without encoding.
    pub fn payload_len(&self) -> usize {
        match self {
            Message::Version(v) => v.encoded_len(),
            Message::Verack
            | Message::GetAddr
            | Message::SendHeaders
            | Message::SendHdrsEn
            | Message::FilterClear
            | Message::Mempool(None) => 0,
            Message::Ping(_)
            | Message::Pong(_)
            | Message::FeeFilter(_)
            | Message::Mempool(Some(_)) => 8,
            Message::Addr(a) => list_len(a),
            Message::Inv(v) | Message::GetData(v) | Message::NotFound(v) => {
                VarInt::size(v.len() as u64) + v.len() * INV_VECT_SIZE
            }
            Message::GetBlocks(l) | Message::GetHeaders(l) | Message::GetHdrsEn(l) => {
                l.encoded_len()
            }
            Message::Headers(h) => headers_len(h),
            Message::Block(b) => b.encoded_len(),
            Message::Tx(t) => t.encoded_len(),
            Message::Reject(r) => r.encoded_len(),
            Message::SendCmpct(s) => s.encoded_len(),
            Message::CmpctBlock(c) => c.encoded_len(),
            Message::GetBlockTxn(g) => g.encoded_len(),
            Message::BlockTxn(b) => b.encoded_len(),
            Message::Protoconf(p) => p.encoded_len(),
            Message::AuthCh(a) => a.encoded_len(),
            Message::AuthResp(a) => a.encoded_len(),
            Message::CreateStream(c) => c.encoded_len(),
            Message::StreamAck(s) => s.encoded_len(),
            Message::HdrsEn(h) => list_len(h),
            Message::DsDetected(d) => d.encoded_len(),
            Message::RevokeMid(m) => m.encoded_len(),
            Message::DataRefTx(d) => d.encoded_len(),
            Message::MerkleBlock(m) => m.encoded_len(),
            Message::FilterLoad(f) => f.encoded_len(),
            Message::FilterAdd(b) => crate::bitcoin::var_bytes_len(b.len()),
            Message::Alert(b) => b.len(),
            Message::Unknown { payload, .. } => payload.len(),
        }
    }

    /// The payload as a fresh buffer.
    pub fn payload_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(self.payload_len());
        self.encode_payload(&mut v);
        Bytes::from(v)
    }
}

fn exact_u64(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let v = r.read_u64_le()?;
    r.finish()?;
    Ok(v)
}
