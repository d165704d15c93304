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
//! * addresses learned from `addr` (`services::addrs`) become `Unknown` peers only if the store
//!   holds nothing at that address (an existing record, banned, valid or inaccessible, stays as
//!   it is), the IP has no ban, the address is not our listener, and neither the cap on untried
//!   candidates (`addresses.max_candidates`) nor `max_stored_peers` is reached: learning never
//!   makes the store evict anything.
//!
//! Nothing overwrites a ban: status writes check the stored status first, and since this is the
//! only writer, no ban can land between that check and the write.
//!
//! Bans made by other instances sharing the store (a PostgreSQL store, `PeerStore::
//! ban_notifications`) arrive as [`BanNotice`]s: they close this manager's connections from the
//! address through the same path as a ban of ours, but write nothing, since the ban is already
//! stored. The listener refuses the address from then on because it reads bans from the store.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::broadcast;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::Inner;
use crate::p2p::connection::link::Report;
use crate::p2p::connection::Direction;
use crate::p2p::error::Result;
use crate::p2p::events::ControlEvent;
use crate::p2p::peer::{unix_now, BanReason, Peer, PeerStatus, PeerStatusKind};
use crate::p2p::services::addrs::DropReason;
use crate::p2p::store::{BanNotice, BanOutcome};

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
            Report::Learned { source, addresses } => self.learn(source, addresses).await,
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

    /// Creates the learned addresses the store does not know, within the caps.
    async fn learn(&self, source: Uuid, addresses: Vec<SocketAddr>) {
        let config = self.config();
        // Only our own listener matters here. The live connections are not needed, and
        // collecting them cost a pass over every link per `addr` (quadratic as 10,000
        // connections each answered the first `getaddr`).
        let ex = self.own_exclusions();
        let (mut total, mut untried) = match (
            self.store.count().await,
            self.store.count_by_status(PeerStatusKind::Unknown).await,
        ) {
            (Ok(t), Ok(u)) => (t, u),
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "counting peers");
                return;
            }
        };
        let mut learned = 0u64;
        let mut dropped: Vec<(DropReason, u64)> = Vec::new();
        let mut drop = |reason: DropReason| match dropped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => dropped.push((reason, 1)),
        };
        let now = unix_now();
        // Bans cover a whole IP; one read of the (few) banned records, then indexed look-ups.
        let banned: std::collections::HashSet<IpAddr> =
            match self.store.find_by_status(PeerStatusKind::Banned).await {
                Ok(peers) => peers
                    .iter()
                    .filter(|p| p.is_banned_at(now))
                    .map(|p| p.ip)
                    .collect(),
                Err(e) => {
                    warn!(error = %e, "reading bans");
                    return;
                }
            };
        for addr in addresses {
            let own = ex.own.contains(&addr)
                || (ex.own_port == Some(addr.port())
                    && (addr.ip().is_loopback() || addr.ip().is_unspecified()));
            if own {
                drop(DropReason::Own);
                continue;
            }
            match self.store.find_by_ip_port(addr.ip(), addr.port()).await {
                Ok(Some(_)) => {
                    drop(DropReason::Known);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "looking up a learned address");
                    continue;
                }
            }
            if banned.contains(&addr.ip().to_canonical()) {
                drop(DropReason::Banned);
                continue;
            }
            if untried >= config.addresses.max_candidates {
                drop(DropReason::CandidateCap);
                continue;
            }
            if total >= config.max_stored_peers {
                drop(DropReason::StoreFull);
                continue;
            }
            match self.store.create(Peer::new(addr.ip(), addr.port())).await {
                Ok(()) => {
                    learned += 1;
                    total += 1;
                    untried += 1;
                }
                Err(e) => debug!(%addr, error = %e, "storing a learned address"),
            }
        }
        if learned > 0 {
            debug!(%source, learned, "learned peers from addr");
            self.metrics.addresses_learned(learned);
            self.wake.notify_one();
        }
        for (reason, n) in dropped {
            self.metrics.addresses_dropped(reason.as_str(), n);
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
            match self.store.update(peer).await {
                Ok(()) => {}
                // A shared store: another instance banned the peer since it was read.
                Err(crate::p2p::error::P2pError::BanInForce { .. }) => {
                    debug!(%peer_id, "peer was banned meanwhile; status kept")
                }
                Err(e) => warn!(%peer_id, error = %e, "updating peer status"),
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
        self.close_banned(&[peer_id], ip, reason);
        Ok(outcome)
    }

    /// Closes every connection from the banned `ip` and tells subscribers, once per peer id.
    fn close_banned(&self, peer_ids: &[Uuid], ip: IpAddr, reason: BanReason) {
        self.disconnect_ip(ip);
        for &peer_id in peer_ids {
            self.emit(ControlEvent::PeerBanned {
                peer_id,
                ip,
                reason: reason.clone(),
            });
        }
    }

    /// Follows the bans other instances make in the shared store until the manager stops.
    pub(crate) async fn follow_bans(self: Arc<Self>, mut notices: broadcast::Receiver<BanNotice>) {
        loop {
            let notice = tokio::select! {
                _ = self.cancel.cancelled() => break,
                n = notices.recv() => n,
            };
            match notice {
                Ok(notice) => self.on_ban_notice(notice),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(
                        missed,
                        "missed ban notices; checking every connection against the store"
                    );
                    self.recheck_connections().await;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        debug!("stopped following shared bans");
    }

    /// Applies a ban made by another instance: closes this manager's connections from the
    /// address (one `PeerBanned` per closed connection), unless it is whitelisted here. Writes
    /// nothing: the ban is already in the store.
    fn on_ban_notice(&self, notice: BanNotice) {
        let BanNotice { ip, reason, until } = notice;
        // The reason crossed a database from another instance (and may hold a peer's text).
        let shown = crate::p2p::text::printable(&reason.to_string());
        if self.config().whitelist.contains(ip) {
            info!(%ip, reason = %shown, "address banned by another instance is whitelisted here; connections kept");
            return;
        }
        let peer_ids: Vec<Uuid> = self
            .links()
            .iter()
            .filter(|l| l.address().ip() == ip)
            .map(|l| l.peer_id())
            .collect();
        info!(%ip, reason = %shown, ?until, connections = peer_ids.len(), "address banned by another instance");
        self.close_banned(&peer_ids, ip, reason);
    }

    /// After missed notices: closes the connections whose address the store says is banned.
    async fn recheck_connections(&self) {
        let mut ips: Vec<IpAddr> = self.links().iter().map(|l| l.address().ip()).collect();
        ips.sort();
        ips.dedup();
        let now = unix_now();
        for ip in ips {
            let ban = match self.store.find_by_ip(ip).await {
                Ok(peers) => peers.into_iter().find(|p| p.is_banned_at(now)),
                Err(e) => {
                    warn!(%ip, error = %e, "reading bans");
                    continue;
                }
            };
            if let Some(Peer {
                status: PeerStatus::Banned { reason, until },
                ..
            }) = ban
            {
                self.on_ban_notice(BanNotice { ip, reason, until });
            }
        }
    }
}
