//! The tracing output of connections, captured by a test subscriber layer that records each
//! event's level, message, fields and the names and fields of all its enclosing spans.
//!
//! - One connection's life under a [`Manager`] against a simnet node (dial, handshake, a ping,
//!   shutdown): every event the connection emits carries `peer_id`, `peer_address`, `direction`
//!   and `network` from its `peer` span, which lies inside the `manager` span (`network`,
//!   `mode`); handshake lines lie inside the `handshake` span and later lines do not; the
//!   lifecycle lines have the seed's levels.
//! - A node flooding `inv`: hundreds of messages, yet only a handful of lines above TRACE.
//!
//! Real clock (the runs are short); the subscriber is the thread's default and the tests run on
//! a current-thread runtime, so every task of the library and the simnet is captured.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoinsv::p2p::{
    InMemoryPeerStore, Manager, ManagerConfig, Message, Network, PeerClient, PeerClientOptions,
};
use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

type Fields = BTreeMap<String, String>;

/// One captured event.
#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    target: String,
    message: String,
    fields: Fields,
    /// Enclosing spans, innermost first: (name, fields).
    spans: Vec<(String, Fields)>,
}

impl Captured {
    fn span(&self, name: &str) -> Option<&Fields> {
        self.spans.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }
    fn in_span(&self, name: &str) -> bool {
        self.span(name).is_some()
    }
}

#[derive(Default)]
struct Recorder(Fields);

impl Visit for Recorder {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

/// The capturing layer: span fields go into the span's extensions, events into `events`.
#[derive(Clone, Default)]
struct Capture {
    events: Arc<Mutex<Vec<Captured>>>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut r = Recorder::default();
        attrs.record(&mut r);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(r.0);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<Fields>() {
                let mut r = Recorder(std::mem::take(fields));
                values.record(&mut r);
                *fields = r.0;
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut r = Recorder::default();
        event.record(&mut r);
        let message = r.0.remove("message").unwrap_or_default();
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|s| {
                        let fields = s.extensions().get::<Fields>().cloned().unwrap_or_default();
                        (s.name().to_string(), fields)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.events.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message,
            fields: r.0,
            spans,
        });
    }
}

fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let c = Capture::default();
    let subscriber = tracing_subscriber::registry().with(c.clone());
    let guard = tracing::subscriber::set_default(subscriber);
    (c, guard)
}

/// The library's own lines.
fn ours(events: &[Captured]) -> Vec<Captured> {
    events
        .iter()
        .filter(|e| e.target.starts_with("bitcoinsv::"))
        .cloned()
        .collect()
}

#[track_caller]
fn find<'a>(events: &'a [Captured], message: &str) -> &'a Captured {
    events
        .iter()
        .find(|e| e.message == message)
        .unwrap_or_else(|| panic!("no {message:?} line in {events:#?}"))
}

