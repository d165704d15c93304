//! Keepalive after the handshake (SPEC §6, docs/PROTOCOL.md §3.2): ping on a schedule with random
//! non-zero nonces, match pongs by nonce to measure round-trip time, and decide when a silent
//! peer is dead. Pure: the caller passes the time and the nonce.
//!
//! Rules, as the node has them:
//! * the first ping is due as soon as the handshake completes, then every `interval` while no
//!   ping is outstanding;
//! * a pong with the outstanding nonce records the RTT; a pong of nonce 0 cancels the
//!   outstanding ping (a buggy peer, no penalty); other nonces are ignored;
//! * the peer is dead when a ping has been outstanding for `timeout` and no bytes at all have
//!   arrived for `timeout` either (a pong may be queued behind a large block, so traffic counts
//!   as life).

use std::time::Duration;

use tokio::time::Instant;

/// What the keepalive wants done at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Nothing to do.
    Idle,
    /// Send a `ping` with this nonce.
    SendPing(u64),
    /// The peer is dead: close and mark it `Inaccessible`.
    TimedOut {
        /// How long the ping had been outstanding.
        waited: Duration,
    },
}

/// Ping/pong bookkeeping for one connection.
#[derive(Debug, Clone)]
pub struct Keepalive {
    interval: Duration,
    timeout: Duration,
    next_ping_at: Instant,
    outstanding: Option<(u64, Instant)>,
    last_recv: Instant,
    last_rtt: Option<Duration>,
    /// A peer at or below `BIP0031_VERSION`: pings carry no nonce and are never answered.
    legacy: bool,
}

impl Keepalive {
    /// A keepalive starting at `now` (handshake completion), with the first ping due at once.
    pub fn new(interval: Duration, timeout: Duration, now: Instant) -> Self {
        Keepalive {
            interval,
            timeout,
            next_ping_at: now,
            outstanding: None,
            last_recv: now,
            last_rtt: None,
            legacy: false,
        }
    }

    /// A keepalive for a peer at or below `BIP0031_VERSION` (docs/PROTOCOL.md §3.2): its pings
    /// carry no nonce and it never answers them, so we ping every `interval` only to show life,
    /// and the peer is dead after `receive_timeout` without a byte (the node's 90 minutes,
    /// `LEGACY_RECEIVE_TIMEOUT`).
    pub fn legacy(interval: Duration, receive_timeout: Duration, now: Instant) -> Self {
        Keepalive {
            legacy: true,
            ..Keepalive::new(interval, receive_timeout, now)
        }
    }

    /// Changes the schedule (a configuration update): the next ping is due one new interval
    /// from `now` at the latest. An outstanding ping keeps its nonce, and the next one still waits
    /// for its pong.
    pub fn set_timing(&mut self, interval: Duration, timeout: Duration, now: Instant) {
        self.interval = interval;
        self.timeout = timeout;
        self.next_ping_at = self.next_ping_at.min(now + interval);
    }

    /// Records that bytes arrived from the peer.
    pub fn on_bytes_received(&mut self, now: Instant) {
        self.last_recv = now;
    }

    /// Advances to `now`. `fresh_nonce` is called only when a ping is due and must return a
    /// random value; zero is replaced, because a zero pong means "cancel".
    pub fn on_tick(&mut self, now: Instant, fresh_nonce: impl FnOnce() -> u64) -> KeepaliveAction {
        if self.legacy {
            let silent = now.saturating_duration_since(self.last_recv);
            if silent >= self.timeout {
                return KeepaliveAction::TimedOut { waited: silent };
            }
            if now >= self.next_ping_at {
                self.next_ping_at = now + self.interval;
                return KeepaliveAction::SendPing(0);
            }
            return KeepaliveAction::Idle;
        }
        if let Some((_, sent)) = self.outstanding {
            let silent_since = sent.max(self.last_recv);
            if now.saturating_duration_since(silent_since) >= self.timeout {
                return KeepaliveAction::TimedOut {
                    waited: now.saturating_duration_since(sent),
                };
            }
            return KeepaliveAction::Idle;
        }
        if now >= self.next_ping_at {
            let nonce = match fresh_nonce() {
                0 => 1,
                n => n,
            };
            self.outstanding = Some((nonce, now));
            self.next_ping_at = now + self.interval;
            return KeepaliveAction::SendPing(nonce);
        }
        KeepaliveAction::Idle
    }

    /// Handles a `pong`; returns the round-trip time when it answers the outstanding ping.
    pub fn on_pong(&mut self, nonce: u64, now: Instant) -> Option<Duration> {
        let (expected, sent) = self.outstanding?;
        if nonce == expected {
            let rtt = now.saturating_duration_since(sent);
            self.outstanding = None;
            self.last_rtt = Some(rtt);
            Some(rtt)
        } else {
            if nonce == 0 {
                self.outstanding = None;
            }
            None
        }
    }

    /// The next instant at which [`Keepalive::on_tick`] may have something to do.
    pub fn next_deadline(&self) -> Instant {
        if self.legacy {
            return self.next_ping_at.min(self.last_recv + self.timeout);
        }
        match self.outstanding {
            Some((_, sent)) => sent.max(self.last_recv) + self.timeout,
            None => self.next_ping_at,
        }
    }

