//! A manager connected to the peers named on the command line, for the commands built on the
//! library's services (`getblock`, `broadcast`): started, and waited for until every peer has
//! either completed its handshake or failed once, within the command's deadline, so `--timeout`
//! bounds the handshake too.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use bitcoinsv::p2p::{ControlEvent, InMemoryPeerStore, Manager, ManagerConfig};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::error::CliError;

/// A started manager and why the peers that did not connect failed.
pub struct Connected {
    /// The manager (shut it down when done).
    pub manager: Manager,
    /// Each failed dial or handshake, as text.
    pub failures: Vec<String>,
}

/// Starts a manager for `peers` and waits until each connected or failed, or `deadline`.
/// Fails when no peer connected, saying why.
pub async fn connect(
    config: ManagerConfig,
    peers: Vec<SocketAddr>,
    deadline: Instant,
) -> Result<Connected, CliError> {
    let want = peers.len();
    let shown: Vec<String> = peers.iter().map(ToString::to_string).collect();
    let manager = Manager::with_fixed_peers(config, Arc::new(InMemoryPeerStore::new()), peers);
    let mut events = manager.subscribe_control_events();
    manager
        .start()
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    let mut failed = HashSet::new();
    let mut failures = Vec::new();
    loop {
        if manager.connection_count() + failed.len() >= want {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            e = events.recv() => match e {
                Ok(ControlEvent::ConnectionFailed { peer_id, reason }) => {
                    if failed.insert(peer_id) {
                        failures.push(reason.to_string());
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
        }
    }
    if manager.connection_count() == 0 {
        let _ = manager.shutdown().await;
        let why = if failures.is_empty() {
            "no handshake completed before the timeout".to_owned()
        } else {
            failures.join("; ")
        };
        return Err(CliError::Other(format!(
            "cannot connect to {}: {why}",
            shown.join(", ")
        )));
    }
    Ok(Connected { manager, failures })
}
