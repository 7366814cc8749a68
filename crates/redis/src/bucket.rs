//! Rate-limit buckets several instances share: the state of each lives in
//! one Redis hash, changed only by one atomic Lua script (`script.lua`),
//! one round trip per admission. While Redis is unreachable each instance
//! falls back to a local bucket of the limit divided by
//! `redis.expected_instances`, and goes back to the shared one by itself.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use keel_resilience::token_bucket::{MAX_DEBT_PERIODS, MAX_PAUSE};
use keel_resilience::{RateLimit, TokenBucket};
use redis::Script;
use tokio::time::Instant;

use crate::RedisLink;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("script.lua")));

/// A rate limit, kept in this instance or shared through Redis; the router
/// and the server use it through [`RateLimit`] and never know which.
pub enum RateBucket {
    /// In this instance only.
    Local(TokenBucket),
    /// Shared through Redis.
    Shared(RedisBucket),
}

/// A bucket kept in Redis.
pub struct RedisBucket {
    inner: Arc<Inner>,
}

struct Inner {
    link: Arc<RedisLink>,
    key: String,
    capacity: f64,
    per_ms: f64,
    clock: BucketClock,
    /// The bucket used while Redis is unreachable.
    fallback: TokenBucket,
    /// The state the last script call returned, for `x-ratelimit-*`.
    seen: Mutex<Seen>,
    /// Settlements not sent yet, and whether a send is scheduled.
    unsettled: Mutex<(f64, bool)>,
}

/// How long settlements are gathered before one goes to Redis: every
/// answer settles its tokens, and one round trip per answer would double
/// the traffic; a few milliseconds late is still the same minute.
const SETTLE_EVERY: Duration = Duration::from_millis(10);

/// Which clock the script refills by.
#[derive(Clone, Copy, Debug)]
pub enum BucketClock {
    /// The Redis server's, which every instance shares (production).
    Server,
    /// Milliseconds of tokio's clock since this instant, for tests on the
    /// paused clock.
    Tokio(Instant),
}

struct Seen {
    tokens: f64,
    at: Instant,
    paused_for: Duration,
}

/// One script reply.
struct Reply {
    took: bool,
    value: f64,
    /// The bucket that refused (0-based), when one did.
    refused: Option<usize>,
}

// === impl RateBucket ===

impl RateLimit for RateBucket {
    async fn take(&self, cost: f64) -> Result<f64, Duration> {
        match self {
            Self::Local(bucket) => bucket.try_take(cost),
            Self::Shared(bucket) => bucket.take(cost).await,
        }
    }

    fn settle(&self, delta: f64) {
        match self {
            Self::Local(bucket) => bucket.settle(delta),
            Self::Shared(bucket) => RateLimit::settle(bucket, delta),
        }
    }

    fn drain_and_pause(&self, pause: Duration) {
        match self {
            Self::Local(bucket) => bucket.drain_and_pause(pause),
            Self::Shared(bucket) => RateLimit::drain_and_pause(bucket, pause),
        }
    }

    fn remaining(&self) -> u64 {
        match self {
            Self::Local(bucket) => bucket.remaining(),
            Self::Shared(bucket) => RateLimit::remaining(bucket),
        }
    }

    fn capacity(&self) -> u64 {
        match self {
            Self::Local(bucket) => bucket.capacity(),
            Self::Shared(bucket) => RateLimit::capacity(bucket),
        }
    }

    fn time_to_full(&self) -> Duration {
        match self {
            Self::Local(bucket) => bucket.time_to_full(),
            Self::Shared(bucket) => RateLimit::time_to_full(bucket),
        }
    }
}

// === impl RedisBucket ===

