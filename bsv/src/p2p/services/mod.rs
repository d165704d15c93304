//! The services a manager runs on top of its connections: the jobs users come for (follow the
//! chain, fetch blocks, broadcast and receive transactions, learn peers), so that applications
//! need not rebuild them from raw messages.
//!
//! Connections feed one **hub** task through a bounded channel ([`ServiceTx`]): a `PeerUp` when
//! a handshake completes, the messages the services use (in the order the peer sent them), and
//! a `PeerDown` when the connection ends. The channel is lossless: when it is full a connection
//! stops reading its socket, as it does for a lossless subscriber. The hub hands every input to
//! each [`Service`] in turn and ticks them every [`SERVICE_TICK`] for their timeouts and
//! retries. Services keep their state behind their own locks, shared with the public handle an
//! application holds (e.g. `HeaderChain`), so a handle can act at once (send a request through
//! [`Peers`]) and the hub completes it when the answer arrives.
//!
//! Services never write the peer store and never score a peer themselves: they report facts to
//! the supervisor (the store's one writer) and offences to the connection's `PeerProtocol`
//! ([`Peers::penalize`]), which holds the score and makes the ban decision.

pub(crate) mod addrs;
pub(crate) mod blocks;
pub(crate) mod chain;
pub(crate) mod txs;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::trace;
use uuid::Uuid;

use crate::p2p::config::ManagerConfig;
use crate::p2p::connection::link::{Offence, Report};
use crate::p2p::connection::{ConnectionState, Direction, PeerDetails, PeerLink};
use crate::p2p::error::Result;
use crate::p2p::limits::{SERVICE_CHANNEL_CAPACITY, SERVICE_TICK};
use crate::p2p::Message;

/// What connections tell the services.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // Moved once, never stored in bulk beyond the channel.
pub(crate) enum ServiceInput {
    /// A handshake completed: the peer can be asked for things.
    PeerUp {
        /// The connection's peer.
        peer_id: Uuid,
    },
    /// Messages the services use (see [`wants`]), in the order one peer sent them: what one
    /// read of its socket brought, as one item (one wake-up of the hub per read).
    Messages {
        /// The peer that sent them.
        peer_id: Uuid,
        /// The messages.
        messages: Vec<Message>,
    },
    /// A block above the streaming threshold is arriving (docs/GUIDE.md, "Blocks of any
    /// size"): who wants it?
    BlockStream {
        /// The peer sending it.
        peer_id: Uuid,
        /// The stream and the reply.
        offer: blocks::stream::StreamOffer,
    },
    /// A streamed block's payload has ended.
    BlockStreamEnded {
        /// The peer that sent it.
        peer_id: Uuid,
        /// Its hash.
        hash: crate::bitcoin::Hash,
        /// What it was.
        outcome: blocks::stream::StreamOutcome,
    },
    /// The connection ended (sent after its last message).
    PeerDown {
        /// The connection's peer.
        peer_id: Uuid,
    },
}

/// The connections' side of the hub's channel.
#[derive(Debug, Clone)]
pub(crate) struct ServiceTx(
    mpsc::Sender<ServiceInput>,
    /// The bytes of messages queued for the hub (issue 14: bounded by
    /// `limits::SERVICE_CHANNEL_BYTES` as well as by count).
    Arc<crate::p2p::events::MpscBytes>,
);

impl ServiceTx {
    /// Hands `input` to the hub, waiting while its channel is full in messages or in bytes
    /// (the caller's connection stops reading meanwhile). Fails only when the hub has stopped.
    pub(crate) async fn send(&self, input: ServiceInput) -> std::result::Result<(), ()> {
        let size = match &input {
            ServiceInput::Messages { messages, .. } => messages
                .iter()
                .map(crate::p2p::events::message_bytes)
                .fold(0usize, usize::saturating_add),
            _ => 0,
        };
        if size > 0 {
            self.1
                .room_for(&self.0, size, crate::p2p::limits::SERVICE_CHANNEL_BYTES)
                .await?;
        }
        self.0.send(input).await.map_err(|_| ())?;
        if size > 0 {
            self.1.sent(size);
        }
        Ok(())
    }
}

