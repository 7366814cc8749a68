//! A bulkhead: at most `max_concurrent` calls in flight. A full bulkhead
//! rejects at once; nothing queues behind a slow upstream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A concurrency cap.
#[derive(Debug)]
pub struct Bulkhead {
    capacity: usize,
    permits: Arc<Semaphore>,
    rejections: AtomicU64,
}

/// One in-flight slot, released on drop.
#[derive(Debug)]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
}

// === impl Bulkhead ===

impl Bulkhead {
    /// A bulkhead of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            permits: Arc::new(Semaphore::new(capacity)),
            rejections: AtomicU64::new(0),
        }
    }

    /// A bulkhead that never refuses, kept for its count of calls in flight.
    pub fn unbounded() -> Self {
        Self::new(Semaphore::MAX_PERMITS)
    }

    /// Whether it has a real cap (not [`Bulkhead::unbounded`]).
    pub fn is_bounded(&self) -> bool {
        self.capacity < Semaphore::MAX_PERMITS
    }

    /// A slot, or `None` at once when all are taken.
    pub fn try_acquire(&self) -> Option<BulkheadPermit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(BulkheadPermit { _permit: permit }),
            Err(_) => {
                self.rejections.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    /// The cap.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Calls rejected so far.
    pub fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BH-1 and BH-2: the cap holds, excess is refused at once, and every
    /// slot comes back when its permit is dropped.
    #[test]
    fn bh1_bh2_the_cap_holds_and_permits_never_leak() {
        let bulkhead = Bulkhead::new(25);
        let held: Vec<_> = (0..100).filter_map(|_| bulkhead.try_acquire()).collect();
        assert_eq!(held.len(), 25);
        assert_eq!(bulkhead.in_flight(), 25);
        assert_eq!(bulkhead.rejections(), 75);
        drop(held);
        assert_eq!(bulkhead.in_flight(), 0);
        assert!(bulkhead.try_acquire().is_some());
    }
}