    /// The last measured round-trip time.
    #[cfg(test)]
    pub fn rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// The nonce of the ping awaiting its pong, if any.
    #[cfg(test)]
    pub fn outstanding_nonce(&self) -> Option<u64> {
        self.outstanding.map(|(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(120);
    const TIMEOUT: Duration = Duration::from_secs(1200);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn first_ping_is_due_at_once_then_every_interval_after_the_pong() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(INTERVAL, TIMEOUT, t0);
        assert_eq!(k.on_tick(t0, || 7), KeepaliveAction::SendPing(7));
        assert_eq!(
            k.on_pong(7, t0 + Duration::from_millis(30)),
            Some(Duration::from_millis(30))
        );
        assert_eq!(k.rtt(), Some(Duration::from_millis(30)));
        assert_eq!(k.on_tick(t0 + secs(119), || 8), KeepaliveAction::Idle);
        assert_eq!(k.next_deadline(), t0 + INTERVAL);
        assert_eq!(k.on_tick(t0 + INTERVAL, || 8), KeepaliveAction::SendPing(8));
    }

    #[test]
    fn ping_nonces_are_never_zero() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(INTERVAL, TIMEOUT, t0);
        assert_eq!(k.on_tick(t0, || 0), KeepaliveAction::SendPing(1));
    }

    #[test]
    fn no_new_ping_while_one_is_outstanding() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(INTERVAL, TIMEOUT, t0);
        k.on_tick(t0, || 5);
        assert_eq!(k.on_tick(t0 + secs(500), || 6), KeepaliveAction::Idle);
        assert_eq!(k.outstanding_nonce(), Some(5));
    }

    #[test]
    fn mismatched_pong_leaves_the_ping_outstanding() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(INTERVAL, TIMEOUT, t0);
        k.on_tick(t0, || 5);
        assert_eq!(k.on_pong(6, t0 + secs(1)), None);
        assert_eq!(k.outstanding_nonce(), Some(5));
    }

    #[test]
    fn zero_pong_cancels_the_outstanding_ping_without_an_rtt() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(INTERVAL, TIMEOUT, t0);
        k.on_tick(t0, || 5);
        assert_eq!(k.on_pong(0, t0 + secs(1)), None);
        assert_eq!(k.outstanding_nonce(), None);
        assert_eq!(k.rtt(), None);
    }

    #[test]
    fn unsolicited_pong_is_ignored() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(INTERVAL, TIMEOUT, t0);
        assert_eq!(k.on_pong(9, t0), None);
    }

    #[test]
    fn times_out_exactly_at_ping_timeout_with_no_bytes() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(INTERVAL, TIMEOUT, t0);
        k.on_tick(t0, || 5);
        assert_eq!(
            k.on_tick(t0 + TIMEOUT - Duration::from_millis(1), || 6),
            KeepaliveAction::Idle
        );
        assert_eq!(
            k.on_tick(t0 + TIMEOUT, || 6),
            KeepaliveAction::TimedOut { waited: TIMEOUT }
        );
    }

    #[test]
    fn bytes_arriving_push_the_timeout_back() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(INTERVAL, TIMEOUT, t0);
        k.on_tick(t0, || 5);
        k.on_bytes_received(t0 + secs(1000));
        assert_eq!(k.on_tick(t0 + TIMEOUT, || 6), KeepaliveAction::Idle);
        assert_eq!(k.next_deadline(), t0 + secs(1000) + TIMEOUT);
        assert_eq!(
            k.on_tick(t0 + secs(1000) + TIMEOUT, || 6),
            KeepaliveAction::TimedOut {
                waited: secs(1000) + TIMEOUT
            }
        );
    }

    #[test]
    fn a_shorter_interval_from_a_config_update_brings_the_next_ping_forward() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(INTERVAL, TIMEOUT, t0);
        k.on_tick(t0, || 5);
        k.on_pong(5, t0);
        k.set_timing(secs(10), TIMEOUT, t0 + secs(1));
        assert_eq!(k.next_deadline(), t0 + secs(11));
    }

    /// Regression: an update that arrived while a ping awaited its pong left the next ping on
    /// the old schedule, a whole old interval after the last one.
    #[test]
    fn a_shorter_interval_while_a_ping_is_outstanding_applies_once_the_pong_arrives() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(INTERVAL, TIMEOUT, t0);
        k.on_tick(t0, || 5);
        k.set_timing(secs(10), TIMEOUT, t0 + secs(1));
        assert_eq!(
            k.outstanding_nonce(),
            Some(5),
            "the outstanding ping is kept"
        );
        assert_eq!(k.on_tick(t0 + secs(11), || 6), KeepaliveAction::Idle);
        k.on_pong(5, t0 + secs(12));
        assert_eq!(k.next_deadline(), t0 + secs(11));
        assert_eq!(k.on_tick(t0 + secs(12), || 6), KeepaliveAction::SendPing(6));
    }

    #[test]
    fn legacy_peers_get_pings_without_waiting_and_die_only_of_silence() {
        let t0 = Instant::now();
        let mut k = Keepalive::legacy(INTERVAL, secs(5400), t0);
        assert_eq!(k.on_tick(t0, || 9), KeepaliveAction::SendPing(0));
        // No pong ever comes, yet the next ping is due after the interval, not after a timeout.
        assert_eq!(k.on_tick(t0 + INTERVAL, || 9), KeepaliveAction::SendPing(0));
        k.on_bytes_received(t0 + secs(3000));
        assert_eq!(
            k.on_tick(t0 + secs(5400), || 9),
            KeepaliveAction::SendPing(0)
        );
        assert_eq!(
            k.on_tick(t0 + secs(8400), || 9),
            KeepaliveAction::TimedOut { waited: secs(5400) }
        );
    }
}
