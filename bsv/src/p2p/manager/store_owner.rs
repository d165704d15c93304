//! The one writer of the peer store: the supervisor hands every [`Report`] to
//! [`Inner::on_report`], in the order it arrived. Connections only report facts (a handshake
//! completed, the rules call for a ban, the actor ended); what a fact means for the store is
//! decided here:
//! * an outbound handshake marks the dialled (listening) address `Valid`; inbound peers are never
//!   stored, because their source port is not a listening port (docs/PROTOCOL.md §3.3);
//! * a ban bans the IP on every port for `ban_duration` and closes every connection from it; an
//!   IP we only know from inbound connections gets a ban record on port 0, which is never
//!   dialled and is deleted when the ban lapses;
//! * an outbound actor that gave up, timed out or found an obsolete peer or ourselves marks the
//!   address `Inaccessible`.
//!
//! Nothing overwrites a ban: status writes check the stored status first, and since this is the
//! only writer, no ban can land between that check and the write.

use std::net::IpAddr;

use tracing::{debug, info, warn};
use uuid::Uuid;

use super::Inner;
use crate::p2p::connection::link::Report;
use crate::p2p::connection::Direction;
use crate::p2p::error::Result;
use crate::p2p::events::ControlEvent;
use crate::p2p::peer::{unix_now, BanReason, Peer, PeerStatus};
use crate::p2p::store::BanOutcome;

impl Inner {
    /// Applies one fact to the store.
    pub(crate) async fn on_report(&self, report: Report) {
        match report {
            Report::Established {
                peer_id,
                direction: Direction::Outbound,
                ..
            } => self.set_status(peer_id, PeerStatus::Valid).await,
            Report::Established { .. } => {}
            Report::Ban {
                peer_id,
                ip,
                reason,
                ack,
            } => {
                let result = self.ban(peer_id, ip, reason).await;
                if let Some(ack) = ack {
                    let _ = ack.send(result);
                }
            }
            Report::Ended {
                peer_id,
                direction,
                outcome,
            } => {
                if direction == Direction::Outbound {
                    if let Some(status) = outcome.peer_status() {
                        self.set_status(peer_id, status).await;
                    }
                }
            }
        }
    }

    /// Sets a stored peer's status unless it is banned.
    async fn set_status(&self, peer_id: Uuid, status: PeerStatus) {
        let mut peer = match self.store.read(peer_id).await {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                warn!(%peer_id, error = %e, "reading peer from store");
                return;
            }
        };
        if peer.is_banned_at(unix_now()) {
            debug!(%peer_id, %status, "peer is banned; status kept");
            return;
        }
        if peer.set_status(status) {
            if let Err(e) = self.store.update(peer).await {
                warn!(%peer_id, error = %e, "updating peer status");
            }
        }
    }

    /// Bans `ip` for `ban_duration`, closes its connections and tells subscribers.
    async fn ban(&self, peer_id: Uuid, ip: IpAddr, reason: BanReason) -> Result<BanOutcome> {
        let config = self.config();
        let until = unix_now().saturating_add(config.ban_duration.as_secs());
        let outcome = self
            .store
            .ban_ip(ip, reason.clone(), Some(until), &config.whitelist)
            .await;
        let outcome = match outcome {
            Ok(BanOutcome::Banned(peers)) if peers.is_empty() => {
                // Known only from inbound connections: keep the ban as a record of the IP.
                let mut record = Peer::new(ip, 0);
                record.set_status(PeerStatus::Banned {
                    reason: reason.clone(),
                    until: Some(until),
                });
                self.store.create(record.clone()).await?;
                BanOutcome::Banned(vec![record])
            }
            other => other?,
        };
        if matches!(outcome, BanOutcome::Whitelisted) {
            info!(%peer_id, %ip, "peer is whitelisted; not banned");
            return Ok(outcome);
        }
        self.metrics.ban(&reason);
        self.disconnect_ip(ip);
        self.emit(ControlEvent::PeerBanned {
            peer_id,
            ip,
            reason,
        });
        Ok(outcome)
    }
}
