//! The manager: owns the connection pool and keeps it healthy (SPEC §7).
//!
//! Tasks it runs, all tracked so that [`Manager::shutdown`] returns only when every one has
//! ended (and all of them stop when the manager is dropped):
//! * the **supervisor**, which decides whom to dial (Normal mode: up to `target_connections`,
//!   `Valid` peers first, then `Unknown`; Fixed mode: exactly the given peers), reacts to bans,
//!   lifts expired bans, saves the store every `save_interval` and runs DNS discovery;
//! * the **listener** (optional), which admits or refuses inbound sockets;
//! * one **monitor** per connection actor, which frees the connection's slot and wakes the
//!   supervisor when the actor ends.
//!
//! Connections hold a slot (see `slots`) reserved before they are admitted, which is how
//! `max_connections` holds under any inbound flood. The supervisor is the only writer of the
//! [`PeerStore`]: connections report facts on a channel and the supervisor applies them in order
//! (`store_owner`), so a ban is never overtaken by a later status write.

mod evict;
mod listener;
pub(crate) mod pool;
pub(crate) mod slots;
mod store_owner;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, trace, warn, Instrument};
use uuid::Uuid;

use crate::p2p::config::ManagerConfig;
use crate::p2p::connection::link::{ConnectionContext, Report};
use crate::p2p::connection::{
    ConnectionSnapshot, ConnectionState, Direction, NonceRegistry, PeerConnection, PeerHandle,
    PeerLink,
};
use crate::p2p::error::{P2pError, Result};
use crate::p2p::events::{
    BitcoinMessageEvent, ByteBoundedBroadcast, ControlEvent, MessageSinks, PeerConnectionCommand,
};
use crate::p2p::limits::{
    BAN_EXPIRY_EVERY, REEVALUATE_EVERY, REPORT_CHANNEL_CAPACITY, SHUTDOWN_GRACE, STORE_SAVE_RETRY,
};
use crate::p2p::metrics::Metrics;
use crate::p2p::peer::{unix_now, BanReason, Peer, PeerStatus, PeerStatusKind};
use crate::p2p::services::{Hub, ManagerServices, Peers, ServiceInput, ServiceTx};
use crate::p2p::store::PeerStore;
use crate::p2p::Message;
use pool::{select_candidates, Exclusions};
use slots::{Slot, Slots};

/// Applies a new log level (e.g. a `tracing_subscriber::reload` handle's `modify`), so that
/// `update_config` can change `log_level` at run time. The application installs it with
/// [`Manager::set_log_level_handler`], since only it owns the subscriber.
pub type LogLevelHandler = Box<dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync>;

/// How the manager picks its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Discover peers and keep `target_connections` outbound.
    Normal,
    /// Connect only to these peers and keep them connected.
    Fixed(Vec<SocketAddr>),
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Normal => "Normal",
            Mode::Fixed(_) => "FixedPeerList",
        }
    }
}

