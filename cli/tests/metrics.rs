//! `bsvp2p monitor --metrics-addr` serves the library's metrics in Prometheus' text format on
//! `/metrics` (404 elsewhere), scraped here over HTTP after a scenario on a simnet with
//! connects, a ban, a restart and message traffic, and parsed, family by family. The same run
//! has a `telemetry_endpoint` in its config file: at shutdown monitor flushes its metrics to it
//! over OTLP/HTTP.
//!
//! Real time (monitor is another process); every wait has a bound that only catches hangs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bitcoinsv_simnet::{Misbehaviour, SimNet, SimNetConfig};

/// Bound on every wait: only a hang takes this long.
const WAIT: Duration = Duration::from_secs(60);

/// One sample of the text format: the family's sample name, its labels, its value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape: samples, and the `# TYPE` of each family.
#[derive(Debug, Default)]
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                s.types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    (name.to_string(), parse_labels(body))
                }
            };
            s.samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        s
    }

    /// The sum of the samples named `name` whose labels include every pair of `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                with.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        (!matching.is_empty()).then(|| matching.iter().map(|s| s.value).sum())
    }

    fn get(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.sum(name, with)
            .unwrap_or_else(|| panic!("no sample {name} with {with:?} in\n{:#?}", self.samples))
    }
}

