//! [`RateLimit`]: what the router and the server need of a rate-limit
//! bucket, whoever keeps its state: the in-process [`TokenBucket`], or a
//! bucket several instances share (kept in Redis by `keel-redis`). Only
//! taking may wait (a shared bucket asks its store); settling and pausing
//! are sent off and never hold a request up.

use std::future::Future;
use std::time::Duration;

use crate::TokenBucket;

/// A rate limit of `capacity` tokens per period, with reservation,
/// settlement and pauses (see [`TokenBucket`] for the semantics every
/// implementation follows).
pub trait RateLimit: Send + Sync {
    /// Takes `cost` tokens and says how many it took (at most the
    /// capacity), or how long until they would be there.
    fn take(&self, cost: f64) -> impl Future<Output = Result<f64, Duration>> + Send;

    /// Corrects a reservation: a positive `delta` takes more (into bounded
    /// debt), a negative one gives tokens back.
    fn settle(&self, delta: f64);

    /// Empties the bucket and refuses everything for `pause` (an upstream
    /// 429), at most [`crate::token_bucket::MAX_PAUSE`].
    fn drain_and_pause(&self, pause: Duration);

    /// Whole tokens available now (as last known, for a shared bucket).
    fn remaining(&self) -> u64;

    /// The capacity.
    fn capacity(&self) -> u64;

    /// Time until the bucket is full again (as last known).
    fn time_to_full(&self) -> Duration;
}

impl RateLimit for TokenBucket {
    fn take(&self, cost: f64) -> impl Future<Output = Result<f64, Duration>> + Send {
        std::future::ready(self.try_take(cost))
    }

    fn settle(&self, delta: f64) {
        TokenBucket::settle(self, delta);
    }

    fn drain_and_pause(&self, pause: Duration) {
        TokenBucket::drain_and_pause(self, pause);
    }

    fn remaining(&self) -> u64 {
        TokenBucket::remaining(self)
    }

    fn capacity(&self) -> u64 {
        TokenBucket::capacity(self)
    }

    fn time_to_full(&self) -> Duration {
        TokenBucket::time_to_full(self)
    }
}
