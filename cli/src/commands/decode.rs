//! `bsvp2p decode`: decode a captured frame, a stream of frames, or a bare payload, and print it
//! as JSON with hashes in display order. A block also gets a `block` summary: its hash, its
//! transaction count and whether its transactions hash to its header's merkle root.

use std::path::Path;

use bitcoinsv::bitcoin::{Magic, Network};
use bitcoinsv::p2p::codec::{detect_network, MessageCodec, RawFrame, RecvLimits};
use bitcoinsv::p2p::{CodecError, Message};
use bytes::{Bytes, BytesMut};
use serde_json::json;

use crate::error::CliError;

/// Arguments of `bsvp2p decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The frame(s) as hex, or a file holding hex text or raw bytes.
    pub input: String,
    /// Expect this network's magic (default: detect it from the frame).
    #[arg(long)]
    pub network: Option<Network>,
    /// Accept this magic (8 hex digits), e.g. f9beb4d9 for BTC captures.
    #[arg(long, value_name = "HEX")]
    pub magic: Option<String>,
    /// The input is a bare payload of this command, not a frame.
    #[arg(long, value_name = "COMMAND")]
    pub payload: Option<String>,
    /// The input holds many consecutive frames; print one JSON line per message.
    #[arg(long)]
    pub all: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), CliError> {
    let bytes = read_input(&args.input)?;
    if let Some(command) = &args.payload {
        let msg = Message::decode_payload(command, Bytes::from(bytes))
            .map_err(|e| CodecError::from_decode(command, e))?;
        let mut v = json!({ "message": msg });
        if let Some(b) = block_summary(&msg) {
            v["block"] = b;
        }
        crate::output::line(&to_json(&v, true));
        return Ok(());
    }
    let mut codec = codec_for(&args, &bytes)?;
    let mut buf = BytesMut::from(&bytes[..]);
    if args.all {
        let mut count = 0usize;
        loop {
            if buf.is_empty() {
                break;
            }
            match codec.decode_frame(&mut buf) {
                Ok(Some(frame)) => {
                    crate::output::line(&frame_json(&frame, false));
                    count += 1;
                }
                Ok(None) => {
                    return Err(CliError::Other(format!(
                    "the stream ends inside a frame: {} byte(s) after {count} complete message(s)",
                    buf.len()
                )))
                }
                Err(e) if !e.is_fatal() => {
                    crate::output::line(&to_json(&json!({ "error": e.to_string() }), false))
                }
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(());
    }
    match codec.decode_frame(&mut buf)? {
        Some(frame) => {
            if !buf.is_empty() {
                return Err(CliError::Usage(format!(
                    "{} byte(s) follow the first frame; pass --all to decode a stream of frames",
                    buf.len()
                )));
            }
            crate::output::line(&frame_json(&frame, true));
            Ok(())
        }
        None => Err(CliError::Other(format!(
            "truncated frame: only {} byte(s) given",
            bytes.len()
        ))),
    }
}

fn codec_for(args: &Args, bytes: &[u8]) -> Result<MessageCodec, CliError> {
    let limits = RecvLimits {
        max_payload: u64::MAX,
        max_block: u64::MAX,
        max_tx: u64::MAX,
    };
    let codec = if let Some(m) = &args.magic {
        let mut magic: Magic = [0; 4];
        hex::decode_to_slice(m, &mut magic).map_err(|_| {
            CliError::Usage(format!(
                "--magic {m:?}: expected 8 hex digits, e.g. e3e1f3e8"
            ))
        })?;
        MessageCodec::with_magic(magic)
    } else if let Some(n) = args.network {
        MessageCodec::new(n)
    } else {
        match detect_network(bytes) {
            Ok(n) => MessageCodec::new(n),
            Err(CodecError::UnknownNetwork { magic }) => {
                return Err(CliError::Usage(format!(
                    "magic {} belongs to no BSV network (f9beb4d9 is BTC's); pass --magic {} to decode it anyway",
                    hex::encode(magic),
                    hex::encode(magic)
                )))
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(codec.with_recv_limits(limits))
}

fn frame_json(frame: &RawFrame, pretty: bool) -> String {
    let h = &frame.header;
    let mut v = json!({
        "network": Network::from_magic(h.magic).map(|n| n.to_string()),
        "magic": hex::encode(h.magic),
        "length": h.length,
        "extended": h.extended,
        "checksum": hex::encode(h.checksum),
    });
    match frame.message() {
        Ok(m) => {
            if let Some(b) = block_summary(&m) {
                v["block"] = b;
            }
            v["message"] = json!(m);
        }
        Err(e) => {
            v["command"] = json!(h.command);
            v["error"] = json!(e.to_string());
        }
    }
    to_json(&v, pretty)
}

/// For a block: its hash, transaction count and whether the merkle root matches.
fn block_summary(m: &Message) -> Option<serde_json::Value> {
    let Message::Block(b) = m else {
        return None;
    };
    Some(json!({
        "hash": b.hash().to_string(),
        "transactions": b.transactions.len(),
        "merkle_root_matches": b.check_merkle_root().is_ok(),
    }))
}

fn to_json(v: &serde_json::Value, pretty: bool) -> String {
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    s.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Reads hex from the argument, or from a file holding hex text or raw bytes.
fn read_input(input: &str) -> Result<Vec<u8>, CliError> {
    let path = Path::new(input);
    if path.exists() {
        let raw = std::fs::read(path).map_err(|source| CliError::File {
            path: input.to_string(),
            source,
        })?;
        let text: String = String::from_utf8_lossy(&raw).split_whitespace().collect();
        if !text.is_empty()
            && text.len().is_multiple_of(2)
            && text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return hex::decode(&text).map_err(|e| CliError::Usage(format!("{input}: {e}")));
        }
        return Ok(raw);
    }
    let text: String = input.split_whitespace().collect();
    hex::decode(&text).map_err(|e| {
        CliError::Usage(format!(
            "{input:?} is neither an existing file nor valid hex ({e}); give a hex frame or a path"
        ))
    })
}