pub(crate) struct Inner {
    config: RwLock<ManagerConfig>,
    store: Arc<dyn PeerStore>,
    control_tx: broadcast::Sender<ControlEvent>,
    /// What connections are given as their broadcast sender: it has no receiver, so a send on
    /// it is dropped at once. The message stream goes through `sinks`, which bounds the lossy
    /// channel (`messages`) in bytes as well as in count (docs/SECURITY.md).
    message_tx: broadcast::Sender<BitcoinMessageEvent>,
    /// The lossy message stream, bounded in bytes (`limits.message_channel_bytes`).
    messages: Arc<ByteBoundedBroadcast<BitcoinMessageEvent>>,
    sinks: MessageSinks,
    /// When the listener accepted each live inbound connection (for eviction).
    inbound: Mutex<HashMap<Uuid, Instant>>,
    /// The secret of the eviction's netgroup hash (`evict`).
    evict_key: std::collections::hash_map::RandomState,
    links: Arc<Mutex<HashMap<Uuid, PeerLink>>>,
    /// The services' hub until `start` spawns it; then `None`.
    hub: Mutex<Option<Hub>>,
    /// Where connections feed the services.
    services_tx: ServiceTx,
    /// What every streamed block of this manager's connections may queue together.
    stream_budget: crate::p2p::services::blocks::stream::StreamBudget,
    /// The services, for the public handles.
    pub(crate) services: ManagerServices,
    slots: Slots,
    nonces: NonceRegistry,
    cancel: CancellationToken,
    wake: Notify,
    tracker: TaskTracker,
    mode: Mode,
    listener: Mutex<Option<(SocketAddr, CancellationToken)>>,
    /// Fixed mode: when a peer that gave up may be dialled again.
    retry_at: Mutex<HashMap<SocketAddr, Instant>>,
    log_level: Mutex<Option<LogLevelHandler>>,
    discovery: Mutex<Option<crate::p2p::discovery::DnsDiscovery>>,
    /// Facts for the store, from connections and the manager's own tasks.
    reports_tx: mpsc::Sender<Report>,
    /// The supervisor takes this when it starts.
    reports_rx: Mutex<Option<mpsc::Receiver<Report>>>,
    metrics: Metrics,
    /// Peers in the store by status, refreshed by the supervisor, read by the metrics gauge.
    peer_counts: Mutex<Vec<(&'static str, u64)>>,
    /// The `manager` span (`network`, `mode`): entered by every task the manager runs, so it is
    /// the parent of every connection's `peer` span.
    span: tracing::Span,
}

impl Inner {
    fn config(&self) -> ManagerConfig {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    fn emit(&self, e: ControlEvent) {
        let capacity = self.config().event_channel_capacity.max(1);
        self.metrics
            .send_counted(&self.control_tx, capacity, "control", e);
    }

    /// Refreshes the peer counts the `bsv_p2p.peers` gauge reports.
    async fn count_peers_by_status(&self) {
        let mut counts = Vec::with_capacity(PeerStatusKind::ALL.len());
        for kind in PeerStatusKind::ALL {
            match self.store.count_by_status(kind).await {
                Ok(n) => counts.push((kind.as_str(), n as u64)),
                Err(e) => {
                    debug!(error = %e, "counting peers");
                    return;
                }
            }
        }
        if let Ok(mut c) = self.peer_counts.lock() {
            *c = counts;
        }
    }

    fn context(&self) -> Option<ConnectionContext> {
        let config = self.config();
        match ConnectionContext::new(&config, self.control_tx.clone(), self.message_tx.clone()) {
            Ok(mut ctx) => {
                ctx.reports = Some(self.reports_tx.clone());
                ctx.metrics = self.metrics.clone();
                ctx.nonces = self.nonces.clone();
                ctx.sinks = self.sinks.clone();
                ctx.services = Some(self.services_tx.clone());
                ctx.streaming = Some(crate::p2p::connection::link::Streaming {
                    config: config.block_streaming.clone(),
                    budget: self.stream_budget.clone(),
                    offers: None,
                });
                ctx.ask_for_addresses = self.mode == Mode::Normal && config.addresses.learn;
                Some(ctx)
            }
            Err(e) => {
                error!(error = %e, "cannot build connection settings");
                None
            }
        }
    }

    fn links(&self) -> Vec<PeerLink> {
        self.links
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Registers a running actor and watches it end.
    fn track(self: &Arc<Self>, handle: PeerHandle, slot: Option<Slot>) {
        let link = handle.link();
        let id = link.peer_id();
        let addr = link.address();
        let direction = link.direction();
        if let Ok(mut l) = self.links.lock() {
            l.insert(id, link);
        }
        let inner = self.clone();
        let span = self.span.clone();
        self.tracker.spawn(
            async move {
            let outcome = handle.join().await;
            drop(slot);
            if let Ok(mut l) = inner.links.lock() {
                l.remove(&id);
            }
            if let Ok(mut m) = inner.inbound.lock() {
                m.remove(&id);
            }
            debug!(peer_id = %id, peer_address = %addr, state = %outcome.state, error = %outcome.reason, "connection ended");
            let failed = outcome.state == ConnectionState::Failed;
            // After the connection's last message, so a service never hears of a peer again.
            // Both sends are boxed: they run once, at the end, but inline they would size the
            // monitor task that every live connection keeps (docs/BENCHMARKS.md, "10,000
            // connections").
            let _ = Box::pin(
                inner
                    .services_tx
                    .send(ServiceInput::PeerDown { peer_id: id }),
            )
            .await;
            // Fails at once if the supervisor has stopped: nothing is waiting for the fact then.
            let _ = Box::pin(inner.reports_tx.send(Report::Ended {
                peer_id: id,
                direction,
                outcome,
            }))
            .await;
            if let Mode::Fixed(_) = inner.mode {
                if failed {
                    let delay = inner.config().connection.max_backoff;
                    if let Ok(mut r) = inner.retry_at.lock() {
                        r.insert(addr, Instant::now() + delay);
                    }
                }
            }
            inner.wake.notify_one();
        }
            .instrument(span),
        );
    }

    fn connected_count(&self) -> usize {
        self.links()
            .iter()
            .filter(|l| l.stats().state() == ConnectionState::Connected)
            .count()
    }

    /// Connections that count towards the target: established ones, and outbound ones being
    /// dialled or handshaken (not those waiting out a backoff).
    fn active_count(&self) -> usize {
        self.links()
            .iter()
            .filter(|l| match l.stats().state() {
                ConnectionState::Connected => true,
                ConnectionState::Connecting | ConnectionState::AwaitingHandshake => {
                    l.direction() == Direction::Outbound
                }
                _ => false,
            })
            .count()
    }

    fn exclusions(&self) -> Exclusions {
        let mut ex = self.own_exclusions();
        for l in self.links() {
            ex.connected.insert(l.address());
        }
        ex
    }

    /// Our own listener only, without the live connections (which cost a pass over every link
    /// to collect).
    fn own_exclusions(&self) -> Exclusions {
        let mut ex = Exclusions::default();
        if let Ok(Some((addr, _))) = self.listener.lock().as_deref() {
            ex.own.insert(*addr);
            if addr.ip().is_unspecified() || addr.ip().is_loopback() {
                ex.own_port = Some(addr.port());
            }
        }
        ex
    }

    async fn evaluate(self: &Arc<Self>) {
        if self.cancel.is_cancelled() {
            return;
        }
        let config = self.config();
        match &self.mode {
            Mode::Normal => {
                let active = self.active_count();
                if active >= config.target_connections {
                    return;
                }
                let want = config.target_connections - active;
                let peers = match self.store.list_all().await {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(error = %e, "reading peers");
                        return;
                    }
                };
                let picks = select_candidates(
                    peers,
                    &self.exclusions(),
                    unix_now(),
                    config.inaccessible_retry_delay,
                    want,
                );
                if !picks.is_empty() {
                    debug!(
                        active,
                        target = config.target_connections,
                        dialling = picks.len(),
                        "filling the pool"
                    );
                }
                for peer in picks {
                    if !self.dial(peer, &config) {
                        break;
                    }
                }
            }
            Mode::Fixed(addrs) => {
                let ex = self.exclusions();
                let now = Instant::now();
                for addr in addrs {
                    if ex.connected.contains(addr) {
                        continue;
                    }
                    if self
                        .retry_at
                        .lock()
                        .map(|r| r.get(addr).is_some_and(|t| *t > now))
                        .unwrap_or(false)
                    {
                        continue;
                    }
                    let peer = match self.store.find_by_ip_port(addr.ip(), addr.port()).await {
                        Ok(Some(p)) => p,
                        _ => {
                            let p = Peer::new(addr.ip(), addr.port());
                            let _ = self.store.create(p.clone()).await;
                            p
                        }
                    };
                    if matches!(peer.status, PeerStatus::Banned { .. }) {
                        continue;
                    }
                    if !self.dial(peer, &config) {
                        break;
                    }
                }
            }
        }
    }

    /// Starts an outbound connection if a slot is free.
    fn dial(self: &Arc<Self>, peer: Peer, config: &ManagerConfig) -> bool {
        let Some(slot) = self.slots.try_reserve(config.max_connections) else {
            debug!(
                max_connections = config.max_connections,
                "no free slot for an outbound connection"
            );
            return false;
        };
        let Some(ctx) = self.context() else {
            return false;
        };
        debug!(peer_id = %peer.id, peer_address = %peer.socket_addr(), "dialling");
        let handle = PeerConnection::outbound(peer, ctx);
        self.track(handle, Some(slot));
        true
    }

    fn disconnect_ip(&self, ip: IpAddr) -> usize {
        let mut n = 0;
        for l in self.links() {
            if l.address().ip() == ip {
                info!(peer_id = %l.peer_id(), peer_address = %l.address(), "disconnecting banned peer");
                l.disconnect();
                n += 1;
            }
        }
        n
    }

    async fn expire_bans(&self) {
        match self.store.expire_bans(unix_now()).await {
            Ok(peers) => {
                for record in peers.iter().filter(|p| p.port == 0) {
                    if let Err(e) = self.store.delete(record.id).await {
                        warn!(error = %e, "deleting a lapsed ban record");
                    }
                }
                let mut ips: Vec<IpAddr> = peers.iter().map(|p| p.ip).collect();
                ips.sort();
                ips.dedup();
                for ip in ips {
                    info!(%ip, "ban expired");
                    self.emit(ControlEvent::PeerUnbanned { ip });
                }
            }
            Err(e) => warn!(error = %e, "lifting expired bans"),
        }
    }

    /// Saves the store; on failure (a full disk, a read-only file) logs it, tells subscribers
    /// ([`ControlEvent::StoreSaveFailed`]) and returns `false` so the supervisor retries after
    /// [`STORE_SAVE_RETRY`] instead of a whole `save_interval`. The manager carries on.
    async fn save(&self) -> bool {
        match self.store.flush().await {
            Ok(()) => true,
            Err(e) => {
                error!(error = %e, "saving the peer store failed; will retry");
                self.emit(ControlEvent::StoreSaveFailed {
                    error: e.to_string(),
                });
                false
            }
        }
    }

    async fn discover(&self) {
        let discovery = self.discovery.lock().ok().and_then(|d| d.clone());
        if let Some(d) = discovery {
            let report = d.discover(self.store.as_ref()).await;
            debug!(?report, "discovery finished");
        }
    }

    async fn start_listener(self: &Arc<Self>) {
        let config = self.config();
        if !config.enable_listener {
            return;
        }
        let addr = SocketAddr::new(config.listener_address, config.listener_port);
        match listener::bind(addr) {
            Ok(l) => {
                let local = l.local_addr().unwrap_or(addr);
                let cancel = self.cancel.child_token();
                if let Ok(mut g) = self.listener.lock() {
                    *g = Some((local, cancel.clone()));
                }
                info!(address = %local, "listening for inbound peers");
                self.tracker
                    .spawn(listener::run(self.clone(), l, cancel).instrument(self.span.clone()));
            }
            Err(e) => {
                error!(address = %addr, error = %e, "cannot bind the listener; continuing with outbound connections only");
                self.emit(ControlEvent::ListenerBindFailed {
                    address: addr,
                    error: e.to_string(),
                });
            }
        }
    }

    fn stop_listener(&self) {
        if let Ok(mut g) = self.listener.lock() {
            if let Some((_, cancel)) = g.take() {
                cancel.cancel();
            }
        }
    }

    async fn supervise(self: Arc<Self>) {
        let Some(mut reports) = self.reports_rx.lock().ok().and_then(|mut r| r.take()) else {
            error!("supervisor started twice");
            return;
        };
        let config = self.config();
        let mut next_save = Instant::now() + config.save_interval;
        let mut next_dns = Instant::now() + config.dns_discovery_interval;
        let mut next_expiry = Instant::now() + BAN_EXPIRY_EVERY;
        loop {
            self.evaluate().await;
            self.count_peers_by_status().await;
            let now = Instant::now();
            if now >= next_expiry {
                self.expire_bans().await;
                next_expiry = now + BAN_EXPIRY_EVERY;
            }
            if now >= next_save {
                let interval = self.config().save_interval;
                next_save = if self.save().await {
                    now + interval
                } else {
                    now + interval.min(STORE_SAVE_RETRY)
                };
            }
            if self.mode == Mode::Normal && now >= next_dns {
                self.discover().await;
                next_dns = now + self.config().dns_discovery_interval;
            }
            let sleep_until = (now + REEVALUATE_EVERY).min(next_save).min(next_expiry);
            tokio::select! {
                biased;
                Some(report) = reports.recv() => {
                    self.on_report(report).await;
                    // Apply every fact already queued before deciding whom to dial.
                    while let Ok(report) = reports.try_recv() {
                        self.on_report(report).await;
                    }
                }
                _ = self.cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(sleep_until) => {}
            }
        }
        // Facts already reported (a ban just before shutdown) still reach the store.
        while let Ok(report) = reports.try_recv() {
            self.on_report(report).await;
        }
        debug!("supervisor stopped");
    }
}

/// The connection manager: the seed's API plus what a user needs to run one.
pub struct Manager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("mode", &self.inner.mode)
            .finish()
    }
}

