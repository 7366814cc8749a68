//! A token bucket that refills continuously, can run into debt when the real
//! cost of a call turns out larger than reserved, can be settled afterwards,
//! and can be drained and paused when the upstream says 429.
//!
//! Written here rather than taken from `governor` because Keel needs
//! reservation and settlement (tokens per minute are only known from usage
//! after the call) and a clock that tokio's paused time controls.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The longest an upstream's 429 may pause a bucket.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// The deepest debt a settlement can leave, in refills of the whole bucket.
pub const MAX_DEBT_PERIODS: f64 = 60.0;

/// The longest wait a refusal names (a deep debt on a slow bucket).
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A token bucket of `capacity` tokens refilled at `capacity` per `period`.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    updated: Instant,
    paused_until: Option<Instant>,
}

// === impl TokenBucket ===

impl TokenBucket {
    /// A full bucket of `capacity` tokens that refills fully every `period`.
    pub fn new(capacity: u64, period: Duration) -> Self {
        let capacity = capacity.max(1) as f64;
        let state = State {
            tokens: capacity,
            updated: Instant::now(),
            paused_until: None,
        };
        Self {
            capacity,
            per_second: capacity / period.as_secs_f64().max(f64::EPSILON),
            state: Mutex::new(state),
        }
    }

    /// Takes `cost` tokens and says how many it took, or how long until
    /// they would be there. A call costing more than the whole bucket takes
    /// the whole bucket when it is full: callers settle against what was
    /// taken (the returned amount), never against what they asked for.
    pub fn try_take(&self, cost: f64) -> Result<f64, Duration> {
        let mut state = self.refilled();
        let now = Instant::now();
        if let Some(until) = state.paused_until.filter(|until| *until > now) {
            return Err(until - now);
        }
        let cost = clamp_cost(cost).min(self.capacity);
        if state.tokens >= cost {
            state.tokens -= cost;
            return Ok(cost);
        }
        Err(seconds((cost - state.tokens) / self.per_second))
    }

    /// Corrects a reservation once the real cost is known: a positive
    /// `delta` takes more (the bucket may go into debt, down to
    /// [`MAX_DEBT_PERIODS`] refills, so one absurd usage report cannot lock
    /// the bucket for ever), a negative one gives tokens back.
    pub fn settle(&self, delta: f64) {
        let delta = if delta.is_nan() { 0.0 } else { delta };
        let floor = -self.capacity * MAX_DEBT_PERIODS;
        let mut state = self.refilled();
        state.tokens = (state.tokens - delta).clamp(floor, self.capacity);
    }

    /// Empties the bucket and refuses everything for `pause` (an upstream
    /// 429 with Retry-After), at most [`MAX_PAUSE`].
    pub fn drain_and_pause(&self, pause: Duration) {
        let mut state = self.refilled();
        state.tokens = 0.0;
        let now = Instant::now();
        state.paused_until = Some(now.checked_add(pause.min(MAX_PAUSE)).unwrap_or(now));
    }

    /// Whole tokens available now.
    pub fn remaining(&self) -> u64 {
        self.refilled().tokens.max(0.0) as u64
    }

    /// The capacity.
    pub fn capacity(&self) -> u64 {
        self.capacity as u64
    }

    /// Time until the bucket is full again.
    pub fn time_to_full(&self) -> Duration {
        let state = self.refilled();
        seconds((self.capacity - state.tokens) / self.per_second)
    }

    /// The state, refilled up to now. Refill does not run while paused.
    fn refilled(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let from = match state.paused_until {
            Some(until) if until > now => now,
            Some(until) => until.max(state.updated),
            None => state.updated,
        };
        let elapsed = now.saturating_duration_since(from).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.per_second).min(self.capacity);
        state.updated = now;
        if state.paused_until.is_some_and(|until| until <= now) {
            state.paused_until = None;
        }
        state
    }
}

/// A number of seconds from arithmetic on outside figures as a duration:
/// negative and NaN are zero, anything huge is [`MAX_WAIT`].
fn seconds(value: f64) -> Duration {
    if value.is_nan() || value <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(value).map_or(MAX_WAIT, |wait| wait.min(MAX_WAIT))
}

/// A cost from outside (an estimate, a usage report): NaN and negative are 0.
fn clamp_cost(cost: f64) -> f64 {
    if cost.is_nan() {
        0.0
    } else {
        cost.max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RL-1: capacity 10, one token per 100 ms: a burst of 15 admits exactly
    /// 10, the refusals name the wait, and 10 more pass within a second.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn rl1_a_burst_gets_exactly_the_capacity() {
        let bucket = TokenBucket::new(10, Duration::from_secs(1));
        let results: Vec<_> = (0..15).map(|_| bucket.try_take(1.0)).collect();
        assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 10);
        assert_eq!(results[10], Err(Duration::from_millis(100)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!((0..15).filter(|_| bucket.try_take(1.0).is_ok()).count(), 10);
    }

    /// Trust boundary 4: absurd figures from outside (a usage of u64::MAX,
    /// a Retry-After of 2^64 s) leave a bucket that still answers sanely:
    /// bounded debt, bounded waits, no panic.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn tb4_absurd_usage_and_pauses_are_bounded() {
        let bucket = TokenBucket::new(30, Duration::from_secs(60));
        assert_eq!(bucket.try_take(1.0), Ok(1.0));
        bucket.settle(u64::MAX as f64);
        bucket.settle(f64::NAN);
        let wait = bucket.try_take(1.0).err();
        assert_eq!(
            wait,
            Some(Duration::from_secs(3602)),
            "an hour of debt plus the token asked"
        );
        assert!(bucket.time_to_full() <= MAX_WAIT);
        tokio::time::advance(Duration::from_secs(3700)).await;
        assert!(
            bucket.try_take(1.0).is_ok(),
            "the debt is paid off in an hour"
        );
        bucket.drain_and_pause(Duration::MAX);
        assert_eq!(bucket.try_take(1.0), Err(MAX_PAUSE));
        assert_eq!(bucket.try_take(f64::NAN), Err(MAX_PAUSE));
    }

    /// Trust boundary 1: a call asking for more than the bucket holds takes
    /// the whole bucket, and says so, so its settlement is against that.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn tb1_an_oversized_take_reports_what_it_took() {
        let bucket = TokenBucket::new(10_000, Duration::from_secs(60));
        assert_eq!(bucket.try_take(64_000.0), Ok(10_000.0));
        bucket.settle(9_000.0 - 10_000.0);
        assert_eq!(bucket.remaining(), 1_000, "charged the 9,000 really used");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn settlement_refunds_and_charges_debt() {
        let bucket = TokenBucket::new(100, Duration::from_secs(60));
        assert!(bucket.try_take(80.0).is_ok());
        bucket.settle(-50.0);
        assert_eq!(bucket.remaining(), 70);
        bucket.settle(100.0);
        assert_eq!(bucket.remaining(), 0);
        assert!(bucket.try_take(1.0).is_err());
    }

    /// An upstream 429 drains the bucket and pauses it for Retry-After.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_429_drains_and_pauses_the_bucket() {
        let bucket = TokenBucket::new(600, Duration::from_secs(60));
        bucket.drain_and_pause(Duration::from_secs(2));
        assert_eq!(bucket.try_take(1.0), Err(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_millis(1_900)).await;
        assert!(bucket.try_take(1.0).is_err());
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(bucket.try_take(1.0).is_ok());
    }
}
