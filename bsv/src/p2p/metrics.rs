//! Metrics through the OpenTelemetry API (cargo feature `metrics`; docs/OBSERVABILITY.md lists
//! every instrument).
//!
//! The library only *records*: it takes its `Meter` from OpenTelemetry's global meter provider
//! when a [`Manager`](crate::p2p::Manager) or [`PeerClient`](crate::p2p::PeerClient) is created,
//! so the application installs a provider first (an OTLP exporter, the Prometheus exporter the
//! CLI serves on `/metrics`, or none: then every instrument is a no-op). Names follow
//! OpenTelemetry's conventions under the `bsv_p2p` prefix; a Prometheus exporter turns
//! `bsv_p2p.messages` into `bsv_p2p_messages_total`.
//!
//! Attribute values come from closed sets so a peer cannot grow the number of series: commands
//! are the known ones plus `*other*`, reasons are enum variant names.
//!
//! Without the feature, [`Metrics`] is an empty type with the same methods, which compile to
//! nothing, and the crate has no OpenTelemetry dependency.

use std::time::Duration;

use crate::p2p::connection::{Direction, DisconnectReason, Misbehavior};
use crate::p2p::peer::BanReason;

/// The instruments one manager (or one lone connection) records into. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    #[cfg(feature = "metrics")]
    inner: Option<std::sync::Arc<imp::Instruments>>,
}

/// A connection's message counts not yet added to the shared counters. Recording into an SDK
/// aggregates each measurement under its attribute set (a hash and a lock per call); at half a
/// million messages a second that cost 18 % of the throughput (docs/BENCHMARKS.md). The
/// connection counts into plain integers instead and flushes every
/// `limits::METRICS_FLUSH_EVERY_MESSAGES` messages or `limits::METRICS_FLUSH_EVERY`, whichever
/// comes first, and when it ends.
#[derive(Debug)]
pub(crate) struct Tally {
    #[cfg(feature = "metrics")]
    counts: [[(u64, u64); crate::p2p::connection::stats::COMMAND_KEYS]; 2],
    #[cfg(feature = "metrics")]
    pending: u32,
    /// When the tally was last flushed (`None`: never, so the first message flushes at once).
    #[cfg(feature = "metrics")]
    last_flush: Option<tokio::time::Instant>,
}

#[cfg(feature = "metrics")]
use crate::p2p::limits::{
    METRICS_FLUSH_EVERY as FLUSH_EVERY, METRICS_FLUSH_EVERY_MESSAGES as FLUSH_EVERY_MESSAGES,
};

impl Tally {
    /// An empty tally.
    pub(crate) fn new() -> Self {
        Tally {
            #[cfg(feature = "metrics")]
            counts: [[(0, 0); crate::p2p::connection::stats::COMMAND_KEYS]; 2],
            #[cfg(feature = "metrics")]
            pending: 0,
            #[cfg(feature = "metrics")]
            last_flush: None,
        }
    }

    /// When the counts recorded since the last flush are due, if there are any: a connection
    /// that goes quiet still shows its last messages within `METRICS_FLUSH_EVERY`.
    pub(crate) fn flush_due(&self) -> Option<tokio::time::Instant> {
        #[cfg(feature = "metrics")]
        if self.pending > 0 {
            return Some(
                self.last_flush
                    .map_or_else(tokio::time::Instant::now, |l| l + FLUSH_EVERY),
            );
        }
        None
    }

    /// Counts a message; true when it is time to flush.
    #[inline]
    pub(crate) fn record(&mut self, _inbound: bool, _command: &str, _bytes: usize) -> bool {
        #[cfg(feature = "metrics")]
        {
            let k = crate::p2p::connection::stats::command_index(_command);
            let d = usize::from(!_inbound);
            if let Some(c) = self.counts.get_mut(d).and_then(|c| c.get_mut(k)) {
                c.0 += 1;
                c.1 += _bytes as u64;
            }
            self.pending += 1;
            if self.pending >= FLUSH_EVERY_MESSAGES {
                return true;
            }
            let now = tokio::time::Instant::now();
            if self
                .last_flush
                .is_none_or(|l| now.saturating_duration_since(l) >= FLUSH_EVERY)
            {
                return true;
            }
        }
        false
    }
}