impl Manager {
    /// A manager in Normal mode: discover peers and keep `target_connections` of them.
    pub fn new(config: ManagerConfig, peer_store: Arc<dyn PeerStore>) -> Self {
        Self::build(config, peer_store, Mode::Normal)
    }

    /// A manager in Fixed Peer List mode: connect only to `peers` and keep them connected.
    pub fn with_fixed_peers(
        config: ManagerConfig,
        peer_store: Arc<dyn PeerStore>,
        peers: Vec<SocketAddr>,
    ) -> Self {
        Self::build(config, peer_store, Mode::Fixed(peers))
    }

    fn build(config: ManagerConfig, store: Arc<dyn PeerStore>, mode: Mode) -> Self {
        let span = tracing::info_span!("manager", network = %config.network, mode = mode.name());
        let _entered = span.enter();
        info!(
            network = %config.network,
            target_connections = config.target_connections,
            max_connections = config.max_connections,
            mode = mode.name(),
            "Creating P2P Manager in {} mode",
            mode.name()
        );
        let capacity = config.event_channel_capacity.max(1);
        let (control_tx, _) = broadcast::channel(capacity);
        // Without a receiver: connections' own sends on it are dropped (see `Inner::message_tx`).
        let (message_tx, _) = broadcast::channel(1);
        let messages = Arc::new(ByteBoundedBroadcast::new(
            capacity,
            config.limits.message_channel_bytes,
        ));
        let metrics = Metrics::from_global();
        let sinks = MessageSinks::with_broadcast(
            messages.clone(),
            config.limits.lossless_queue_bytes,
            metrics.clone(),
        );
        let (reports_tx, reports_rx) = mpsc::channel(REPORT_CHANNEL_CAPACITY);
        let links = Arc::new(Mutex::new(HashMap::new()));
        let peers = Peers::new(links.clone());
        let (mut hub, services_tx) = Hub::new(peers.clone());
        let services = ManagerServices::new(&config, peers, reports_tx.clone());
        services.register(&mut hub);
        services
            .addrs
            .set_learning(mode == Mode::Normal && config.addresses.learn);
        let stream_budget =
            crate::p2p::services::blocks::stream::StreamBudget::new(config.block_streaming.budget);
        let manager = Manager {
            inner: Arc::new(Inner {
                config: RwLock::new(config),
                store,
                control_tx,
                message_tx,
                messages,
                sinks,
                inbound: Mutex::new(HashMap::new()),
                evict_key: std::collections::hash_map::RandomState::new(),
                links,
                hub: Mutex::new(Some(hub)),
                services_tx,
                stream_budget,
                services,
                slots: Slots::default(),
                nonces: NonceRegistry::default(),
                cancel: CancellationToken::new(),
                wake: Notify::new(),
                tracker: TaskTracker::new(),
                mode,
                listener: Mutex::new(None),
                retry_at: Mutex::new(HashMap::new()),
                log_level: Mutex::new(None),
                discovery: Mutex::new(None),
                reports_tx,
                reports_rx: Mutex::new(Some(reports_rx)),
                metrics,
                peer_counts: Mutex::new(Vec::new()),
                span: span.clone(),
            }),
        };
        let weak = Arc::downgrade(&manager.inner);
        let weak_peers = weak.clone();
        manager.inner.metrics.register_gauges(
            move || {
                weak.upgrade()
                    .map(|i| {
                        i.links()
                            .iter()
                            .map(|l| (l.stats().state().as_str(), l.direction()))
                            .collect()
                    })
                    .unwrap_or_default()
            },
            move || {
                weak_peers
                    .upgrade()
                    .and_then(|i| i.peer_counts.lock().ok().map(|c| c.clone()))
                    .unwrap_or_default()
            },
        );
        manager
    }

