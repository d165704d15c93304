//! Broadcast from the bus: a request on `bsv.<network>.broadcast` carries a raw transaction
//! (binary, or its hex as text); the responder broadcasts it through
//! `Manager::broadcast_transaction` and replies with the per-peer report as JSON.
//!
//! Responders of a fleet join one queue group ([`BROADCAST_QUEUE_GROUP`]): NATS hands each
//! request to one of them. Requests are served concurrently (a broadcast waits for its peers'
//! answers, seconds), each in its own task.

use std::sync::Arc;

use async_nats::Client;
use bitcoinsv::bitcoin::{Decode, Network, Transaction};
use bitcoinsv::p2p::text::printable;
use bitcoinsv::p2p::{BroadcastReport, Manager};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::error::NatsError;
use crate::format::{subject, BROADCAST_QUEUE_GROUP};

/// The reply to a broadcast request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastReply {
    /// The transaction's id (absent when the request could not be decoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txid: Option<String>,
    /// Why the broadcast did not happen (undecodable request, manager error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether it returned before its window ended.
    #[serde(default)]
    pub completed_early: bool,
    /// How long it took, in milliseconds.
    #[serde(default)]
    pub elapsed_ms: u64,
    /// Each peer considered, in the order they were sent to.
    #[serde(default)]
    pub peers: Vec<PeerReply>,
}

/// What one peer did with a broadcast transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReply {
    /// The peer's address.
    pub address: String,
    /// The outcome's short name: `relayed_back`, `requested`, `rejected`, `unanswered`,
    /// `skipped_no_relay`, `skipped_fee_filter`, `send_failed`.
    pub outcome: String,
    /// How it was sent (or why not), as text.
    pub delivery: String,
    /// It asked for the transaction.
    pub requested: bool,
    /// It announced the transaction back.
    pub announced_back: bool,
    /// Its reject code, when it rejected the transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_code: Option<u8>,
    /// Its reject reason (printable), when it rejected the transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
}

impl From<&BroadcastReport> for BroadcastReply {
    fn from(r: &BroadcastReport) -> Self {
        BroadcastReply {
            txid: Some(r.txid.to_string()),
            error: None,
            completed_early: r.completed_early,
            elapsed_ms: u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX),
            peers: r
                .peers
                .iter()
                .map(|p| PeerReply {
                    address: p.address.to_string(),
                    outcome: p.kind().to_string(),
                    delivery: printable(&p.delivery.to_string()),
                    requested: p.requested,
                    announced_back: p.announced_back,
                    reject_code: p.rejected.as_ref().map(|j| j.code.to_u8()),
                    reject_reason: p.rejected.as_ref().map(|j| printable(&j.reason)),
                })
                .collect(),
        }
    }
}

impl BroadcastReply {
    fn failed(txid: Option<String>, error: String) -> Self {
        BroadcastReply {
            txid,
            error: Some(error),
            completed_early: false,
            elapsed_ms: 0,
            peers: Vec::new(),
        }
    }
}

/// Decodes a request body: the serialized transaction, or its hex (whitespace trimmed).
fn decode_request(body: &[u8]) -> Result<Transaction, String> {
    if let Ok(tx) = Transaction::decode_exact(body) {
        return Ok(tx);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| "the request is neither a transaction nor its hex".to_string())?;
    let raw = hex::decode(text.trim())
        .map_err(|_| "the request is neither a transaction nor its hex".to_string())?;
    Transaction::decode_exact(&raw).map_err(|e| format!("not a transaction: {e}"))
}

/// Answers broadcast requests on `bsv.<network>.broadcast` until the subscription ends
/// (the returned task is aborted, or the connection closes for good).
pub async fn serve_broadcasts(
    client: Client,
    manager: Arc<Manager>,
    network: Network,
) -> Result<JoinHandle<()>, NatsError> {
    let subject = subject(network, "broadcast");
    let mut requests = client
        .queue_subscribe(subject.clone(), BROADCAST_QUEUE_GROUP.to_string())
        .await
        .map_err(|e| NatsError::js(format!("subscribing to {subject}"), e))?;
    info!(%subject, "answering broadcast requests");
    Ok(tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let Some(reply_to) = request.reply.clone() else {
                warn!("broadcast request without a reply subject: ignored");
                continue;
            };
            let client = client.clone();
            let manager = Arc::clone(&manager);
            tokio::spawn(async move {
                let reply = match decode_request(&request.payload) {
                    Err(e) => BroadcastReply::failed(None, e),
                    Ok(tx) => {
                        let txid = tx.txid().to_string();
                        match manager.broadcast_transaction(tx).await {
                            Ok(report) => {
                                info!(%txid, peers = report.peers.len(), "broadcast from the bus");
                                BroadcastReply::from(&report)
                            }
                            Err(e) => BroadcastReply::failed(Some(txid), e.to_string()),
                        }
                    }
                };
                let body = serde_json::to_vec(&reply).unwrap_or_default();
                if let Err(e) = client.publish(reply_to, Bytes::from(body)).await {
                    warn!(error = %e, "could not send a broadcast reply");
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::decode_request;

    #[test]
    fn a_request_that_is_no_transaction_is_answered_with_an_error() {
        assert!(decode_request(b"hello").is_err());
        assert!(decode_request(b"00").is_err());
    }
}
