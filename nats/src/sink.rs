//! [`NatsSink`]: the bus sink on JetStream.
//!
//! Setup creates the stream (or updates it to our subjects and window) and the Object Store
//! bucket. The stream lists its subjects one by one rather than `bsv.<network>.>`, so core
//! requests on `bsv.<network>.broadcast` are not captured: JetStream would answer them with a
//! publish acknowledgement before the responder could.
//!
//! A publish waits for JetStream's acknowledgement (`PubAck`), whose `duplicate` flag says
//! another bridge (or an earlier try) stored the same `Nats-Msg-Id` within the duplicate
//! window. Failures that a later try may cure (no connection, no acknowledgement in time, no
//! responders while JetStream restarts) are [`SinkError::Unavailable`]; the pump retries them
//! with the same id.

use std::time::Duration;

use async_nats::header::HeaderMap;
use async_nats::jetstream::context::{Publish, PublishErrorKind};
use async_nats::jetstream::object_store::{self, ObjectMetadata, ObjectStore};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::Client;
use async_trait::async_trait;
use bitcoinsv::bitcoin::{Hash, Network};
use bitcoinsv::p2p::limits::{
    BUS_HEADER_ROOM, BUS_MAX_OBJECT_CHUNK, DEFAULT_BUS_ACK_TIMEOUT, DEFAULT_BUS_DUPLICATE_WINDOW,
};
use bitcoinsv::p2p::sink::{Ack, BlockPayload, BusRecord, BusSink, SinkError};
use bytes::Bytes;
use tracing::{debug, info};

use crate::error::NatsError;
use crate::format::{
    hash_hex, subject, topic_suffix, BlockRef, EventMessage, ReorgMessage, TipMessage,
    HEADER_BLOCK_BODY, HEADER_BLOCK_HEIGHT, HEADER_KIND, HEADER_PEER_ID,
};

/// How a [`NatsSink`] names and sizes things.
#[derive(Clone, Debug)]
pub struct NatsSinkConfig {
    /// The network: subjects are `bsv.<network>.*`.
    pub network: Network,
    /// The stream's name; default `BSV_<NETWORK>`.
    pub stream: String,
    /// The Object Store bucket for large blocks; default `bsv_<network>_blocks`.
    pub bucket: String,
    /// The stream's duplicate window.
    pub duplicate_window: Duration,
    /// How long to wait for one acknowledgement.
    pub ack_timeout: Duration,
    /// Blocks larger than this go to the Object Store; `None`: the server's maximum payload
    /// minus room for headers.
    pub inline_block_limit: Option<usize>,
    /// This bridge's name, carried by its event messages.
    pub instance: String,
}

impl NatsSinkConfig {
    /// The defaults for `network`.
    pub fn new(network: Network) -> Self {
        NatsSinkConfig {
            network,
            stream: format!("BSV_{}", network.name().to_ascii_uppercase()),
            bucket: format!("bsv_{}_blocks", network.name()),
            duplicate_window: DEFAULT_BUS_DUPLICATE_WINDOW,
            ack_timeout: DEFAULT_BUS_ACK_TIMEOUT,
            inline_block_limit: None,
            instance: "bridge".to_string(),
        }
    }

    /// The subjects the stream holds.
    pub fn subjects(&self) -> Vec<String> {
        ["tip", "reorg", "block", "tx", "event.>"]
            .iter()
            .map(|s| subject(self.network, s))
            .collect()
    }
}

/// A [`BusSink`] on NATS JetStream (see the module doc).
#[derive(Clone)]
pub struct NatsSink {
    client: Client,
    js: Context,
    objects: ObjectStore,
    config: NatsSinkConfig,
    inline_limit: usize,
    chunk: usize,
}

