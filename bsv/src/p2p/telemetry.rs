//! OTLP export of the library's metrics (cargo feature `otlp`).
//!
//! The library records through OpenTelemetry's global meter provider (see [`crate::p2p::metrics`]);
//! this module installs one that pushes those metrics over OTLP/HTTP (protobuf bodies) to
//! [`ManagerConfig::telemetry_endpoint`], with [`ManagerConfig::service_name`] as the resource's
//! `service.name`. Install it **before** creating the [`Manager`](crate::p2p::Manager): a manager
//! takes its instruments from the global provider when it is created.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use bitcoinsv::p2p::{telemetry, ManagerConfig, Network};
//!
//! let mut config = ManagerConfig::new(Network::Mainnet);
//! config.telemetry_endpoint = Some("http://127.0.0.1:4318".into());
//! let guard = telemetry::install(&config)?;
//! // ... create and run the manager ...
//! guard.shutdown()?; // exports what is left; also done on drop
//! # Ok(())
//! # }
//! ```
//!
//! The endpoint is the collector's OTLP/HTTP base URL (port 4318 by convention), to which
//! `/v1/metrics` is appended when it has no path; a URL with a path is used as it is. Without an
//! endpoint (`enable_telemetry` alone), the exporter follows OpenTelemetry's environment
//! variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, then `http://localhost:4318`). The export interval
//! is OpenTelemetry's (`OTEL_METRIC_EXPORT_INTERVAL`, default 60 s) unless given with
//! [`install_with_interval`].
//!
//! To add readers of your own (a Prometheus exporter, say) to the same provider, start from
//! [`meter_provider_builder`] and hand the built provider to [`TelemetryGuard::install`].

use std::time::Duration;

use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::{MeterProviderBuilder, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::Resource;

use crate::p2p::config::ManagerConfig;

/// Why the telemetry could not be set up or shut down.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (an invalid endpoint, say).
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// Flushing or shutting down the meter provider failed.
    #[error("meter provider shutdown: {0}")]
    Shutdown(String),
}

/// Whether `config` asks for OTLP export: an endpoint is set, or `enable_telemetry` is on.
pub fn exports(config: &ManagerConfig) -> bool {
    config.telemetry_endpoint.is_some() || config.enable_telemetry
}

/// The resource the metrics are reported under: `service.name` from `config` (and
/// OpenTelemetry's default detectors: the SDK, `OTEL_RESOURCE_ATTRIBUTES`).
pub fn resource(config: &ManagerConfig) -> Resource {
    Resource::builder()
        .with_service_name(config.service_name.clone())
        .build()
}

/// The URL the metrics are posted to for `endpoint`: `/v1/metrics` appended to a bare base URL.
pub fn metrics_url(endpoint: &str) -> String {
    let e = endpoint.trim();
    let base = e.trim_end_matches('/');
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    if after_scheme.contains('/') {
        e.to_string()
    } else {
        format!("{base}/v1/metrics")
    }
}

/// A meter provider builder with `config`'s resource and, when `config` asks for export
/// ([`exports`]), a periodic OTLP/HTTP reader (every `interval`, or OpenTelemetry's default).
pub fn meter_provider_builder(
    config: &ManagerConfig,
    interval: Option<Duration>,
) -> Result<MeterProviderBuilder, TelemetryError> {
    let mut builder = SdkMeterProvider::builder().with_resource(resource(config));
    if exports(config) {
        let mut exporter = MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(endpoint) = &config.telemetry_endpoint {
            exporter = exporter.with_endpoint(metrics_url(endpoint));
        }
        let exporter = exporter
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let mut reader = PeriodicReader::builder(exporter);
        if let Some(interval) = interval {
            reader = reader.with_interval(interval);
        }
        builder = builder.with_reader(reader.build());
    }
    Ok(builder)
}

/// Installs, as OpenTelemetry's global meter provider, one that exports the metrics over OTLP
/// as `config` says (see the module documentation). Keep the guard for as long as metrics
/// should flow; dropping it (or [`TelemetryGuard::shutdown`]) exports what is left.
pub fn install(config: &ManagerConfig) -> Result<TelemetryGuard, TelemetryError> {
    Ok(TelemetryGuard::install(
        meter_provider_builder(config, None)?.build(),
    ))
}

/// As [`install`], exporting every `interval` instead of OpenTelemetry's default.
pub fn install_with_interval(
    config: &ManagerConfig,
    interval: Duration,
) -> Result<TelemetryGuard, TelemetryError> {
    Ok(TelemetryGuard::install(
        meter_provider_builder(config, Some(interval))?.build(),
    ))
}

/// The installed global meter provider; flushes and shuts it down when shut down or dropped.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Installs `provider` as OpenTelemetry's global meter provider and guards it.
    pub fn install(provider: SdkMeterProvider) -> Self {
        opentelemetry::global::set_meter_provider(provider.clone());
        TelemetryGuard {
            provider: Some(provider),
        }
    }

    /// The provider (to create meters of the application's own).
    pub fn provider(&self) -> &SdkMeterProvider {
        self.provider.as_ref().expect("present until shut down")
    }

    /// Exports what has been recorded since the last export, now.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        self.provider()
            .force_flush()
            .map_err(|e| TelemetryError::Shutdown(e.to_string()))
    }

    /// Exports what is left and shuts the provider down (instruments then record nothing).
    ///
    /// This blocks the calling thread while the last export runs; from an async context on
    /// tokio's current-thread runtime, call it inside `spawn_blocking`.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Result<(), TelemetryError> {
        match self.provider.take() {
            Some(p) => p
                .shutdown()
                .map_err(|e| TelemetryError::Shutdown(e.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown_inner() {
            tracing::warn!("telemetry: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::metrics_url;

    #[test]
    fn a_bare_endpoint_gets_the_metrics_path() {
        assert_eq!(
            metrics_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/metrics"
        );
        assert_eq!(
            metrics_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/metrics"
        );
        assert_eq!(
            metrics_url("https://otel.example/custom/path"),
            "https://otel.example/custom/path"
        );
    }
}