impl RedisBucket {
    /// `capacity` tokens refilled every `period`, kept under `key`; while
    /// Redis is unreachable, `fallback_capacity` per `period` locally.
    pub fn new(
        link: Arc<RedisLink>,
        key: String,
        capacity: u64,
        period: Duration,
        fallback_capacity: u64,
        clock: BucketClock,
    ) -> Self {
        let capacity = capacity.max(1) as f64;
        let per_ms = capacity / (period.as_secs_f64() * 1000.0).max(f64::EPSILON);
        Self {
            inner: Arc::new(Inner {
                link,
                key,
                capacity,
                per_ms,
                clock,
                fallback: TokenBucket::new(fallback_capacity.max(1), period),
                seen: Mutex::new(Seen {
                    tokens: capacity,
                    at: Instant::now(),
                    paused_for: Duration::ZERO,
                }),
                unsettled: Mutex::new((0.0, false)),
            }),
        }
    }

    /// Takes `cost` tokens from the shared bucket, or from the local
    /// fallback when Redis is down or does not answer in time.
    pub async fn take(&self, cost: f64) -> Result<f64, Duration> {
        let cost = clamp_cost(cost);
        let inner = &self.inner;
        if !inner.link.is_up() {
            inner.link.went_without();
            return inner.fallback.try_take(cost);
        }
        match inner.call("take", cost).await {
            Some(reply) if reply.took => Ok(reply.value),
            Some(reply) => Err(millis(reply.value)),
            None => {
                inner.link.went_without();
                inner.fallback.try_take(cost)
            }
        }
    }

    /// Sends a pause of `millis` off without waiting for it (a pause never
    /// holds a request up); with Redis down, the local pause stands alone.
    fn send_pause(&self, millis: f64) {
        let inner = &self.inner;
        let runtime = tokio::runtime::Handle::try_current();
        let (true, Ok(runtime)) = (inner.link.is_up(), runtime) else {
            inner.link.went_without();
            return;
        };
        let inner = inner.clone();
        runtime.spawn(async move {
            inner.call("pause", millis).await;
        });
    }
}

impl RateLimit for RedisBucket {
    fn take(&self, cost: f64) -> impl std::future::Future<Output = Result<f64, Duration>> + Send {
        RedisBucket::take(self, cost)
    }

    fn settle(&self, delta: f64) {
        let delta = if delta.is_nan() { 0.0 } else { delta };
        let inner = &self.inner;
        let runtime = tokio::runtime::Handle::try_current();
        let (true, Ok(runtime)) = (inner.link.is_up(), runtime) else {
            inner.link.went_without();
            inner.fallback.settle(delta);
            return;
        };
        if !inner.gather(delta) {
            return;
        }
        // The first settlement of a batch sends the batch a moment later.
        let inner = inner.clone();
        runtime.spawn(async move {
            tokio::time::sleep(SETTLE_EVERY).await;
            let delta = inner.take_unsettled();
            if delta != 0.0 && inner.call("settle", delta).await.is_none() {
                inner.fallback.settle(delta);
            }
        });
    }

    fn drain_and_pause(&self, pause: Duration) {
        let pause = pause.min(MAX_PAUSE);
        // Paused here too, so the pause holds if Redis goes away meanwhile.
        self.inner.fallback.drain_and_pause(pause);
        self.send_pause(pause.as_millis() as f64);
    }

    fn remaining(&self) -> u64 {
        let inner = &self.inner;
        if !inner.link.is_up() {
            return inner.fallback.remaining();
        }
        inner.projected().max(0.0) as u64
    }

    fn capacity(&self) -> u64 {
        self.inner.capacity as u64
    }

    fn time_to_full(&self) -> Duration {
        let inner = &self.inner;
        if !inner.link.is_up() {
            return inner.fallback.time_to_full();
        }
        millis((inner.capacity - inner.projected()) / inner.per_ms)
    }
}

// === impl Inner ===

impl Inner {
    async fn call(&self, op: &'static str, amount: f64) -> Option<Reply> {
        let replies = call_script(&self.link, self.clock, op, &[(self, amount)]).await?;
        Some(replies)
    }

    /// Adds `delta` to the batch; whether the batch needs its send
    /// scheduled (it was empty).
    fn gather(&self, delta: f64) -> bool {
        let mut unsettled = lock(&self.unsettled);
        unsettled.0 += delta;
        !std::mem::replace(&mut unsettled.1, true)
    }