/// Whether any service uses `message`; other messages never reach the hub.
pub(crate) fn wants(message: &Message) -> bool {
    matches!(
        message,
        Message::Headers(_)
            | Message::Inv(_)
            | Message::Block(_)
            | Message::Tx(_)
            | Message::NotFound(_)
            | Message::Reject(_)
            | Message::GetData(_)
            | Message::Addr(_)
    )
}

/// An established connection as the services see it.
#[derive(Debug, Clone)]
pub(crate) struct PeerView {
    /// The peer's id.
    pub peer_id: Uuid,
    /// Its address.
    pub address: SocketAddr,
    /// Who dialled.
    pub direction: Direction,
    /// What it told us (version, start height, relay, fee filter, ...).
    pub details: PeerDetails,
}

/// The manager's live connections, for the services: who is connected and how to reach them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peers {
    links: Arc<Mutex<HashMap<Uuid, PeerLink>>>,
}

impl Peers {
    /// A directory over the manager's map of links.
    pub(crate) fn new(links: Arc<Mutex<HashMap<Uuid, PeerLink>>>) -> Self {
        Peers { links }
    }

    /// The link to one connection, if it is still there.
    pub(crate) fn link(&self, peer_id: Uuid) -> Option<PeerLink> {
        self.links.lock().ok()?.get(&peer_id).cloned()
    }

    /// One established connection.
    pub(crate) fn view(&self, peer_id: Uuid) -> Option<PeerView> {
        view(&self.link(peer_id)?)
    }

    /// Every established connection.
    pub(crate) fn connected(&self) -> Vec<PeerView> {
        let links: Vec<PeerLink> = match self.links.lock() {
            Ok(l) => l.values().cloned().collect(),
            Err(_) => return Vec::new(),
        };
        links.iter().filter_map(view).collect()
    }

    /// Queues `message` for the peer if its send queue has room now; false otherwise (gone,
    /// not established, or slow to read). Never waits.
    pub(crate) fn try_send(&self, peer_id: Uuid, message: &Message) -> bool {
        let Some(link) = self.link(peer_id) else {
            return false;
        };
        match link.try_send_message(message) {
            Ok(queued) => queued,
            Err(e) => {
                trace!(%peer_id, error = %e, "service could not send");
                false
            }
        }
    }

    /// Sends `message`, waiting while the peer's send queue is full.
    pub(crate) async fn send(&self, peer_id: Uuid, message: Message) -> Result<()> {
        let link = self
            .link(peer_id)
            .ok_or(crate::p2p::P2pError::PeerNotFound { peer_id })?;
        link.send_message(message).await
    }

    /// Has the peer's connection score an offence a service found.
    pub(crate) fn penalize(&self, peer_id: Uuid, offence: Offence) {
        if let Some(link) = self.link(peer_id) {
            link.penalize(offence);
        }
    }
}

fn view(link: &PeerLink) -> Option<PeerView> {
    let stats = link.stats();
    if stats.state() != ConnectionState::Connected {
        return None;
    }
    Some(PeerView {
        peer_id: link.peer_id(),
        address: link.address(),
        direction: link.direction(),
        details: stats.details()?,
    })
}

/// One service: reacts to peers coming and going, to their messages, and to the clock. Called
/// from the hub task only, one input at a time; implementations keep their state behind their
/// own lock (shared with their public handle) and must not block.
pub(crate) trait Service: Send + Sync {
    /// A handshake completed.
    fn on_peer_up(&self, _peers: &Peers, _peer: &PeerView) {}
    /// A message from an established peer.
    fn on_message(&self, _peers: &Peers, _peer_id: Uuid, _message: &Message) {}
    /// A connection ended.
    fn on_peer_down(&self, _peers: &Peers, _peer_id: Uuid) {}
    /// Called every [`SERVICE_TICK`]: timeouts and retries.
    fn on_tick(&self, _peers: &Peers, _now: Instant) {}
    /// A streamed block is arriving: take the offer, or give it back for the next service.
    fn on_block_stream(
        &self,
        _peers: &Peers,
        _peer_id: Uuid,
        offer: blocks::stream::StreamOffer,
    ) -> Option<blocks::stream::StreamOffer> {
        Some(offer)
    }
    /// A streamed block's payload ended.
    fn on_block_stream_end(
        &self,
        _peers: &Peers,
        _peer_id: Uuid,
        _hash: &crate::bitcoin::Hash,
        _outcome: &blocks::stream::StreamOutcome,
    ) {
    }
}

