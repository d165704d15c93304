//! The block-download stall rule for streamed blocks, sans-I/O with an injected clock.
//!
//! The node disconnects a peer that stalls a block download: `-blockstallingtimeout` (10 s) at
//! under `-blockstallingmindownloadspeed` (100 kB/s) (docs/PROTOCOL.md §5). We apply the same
//! figures to a block being streamed to us: in every period of `timeout` spent waiting for the
//! peer, at least `min_rate × timeout` bytes must arrive. Time spent waiting for our own
//! application (the stream's back-pressure) is the application's doing, not the peer's, so the
//! driver pauses the guard while it waits for room and the period is extended by the pause.
//! Without this rule a peer trickling a declared 4 GiB block at 1 KiB every 200 ms would hold a
//! connection (and its share of the stream budget) for weeks.

use std::time::Duration;

use tokio::time::Instant;

/// A streamed block arrived too slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stalled {
    /// Bytes received in the period.
    pub received: u64,
    /// The period (time spent waiting for the peer).
    pub within: Duration,
}

/// Watches the rate of one streamed block.
#[derive(Debug, Clone)]
pub(crate) struct StallGuard {
    period: Duration,
    min_bytes: u64,
    /// Start of the current period, moved forward by pauses.
    period_start: Instant,
    /// Bytes received in the current period.
    bytes: u64,
    paused_at: Option<Instant>,
}

impl StallGuard {
    /// A guard starting at `now`: at least `min_rate` bytes per second over every `period`.
    pub(crate) fn new(period: Duration, min_rate: u64, now: Instant) -> Self {
        let min_bytes = (u128::from(min_rate) * period.as_millis() / 1000) as u64;
        StallGuard {
            period,
            min_bytes,
            period_start: now,
            bytes: 0,
            paused_at: None,
        }
    }

    /// `n` bytes of the block arrived.
    pub(crate) fn on_bytes(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_add(n as u64);
    }

    /// We start waiting for the application: the peer's clock stops.
    pub(crate) fn pause(&mut self, now: Instant) {
        if self.paused_at.is_none() {
            self.paused_at = Some(now);
        }
    }

    /// We wait for the peer again.
    pub(crate) fn resume(&mut self, now: Instant) {
        if let Some(at) = self.paused_at.take() {
            self.period_start += now.saturating_duration_since(at);
        }
    }

    /// When the current period ends (far away while paused).
    pub(crate) fn deadline(&self) -> Instant {
        match self.paused_at {
            Some(at) => at + self.period.max(Duration::from_secs(3600)),
            None => self.period_start + self.period,
        }
    }

    /// Checks the rule at `now`: at the end of a period, enough bytes must have arrived; a new
    /// period then starts.
    pub(crate) fn check(&mut self, now: Instant) -> Result<(), Stalled> {
        if self.paused_at.is_some() || now < self.period_start + self.period {
            return Ok(());
        }
        if self.bytes < self.min_bytes {
            return Err(Stalled {
                received: self.bytes,
                within: self.period,
            });
        }
        self.period_start = now;
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(10);

    #[test]
    fn a_block_at_the_minimum_rate_is_never_stalled() {
        let t0 = Instant::now();
        let mut g = StallGuard::new(PERIOD, 100_000, t0);
        for s in 1..=100u64 {
            g.on_bytes(100_000);
            assert_eq!(g.check(t0 + Duration::from_secs(s)), Ok(()), "second {s}");
        }
    }

    #[test]
    fn a_trickle_is_stalled_at_the_end_of_the_first_period() {
        let t0 = Instant::now();
        let mut g = StallGuard::new(PERIOD, 100_000, t0);
        g.on_bytes(1024 * 50);
        assert_eq!(g.check(t0 + Duration::from_secs(9)), Ok(()));
        assert_eq!(g.deadline(), t0 + PERIOD);
        assert_eq!(
            g.check(t0 + PERIOD),
            Err(Stalled {
                received: 51_200,
                within: PERIOD
            })
        );
    }

    #[test]
    fn time_waiting_for_the_application_does_not_count_against_the_peer() {
        let t0 = Instant::now();
        let mut g = StallGuard::new(PERIOD, 100_000, t0);
        g.on_bytes(500_000);
        g.pause(t0 + Duration::from_secs(5));
        assert_eq!(g.check(t0 + Duration::from_secs(60)), Ok(()));
        g.resume(t0 + Duration::from_secs(65));
        // 5 s of peer time used before the pause, 5 s left: the period ends at 70 s.
        assert_eq!(g.deadline(), t0 + Duration::from_secs(70));
        g.on_bytes(500_000);
        assert_eq!(g.check(t0 + Duration::from_secs(70)), Ok(()));
        assert_eq!(
            g.check(t0 + Duration::from_secs(80))
                .map_err(|s| s.received),
            Err(0)
        );
    }
}
