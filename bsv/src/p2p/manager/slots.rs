//! Connection slots: the count of connections that hold a place under `max_connections`. A slot
//! is reserved atomically *before* a connection is admitted and released when its actor ends, so
//! a flood of concurrent inbound connections can never push the total past the limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The shared slot counter.
#[derive(Debug, Clone, Default)]
pub struct Slots(Arc<AtomicUsize>);

/// A reserved slot; dropping it frees the place.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Slots {
    /// Reserves a slot if fewer than `max` are taken.
    pub fn try_reserve(&self, max: usize) -> Option<Slot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < max).then_some(used + 1)
            })
            .ok()
            .map(|_| Slot(self.0.clone()))
    }

    /// Slots taken now.
    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
}