/// The instrumentation scope name, and the prefix of every instrument.
pub const METER_NAME: &str = "bsv_p2p";

impl Metrics {
    /// Instruments from the global meter provider as it is now (a no-op set when the feature is
    /// off or no provider is installed).
    pub fn from_global() -> Self {
        #[cfg(feature = "metrics")]
        {
            Metrics {
                inner: Some(std::sync::Arc::new(imp::Instruments::new(
                    &opentelemetry::global::meter(METER_NAME),
                ))),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            Metrics::default()
        }
    }

    /// A dial (or an accepted socket) began.
    #[inline]
    pub(crate) fn connection_attempt(&self, _direction: Direction) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.attempts.add(1, &[imp::direction(_direction)]);
        }
    }

    /// A dial or handshake failed, or an established connection ended.
    #[inline]
    pub(crate) fn connection_ended(&self, _reason: &DisconnectReason, _established: bool) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            let attrs = [
                opentelemetry::KeyValue::new("reason", _reason.kind()),
                opentelemetry::KeyValue::new("established", _established),
            ];
            i.ends.add(1, &attrs);
        }
    }

    /// An outbound connection restarted after a drop.
    #[inline]
    pub(crate) fn restart(&self) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.restarts.add(1, &[]);
        }
    }

    /// A handshake completed after `took`.
    #[inline]
    pub(crate) fn handshake(&self, _took: Duration, _direction: Direction) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.handshake
                .record(_took.as_secs_f64(), &[imp::direction(_direction)]);
        }
    }

    /// A ping round trip.
    #[inline]
    pub(crate) fn rtt(&self, _rtt: Duration) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.rtt.record(_rtt.as_secs_f64(), &[]);
        }
    }

    /// A peer broke a rule.
    #[inline]
    pub(crate) fn misbehavior(&self, _offence: Misbehavior) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.misbehavior.add(
                1,
                &[opentelemetry::KeyValue::new(
                    "reason",
                    _offence.node_reason(),
                )],
            );
        }
    }

    /// An IP was banned.
    #[inline]
    pub(crate) fn ban(&self, _reason: &BanReason) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.bans
                .add(1, &[opentelemetry::KeyValue::new("reason", _reason.kind())]);
        }
    }

    /// Adds a connection's tally of messages to the shared counters and empties it.
    pub(crate) fn flush(&self, _tally: &mut Tally) {
        #[cfg(feature = "metrics")]
        {
            for (d, counts) in _tally.counts.iter_mut().enumerate() {
                for (k, (messages, bytes)) in counts.iter_mut().enumerate() {
                    if *messages == 0 {
                        continue;
                    }
                    if let Some(i) = &self.inner {
                        let attrs = [
                            opentelemetry::KeyValue::new(
                                "direction",
                                if d == 0 { "in" } else { "out" },
                            ),
                            opentelemetry::KeyValue::new(
                                "command",
                                crate::p2p::connection::stats::command_at(k),
                            ),
                        ];
                        i.messages.add(*messages, &attrs);
                        i.bytes.add(*bytes, &attrs);
                    }
                    *messages = 0;
                    *bytes = 0;
                }
            }
            // Emptied even without instruments, so a due flush never stays due.
            _tally.pending = 0;
            _tally.last_flush = Some(tokio::time::Instant::now());
        }
    }

    /// A broadcast subscriber of `channel` is about to lose its oldest event.
    #[inline]
    pub(crate) fn broadcast_overflow(&self, _channel: &'static str) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.overflow
                .add(1, &[opentelemetry::KeyValue::new("channel", _channel)]);
        }
    }

    /// Entries of `addr` messages arrived (peer learning).
    #[inline]
    pub(crate) fn addresses_received(&self, _n: u64) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.addresses
                .add(_n, &[opentelemetry::KeyValue::new("outcome", "received")]);
        }
    }

    /// Addresses learned: new candidate peers in the store.
    #[inline]
    pub(crate) fn addresses_learned(&self, _n: u64) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.addresses
                .add(_n, &[opentelemetry::KeyValue::new("outcome", "learned")]);
        }
    }

    /// `addr` entries not learned, by reason (a closed set of names).
    #[inline]
    pub(crate) fn addresses_dropped(&self, _reason: &'static str, _n: u64) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.addresses.add(
                _n,
                &[
                    opentelemetry::KeyValue::new("outcome", "dropped"),
                    opentelemetry::KeyValue::new("reason", _reason),
                ],
            );
        }
    }

    /// A connection waited for room in a lossless subscriber.
    #[inline]
    pub(crate) fn backpressure(&self) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.backpressure.add(1, &[]);
        }
    }

    /// `get_block` returned a verified block of `_bytes` serialized bytes.
    #[inline]
    pub(crate) fn block_fetched(&self, _bytes: usize) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.blocks_fetched.add(1, &[]);
            i.block_bytes.add(_bytes as u64, &[]);
        }
    }

    /// A block-fetch attempt failed for `_reason` (`AttemptOutcome::kind`).
    #[inline]
    pub(crate) fn block_fetch_failed(&self, _reason: &'static str) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.block_failures
                .add(1, &[opentelemetry::KeyValue::new("reason", _reason)]);
        }
    }

    /// One peer's outcome in a transaction broadcast (`PeerOutcome::kind`).
    #[inline]
    pub(crate) fn broadcast_outcome(&self, _outcome: &'static str) {
        #[cfg(feature = "metrics")]
        if let Some(i) = &self.inner {
            i.broadcasts
                .add(1, &[opentelemetry::KeyValue::new("outcome", _outcome)]);
        }
    }

    /// Registers the manager's gauges: `connections` reads the live connections as
    /// (state, direction) pairs, `peers` the peer counts by status; both are called at each
    /// collection.
    #[allow(unused_variables)]
    pub(crate) fn register_gauges(
        &self,
        connections: impl Fn() -> Vec<(&'static str, Direction)> + Send + Sync + 'static,
        peers: impl Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    ) {
        #[cfg(feature = "metrics")]
        imp::register_gauges(connections, peers);
    }
}