impl NatsSink {
    /// Connects to `url` and sets up the stream and the bucket. The client reconnects by
    /// itself for as long as the sink lives.
    pub async fn connect(url: &str, config: NatsSinkConfig) -> Result<NatsSink, NatsError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("bsvp2p-{}", config.instance))
            .connect(url)
            .await
            .map_err(|e| NatsError::Connect {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        NatsSink::with_client(client, config).await
    }

    /// Sets up the stream and the bucket on an existing connection.
    pub async fn with_client(
        client: Client,
        config: NatsSinkConfig,
    ) -> Result<NatsSink, NatsError> {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.ack_timeout);
        ensure_stream(&js, &config).await?;
        let objects = match js.get_object_store(&config.bucket).await {
            Ok(o) => o,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: config.bucket.clone(),
                    description: Some("bitcoinsv blocks too large for one message".into()),
                    storage: StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| NatsError::js(format!("creating bucket {}", config.bucket), e))?,
        };
        let max_payload = client.server_info().max_payload;
        let inline_limit = config
            .inline_block_limit
            .unwrap_or(max_payload.saturating_sub(BUS_HEADER_ROOM));
        let chunk = (max_payload / 2).clamp(1024, BUS_MAX_OBJECT_CHUNK);
        info!(
            stream = %config.stream,
            bucket = %config.bucket,
            max_payload,
            inline_limit,
            "NATS sink ready"
        );
        Ok(NatsSink {
            client,
            js,
            objects,
            config,
            inline_limit,
            chunk,
        })
    }

    /// The connection (for the broadcast responder, or a consumer in the same process).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The configuration in force.
    pub fn config(&self) -> &NatsSinkConfig {
        &self.config
    }

    /// Blocks larger than this many bytes go to the Object Store.
    pub fn inline_block_limit(&self) -> usize {
        self.inline_limit
    }

    async fn send(
        &self,
        record_kind: &str,
        suffix: &str,
        id: Option<String>,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Ack, SinkError> {
        headers.insert(HEADER_KIND, record_kind);
        let mut publish = Publish::build().payload(payload).headers(headers);
        if let Some(id) = &id {
            publish = publish.message_id(id);
        }
        let subject = subject(self.config.network, suffix);
        let ack = self
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| classify(id.as_deref(), e.kind(), &e))?
            .await
            .map_err(|e| classify(id.as_deref(), e.kind(), &e))?;
        Ok(Ack {
            duplicate: ack.duplicate,
        })
    }

    /// Uploads a block to the Object Store unless a complete copy is there already.
    async fn upload(&self, hash: &Hash, payload: &BlockPayload) -> Result<(), SinkError> {
        let name = hash_hex(hash);
        if let Ok(info) = self.objects.info(&name).await {
            if !info.deleted && info.size as u64 == payload.len() {
                debug!(block = %name, "block already in the Object Store");
                return Ok(());
            }
        }
        let meta = ObjectMetadata {
            name: name.clone(),
            chunk_size: Some(self.chunk),
            ..Default::default()
        };
        let result = match payload {
            BlockPayload::Whole(bytes) => {
                let mut reader = std::io::Cursor::new(bytes.clone());
                self.objects.put(meta, &mut reader).await
            }
            BlockPayload::Stream(source) => {
                let mut reader = source.open();
                self.objects.put(meta, &mut reader).await
            }
        };
        match result {
            Ok(info) if info.size as u64 == payload.len() => Ok(()),
            Ok(info) => Err(SinkError::Refused {
                id: name,
                reason: format!(
                    "the Object Store holds {} bytes, the block has {}",
                    info.size,
                    payload.len()
                ),
            }),
            Err(e) => Err(SinkError::Unavailable {
                reason: format!("uploading block {name}: {e}"),
            }),
        }
    }
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("config", &self.config)
            .field("inline_limit", &self.inline_limit)
            .finish_non_exhaustive()
    }
}

/// Creates the stream, or brings an existing one to our subjects and duplicate window.
async fn ensure_stream(js: &Context, config: &NatsSinkConfig) -> Result<(), NatsError> {
    let wanted = stream::Config {
        name: config.stream.clone(),
        subjects: config.subjects(),
        duplicate_window: config.duplicate_window,
        storage: StorageType::File,
        ..Default::default()
    };
    match js.get_stream(&config.stream).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| NatsError::js(format!("reading stream {}", config.stream), e))?;
            if info.config.subjects != wanted.subjects
                || info.config.duplicate_window != wanted.duplicate_window
            {
                let mut updated = info.config.clone();
                updated.subjects = wanted.subjects;
                updated.duplicate_window = wanted.duplicate_window;
                js.update_stream(updated)
                    .await
                    .map_err(|e| NatsError::js(format!("updating stream {}", config.stream), e))?;
            }
            Ok(())
        }
        Err(_) => {
            js.create_stream(wanted)
                .await
                .map_err(|e| NatsError::js(format!("creating stream {}", config.stream), e))?;
            Ok(())
        }
    }
}

