//! A bulkhead: at most a cap of calls in flight. A full bulkhead rejects at
//! once; nothing queues behind a slow upstream. The cap is fixed
//! (`max_concurrent: N`) or follows the upstream's latency
//! (`max_concurrent: adaptive`, see [`crate::adaptive`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::adaptive::{AdaptivePolicy, GradientLimit};

/// A concurrency cap.
#[derive(Debug, Clone)]
pub struct Bulkhead {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The cap now: fixed, or the adaptive limiter's latest.
    cap: AtomicUsize,
    in_flight: AtomicUsize,
    rejections: AtomicU64,
    /// The limiter behind an adaptive cap, fed when a call ends.
    adaptive: Option<Mutex<GradientLimit>>,
}

/// One in-flight slot, released on drop.
#[derive(Debug)]
pub struct BulkheadPermit {
    shared: Arc<Shared>,
    /// Calls in flight when this one started, itself included.
    in_flight_at_start: usize,
}

// === impl Bulkhead ===

impl Bulkhead {
    /// A bulkhead of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        Self::with(capacity, None)
    }

    /// A bulkhead whose cap follows latency within `policy`'s bounds.
    pub fn adaptive(policy: AdaptivePolicy) -> Self {
        let limiter = GradientLimit::new(policy);
        Self::with(limiter.limit(), Some(Mutex::new(limiter)))
    }

    /// A bulkhead that never refuses, kept for its count of calls in flight.
    pub fn unbounded() -> Self {
        Self::new(usize::MAX)
    }

    fn with(cap: usize, adaptive: Option<Mutex<GradientLimit>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                cap: AtomicUsize::new(cap),
                in_flight: AtomicUsize::new(0),
                rejections: AtomicU64::new(0),
                adaptive,
            }),
        }
    }

    /// Whether it has a real cap (not [`Bulkhead::unbounded`]).
    pub fn is_bounded(&self) -> bool {
        self.capacity() < usize::MAX
    }

    /// The adaptive cap's bounds, when the cap is adaptive.
    pub fn adaptive_policy(&self) -> Option<AdaptivePolicy> {
        let limiter = self.shared.adaptive.as_ref()?;
        Some(lock(limiter).policy())
    }

    /// A slot, or `None` at once when all are taken.
    pub fn try_acquire(&self) -> Option<BulkheadPermit> {
        let shared = &self.shared;
        let cap = shared.cap.load(Ordering::Relaxed);
        let taken = shared
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current < cap).then_some(current + 1)
            });
        match taken {
            Ok(before) => Some(BulkheadPermit {
                shared: shared.clone(),
                in_flight_at_start: before + 1,
            }),
            Err(_) => {
                shared.rejections.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// The cap now.
    pub fn capacity(&self) -> usize {
        self.shared.cap.load(Ordering::Relaxed)
    }

    /// Calls rejected so far.
    pub fn rejections(&self) -> u64 {
        self.shared.rejections.load(Ordering::Relaxed)
    }
}

// === impl BulkheadPermit ===

impl BulkheadPermit {
    /// The call reached its answer (its first token, for a stream) after
    /// `latency`: an adaptive cap learns from it.
    pub fn record_success(&self, latency: Duration) {
        self.adapt(|limiter| limiter.on_success(latency, self.in_flight_at_start));
    }

    /// The call failed in a way that says the upstream is overloaded.
    pub fn record_overload(&self) {
        self.adapt(GradientLimit::on_overload);
    }

    fn adapt(&self, update: impl FnOnce(&mut GradientLimit) -> usize) {
        if let Some(limiter) = &self.shared.adaptive {
            let cap = update(&mut lock(limiter));
            self.shared.cap.store(cap, Ordering::Relaxed);
        }
    }
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The limiter, even if a thread panicked while holding it (its state is
/// a few numbers, valid at every step).
fn lock(limiter: &Mutex<GradientLimit>) -> std::sync::MutexGuard<'_, GradientLimit> {
    limiter
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// BH-3: an adaptive cap admits what its limiter says, and learns from
    /// the permits' outcomes.
    #[test]
    fn bh3_an_adaptive_cap_follows_its_limiter() {
        let bulkhead = Bulkhead::adaptive(AdaptivePolicy { min: 2, max: 50 });
        assert_eq!(
            bulkhead.adaptive_policy(),
            Some(AdaptivePolicy { min: 2, max: 50 })
        );
        let held: Vec<_> = (0..30).filter_map(|_| bulkhead.try_acquire()).collect();
        assert_eq!(held.len(), 20, "starts at 20");
        for permit in &held {
            permit.record_overload();
        }
        // 20 × 0.9²⁰ is below the floor.
        assert_eq!(bulkhead.capacity(), 2);
        drop(held);
        let again: Vec<_> = (0..10).filter_map(|_| bulkhead.try_acquire()).collect();
        assert_eq!(again.len(), 2);
        assert_eq!(Bulkhead::new(3).adaptive_policy(), None);
        assert!(!Bulkhead::unbounded().is_bounded());
    }
}