impl Metrics {
    /// Sends on a broadcast channel of `capacity`, counting the send as an overflow when a
    /// subscriber is about to lose its oldest event to it (the channel is full).
    pub(crate) fn send_counted<T: Clone>(
        &self,
        tx: &tokio::sync::broadcast::Sender<T>,
        capacity: usize,
        channel: &'static str,
        value: T,
    ) {
        if tx.receiver_count() > 0 && tx.len() >= capacity {
            self.broadcast_overflow(channel);
        }
        let _ = tx.send(value);
    }
}

#[cfg(feature = "metrics")]
mod imp {
    use opentelemetry::metrics::{Counter, Histogram, Meter};
    use opentelemetry::KeyValue;

    use super::METER_NAME;
    use crate::p2p::connection::Direction;

    pub(super) fn direction(d: Direction) -> KeyValue {
        KeyValue::new("direction", d.as_str())
    }

    #[derive(Debug)]
    pub(super) struct Instruments {
        pub attempts: Counter<u64>,
        pub ends: Counter<u64>,
        pub restarts: Counter<u64>,
        pub handshake: Histogram<f64>,
        pub rtt: Histogram<f64>,
        pub misbehavior: Counter<u64>,
        pub bans: Counter<u64>,
        pub messages: Counter<u64>,
        pub bytes: Counter<u64>,
        pub overflow: Counter<u64>,
        pub backpressure: Counter<u64>,
        pub blocks_fetched: Counter<u64>,
        pub block_bytes: Counter<u64>,
        pub block_failures: Counter<u64>,
        pub broadcasts: Counter<u64>,
        pub addresses: Counter<u64>,
    }