    /// Validates the configuration, loads the peer store, starts the listener (if enabled), DNS
    /// discovery (Normal mode) and the supervisor, and returns. Peers connect in the background;
    /// use [`Manager::wait_for_connections`] to wait for them.
    pub async fn start(&self) -> Result<()> {
        let span = self.inner.span.clone();
        self.start_in_span().instrument(span).await
    }

    async fn start_in_span(&self) -> Result<()> {
        let config = self.inner.config();
        config.validate()?;
        info!(
            mode = self.inner.mode.name(),
            target_connections = config.target_connections,
            "Starting P2P Manager"
        );
        match self.inner.store.load().await {
            Ok(n) if n > 0 => info!(peer_count = n, "loaded peers"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "loading the peer store"),
        }
        if self.inner.mode == Mode::Normal && !config.dns_seeds.is_empty() {
            let d = crate::p2p::discovery::DnsDiscovery::from_config(&config);
            if let Ok(mut g) = self.inner.discovery.lock() {
                *g = Some(d);
            }
            // First discovery right away, in the background: a slow DNS must not delay start.
            let inner = self.inner.clone();
            self.inner.tracker.spawn(
                async move {
                    tokio::select! {
                        _ = inner.discover() => inner.wake.notify_one(),
                        _ = inner.cancel.cancelled() => {}
                    }
                }
                .instrument(self.inner.span.clone()),
            );
        }
        if let Some(hub) = self.inner.hub.lock().ok().and_then(|mut h| h.take()) {
            self.inner.tracker.spawn(
                hub.run(self.inner.cancel.clone())
                    .instrument(self.inner.span.clone()),
            );
        }
        // Bans other instances make in a shared store (store_owner::follow_bans).
        if let Some(notices) = self.inner.store.ban_notifications() {
            self.inner.tracker.spawn(
                self.inner
                    .clone()
                    .follow_bans(notices)
                    .instrument(self.inner.span.clone()),
            );
        }
        self.inner.start_listener().await;
        self.inner.tracker.spawn(
            self.inner
                .clone()
                .supervise()
                .instrument(self.inner.span.clone()),
        );
        Ok(())
    }

