//! The header chain's instruments (feature `metrics`, docs/OBSERVABILITY.md): the gauge
//! `bsv_p2p.chain.height` (the best chain's tip height) and the counter `bsv_p2p.chain.reorgs`.
//! Without the feature, or without a meter provider, every call is a no-op.

/// The header chain's instruments.
#[derive(Debug, Default, Clone)]
pub(crate) struct ChainMetrics {
    #[cfg(feature = "metrics")]
    inner: Option<(
        opentelemetry::metrics::Gauge<u64>,
        opentelemetry::metrics::Counter<u64>,
    )>,
}

impl ChainMetrics {
    /// Instruments from the global meter provider as it is now.
    pub(crate) fn from_global() -> Self {
        #[cfg(feature = "metrics")]
        {
            let m = opentelemetry::global::meter(crate::p2p::metrics::METER_NAME);
            let height = m
                .u64_gauge("bsv_p2p.chain.height")
                .with_description("Height of the header chain's best tip")
                .with_unit("{block}")
                .build();
            let reorgs = m
                .u64_counter("bsv_p2p.chain.reorgs")
                .with_description("Reorganisations of the header chain (another branch took over)")
                .with_unit("{reorg}")
                .build();
            ChainMetrics {
                inner: Some((height, reorgs)),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            ChainMetrics::default()
        }
    }

    /// The tip is now at `_height`.
    pub(crate) fn height(&self, _height: u32) {
        #[cfg(feature = "metrics")]
        if let Some((h, _)) = &self.inner {
            h.record(u64::from(_height), &[]);
        }
    }

    /// A reorganisation happened.
    pub(crate) fn reorg(&self) {
        #[cfg(feature = "metrics")]
        if let Some((_, r)) = &self.inner {
            r.add(1, &[]);
        }
    }
}