    impl Instruments {
        pub(super) fn new(m: &Meter) -> Self {
            Instruments {
                attempts: m
                    .u64_counter("bsv_p2p.connection.attempts")
                    .with_description("Connections dialled or accepted")
                    .with_unit("{connection}")
                    .build(),
                ends: m
                    .u64_counter("bsv_p2p.connection.ends")
                    .with_description(
                        "Connections that failed or ended, by reason and whether established",
                    )
                    .with_unit("{connection}")
                    .build(),
                restarts: m
                    .u64_counter("bsv_p2p.connection.restarts")
                    .with_description("Outbound connections re-dialled after a drop")
                    .with_unit("{connection}")
                    .build(),
                handshake: m
                    .f64_histogram("bsv_p2p.handshake.duration")
                    .with_description("Time from socket open to handshake complete")
                    .with_unit("s")
                    .with_boundaries(vec![
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        60.0,
                    ])
                    .build(),
                rtt: m
                    .f64_histogram("bsv_p2p.ping.rtt")
                    .with_description("Ping round-trip time")
                    .with_unit("s")
                    .with_boundaries(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ])
                    .build(),
                misbehavior: m
                    .u64_counter("bsv_p2p.misbehavior")
                    .with_description("Rules broken by peers, by the node's reason")
                    .with_unit("{offence}")
                    .build(),
                bans: m
                    .u64_counter("bsv_p2p.bans")
                    .with_description("IPs banned, by reason")
                    .with_unit("{ban}")
                    .build(),
                messages: m
                    .u64_counter("bsv_p2p.messages")
                    .with_description("Messages by direction and command")
                    .with_unit("{message}")
                    .build(),
                bytes: m
                    .u64_counter("bsv_p2p.network.io")
                    // Named after OpenTelemetry's `system.network.io` (a `bsv_p2p.bytes` in
                    // bytes would be `bsv_p2p_bytes_bytes_total` in Prometheus).
                    .with_description("Bytes on the wire (frame headers included)")
                    .with_unit("By")
                    .build(),
                overflow: m
                    .u64_counter("bsv_p2p.events.dropped")
                    .with_description(
                        "Broadcast sends that pushed out a slow subscriber's oldest event",
                    )
                    .with_unit("{event}")
                    .build(),
                backpressure: m
                    .u64_counter("bsv_p2p.backpressure.waits")
                    .with_description(
                        "Times a connection stopped reading until a lossless subscriber had room",
                    )
                    .with_unit("{wait}")
                    .build(),
                blocks_fetched: m
                    .u64_counter("bsv_p2p.blocks.fetched")
                    .with_description("Blocks fetched and verified by get_block")
                    .with_unit("{block}")
                    .build(),
                block_bytes: m
                    .u64_counter("bsv_p2p.blocks.fetched.size")
                    .with_description("Serialized bytes of the blocks get_block fetched")
                    .with_unit("By")
                    .build(),
                block_failures: m
                    .u64_counter("bsv_p2p.blocks.fetch_failures")
                    .with_description("Failed block-fetch attempts, by reason")
                    .with_unit("{attempt}")
                    .build(),
                broadcasts: m
                    .u64_counter("bsv_p2p.tx.broadcast.peers")
                    .with_description("Per-peer outcomes of transaction broadcasts")
                    .with_unit("{peer}")
                    .build(),
                addresses: m
                    .u64_counter("bsv_p2p.addresses")
                    .with_description(
                        "addr entries received, learned as candidate peers, or dropped by reason",
                    )
                    .with_unit("{address}")
                    .build(),
            }
        }
    }

    pub(super) fn register_gauges(
        connections: impl Fn() -> Vec<(&'static str, Direction)> + Send + Sync + 'static,
        peers: impl Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    ) {
        let m = opentelemetry::global::meter(METER_NAME);
        m.u64_observable_gauge("bsv_p2p.connections")
            .with_description("Live connections by state and direction")
            .with_unit("{connection}")
            .with_callback(move |o| {
                let mut counts: std::collections::BTreeMap<(&'static str, &'static str), u64> =
                    std::collections::BTreeMap::new();
                for (state, d) in connections() {
                    *counts.entry((state, d.as_str())).or_default() += 1;
                }
                for ((state, d), n) in counts {
                    o.observe(
                        n,
                        &[KeyValue::new("state", state), KeyValue::new("direction", d)],
                    );
                }
            })
            .build();
        m.u64_observable_gauge("bsv_p2p.peers")
            .with_description("Peers in the store by status")
            .with_unit("{peer}")
            .with_callback(move |o| {
                for (status, n) in peers() {
                    o.observe(n, &[KeyValue::new("status", status)]);
                }
            })
            .build();
    }
}
