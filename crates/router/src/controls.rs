//! The resilience controls of one provider and of one target, built from
//! the configuration: the clocks, the retry policy and budget, the bulkhead
//! and the rate limits (per provider), and the circuit breaker (per target).

use std::sync::Arc;
use std::time::Duration;

use crate::{Health, HealthSchedule};
use keel_config::{MaxConcurrent, ProviderConfig};
use keel_redis::{RateBucket, Shared};
use keel_resilience::{AdaptivePolicy, Backoff, Bulkhead, RetryBudget, RetryBudgetPolicy};

/// The per-attempt clocks of a provider (the README's "Clocks").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clocks {
    /// Request sent → response head (streams).
    pub headers: Duration,
    /// Request sent → first token (the whole answer for non-streams).
    pub first_token: Duration,
    /// Longest gap between tokens after the first.
    pub inactivity: Duration,
    /// The whole attempt, stream included.
    pub total: Duration,
}

/// Everything one provider's attempts share.
pub struct ProviderControls {
    /// The provider's `kind` (`openai`, `anthropic`, …), for operators.
    pub kind: &'static str,
    /// `responses: native`: it takes `/v1/responses` bodies as they come.
    pub responses_native: bool,
    /// Attempt clocks.
    pub clocks: Clocks,
    /// Tries per target, the first included.
    pub attempts: u32,
    /// Backoff between tries of the same target.
    pub backoff: Backoff,
    /// The provider's retry budget.
    pub budget: RetryBudget,
    /// `max_concurrent`, fixed or adaptive (unbounded when not set, still
    /// counting the calls in flight for `/admin/providers`).
    pub bulkhead: Bulkhead,
    /// `rpm`, when set.
    pub requests: Option<RateBucket>,
    /// `tpm`, when set: charged from real usage after each call.
    pub tokens: Option<RateBucket>,
    /// `health_check`: its schedule and last outcome.
    pub health: Health,
}

// === impl ProviderControls ===

impl ProviderControls {
    /// The controls configured for `provider`, its rate limits kept in
    /// `shared` (this instance, or Redis).
    pub fn from_config(provider: &ProviderConfig, shared: &Shared) -> Arc<Self> {
        let timeouts = &provider.timeouts;
        let retry = &provider.retry;
        let minute = Duration::from_secs(60);
        Arc::new(Self {
            kind: provider.kind.as_str(),
            responses_native: provider.responses_native,
            clocks: Clocks {
                headers: timeouts.headers,
                first_token: timeouts.first_token,
                inactivity: timeouts.inactivity,
                total: timeouts.total,
            },
            attempts: retry.attempts.max(1),
            backoff: Backoff {
                base_delay: retry.base_delay,
                max_delay: retry.max_delay,
            },
            budget: RetryBudget::new(RetryBudgetPolicy {
                ratio: retry.budget_ratio,
                min_retries: 3,
                window: Duration::from_secs(10),
            }),
            bulkhead: bulkhead(provider.max_concurrent),
            requests: provider.rpm.map(|rpm| {
                shared.bucket(
                    &format!("provider:{}:rpm", provider.name),
                    u64::from(rpm),
                    minute,
                )
            }),
            tokens: provider
                .tpm
                .map(|tpm| shared.bucket(&format!("provider:{}:tpm", provider.name), tpm, minute)),
            health: provider.health_check.map_or_else(Health::off, |check| {
                Health::every(HealthSchedule {
                    interval: check.interval,
                    // The clocks of a call's response head, and never
                    // longer than the interval, so probes never overlap.
                    timeout: (timeouts.connect + timeouts.headers).min(check.interval),
                })
            }),
        })
    }

    /// Controls with no limits and the given clocks, for tests.
    pub fn unlimited(clocks: Clocks, attempts: u32, backoff: Backoff) -> Arc<Self> {
        Arc::new(Self {
            kind: "test",
            responses_native: false,
            clocks,
            attempts,
            backoff,
            budget: RetryBudget::new(RetryBudgetPolicy {
                ratio: 0.2,
                min_retries: 3,
                window: Duration::from_secs(10),
            }),
            bulkhead: Bulkhead::unbounded(),
            requests: None,
            tokens: None,
            health: Health::off(),
        })
    }
}

/// The bulkhead `max_concurrent` describes.
fn bulkhead(max_concurrent: Option<MaxConcurrent>) -> Bulkhead {
    match max_concurrent {
        None => Bulkhead::unbounded(),
        Some(MaxConcurrent::Fixed(cap)) => Bulkhead::new(cap),
        Some(MaxConcurrent::Adaptive { min, max }) => {
            Bulkhead::adaptive(AdaptivePolicy { min, max })
        }
    }
}
