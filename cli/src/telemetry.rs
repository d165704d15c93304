//! Metrics export for the commands that run a manager (feature `metrics`, on by default): the
//! OpenTelemetry SDK meter provider, installed globally before the manager is created, with a
//! Prometheus reader served on `--metrics-addr` (`GET /metrics`, text format, through axum)
//! and, when the configuration sets `telemetry_endpoint` (or `enable_telemetry`), an OTLP/HTTP
//! exporter from the library (`bitcoinsv::p2p::telemetry`). The resource's `service.name` is
//! the configuration's `service_name`.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bitcoinsv::p2p::{telemetry, ManagerConfig};
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

use crate::error::CliError;

/// The installed provider, and the registry the Prometheus reader fills when one is wanted.
pub struct Telemetry {
    guard: Option<telemetry::TelemetryGuard>,
    registry: Option<prometheus::Registry>,
}

impl Telemetry {
    /// Installs the global meter provider `config` and `prometheus` call for; none (and no
    /// cost) when neither Prometheus nor OTLP is wanted.
    pub fn install(config: &ManagerConfig, prometheus: bool) -> Result<Telemetry, CliError> {
        if !prometheus && !telemetry::exports(config) {
            return Ok(Telemetry {
                guard: None,
                registry: None,
            });
        }
        let mut builder = telemetry::meter_provider_builder(config, None)
            .map_err(|e| CliError::Usage(format!("telemetry_endpoint: {e}")))?;
        let registry = if prometheus {
            let registry = prometheus::Registry::new();
            let exporter = opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                .build()
                .map_err(|e| CliError::Other(format!("Prometheus exporter: {e}")))?;
            builder = builder.with_reader(exporter);
            Some(registry)
        } else {
            None
        };
        Ok(Telemetry {
            guard: Some(telemetry::TelemetryGuard::install(builder.build())),
            registry,
        })
    }

    /// Serves the Prometheus registry on `listener` until the process ends: `GET /metrics`
    /// answers the text format, every other path 404.
    pub fn serve_prometheus(&self, listener: TcpListener) {
        let Some(registry) = self.registry.clone() else {
            return;
        };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(registry);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("metrics server stopped: {e}");
            }
        });
    }

    /// Exports what is left (OTLP) and shuts the provider down.
    pub async fn shutdown(self) -> Result<(), CliError> {
        let Some(guard) = self.guard else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || guard.shutdown())
            .await
            .map_err(|e| CliError::Other(format!("telemetry shutdown: {e}")))?
            .map_err(|e| CliError::Other(e.to_string()))
    }
}

/// Binds the `--metrics-addr` listener (before anything runs, so a taken port fails at once).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Usage(format!("--metrics-addr {addr}: {e}; choose a free port")))
}

async fn metrics(State(registry): State<prometheus::Registry>) -> impl IntoResponse {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_string())],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_string())],
            e.to_string().into_bytes(),
        ),
    }
}
