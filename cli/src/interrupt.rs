//! Ctrl-C (SIGINT) for the long-running subcommands, without losing a signal.
//!
//! `tokio::signal::ctrl_c()` subscribes to the signal only when its future is first polled and
//! unsubscribes when the future is dropped. Written as a branch of a `select!` loop it is
//! created anew on every pass, so a SIGINT delivered while another branch was being handled
//! found no subscriber and was ignored (tokio keeps its own handler installed, so the default
//! "terminate" did not happen either). [`Interrupt`] subscribes once, when it is created, and
//! its [`Interrupt::recv`] is cancel safe: a signal that arrives between two polls is kept
//! until the next one.

use std::io;

/// A subscription to Ctrl-C, held for the life of a command.
#[derive(Debug)]
pub struct Interrupt {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
    #[cfg(windows)]
    signal: tokio::signal::windows::CtrlC,
}

impl Interrupt {
    /// Subscribes now (from here on Ctrl-C no longer terminates the process: it is reported
    /// by [`Interrupt::recv`]). Must be called inside the runtime.
    pub fn install() -> io::Result<Self> {
        #[cfg(unix)]
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        #[cfg(windows)]
        let signal = tokio::signal::windows::ctrl_c()?;
        Ok(Interrupt { signal })
    }

    /// Waits for the next Ctrl-C (or one that arrived since the last call). Cancel safe: use it
    /// as a `select!` branch in a loop.
    pub async fn recv(&mut self) {
        if self.signal.recv().await.is_none() {
            // The runtime's signal driver is gone (the runtime is shutting down): no Ctrl-C
            // can come any more.
            std::future::pending::<()>().await;
        }
    }
}
