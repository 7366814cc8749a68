//! Resilience controls, each a small component with a plain policy struct,
//! independent of HTTP and of LLMs. The router composes them around one
//! upstream attempt; every one reads time through `tokio::time::Instant`, so
//! tests drive them on tokio's paused clock.
//!
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`retry_budget`]: retries in a trailing window capped by a ratio of first tries.
//! - [`breaker`]: a circuit breaker over a sliding failure-rate window.
//! - [`bulkhead`]: a concurrency cap that rejects at once, never queues.
//! - [`adaptive`]: the gradient limiter behind `max_concurrent: adaptive`.
//! - [`token_bucket`]: a token bucket that can be drained, paused and settled.
//! - [`rate_limit`]: the trait a bucket kept elsewhere (Redis) shares with it.
//! - [`window`]: the sliding-window counter the budget and breaker share.

pub mod adaptive;
pub mod backoff;
pub mod breaker;
pub mod bulkhead;
pub mod rate_limit;
pub mod retry_budget;
pub mod token_bucket;
pub mod window;

pub use adaptive::{AdaptivePolicy, GradientLimit};
pub use backoff::Backoff;
pub use breaker::{BreakerPolicy, BreakerState, CircuitBreaker, Outcome, TrialPermit};
pub use bulkhead::{Bulkhead, BulkheadPermit};
pub use rate_limit::RateLimit;
pub use retry_budget::{RetryBudget, RetryBudgetPolicy};
pub use token_bucket::TokenBucket;
pub use window::{Outcomes, SlidingWindow, Tally, Tries};
