//! `MockState`: the fault plans and counters shared by every connection.
//!
//! One mutex guards both maps. It is held only for a few map operations per
//! request, never across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::faults::{FailNext, Faults};
use crate::log::{LoggedRequest, RequestLog};
use crate::stats::{Counters, ModelStats, RequestGuard};

/// The model name whose fault plan applies to models without a plan of their own.
pub const WILDCARD_MODEL: &str = "*";

/// Shared state of one mock upstream: fault plans and counters, keyed by model.
///
/// Cheap to clone; clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct MockState {
    inner: Arc<Mutex<Registry>>,
}

/// What the mock decided for one admitted request.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Settles the request on a counter.
    pub(crate) guard: RequestGuard,
    /// The plan in force for the request (the default plan when none is set).
    pub(crate) faults: Arc<Faults>,
    /// Set when this request must fail with an injected status.
    pub(crate) fail: Option<FailNext>,
    /// The first-token delay after heavy-tail selection.
    pub(crate) first_token_delay: Duration,
}

#[derive(Debug, Default)]
struct Registry {
    plans: HashMap<String, Plan>,
    counters: HashMap<String, Arc<Counters>>,
    log: RequestLog,
}

#[derive(Debug)]
struct Plan {
    faults: Arc<Faults>,
    fail_remaining: u32,
    /// Requests seen under this plan, for heavy-tail selection.
    seen: u64,
}

// === impl MockState ===

impl MockState {
    /// Creates a mock with no fault plans and zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the fault plan of `model` (use `"*"` for every model without a plan).
    ///
    /// The plan's own progress (requests left to fail, heavy-tail position) restarts.
    pub fn set_faults(&self, model: &str, faults: Faults) {
        let plan = Plan {
            fail_remaining: faults.fail.as_ref().map_or(0, |fail| fail.count),
            faults: Arc::new(faults),
            seen: 0,
        };
        self.lock().plans.insert(model.to_owned(), plan);
    }

    /// Removes the fault plan of `model`; counters are kept.
    pub fn remove_faults(&self, model: &str) {
        self.lock().plans.remove(model);
    }

    /// Removes every fault plan, every counter and the request log.
    pub fn clear(&self) {
        let mut registry = self.lock();
        registry.plans.clear();
        registry.counters.clear();
        registry.log.clear();
    }

    /// The last API requests received, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.entries()
    }

    /// Empties the request log.
    pub fn forget_requests(&self) {
        self.lock().log.clear();
    }

    /// Adds a request to the log.
    pub(crate) fn log_request(&self, request: LoggedRequest) {
        self.lock().log.push(request);
    }

    /// The counters of `model` (all zero for a model never requested).
    pub fn stats(&self, model: &str) -> ModelStats {
        self.lock()
            .counters
            .get(model)
            .map(|counters| counters.snapshot())
            .unwrap_or_default()
    }

    /// The counters of every model requested since the last `clear`.
    pub fn all_stats(&self) -> BTreeMap<String, ModelStats> {
        self.lock()
            .counters
            .iter()
            .map(|(model, counters)| (model.clone(), counters.snapshot()))
            .collect()
    }

    /// Counts a valid request for `model` and decides which faults it gets.
    pub(crate) fn admit(&self, model: &str) -> Admission {
        let mut registry = self.lock();
        let counters = match registry.counters.get(model) {
            Some(counters) => Arc::clone(counters),
            None => {
                let counters = Arc::new(Counters::default());
                registry
                    .counters
                    .insert(model.to_owned(), Arc::clone(&counters));
                counters
            }
        };
        let guard = counters.admit();
        let plan = match registry.plans.get_mut(model) {
            Some(plan) => Some(plan),
            None => registry.plans.get_mut(WILDCARD_MODEL),
        };
        let Some(plan) = plan else {
            return Admission {
                guard,
                faults: Arc::default(),
                fail: None,
                first_token_delay: Duration::ZERO,
            };
        };
        plan.decide(guard)
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters to a mock, so a poisoned lock is still used.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Plan ===

impl Plan {
    fn decide(&mut self, guard: RequestGuard) -> Admission {
        self.seen += 1;
        let fail = if self.fail_remaining > 0 {
            self.fail_remaining -= 1;
            self.faults.fail.clone()
        } else {
            None
        };
        let mut delay_ms = self.faults.first_token_delay_ms;
        if let Some(tail) = &self.faults.heavy_tail {
            if tail.one_in > 0 && self.seen % u64::from(tail.one_in) == 0 {
                delay_ms = tail.slowed_ms(delay_ms);
            }
        }
        Admission {
            guard,
            faults: Arc::clone(&self.faults),
            fail,
            first_token_delay: Duration::from_millis(delay_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::HeavyTail;

    #[test]
    fn fail_plan_runs_out_after_count_requests() {
        let state = MockState::new();
        let fail = FailNext {
            status: 503,
            count: 2,
            ..FailNext::default()
        };
        state.set_faults(
            "m",
            Faults {
                fail: Some(fail),
                ..Faults::default()
            },
        );
        let fails: Vec<bool> = (0..4).map(|_| state.admit("m").fail.is_some()).collect();
        assert_eq!(fails, [true, true, false, false]);
    }

    #[test]
    fn wildcard_plan_applies_only_to_models_without_a_plan() {
        let state = MockState::new();
        state.set_faults(
            WILDCARD_MODEL,
            Faults {
                first_token_delay_ms: 7,
                ..Faults::default()
            },
        );
        state.set_faults("own", Faults::default());
        assert_eq!(
            state.admit("other").first_token_delay,
            Duration::from_millis(7)
        );
        assert_eq!(state.admit("own").first_token_delay, Duration::ZERO);
    }

    #[test]
    fn heavy_tail_slows_every_nth_request() {
        let state = MockState::new();
        let tail = HeavyTail {
            one_in: 3,
            factor: 4.0,
        };
        state.set_faults(
            "m",
            Faults {
                heavy_tail: Some(tail),
                ..Faults::default()
            },
        );
        let delays: Vec<u128> = (0..6)
            .map(|_| state.admit("m").first_token_delay.as_millis())
            .collect();
        assert_eq!(delays, [0, 0, 40, 0, 0, 40]);
    }

    #[test]
    fn clear_forgets_plans_and_counters() {
        let state = MockState::new();
        state.set_faults(
            "m",
            Faults {
                first_token_delay_ms: 5,
                ..Faults::default()
            },
        );
        drop(state.admit("m"));
        state.clear();
        assert_eq!(state.stats("m"), ModelStats::default());
        assert!(state.all_stats().is_empty());
        assert_eq!(state.admit("m").first_token_delay, Duration::ZERO);
    }
}
