//! Per-model request counters and the guard that settles each request.
//!
//! Every admitted request holds one `RequestGuard`. It is settled exactly
//! once: as completed, as an injected failure, or (when it is dropped while
//! still pending, because hyper dropped the handler future or the body
//! stream after the client went away) as cancelled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A snapshot of one model's counters.
///
/// `requests` = `completed` + `cancelled` + `failed_injected` + requests still in flight.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct ModelStats {
    /// Valid chat, responses, messages or embeddings requests received for the model, counted before faults apply.
    pub requests: u64,
    /// Responses whose whole body (JSON, or a stream up to its terminal event) was handed to hyper.
    pub completed: u64,
    /// Requests dropped before completion: the client went away during a delay, a stall or a stream.
    pub cancelled: u64,
    /// Requests answered with an injected status, or whose stream the mock
    /// cut short on purpose (injected drop or in-band error event).
    pub failed_injected: u64,
}

/// The live counters of one model.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    failed_injected: AtomicU64,
}

/// Settles one request on exactly one counter; counts `cancelled` when dropped unsettled.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    counters: Arc<Counters>,
    settled: bool,
}

// === impl Counters ===

impl Counters {
    /// Counts a new request and returns the guard that will settle it.
    pub(crate) fn admit(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        RequestGuard {
            counters: Arc::clone(self),
            settled: false,
        }
    }

    /// Reads the counters.
    pub(crate) fn snapshot(&self) -> ModelStats {
        ModelStats {
            requests: self.requests.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            failed_injected: self.failed_injected.load(Ordering::Relaxed),
        }
    }
}

// === impl RequestGuard ===

impl RequestGuard {
    /// The response was fully handed to hyper.
    pub(crate) fn complete(&mut self) {
        self.settle(|counters| &counters.completed);
    }

    /// The mock failed the request on purpose.
    pub(crate) fn fail_injected(&mut self) {
        self.settle(|counters| &counters.failed_injected);
    }

    fn settle(&mut self, counter: impl FnOnce(&Counters) -> &AtomicU64) {
        if self.settled {
            return;
        }
        self.settled = true;
        counter(&self.counters).fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.settle(|counters| &counters.cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_settles_once() {
        let counters = Arc::new(Counters::default());
        let mut guard = counters.admit();
        guard.complete();
        guard.fail_injected();
        drop(guard);
        let expected = ModelStats {
            requests: 1,
            completed: 1,
            ..ModelStats::default()
        };
        assert_eq!(counters.snapshot(), expected);
    }

    #[test]
    fn dropped_unsettled_guard_counts_cancelled() {
        let counters = Arc::new(Counters::default());
        drop(counters.admit());
        assert_eq!(counters.snapshot().cancelled, 1);
    }
}
