//! OTLP export (feature `otlp`): a manager run against a simnet, with `telemetry_endpoint`
//! pointing at a receiver in this test, pushes its metrics over OTLP/HTTP; the receiver decodes
//! the protobuf `ExportMetricsServiceRequest` and finds the configured `service.name` and the
//! library's instruments with the values of the run.
//!
//! Real time throughout: the SDK's periodic reader exports from a thread of its own, on the
//! wall clock. Timeouts only catch hangs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoinsv::p2p::{telemetry, InMemoryPeerStore, Manager, ManagerConfig, Network};
use bitcoinsv_simnet::{SimNet, SimNetConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Bounds that only catch hangs.
const WAIT: Duration = Duration::from_secs(60);

/// One HTTP request as the receiver saw it.
struct Request {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (headers, then `Content-Length` bytes of body).
async fn read_request(sock: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let mut length = 0;
    let mut content_type = String::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok()?,
                "content-type" => content_type = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        content_type,
        body,
    })
}

/// An OTLP/HTTP receiver: answers every request `200` with an empty protobuf body and hands it on.
async fn receiver() -> (SocketAddr, mpsc::UnboundedReceiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(req) = read_request(&mut sock).await {
                    let _ = tx.send(req);
                    let resp = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn string_attr(
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

/// The sum of a counter's or gauge's points (all attribute sets), if the request holds it.
fn total(req: &ExportMetricsServiceRequest, name: &str) -> Option<f64> {
    let mut found = None;
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in sm.metrics.iter().filter(|m| m.name == name) {
                let points = match m.data.as_ref()? {
                    Data::Sum(s) => &s.data_points,
                    Data::Gauge(g) => &g.data_points,
                    _ => continue,
                };
                for p in points {
                    let v = match p.value? {
                        number_data_point::Value::AsInt(i) => i as f64,
                        number_data_point::Value::AsDouble(d) => d,
                    };
                    *found.get_or_insert(0.0) += v;
                }
            }
        }
    }
    found
}

fn histogram_count(req: &ExportMetricsServiceRequest, name: &str) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == name)
        .filter_map(|m| match m.data.as_ref()? {
            Data::Histogram(h) => Some(h.data_points.iter().map(|p| p.count).sum::<u64>()),
            _ => None,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_exports_its_metrics_over_otlp_with_the_service_name() {
    let (addr, mut requests) = receiver().await;
    let net = SimNet::start(SimNetConfig::default().nodes(2).blocks(3))
        .await
        .unwrap();
    let mut config = ManagerConfig::new(Network::Regtest);
    config.dns_seeds.clear();
    config.service_name = "otlp-test-node".into();
    // A bare base URL: the library appends /v1/metrics.
    config.telemetry_endpoint = Some(format!("http://{addr}"));
    let guard = telemetry::install_with_interval(&config, Duration::from_millis(200)).unwrap();
    let manager =
        Manager::with_fixed_peers(config, Arc::new(InMemoryPeerStore::new()), net.addresses());
    manager.start().await.unwrap();
    manager.wait_for_connections(2, WAIT).await.unwrap();

    // Exports arrive every 200 ms; wait for one taken after both connections were up.
    let req = tokio::time::timeout(WAIT, async {
        loop {
            let r = requests.recv().await.expect("the receiver runs");
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/v1/metrics");
            assert_eq!(r.content_type, "application/x-protobuf");
            let req = ExportMetricsServiceRequest::decode(r.body.as_slice()).unwrap();
            if total(&req, "bsv_p2p.connections") == Some(2.0)
                && histogram_count(&req, "bsv_p2p.handshake.duration") >= 2
            {
                break req;
            }
        }
    })
    .await
    .expect("an export with both connections");

    let resource = req.resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(
        string_attr(&resource.attributes, "service.name").as_deref(),
        Some("otlp-test-node")
    );
    let scope = &req.resource_metrics[0].scope_metrics;
    assert!(
        scope
            .iter()
            .any(|s| s.scope.as_ref().is_some_and(|s| s.name == "bsv_p2p")),
        "the library's instrumentation scope"
    );
    assert!(total(&req, "bsv_p2p.connection.attempts").unwrap() >= 2.0);
    assert!(total(&req, "bsv_p2p.messages").unwrap() > 0.0);
    assert!(total(&req, "bsv_p2p.network.io").unwrap() > 0.0);
    let units: Vec<(String, String)> = req
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| (m.name.clone(), m.unit.clone()))
        .collect();
    assert!(
        units.contains(&("bsv_p2p.handshake.duration".into(), "s".into())),
        "{units:?}"
    );

    manager.shutdown().await.unwrap();
    net.shutdown().await;
    // Shutting the guard down exports once more, synchronously.
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap()
        .unwrap();
    let mut last = None;
    while let Ok(r) = requests.try_recv() {
        last = Some(r);
    }
    let last = last.expect("the final export at shutdown");
    let last = ExportMetricsServiceRequest::decode(last.body.as_slice()).unwrap();
    assert!(total(&last, "bsv_p2p.connection.ends").unwrap() >= 2.0);
}
