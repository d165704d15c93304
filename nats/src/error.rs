//! The crate's error: what failed talking to NATS, with the step that failed.

/// Setting up the NATS side failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// Connecting to the server failed.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The URL tried.
        url: String,
        /// Why.
        reason: String,
    },
    /// A JetStream call (stream, Object Store, subscription) failed.
    #[error("NATS {step} failed: {reason}")]
    JetStream {
        /// What was being done, e.g. `creating stream BSV_REGTEST`.
        step: String,
        /// Why.
        reason: String,
    },
}

impl NatsError {
    pub(crate) fn js(step: impl Into<String>, e: impl std::fmt::Display) -> Self {
        NatsError::JetStream {
            step: step.into(),
            reason: e.to_string(),
        }
    }
}
