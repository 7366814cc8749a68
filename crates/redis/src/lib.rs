//! State several Keel instances share through Redis (`redis:` in the
//! configuration): tenant and provider rate limits, exact across instances
//! (`bucket`), and a second level of the prompt cache (`cache_level`).
//! Breakers, bulkheads, hedge budgets and affinity pins stay per instance.
//!
//! Redis is never on the critical path for correctness of serving: every
//! call is bounded by `redis.timeout`, and while Redis is unreachable
//! ([`RedisLink`]) limits fall back to local buckets and the cache to its
//! local level; no request fails because Redis is down.

mod bucket;
mod cache_level;
mod link;
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

pub use bucket::{take_both, BucketClock, RateBucket, RedisBucket};
pub use cache_level::{CacheLevel, SharedEntry, PURGE_CHANNEL};
pub use link::{RedisLink, FAILURES_TO_DOWN, PROBE_EVERY};

use keel_resilience::TokenBucket;

/// Where an instance's rate limits (and shared cache level) live.
#[derive(Clone, Default)]
pub struct Shared {
    redis: Option<(Arc<RedisLink>, u32)>,
}

// === impl Shared ===

impl Shared {
    /// Everything in this instance.
    pub fn local() -> Self {
        Self::default()
    }

    /// Shared through the Redis at `config.url`.
    pub fn redis(config: &keel_config::RedisConfig) -> redis::RedisResult<Self> {
        let link = RedisLink::connect(&config.url, Some(config.timeout))?;
        Ok(Self {
            redis: Some((link, config.expected_instances.max(1))),
        })
    }

    /// The link to Redis, when limits are shared.
    pub fn link(&self) -> Option<&Arc<RedisLink>> {
        self.redis.as_ref().map(|(link, _)| link)
    }

    /// The prompt cache's shared level, when Redis is configured.
    pub fn cache_level(&self) -> Option<CacheLevel> {
        self.link().map(|link| CacheLevel::new(link.clone()))
    }

    /// A bucket of `capacity` per `period` named `key` (e.g.
    /// `tenant:acme:rpm`): shared when Redis is configured, with a local
    /// fallback of `capacity / expected_instances`; local otherwise.
    pub fn bucket(&self, key: &str, capacity: u64, period: Duration) -> RateBucket {
        match &self.redis {
            None => RateBucket::Local(TokenBucket::new(capacity, period)),
            Some((link, instances)) => RateBucket::Shared(RedisBucket::new(
                link.clone(),
                format!("keel:bucket:{key}"),
                capacity,
                period,
                (capacity / u64::from(*instances)).max(1),
                BucketClock::Server,
            )),
        }
    }
}
