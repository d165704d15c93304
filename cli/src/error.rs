//! The CLI's error type: every failure becomes one line that says what went wrong and, where it
//! can, what to fix.

/// A command failure, printed as `error: <message>`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Input that failed to decode.
    #[error("{0}")]
    Codec(#[from] bitcoinsv::p2p::CodecError),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Other(String),
}
