//! The ban listener: one PostgreSQL session that `LISTEN`s on the store's channel and turns
//! each notification into a [`BanNotice`] for the store's subscribers.
//!
//! Every write that bans (the store's `ban_ip`, or `create`/`update` of a banned peer) sends
//! `pg_notify` in the transaction that writes the ban, so a notice is delivered if and only if
//! the ban committed, and only after it did: a subscriber that reads the store on a notice sees
//! the ban. Notices carry the sending store's `origin` id, and a store drops its own.
//!
//! PostgreSQL does not queue notifications for a session that is not connected. When the
//! session breaks, the task reconnects (backing off from [`POSTGRES_LISTEN_RETRY_MIN`] to
//! [`POSTGRES_LISTEN_RETRY_MAX`]), `LISTEN`s again, and then re-announces every ban stamped
//! since shortly before the break ([`POSTGRES_RESYNC_MARGIN_SECS`]), so bans made meanwhile
//! still close connections; some of those may be this instance's own, which a manager applies
//! again harmlessly. The task ends when the last clone of the store is dropped.

use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};
use uuid::Uuid;

use super::{ban_from_columns, BanNotice};
use crate::p2p::limits::{
    POSTGRES_LISTEN_RETRY_MAX, POSTGRES_LISTEN_RETRY_MIN, POSTGRES_RESYNC_MARGIN_SECS,
};
use crate::p2p::peer::{unix_now, BanReason, UnixTime};

/// What a notification's payload holds: the ban, or only its address when the reason was too
/// long for a payload (the listener then reads the ban from the table).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Payload {
    /// The store value that made the ban.
    pub origin: Uuid,
    /// The banned address.
    pub ip: IpAddr,
    /// Why, when it fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<BanReason>,
    /// Until when (with `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<UnixTime>,
}

/// What the listener task needs.
pub(super) struct Listener {
    pub config: Config,
    pub channel: String,
    pub origin: Uuid,
    pub label: Arc<str>,
    pub notices: broadcast::Sender<BanNotice>,
    pub cancel: CancellationToken,
}

