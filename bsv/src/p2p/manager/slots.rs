//! Connection slots: the count of connections that hold a place under `max_connections`. A slot
//! is reserved atomically *before* a connection is admitted and released when its actor ends, so
//! a flood of concurrent inbound connections can never push the total past the limit. When
//! the listener evicts a peer to make room (`evict`), it waits for that peer's slot with
//! [`Slots::reserve_within`], woken as soon as any slot is freed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// The shared slot counter.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    used: Arc<AtomicUsize>,
    freed: Arc<Notify>,
}

/// A reserved slot; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    used: Arc<AtomicUsize>,
    freed: Arc<Notify>,
}

impl Slots {
    /// Reserves a slot if fewer than `max` are taken.
    pub fn try_reserve(&self, max: usize) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < max).then_some(used + 1)
            })
            .ok()
            .map(|_| Slot {
                used: self.used.clone(),
                freed: self.freed.clone(),
            })
    }

    /// Reserves a slot, waiting up to `wait` for one to be freed.
    pub async fn reserve_within(&self, max: usize, wait: Duration) -> Option<Slot> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check, so a slot freed in between still wakes us.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_reserve(max) {
                return Some(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.try_reserve(max);
            }
        }
    }

    /// Slots taken now.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_hands_out_more_than_max_and_frees_on_drop() {
        let s = Slots::default();
        let a = s.try_reserve(2).unwrap();
        let _b = s.try_reserve(2).unwrap();
        assert!(s.try_reserve(2).is_none());
        drop(a);
        assert!(s.try_reserve(2).is_some());
    }

    #[test]
    fn concurrent_reservations_respect_the_limit() {
        let s = Slots::default();
        let held: Vec<_> = std::thread::scope(|scope| {
            let hs: Vec<_> = (0..16)
                .map(|_| {
                    scope.spawn(|| {
                        (0..100)
                            .filter_map(|_| s.try_reserve(50))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.len(), 50);
        assert_eq!(s.used(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_slot_freed_while_it_waits() {
        let s = Slots::default();
        let held = s.try_reserve(1).unwrap();
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.reserve_within(1, Duration::from_secs(2)).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(held);
        assert!(waiter.await.unwrap().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_after_its_wait() {
        let s = Slots::default();
        let _held = s.try_reserve(1).unwrap();
        assert!(s.reserve_within(1, Duration::from_secs(2)).await.is_none());
    }
}
