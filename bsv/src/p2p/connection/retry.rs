//! Reconnection arithmetic (SPEC §6): exponential backoff with a cap and jitter for failed dials,
//! a retry budget, and a restart budget per time window for connections that drop after the
//! handshake. Pure: time and randomness are passed in.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The settings that shape retries and restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial_backoff: Duration,
    /// Growth factor per retry (≥ 1).
    pub multiplier: f64,
    /// Largest delay.
    pub max_backoff: Duration,
    /// Relative jitter: a delay `d` becomes a value in `[d × (1 − j), d × (1 + j)]`.
    pub jitter: f64,
    /// Failed dials allowed before the peer is `Inaccessible`.
    pub max_retries: u32,
    /// Immediate reconnects allowed per `restart_window` after an established connection drops.
    pub max_restarts: u32,
    /// The window for counting restarts.
    pub restart_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(3600),
            jitter: 0.2,
            max_retries: 10,
            max_restarts: 3,
            restart_window: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The un-jittered delay before retry number `retry` (0-based), capped.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(retry.min(1024) as i32);
        let secs = self.initial_backoff.as_secs_f64() * factor;
        let capped = secs.min(self.max_backoff.as_secs_f64());
        Duration::try_from_secs_f64(capped).unwrap_or(self.max_backoff)
    }

    /// Applies jitter to `d`; `unit` is a random sample in `[-1, 1]`. Never exceeds the cap by
    /// more than the jitter allows and never goes below zero.
    pub fn jittered(&self, d: Duration, unit: f64) -> Duration {
        let j = self.jitter.clamp(0.0, 1.0) * unit.clamp(-1.0, 1.0);
        Duration::try_from_secs_f64((d.as_secs_f64() * (1.0 + j)).max(0.0)).unwrap_or(d)
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Reconnect now (an established connection dropped and the restart budget allows it).
    RestartNow,
    /// Stop: mark the peer `Inaccessible`.
    GiveUp,
}

/// Retry and restart counters for one peer.
#[derive(Debug, Clone, Default)]
pub struct RetryState {
    retries: u32,
    restarts: VecDeque<Instant>,
}

impl RetryState {
    /// Failed dials since the last successful handshake.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// A dial (connect) failed: back off, or give up once `max_retries` is used.
    /// `unit` is a random sample in `[-1, 1]` for the jitter.
    pub fn on_connect_failure(&mut self, policy: &RetryPolicy, unit: f64) -> RetryDecision {
        if self.retries >= policy.max_retries {
            return RetryDecision::GiveUp;
        }
        let d = policy.jittered(policy.base_delay(self.retries), unit);
        self.retries += 1;
        RetryDecision::RetryAfter(d)
    }

    /// A handshake succeeded: the retry count starts again.
    pub fn on_handshake_complete(&mut self) {
        self.retries = 0;
    }

    /// An established connection dropped at `now`: restart at once unless `max_restarts`
    /// restarts already happened within `restart_window`.
    pub fn on_connection_lost(&mut self, policy: &RetryPolicy, now: Instant) -> RetryDecision {
        while let Some(t) = self.restarts.front() {
            if now.saturating_duration_since(*t) >= policy.restart_window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        if self.restarts.len() as u32 >= policy.max_restarts {
            return RetryDecision::GiveUp;
        }
        self.restarts.push_back(now);
        RetryDecision::RestartNow
    }

    /// Restarts counted in the current window.
    #[cfg(test)]
    pub fn restarts_in_window(&self) -> usize {
        self.restarts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    #[test]
    fn backoff_doubles_from_the_initial_delay_and_stops_at_the_cap() {
        let p = policy();
        let delays: Vec<u64> = (0..12).map(|i| p.base_delay(i).as_secs()).collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(p.base_delay(u32::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_stays_within_twenty_percent_either_way() {
        let p = policy();
        let d = Duration::from_secs(100);
        assert_eq!(p.jittered(d, -1.0), Duration::from_secs(80));
        assert_eq!(p.jittered(d, 1.0), Duration::from_secs(120));
        assert_eq!(p.jittered(d, 0.0), d);
        assert_eq!(
            p.jittered(d, 7.0),
            Duration::from_secs(120),
            "samples are clamped"
        );
    }

    #[test]
    fn retries_back_off_then_give_up_after_max_retries() {
        let p = RetryPolicy {
            max_retries: 3,
            ..policy()
        };
        let mut s = RetryState::default();
        assert_eq!(
            s.on_connect_failure(&p, 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(
            s.on_connect_failure(&p, 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(10))
        );
        assert_eq!(
            s.on_connect_failure(&p, 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(20))
        );
        assert_eq!(s.on_connect_failure(&p, 0.0), RetryDecision::GiveUp);
    }

    #[test]
    fn a_successful_handshake_resets_the_retry_count() {
        let p = policy();
        let mut s = RetryState::default();
        s.on_connect_failure(&p, 0.0);
        s.on_connect_failure(&p, 0.0);
        s.on_handshake_complete();
        assert_eq!(s.retries(), 0);
        assert_eq!(
            s.on_connect_failure(&p, 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(5))
        );
    }

    #[test]
    fn restarts_are_limited_per_window_and_old_ones_expire() {
        let p = RetryPolicy {
            max_restarts: 3,
            restart_window: Duration::from_secs(3600),
            ..policy()
        };
        let t0 = Instant::now();
        let mut s = RetryState::default();
        for i in 0..3 {
            assert_eq!(
                s.on_connection_lost(&p, t0 + Duration::from_secs(i * 60)),
                RetryDecision::RestartNow
            );
        }
        assert_eq!(
            s.on_connection_lost(&p, t0 + Duration::from_secs(600)),
            RetryDecision::GiveUp
        );
        // One hour after the first restart it has left the window: one more is allowed.
        assert_eq!(
            s.on_connection_lost(&p, t0 + Duration::from_secs(3600)),
            RetryDecision::RestartNow
        );
        assert_eq!(s.restarts_in_window(), 3);
        assert_eq!(
            s.on_connection_lost(&p, t0 + Duration::from_secs(3601)),
            RetryDecision::GiveUp
        );
    }
}