    /// Stops the listener, disconnects every peer cleanly, saves the store, and returns when
    /// every task the manager started has ended.
    pub async fn shutdown(&self) -> Result<()> {
        let span = self.inner.span.clone();
        self.shutdown_in_span().instrument(span).await
    }

    async fn shutdown_in_span(&self) -> Result<()> {
        info!(
            active_connections = self.inner.connected_count(),
            "Shutting down P2P Manager"
        );
        self.inner.stop_listener();
        self.inner.cancel.cancel();
        for l in self.inner.links() {
            l.disconnect();
        }
        self.inner.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.inner.tracker.wait())
            .await
            .is_err()
        {
            warn!("connections did not close in time");
        }
        let _ = self.inner.save().await;
        Ok(())
    }

    /// Every stored peer.
    pub async fn get_peers(&self) -> Result<Vec<Peer>> {
        let peers = self.inner.store.list_all().await?;
        debug!(peer_count = peers.len(), "listing peers");
        Ok(peers)
    }

    /// Sends `message` to one connected peer, waiting while its send queue is full.
    pub async fn send_message(&self, peer_id: Uuid, message: Message) -> Result<()> {
        trace!(%peer_id, command = message.command(), "sending message");
        let link = self
            .inner
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(&peer_id).cloned());
        let Some(link) = link else {
            warn!(%peer_id, "peer not found");
            return Err(P2pError::PeerNotFound { peer_id });
        };
        link.send_message(message)
            .await
            .inspect_err(|e| warn!(%peer_id, error = %e, "sending failed"))
    }

    /// Sends a `block` to one connected peer with its `len`-byte payload (the serialized block)
    /// read from `body` as it is written, so a block of any size is served without being
    /// loaded (docs/GUIDE.md, "Blocks of any size"). A payload above 0xFFFFFFFF bytes goes in an
    /// `extmsg` frame, refused with [`CodecError::SendOversized`](crate::p2p::CodecError) when the
    /// peer's version is below 70016; a smaller one in a basic frame, which needs the payload's
    /// `checksum` (first 4 bytes of its sha256d; [`Manager::send_block_file`] computes it).
    /// Waits for frames queued before it, then for the write to end (the peer's reading pace);
    /// returns the payload bytes written. A source that ends early ends the connection (a frame
    /// cut short cannot be taken back).
    pub async fn send_block_stream<R>(
        &self,
        peer_id: Uuid,
        body: R,
        len: u64,
        checksum: Option<[u8; 4]>,
    ) -> Result<u64>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
    {
        let link = self
            .inner
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(&peer_id).cloned())
            .ok_or(P2pError::PeerNotFound { peer_id })?;
        let checksum = match checksum {
            Some(c) => c,
            None if len > crate::p2p::limits::MAX_BASIC_PAYLOAD => [0; 4],
            None => return Err(P2pError::ChecksumRequired { length: len }),
        };
        link.send_block_stream(Box::new(body), len, checksum).await
    }

    /// [`Manager::send_block_stream`] from a file holding one serialized block: its length is
    /// the file's, and for a basic frame its checksum is computed first (one pass over the
    /// file, off the async runtime).
    pub async fn send_block_file(&self, peer_id: Uuid, path: &std::path::Path) -> Result<u64> {
        let file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        let checksum = if len > crate::p2p::limits::MAX_BASIC_PAYLOAD {
            None
        } else {
            let p = path.to_path_buf();
            Some(
                tokio::task::spawn_blocking(move || file_checksum(&p))
                    .await
                    .map_err(|e| P2pError::Io(std::io::Error::other(e.to_string())))??,
            )
        };
        self.send_block_stream(peer_id, file, len, checksum).await
    }

    /// Sends `message` to every connected peer; returns how many accepted it. The sends run
    /// concurrently, so a peer that does not read (its send queue full) delays only itself:
    /// the others get the message at once and the call returns when the slowest has it queued
    /// or failed.
    pub async fn broadcast_message(&self, message: Message) -> usize {
        let sends = self
            .inner
            .links()
            .into_iter()
            .filter(|l| l.stats().state() == ConnectionState::Connected)
            .map(|l| {
                let message = message.clone();
                async move { l.send_message(message).await.is_ok() }
            });
        futures::future::join_all(sends)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count()
    }

    /// Bans the peer's IP (every port) for `ban_duration`, disconnects every connection from it,
    /// and stores the ban. Whitelisted addresses are not banned.
    pub async fn ban_peer(&self, peer_id: Uuid, reason: BanReason) -> Result<()> {
        warn!(%peer_id, %reason, "Banning peer");
        // Inbound peers live only in memory, by id; dialled ones are in the store.
        let connected_ip = self
            .inner
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(&peer_id).map(|l| l.address().ip()));
        let ip = match connected_ip {
            Some(ip) => ip,
            None => {
                self.inner
                    .store
                    .read(peer_id)
                    .await?
                    .ok_or(P2pError::PeerNotFound { peer_id })?
                    .ip
            }
        };
        let (ack, done) = tokio::sync::oneshot::channel();
        let report = Report::Ban {
            peer_id,
            ip,
            reason,
            ack: Some(ack),
        };
        let running = self
            .inner
            .reports_rx
            .lock()
            .map(|r| r.is_none())
            .unwrap_or(false);
        if running && !self.inner.cancel.is_cancelled() {
            // Through the supervisor, the store's one writer, in order with every other fact.
            if let Err(mpsc::error::SendError(report)) = self.inner.reports_tx.send(report).await {
                self.inner.on_report(report).await;
            }
        } else {
            self.inner.on_report(report).await;
        }
        match done.await {
            Ok(outcome) => outcome.map(|_| ()),
            Err(_) => Err(P2pError::ChannelClosed {
                channel: "manager supervisor".into(),
            }),
        }
    }

    /// Lifts the ban on the peer's IP.
    pub async fn unban_peer(&self, peer_id: Uuid) -> Result<()> {
        info!(%peer_id, "Unbanning peer");
        let peer = self
            .inner
            .store
            .read(peer_id)
            .await?
            .ok_or(P2pError::PeerNotFound { peer_id })?;
        self.inner.store.unban_ip(peer.ip).await?;
        self.inner.emit(ControlEvent::PeerUnbanned { ip: peer.ip });
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Validates and applies a new configuration atomically: limits apply to future decisions
    /// (lowering `max_connections` drops nothing), connection settings reach every live
    /// connection, listener changes restart the listener, and `log_level` is applied at once
    /// through the handler set with [`Manager::set_log_level_handler`]. An invalid configuration
    /// changes nothing.
    pub async fn update_config(&self, config: ManagerConfig) -> Result<()> {
        config.validate()?;
        if config.network != self.inner.config().network {
            return Err(P2pError::InvalidConfiguration(
                "network cannot change while the manager runs; create a new manager".into(),
            ));
        }
        let old = self.inner.config();
        info!(
            old_target = old.target_connections,
            new_target = config.target_connections,
            old_max = old.max_connections,
            new_max = config.max_connections,
            "Updating configuration"
        );
        if let Ok(mut c) = self.inner.config.write() {
            *c = config.clone();
        }
        self.inner
            .services
            .addrs
            .set_learning(self.inner.mode == Mode::Normal && config.addresses.learn);
        if config.connection != old.connection {
            for l in self.inner.links() {
                let _ = l
                    .command(PeerConnectionCommand::UpdateConfig(
                        config.connection.clone(),
                    ))
                    .await;
            }
        }
        if config.log_level != old.log_level {
            if let Ok(h) = self.inner.log_level.lock() {
                if let Some(h) = h.as_ref() {
                    if let Err(e) = h(&config.log_level) {
                        warn!(error = %e, "applying log level");
                    }
                }
            }
        }
        let listener_changed = config.enable_listener != old.enable_listener
            || config.listener_address != old.listener_address
            || config.listener_port != old.listener_port;
        if listener_changed && !self.inner.cancel.is_cancelled() {
            self.inner.stop_listener();
            self.inner.start_listener().await;
        }
        if let Ok(mut d) = self.inner.discovery.lock() {
            if self.inner.mode == Mode::Normal
                && (config.dns_seeds != old.dns_seeds
                    || config.dns_nameservers != old.dns_nameservers)
            {
                *d = Some(crate::p2p::discovery::DnsDiscovery::from_config(&config));
            }
        }
        self.inner
            .messages
            .set_max_bytes(config.limits.message_channel_bytes);
        self.inner
            .sinks
            .set_lossless_bytes(config.limits.lossless_queue_bytes);
        self.inner.emit(ControlEvent::ConfigUpdated);
        self.inner.wake.notify_one();
        debug!("configuration update complete");
        Ok(())
    }

    /// Installs the function that applies `log_level` changes (see [`LogLevelHandler`]).
    pub fn set_log_level_handler(&self, handler: LogLevelHandler) {
        if let Ok(mut g) = self.inner.log_level.lock() {
            *g = Some(handler);
        }
    }

    /// Lifecycle events (lossy: a slow receiver gets `Lagged`).
    pub fn subscribe_control_events(&self) -> broadcast::Receiver<ControlEvent> {
        self.inner.control_tx.subscribe()
    }

    /// Messages from peers (lossy: a slow receiver gets `Lagged`).
    pub fn subscribe_bitcoin_messages(&self) -> broadcast::Receiver<BitcoinMessageEvent> {
        self.inner.messages.subscribe()
    }

    /// Messages from peers, losslessly: room for `capacity` messages (and
    /// `limits.lossless_queue_bytes`); while it is full, the connections stop reading their
    /// sockets instead of dropping anything. Each connection hands over what one read brought
    /// as one batch ([`MessageReceiver`](crate::p2p::MessageReceiver) gives them out one by one).
    pub fn subscribe_messages_lossless(&self, capacity: usize) -> crate::p2p::MessageReceiver {
        self.inner.sinks.subscribe(capacity)
    }

    /// Statistics of every established connection.
    pub fn connected_peers(&self) -> Vec<ConnectionSnapshot> {
        self.inner
            .links()
            .iter()
            .map(|l| l.stats().snapshot())
            .filter(|s| s.state == ConnectionState::Connected)
            .collect()
    }

    /// Established connections now.
    pub fn connection_count(&self) -> usize {
        self.inner.connected_count()
    }

    /// Waits until at least `n` connections are established; returns the count reached, or an
    /// error after `timeout`.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> Result<usize> {
        let mut events = self.inner.control_tx.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            let count = self.connection_count();
            if count >= n {
                return Ok(count);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(P2pError::Timeout { what: format!("{n} connections (have {count})"), after: timeout });
                }
                _ = events.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// The address the listener is bound to, if it is running.
    pub fn listener_address(&self) -> Option<SocketAddr> {
        self.inner
            .listener
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|(a, _)| *a))
    }

    /// The configuration in force.
    pub fn config(&self) -> ManagerConfig {
        self.inner.config()
    }

    /// The operating mode.
    pub fn mode(&self) -> &Mode {
        &self.inner.mode
    }

    /// The manager's services, for their public methods (`header_chain`, `get_block`, ...),
    /// which live beside each service in `p2p::services`.
    pub(crate) fn services(&self) -> &ManagerServices {
        &self.inner.services
    }

    /// Peers stored with a status of this kind.
    pub async fn count_peers(&self, kind: PeerStatusKind) -> Result<usize> {
        self.inner.store.count_by_status(kind).await
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        // Every task watches this token or a link's; they all end without a shutdown call.
        self.inner.cancel.cancel();
        self.inner.stop_listener();
        for l in self.inner.links() {
            l.disconnect();
        }
    }
}

/// The frame checksum of a file's contents: the first 4 bytes of their sha256d, read in
/// fixed chunks.
fn file_checksum(path: &std::path::Path) -> std::io::Result<[u8; 4]> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; crate::p2p::limits::STREAM_CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    let twice = Sha256::digest(hasher.finalize());
    Ok([twice[0], twice[1], twice[2], twice[3]])
}