impl Listener {
    /// Listens until cancelled, reconnecting whenever the session breaks; starts with `first`,
    /// a session already listening, if given.
    pub(super) async fn run(self, mut first: Option<(Client, mpsc::Receiver<String>)>) {
        let mut delay = POSTGRES_LISTEN_RETRY_MIN;
        // When the previous session broke (None before the first).
        let mut lost_at: Option<UnixTime> = None;
        let mut warned = false;
        loop {
            let session = match first.take() {
                Some(s) => Ok(s),
                None => tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    s = self.listen() => s,
                },
            };
            match session {
                Ok((client, mut notifications)) => {
                    delay = POSTGRES_LISTEN_RETRY_MIN;
                    warned = false;
                    if let Some(since) = lost_at {
                        info!(store = %self.label, "ban listener reconnected");
                        self.resync(&client, since.saturating_sub(POSTGRES_RESYNC_MARGIN_SECS))
                            .await;
                    } else {
                        debug!(store = %self.label, channel = %self.channel, "listening for bans");
                    }
                    loop {
                        let payload = tokio::select! {
                            _ = self.cancel.cancelled() => return,
                            p = notifications.recv() => p,
                        };
                        let Some(payload) = payload else { break };
                        self.deliver(&client, &payload).await;
                    }
                    lost_at = Some(unix_now());
                    warn!(store = %self.label, "ban listener lost its database session; reconnecting");
                }
                Err(error) => {
                    if lost_at.is_none() {
                        // Could not connect at all yet: count from now.
                        lost_at = Some(unix_now());
                    }
                    if !warned {
                        warn!(store = %self.label, %error, "ban listener cannot connect; retrying");
                        warned = true;
                    } else {
                        debug!(store = %self.label, %error, "ban listener cannot connect");
                    }
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(POSTGRES_LISTEN_RETRY_MAX);
        }
    }

    /// Opens a session, forwards its notifications' payloads to a channel, and `LISTEN`s.
    pub(super) async fn listen(
        &self,
    ) -> Result<(Client, mpsc::Receiver<String>), tokio_postgres::Error> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let (tx, rx) = mpsc::channel(crate::p2p::limits::BAN_NOTICE_CAPACITY);
        let label = self.label.clone();
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        tokio::spawn(
            async move {
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(n)) => {
                            if tx.send(n.payload().to_string()).await.is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(error) => {
                            debug!(store = %label, %error, "ban listener session ended");
                            break;
                        }
                    }
                }
            }
            .in_current_span(),
        );
        client
            .batch_execute(&format!("LISTEN {}", self.channel))
            .await?;
        Ok((client, rx))
    }

    /// Hands one notification to the subscribers, unless this store sent it.
    async fn deliver(&self, client: &Client, payload: &str) {
        let payload: Payload = match serde_json::from_str(payload) {
            Ok(p) => p,
            Err(error) => {
                warn!(store = %self.label, %error, "ignoring a malformed ban notification");
                return;
            }
        };
        if payload.origin == self.origin {
            return;
        }
        let notice = match payload.reason {
            Some(reason) => Some(BanNotice {
                ip: payload.ip,
                reason,
                until: payload.until,
            }),
            None => self.read_ban(client, payload.ip).await,
        };
        if let Some(notice) = notice {
            // The reason may carry a peer's text (a user agent) and crossed a database: printable.
            let reason = crate::p2p::text::printable(&notice.reason.to_string());
            info!(store = %self.label, ip = %notice.ip, %reason, "ban made by another instance");
            // No subscriber is not an error: nobody needs the notice then.
            let _ = self.notices.send(notice);
        }
    }

    /// The current ban of `ip` in the table, if any.
    async fn read_ban(&self, client: &Client, ip: IpAddr) -> Option<BanNotice> {
        let rows = client
            .query(
                "SELECT ip, ban_reason, ban_until FROM peers \
                 WHERE ip = $1 AND status = 'banned' ORDER BY status_timestamp DESC LIMIT 1",
                &[&ip.to_string()],
            )
            .await;
        match rows {
            Ok(rows) => rows.first().and_then(|r| self.notice_from_row(r)),
            Err(error) => {
                warn!(store = %self.label, %ip, %error, "reading a ban announced without its reason");
                None
            }
        }
    }

    /// Announces the bans stamped at or after `since`, one per address.
    async fn resync(&self, client: &Client, since: UnixTime) {
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT DISTINCT ON (ip) ip, ban_reason, ban_until FROM peers \
                 WHERE status = 'banned' AND status_timestamp >= $1 \
                 ORDER BY ip, status_timestamp DESC",
                &[&since],
            )
            .await;
        match rows {
            Ok(rows) => {
                let notices: Vec<BanNotice> = rows
                    .iter()
                    .filter_map(|r| self.notice_from_row(r))
                    .collect();
                if !notices.is_empty() {
                    info!(store = %self.label, count = notices.len(), "re-announcing bans made while the listener was disconnected");
                }
                for notice in notices {
                    let _ = self.notices.send(notice);
                }
            }
            Err(error) => {
                warn!(store = %self.label, %error, "reading bans made while the listener was disconnected")
            }
        }
    }

    fn notice_from_row(&self, row: &tokio_postgres::Row) -> Option<BanNotice> {
        match ban_from_columns(row) {
            Ok(notice) => Some(notice),
            Err(error) => {
                warn!(store = %self.label, %error, "ignoring a malformed ban row");
                None
            }
        }
    }
}

/// The payload for a ban: the whole ban when it fits in a notification, else the address only.
pub(super) fn payload(
    origin: Uuid,
    ip: IpAddr,
    reason: &BanReason,
    until: Option<UnixTime>,
) -> String {
    let full = Payload {
        origin,
        ip,
        reason: Some(reason.clone()),
        until,
    };
    match serde_json::to_string(&full) {
        Ok(s) if s.len() <= crate::p2p::limits::POSTGRES_NOTIFY_PAYLOAD_MAX => s,
        _ => {
            let short = Payload {
                origin,
                ip,
                reason: None,
                until: None,
            };
            // Two small fields of types that always serialize.
            serde_json::to_string(&short).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_left_out_of_the_payload() {
        let origin = Uuid::new_v4();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let short = BanReason::Manual {
            note: "spam".into(),
        };
        let p: Payload = serde_json::from_str(&payload(origin, ip, &short, Some(7))).unwrap();
        assert_eq!((p.reason, p.until), (Some(short), Some(7)));
        let long = BanReason::Manual {
            note: "x".repeat(10_000),
        };
        let text = payload(origin, ip, &long, Some(7));
        assert!(text.len() < 200, "{}", text.len());
        let p: Payload = serde_json::from_str(&text).unwrap();
        assert_eq!((p.origin, p.ip, p.reason), (origin, ip, None));
    }
}
