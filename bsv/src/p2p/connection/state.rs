//! The connection lifecycle of SPEC §6 as a checked state machine: only the legal transitions
//! are accepted, so an actor bug shows up as an error instead of a silently odd state.

use std::fmt;

use serde::Serialize;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// No socket; waiting to dial (or to redial after a backoff), or closed on request.
    Disconnected,
    /// Dialling the peer (outbound only).
    Connecting,
    /// Socket open, `version`/`verack` exchange under way (the handshake timer runs from here).
    AwaitingHandshake,
    /// Handshake complete; messages flow.
    Connected,
    /// The peer failed validation (wrong network, banned agent, …) or we refused it for
    /// capacity. Terminal.
    Rejected,
    /// Gave up: retries or restarts exhausted, or a handshake/ping timeout. Terminal.
    Failed,
}

impl ConnectionState {
    /// Whether no further transition is possible.
    pub fn is_terminal(self) -> bool {
        matches!(self, ConnectionState::Rejected | ConnectionState::Failed)
    }

    /// Whether `self → to` is a legal transition.
    pub fn can_transition_to(self, to: ConnectionState) -> bool {
        use ConnectionState::*;
        matches!(
            (self, to),
            (Disconnected, Connecting)
                | (Disconnected, AwaitingHandshake)
                | (Disconnected, Failed)
                | (Connecting, AwaitingHandshake)
                | (Connecting, Disconnected)
                | (Connecting, Failed)
                | (AwaitingHandshake, Connected)
                | (AwaitingHandshake, Rejected)
                | (AwaitingHandshake, Failed)
                | (AwaitingHandshake, Disconnected)
                | (Connected, Disconnected)
                | (Connected, Rejected)
                | (Connected, Failed)
        )
    }
}

impl ConnectionState {
    /// The state's name, as logs and metrics labels show it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Connecting => "connecting",
            ConnectionState::AwaitingHandshake => "awaiting_handshake",
            ConnectionState::Connected => "connected",
            ConnectionState::Rejected => "rejected",
            ConnectionState::Failed => "failed",
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An attempted transition that SPEC §6 does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal connection state transition {from} -> {to}")]
pub struct IllegalTransition {
    /// The state we were in.
    pub from: ConnectionState,
    /// The state asked for.
    pub to: ConnectionState,
}

/// A connection state with transition checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateMachine {
    state: ConnectionState,
}

impl Default for StateMachine {
    fn default() -> Self {
        StateMachine {
            state: ConnectionState::Disconnected,
        }
    }
}

impl StateMachine {
    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Moves to `to` if legal; otherwise leaves the state unchanged and says why.
    pub fn transition(
        &mut self,
        to: ConnectionState,
    ) -> Result<ConnectionState, IllegalTransition> {
        if self.state.can_transition_to(to) {
            let from = self.state;
            self.state = to;
            Ok(from)
        } else {
            Err(IllegalTransition {
                from: self.state,
                to,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionState::*;
    use super::*;

    #[test]
    fn outbound_lifecycle_with_a_restart_is_legal() {
        let mut m = StateMachine::default();
        for s in [
            Connecting,
            AwaitingHandshake,
            Connected,
            Disconnected,
            Connecting,
            AwaitingHandshake,
            Connected,
            Failed,
        ] {
            m.transition(s).unwrap();
        }
        assert!(m.state().is_terminal());
    }

    #[test]
    fn inbound_goes_straight_to_awaiting_handshake() {
        let mut m = StateMachine::default();
        m.transition(AwaitingHandshake).unwrap();
        m.transition(Rejected).unwrap();
    }

    #[test]
    fn terminal_states_and_skipped_steps_are_refused() {
        let all = [
            Disconnected,
            Connecting,
            AwaitingHandshake,
            Connected,
            Rejected,
            Failed,
        ];
        for from in [Rejected, Failed] {
            for to in all {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
        }
        let mut m = StateMachine::default();
        assert_eq!(
            m.transition(Connected),
            Err(IllegalTransition {
                from: Disconnected,
                to: Connected
            })
        );
        assert_eq!(m.state(), Disconnected);
        assert!(!Connecting.can_transition_to(Connected));
    }
}