/// `k="v",k2="v2"` with Prometheus' escapes (`\\`, `\"`, `\n`).
fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label {key} is quoted");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// `GET path` over a plain TCP stream: (status code, content type, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// An OTLP/HTTP receiver in a thread: records the request line and body length of each POST,
/// answers 200.
fn otlp_receiver() -> (SocketAddr, mpsc::Receiver<(String, usize)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(sock);
                loop {
                    let mut first = String::new();
                    if r.read_line(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send((first.trim().to_string(), length));
                    let _ = r.get_mut().write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_serves_every_metric_family_after_connects_a_ban_a_restart_and_traffic() {
    // Node 2 claims to be a BCH node: banned by user agent. Distinct IPs, so the ban leaves the
    // other nodes alone.
    let net = SimNet::start(
        SimNetConfig::default()
            .nodes(3)
            .blocks(5)
            .distinct_ips(true)
            .with_misbehaviour(2, Misbehaviour::BchUserAgent),
    )
    .await
    .unwrap();
    let addrs = net.addresses();
    let dir = tempfile::tempdir().unwrap();
    let (otlp, otlp_requests) = otlp_receiver();
    let config = dir.path().join("bsvp2p.toml");
    std::fs::write(
        &config,
        format!("service_name = \"metrics-test\"\ntelemetry_endpoint = \"http://{otlp}\"\n"),
    )
    .unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bsvp2p"));
    cmd.args(["monitor", "--network", "regtest", "--config"])
        .arg(&config)
        .arg("--store")
        .arg(dir.path().join("peers.json"))
        .args(["--metrics-addr", &metrics.to_string()]);
    for a in &addrs {
        cmd.args(["--peer", &a.to_string()]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str, pred: &dyn Fn(&str) -> bool| loop {
        let line = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("monitor output: waiting for {what}"));
        if pred(&line) {
            return line;
        }
    };
    // Connects to nodes 0 and 1, and the ban of node 2.
    let mut connected = 0;
    let mut banned = false;
    let ban_line = format!(" banned {} (", addrs[2].ip());
    while connected < 2 || !banned {
        let line = wait_for("connects and the ban", &|l| {
            l.contains(" connected ") || l.contains(&ban_line)
        });
        if line.contains(&ban_line) {
            banned = true;
        } else {
            connected += 1;
        }
    }
    // A restart: node 1 goes away and comes back; monitor re-dials it.
    net.restart_node(1).await.unwrap();
    wait_for("the restart", &|l| l.contains(" restarting "));
    wait_for("the reconnect", &|l| l.contains(" connected "));
    // Traffic: new blocks are announced (headers, after our sendheaders).
    for _ in 0..3 {
        net.mine_block();
    }

    // Scrape until the figures settle (the announcements arrive, a ping has been answered).
    let started = Instant::now();
    let scrape = loop {
        let (status, content_type, body) =
            tokio::task::spawn_blocking(move || get(metrics, "/metrics"))
                .await
                .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let s = Scrape::parse(&body);
        let settled = s
            .sum(
                "bsv_p2p_messages_total",
                &[("command", "headers"), ("direction", "in")],
            )
            .unwrap_or(0.0)
            >= 3.0
            && s.sum("bsv_p2p_ping_rtt_seconds_count", &[]).unwrap_or(0.0) >= 1.0
            && s.sum("bsv_p2p_connections", &[("state", "connected")]) == Some(2.0);
        if settled {
            break s;
        }
        assert!(
            started.elapsed() < WAIT,
            "the metrics never settled:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Types as Prometheus sees them.
    for (family, kind) in [
        ("bsv_p2p_connections", "gauge"),
        ("bsv_p2p_peers", "gauge"),
        ("bsv_p2p_connection_attempts_total", "counter"),
        ("bsv_p2p_connection_ends_total", "counter"),
        ("bsv_p2p_connection_restarts_total", "counter"),
        ("bsv_p2p_bans_total", "counter"),
        ("bsv_p2p_messages_total", "counter"),
        ("bsv_p2p_network_io_bytes_total", "counter"),
        ("bsv_p2p_handshake_duration_seconds", "histogram"),
        ("bsv_p2p_ping_rtt_seconds", "histogram"),
        ("bsvp2p_monitor_ping_rtt_mean_seconds", "gauge"),
        ("target_info", "gauge"),
    ] {
        assert_eq!(
            scrape.types.get(family).map(String::as_str),
            Some(kind),
            "{family}: {:?}",
            scrape.types
        );
    }
    // The resource: service_name from the config file.
    assert_eq!(
        scrape.get("target_info", &[("service_name", "metrics-test")]),
        1.0
    );
    // Connections: the two good nodes, outbound, connected now.
    assert_eq!(
        scrape.get(
            "bsv_p2p_connections",
            &[("state", "connected"), ("direction", "outbound")]
        ),
        2.0
    );
    // Three nodes dialled, node 1 twice.
    assert!(
        scrape.get(
            "bsv_p2p_connection_attempts_total",
            &[("direction", "outbound")]
        ) >= 4.0
    );
    assert!(scrape.get("bsv_p2p_connection_restarts_total", &[]) >= 1.0);
    // The ban, with its reason, and the banned peer in the store.
    assert!(scrape.get("bsv_p2p_bans_total", &[("reason", "banned_user_agent")]) >= 1.0);
    assert!(scrape.get("bsv_p2p_peers", &[("status", "banned")]) >= 1.0);
    assert!(scrape.get("bsv_p2p_peers", &[("status", "valid")]) >= 2.0);
    // Ends: the banned connection (never established) and node 1's (established).
    assert!(scrape.get("bsv_p2p_connection_ends_total", &[("established", "false")]) >= 1.0);
    assert!(scrape.get("bsv_p2p_connection_ends_total", &[("established", "true")]) >= 1.0);
    // Messages and bytes by direction and command.
    for (command, direction) in [
        ("version", "in"),
        ("version", "out"),
        ("verack", "in"),
        ("verack", "out"),
        ("headers", "in"),
        ("ping", "out"),
        ("pong", "in"),
    ] {
        let with = [("command", command), ("direction", direction)];
        assert!(
            scrape.get("bsv_p2p_messages_total", &with) >= 1.0,
            "{command} {direction}"
        );
        assert!(
            scrape.get("bsv_p2p_network_io_bytes_total", &with) >= 24.0,
            "{command} {direction}: a frame header is 24 bytes"
        );
    }
    assert!(
        scrape.get(
            "bsv_p2p_messages_total",
            &[("command", "version"), ("direction", "out")]
        ) >= 4.0
    );
    // Handshakes: one per established connection (nodes 0 and 1, and 1 again), in seconds.
    let handshakes = scrape.get("bsv_p2p_handshake_duration_seconds_count", &[]);
    assert!(handshakes >= 3.0, "{handshakes}");
    let took = scrape.get("bsv_p2p_handshake_duration_seconds_sum", &[]);
    assert!(took > 0.0 && took < 30.0 * handshakes, "{took}");
    assert_eq!(
        scrape.get(
            "bsv_p2p_handshake_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        handshakes
    );
    // RTT on loopback: well under a second.
    let rtt = scrape.get("bsvp2p_monitor_ping_rtt_mean_seconds", &[]);
    assert!(rtt > 0.0 && rtt < 1.0, "{rtt}");
    // Every sample carries the library's scope, but monitor's own gauge.
    assert!(scrape
        .samples
        .iter()
        .filter(|s| s.name.starts_with("bsv_p2p_"))
        .all(|s| s.labels.get("otel_scope_name").map(String::as_str) == Some("bsv_p2p")));

    // Anything but /metrics is 404.
    let (status, _, _) = tokio::task::spawn_blocking(move || get(metrics, "/other"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, _, _) = tokio::task::spawn_blocking(move || get(metrics, "/"))
        .await
        .unwrap();
    assert_eq!(status, 404);

    // SIGINT: a clean exit, and the metrics flushed to the OTLP endpoint on the way out (the
    // periodic export is a minute away).
    assert!(
        otlp_requests.try_recv().is_err(),
        "no export before shutdown"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "monitor exited with {exit:?}");
    let (request, length) = otlp_requests
        .recv_timeout(Duration::from_secs(5))
        .expect("an OTLP export at shutdown");
    assert_eq!(request, "POST /v1/metrics HTTP/1.1");
    assert!(length > 100, "{length} bytes");
    net.shutdown().await;
}