    /// The batch, emptied.
    fn take_unsettled(&self) -> f64 {
        std::mem::take(&mut *lock(&self.unsettled)).0
    }

    fn remember(&self, tokens: f64, pause_left_ms: f64) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *seen = Seen {
            tokens,
            at: Instant::now(),
            paused_for: millis(pause_left_ms),
        };
    }

    /// The tokens the last reply left, refilled up to now.
    fn projected(&self) -> f64 {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refilling = seen.at.elapsed().saturating_sub(seen.paused_for);
        (seen.tokens + refilling.as_secs_f64() * 1000.0 * self.per_ms).min(self.capacity)
    }
}

/// Runs the script over `buckets` (all on `link`) in one round trip, and
/// remembers each bucket's state for its headers. The reply speaks of the
/// first bucket, or of the one that refused.
async fn call_script(
    link: &Arc<RedisLink>,
    clock: BucketClock,
    op: &'static str,
    buckets: &[(&Inner, f64)],
) -> Option<Reply> {
    let now = match clock {
        BucketClock::Server => String::new(),
        BucketClock::Tokio(origin) => origin.elapsed().as_millis().to_string(),
    };
    let mut call = SCRIPT.prepare_invoke();
    call.arg(op).arg(now).arg(MAX_DEBT_PERIODS);
    for (bucket, amount) in buckets {
        call.key(&bucket.key)
            .arg(bucket.capacity)
            .arg(bucket.per_ms)
            .arg(*amount);
    }
    let (status, value, index, states): (i64, String, i64, Vec<String>) = link.run(&call).await?;
    for (bucket, state) in buckets.iter().zip(states.chunks(2)) {
        if let [tokens, pause_left] = state {
            bucket.0.remember(number(tokens), number(pause_left));
        }
    }
    Some(Reply {
        took: status == 1,
        value: number(&value),
        refused: usize::try_from(index)
            .ok()
            .and_then(|index| index.checked_sub(1)),
    })
}

/// Takes `first.1` tokens from `first.0` and `second.1` from `second.0`,
/// both or neither: what each gave, or which refused (0 or 1) and how long
/// until it would not. Two buckets kept in one Redis take in one round
/// trip; otherwise (local buckets, or Redis down) one after the other,
/// giving the first back when the second refuses.
pub async fn take_both(
    first: (&RateBucket, f64),
    second: (&RateBucket, f64),
) -> Result<(f64, f64), (usize, Duration)> {
    if let (RateBucket::Shared(a), RateBucket::Shared(b)) = (first.0, second.0) {
        let (a, b) = (&a.inner, &b.inner);
        if Arc::ptr_eq(&a.link, &b.link) && a.link.is_up() {
            let costs = (clamp_cost(first.1), clamp_cost(second.1));
            let buckets = [(&**a, costs.0), (&**b, costs.1)];
            if let Some(reply) = call_script(&a.link, a.clock, "take", &buckets).await {
                return match reply.refused {
                    None if reply.took => Ok((costs.0.min(a.capacity), costs.1.min(b.capacity))),
                    refused => Err((refused.unwrap_or(0), millis(reply.value))),
                };
            }
        }
    }
    let took = first.0.take(first.1).await.map_err(|wait| (0, wait))?;
    match second.0.take(second.1).await {
        Ok(second_took) => Ok((took, second_took)),
        Err(wait) => {
            first.0.settle(-took);
            Err((1, wait))
        }
    }
}

fn clamp_cost(cost: f64) -> f64 {
    if cost.is_nan() {
        0.0
    } else {
        cost.max(0.0)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A number the script wrote; anything unreadable is 0.
fn number(text: &str) -> f64 {
    text.parse::<f64>()
        .ok()
        .filter(|value| value.is_finite())
        .unwrap_or(0.0)
}

/// Milliseconds as a duration: negative and NaN are zero, and at most a day.
fn millis(value: f64) -> Duration {
    if value.is_nan() || value <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(value / 1000.0).map_or(Duration::from_secs(86_400), |wait| {
        wait.min(Duration::from_secs(86_400))
    })
}