#[tokio::test]
async fn one_connection_life_carries_span_fields_and_seed_levels() {
    let (capture, _guard) = capture();
    let net = SimNet::start(SimNetConfig::default().nodes(1).blocks(2))
        .await
        .unwrap();
    let addr = net.addresses()[0];
    let config = ManagerConfig::new(Network::Regtest);
    let manager = Manager::with_fixed_peers(config, Arc::new(InMemoryPeerStore::new()), vec![addr]);
    manager.start().await.unwrap();
    assert_eq!(
        manager
            .wait_for_connections(1, Duration::from_secs(20))
            .await
            .unwrap(),
        1
    );
    let peer = manager.connected_peers()[0].clone();
    manager
        .send_message(peer.peer_id, Message::Ping(0x5eed))
        .await
        .unwrap();
    // The pong comes back (seen as a TRACE "received" line outside the handshake).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = capture.events.lock().unwrap().iter().any(|e| {
            e.message == "received" && e.fields.get("command").map(String::as_str) == Some("pong")
        });
        if seen {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no pong");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    manager.shutdown().await.unwrap();
    net.shutdown().await;

    let events = ours(&capture.events.lock().unwrap());
    let in_peer: Vec<&Captured> = events.iter().filter(|e| e.in_span("peer")).collect();
    assert!(in_peer.len() >= 8, "too few connection lines: {in_peer:#?}");

    // Every line the connection code emits is inside its `peer` span, with all four fields,
    // and the `peer` span inside the `manager` span.
    for e in &events {
        if e.target.starts_with("bitcoinsv::p2p::connection") {
            assert!(e.in_span("peer"), "outside the peer span: {e:#?}");
        }
    }
    for e in &in_peer {
        let f = e.span("peer").unwrap();
        assert_eq!(f["peer_id"], peer.peer_id.to_string(), "{e:#?}");
        assert_eq!(f["peer_address"], addr.to_string(), "{e:#?}");
        assert_eq!(f["direction"], "outbound", "{e:#?}");
        assert_eq!(f["network"], Network::Regtest.to_string(), "{e:#?}");
        let m = e
            .span("manager")
            .unwrap_or_else(|| panic!("no manager: {e:#?}"));
        assert_eq!(m["network"], Network::Regtest.to_string());
        assert_eq!(m["mode"], "FixedPeerList");
    }
    // The supervisor's own lines are inside the manager span, outside any peer span.
    let dialling = find(&events, "dialling");
    assert_eq!(dialling.level, Level::DEBUG);
    assert!(dialling.in_span("manager") && !dialling.in_span("peer"));

    // Handshake: version and verack, both ways, inside the handshake span; the ping and pong
    // after it outside.
    let msg = |e: &&Captured, dir: &str, cmd: &str| {
        e.message == dir && e.fields.get("command").map(String::as_str) == Some(cmd)
    };
    for (dir, cmd, inside) in [
        ("sending", "version", true),
        ("received", "version", true),
        ("sending", "verack", true),
        ("received", "verack", true),
        ("sending", "ping", false),
        ("received", "pong", false),
    ] {
        let lines: Vec<&&Captured> = in_peer.iter().filter(|e| msg(e, dir, cmd)).collect();
        assert!(!lines.is_empty(), "no {dir} {cmd} line");
        for e in lines {
            assert_eq!(
                e.level,
                Level::TRACE,
                "per-message line above TRACE: {e:#?}"
            );
            assert_eq!(e.in_span("handshake"), inside, "{dir} {cmd}: {e:#?}");
            if inside {
                assert_eq!(e.span("handshake").unwrap()["flow"], "Outbound");
            }
        }
    }

    // The seed's levels for the lifecycle lines.
    let established = find(&events, "connection established");
    assert_eq!(established.level, Level::INFO);
    assert!(established.in_span("handshake"), "{established:#?}");
    assert_eq!(find(&events, "Starting P2P Manager").level, Level::INFO);
    assert_eq!(
        find(&events, "Shutting down P2P Manager").level,
        Level::INFO
    );
    assert!(find(&events, "Shutting down P2P Manager").in_span("manager"));
    for e in events
        .iter()
        .filter(|e| e.message == "connection state changed")
    {
        assert_eq!(e.level, Level::DEBUG, "{e:#?}");
    }
    // A clean run: nothing above INFO from the connection.
    for e in &in_peer {
        assert!(
            e.level != Level::ERROR && e.level != Level::WARN,
            "unexpected warning or error: {e:#?}"
        );
    }
}

#[tokio::test]
async fn a_flooding_peer_does_not_flood_the_log_above_trace() {
    let (capture, _guard) = capture();
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(1)
            .blocks(2)
            .with_misbehaviour(0, Misbehaviour::FloodInv),
    )
    .await
    .unwrap();
    let addr = net.addresses()[0];
    let config = ManagerConfig::new(Network::Regtest);
    let mut client = PeerClient::start(&config, addr, PeerClientOptions::default()).unwrap();
    client.established().await.unwrap();
    let mut received = 0usize;
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while received < 200 {
        match tokio::time::timeout_at(until, client.recv()).await {
            Ok(Some(_)) => received += 1,
            _ => break,
        }
    }
    drop(client);
    net.shutdown().await;
    assert!(received >= 50, "only {received} messages");
    let events = ours(&capture.events.lock().unwrap());
    let traced = events
        .iter()
        .filter(|e| e.message == "received" && e.level == Level::TRACE)
        .count();
    assert!(
        traced >= received,
        "{traced} TRACE lines for {received} messages"
    );
    // tracing orders levels by verbosity: `< TRACE` is DEBUG and above.
    let above_trace = events.iter().filter(|e| e.level < Level::TRACE).count();
    assert!(
        above_trace < 15,
        "{above_trace} lines above TRACE for {received} messages: {:#?}",
        events
            .iter()
            .filter(|e| e.level < Level::TRACE)
            .collect::<Vec<_>>()
    );
}