/// Whether a failed publish may succeed later: everything but the server refusing the message
/// itself (too large, malformed) is worth another try under the same id.
fn classify(id: Option<&str>, kind: PublishErrorKind, e: &dyn std::fmt::Display) -> SinkError {
    let text = e.to_string();
    let refused = matches!(kind, PublishErrorKind::Other)
        && ["maximum payload", "message size", "invalid"]
            .iter()
            .any(|s| text.to_ascii_lowercase().contains(s));
    if refused {
        SinkError::Refused {
            id: id.unwrap_or("-").to_string(),
            reason: text,
        }
    } else {
        SinkError::Unavailable { reason: text }
    }
}

fn json(value: &impl serde::Serialize) -> Result<Bytes, SinkError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| SinkError::Refused {
            id: "-".into(),
            reason: format!("encoding JSON: {e}"),
        })
}

/// Keeps a subject token to `[a-z0-9_]` (event kinds are ours, but a token must not carry
/// `.`, `*`, `>` or spaces).
fn token(kind: &str) -> String {
    let t: String = kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() {
        "event".into()
    } else {
        t
    }
}

#[async_trait]
impl BusSink for NatsSink {
    async fn publish(&self, record: BusRecord) -> Result<Ack, SinkError> {
        let id = record.dedup_id();
        let suffix = topic_suffix(record.topic());
        let mut headers = HeaderMap::new();
        match record {
            BusRecord::Tip { height, hash } => {
                let body = json(&TipMessage {
                    height,
                    hash: hash_hex(&hash),
                })?;
                self.send("tip", suffix, id, headers, body).await
            }
            BusRecord::Reorg {
                old_tip,
                new_tip,
                fork_height,
                depth,
            } => {
                let body = json(&ReorgMessage {
                    old_tip: hash_hex(&old_tip),
                    new_tip: hash_hex(&new_tip),
                    fork_height,
                    depth,
                })?;
                self.send("reorg", suffix, id, headers, body).await
            }
            BusRecord::Block {
                hash,
                height,
                payload,
            } => {
                headers.insert(HEADER_BLOCK_HEIGHT, height.to_string().as_str());
                match payload {
                    BlockPayload::Whole(bytes) if bytes.len() <= self.inline_limit => {
                        headers.insert(HEADER_BLOCK_BODY, "inline");
                        self.send("block", suffix, id, headers, bytes).await
                    }
                    large => {
                        // The object first: a consumer that sees the reference finds the block.
                        self.upload(&hash, &large).await?;
                        headers.insert(HEADER_BLOCK_BODY, "object");
                        let body = json(&BlockRef {
                            hash: hash_hex(&hash),
                            height,
                            size: large.len(),
                            bucket: self.config.bucket.clone(),
                            object: hash_hex(&hash),
                        })?;
                        self.send("block", suffix, id, headers, body).await
                    }
                }
            }
            BusRecord::Tx { peer_id, raw, .. } => {
                if let Some(p) = peer_id {
                    headers.insert(HEADER_PEER_ID, p.to_string().as_str());
                }
                self.send("tx", suffix, id, headers, raw).await
            }
            BusRecord::Event { kind, detail } => {
                let kind = token(&kind);
                let body = json(&EventMessage {
                    instance: self.config.instance.clone(),
                    kind: kind.clone(),
                    detail,
                })?;
                let suffix = format!("{suffix}.{kind}");
                self.send("event", &suffix, None, headers, body).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_holds_each_record_subject_but_not_broadcast_requests() {
        let c = NatsSinkConfig::new(Network::Regtest);
        assert_eq!(c.stream, "BSV_REGTEST");
        assert_eq!(c.bucket, "bsv_regtest_blocks");
        let s = c.subjects();
        assert!(s.contains(&"bsv.regtest.tx".to_string()));
        assert!(s.contains(&"bsv.regtest.event.>".to_string()));
        assert!(!s.iter().any(|s| s.ends_with(".>") && !s.contains("event")));
        assert!(!s.contains(&"bsv.regtest.broadcast".to_string()));
    }

    #[test]
    fn event_kinds_become_safe_subject_tokens() {
        assert_eq!(token("connection_lost"), "connection_lost");
        assert_eq!(token("a.b *>"), "a_b___");
        assert_eq!(token(""), "event");
    }

    #[test]
    fn a_timeout_is_retryable_and_an_oversized_message_is_not() {
        assert!(classify(None, PublishErrorKind::TimedOut, &"timed out").is_retryable());
        assert!(classify(None, PublishErrorKind::StreamNotFound, &"no stream").is_retryable());
        assert!(!classify(
            Some("x"),
            PublishErrorKind::Other,
            &"maximum payload exceeded"
        )
        .is_retryable());
    }
}