/// The hub: the task that feeds every [`Service`].
pub(crate) struct Hub {
    peers: Peers,
    services: Vec<Arc<dyn Service>>,
    rx: mpsc::Receiver<ServiceInput>,
}

impl Hub {
    /// A hub over `peers` and the channel connections will feed.
    pub(crate) fn new(peers: Peers) -> (Hub, ServiceTx) {
        let (tx, rx) = mpsc::channel(SERVICE_CHANNEL_CAPACITY);
        (
            Hub {
                peers,
                services: Vec::new(),
                rx,
            },
            ServiceTx(tx, Arc::default()),
        )
    }

    /// Adds a service; it sees every input from then on.
    pub(crate) fn add(&mut self, service: Arc<dyn Service>) {
        self.services.push(service);
    }

    /// Feeds the services until `cancel` fires or every connection's sender is gone.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(SERVICE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                input = self.rx.recv() => match input {
                    Some(input) => self.dispatch(input),
                    None => break,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    for s in &self.services {
                        s.on_tick(&self.peers, now);
                    }
                }
            }
        }
    }

    fn dispatch(&self, input: ServiceInput) {
        match input {
            ServiceInput::PeerUp { peer_id } => {
                let Some(view) = self.peers.view(peer_id) else {
                    return;
                };
                for s in &self.services {
                    s.on_peer_up(&self.peers, &view);
                }
            }
            ServiceInput::Messages { peer_id, messages } => {
                for message in &messages {
                    for s in &self.services {
                        s.on_message(&self.peers, peer_id, message);
                    }
                }
            }
            ServiceInput::BlockStream { peer_id, offer } => {
                let mut offer = Some(offer);
                for s in &self.services {
                    match offer.take() {
                        Some(o) => offer = s.on_block_stream(&self.peers, peer_id, o),
                        None => break,
                    }
                }
            }
            ServiceInput::BlockStreamEnded {
                peer_id,
                hash,
                outcome,
            } => {
                for s in &self.services {
                    s.on_block_stream_end(&self.peers, peer_id, &hash, &outcome);
                }
            }
            ServiceInput::PeerDown { peer_id } => {
                for s in &self.services {
                    s.on_peer_down(&self.peers, peer_id);
                }
            }
        }
    }
}

/// The manager's services, shared by the hub (which feeds them) and the manager's public
/// methods (which hand out their handles).
#[derive(Clone)]
pub(crate) struct ManagerServices {
    /// Follows the best header chain.
    pub(crate) chain: Arc<chain::ChainService>,
    /// Fetches blocks.
    pub(crate) blocks: Arc<blocks::BlockService>,
    /// Broadcasts and receives transactions.
    pub(crate) txs: Arc<txs::TxService>,
    /// Learns peers from `addr`.
    pub(crate) addrs: Arc<addrs::AddrService>,
}

impl ManagerServices {
    /// The services of a manager configured by `config`.
    pub(crate) fn new(config: &ManagerConfig, peers: Peers, reports: mpsc::Sender<Report>) -> Self {
        ManagerServices {
            chain: Arc::new(chain::ChainService::new(config, peers.clone())),
            blocks: Arc::new(blocks::BlockService::new(config, peers.clone())),
            txs: Arc::new(txs::TxService::new(config, peers.clone())),
            addrs: Arc::new(addrs::AddrService::new(config, peers, reports)),
        }
    }

    /// Has `hub` feed every service.
    pub(crate) fn register(&self, hub: &mut Hub) {
        hub.add(self.chain.clone());
        hub.add(self.blocks.clone());
        hub.add(self.txs.clone());
        hub.add(self.addrs.clone());
    }
}
