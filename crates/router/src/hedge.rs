//! First-token hedging of one model: when no attempt has reached its commit
//! point (the first token, or the whole answer for a non-stream request)
//! after the hedge delay, another walk through the plan starts, beginning at
//! the next target; the first to commit wins and the others are dropped,
//! which closes their upstream connections. Hedges are capped per request
//! (`max`) and by their own budget over the trailing 10 s.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use keel_resilience::{RetryBudget, RetryBudgetPolicy};

/// How many recent times to commit `after: p95` is computed over.
const SAMPLES: usize = 512;

/// Samples needed before `after: p95` hedges at all: with fewer, the
/// percentile says nothing about the tail.
const MIN_SAMPLES: usize = 20;

/// When the next hedge of a request starts.
#[derive(Debug)]
pub enum HedgeAfter {
    /// A fixed delay, timed afresh on every turn of the race: from the
    /// start (or the last hedge), and again whenever a walk fails.
    Fixed(Duration),
    /// The model's recent 95th percentile time to commit.
    P95(Mutex<VecDeque<Duration>>),
}

/// One model's hedging policy and budget.
#[derive(Debug)]
pub struct Hedge {
    after: HedgeAfter,
    /// Hedged attempts per request.
    max: u32,
    budget: RetryBudget,
}

// === impl Hedge ===

impl Hedge {
    /// A policy hedging after `after`, at most `max` times per request and
    /// at most max(1, `budget` × the model's requests) per trailing 10 s.
    pub fn new(after: HedgeAfter, max: u32, budget: f64) -> Self {
        Self {
            after,
            max: max.max(1),
            budget: RetryBudget::new(RetryBudgetPolicy {
                ratio: budget,
                min_retries: 1,
                window: Duration::from_secs(10),
            }),
        }
    }

    /// A fixed-delay policy.
    pub fn fixed(after: Duration, max: u32, budget: f64) -> Self {
        Self::new(HedgeAfter::Fixed(after), max, budget)
    }

    /// A policy hedging at the model's observed p95 time to commit.
    pub fn p95(max: u32, budget: f64) -> Self {
        Self::new(
            HedgeAfter::P95(Mutex::new(VecDeque::with_capacity(SAMPLES))),
            max,
            budget,
        )
    }

    /// Hedged attempts allowed per request.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Counts one request of the model towards the budget.
    pub fn record_request(&self) {
        self.budget.record_first_try();
    }

    /// Takes one hedge from the budget; `false` when it is spent.
    pub fn try_hedge(&self) -> bool {
        self.budget.try_retry()
    }

    /// The delay before the next hedge; `None` when `p95` has too few
    /// samples yet.
    pub fn delay(&self) -> Option<Duration> {
        match &self.after {
            HedgeAfter::Fixed(delay) => Some(*delay),
            HedgeAfter::P95(samples) => {
                let samples = samples.lock().ok()?;
                if samples.len() < MIN_SAMPLES {
                    return None;
                }
                let mut sorted: Vec<Duration> = samples.iter().copied().collect();
                let rank = (sorted.len() * 95).div_ceil(100).saturating_sub(1);
                let (_, p95, _) = sorted.select_nth_unstable(rank);
                Some(*p95)
            }
        }
    }

    /// Records how long a request of the model took to commit (for `p95`).
    pub fn record_commit(&self, elapsed: Duration) {
        if let HedgeAfter::P95(samples) = &self.after {
            if let Ok(mut samples) = samples.lock() {
                if samples.len() == SAMPLES {
                    samples.pop_front();
                }
                samples.push_back(elapsed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_waits_for_enough_samples_then_follows_the_tail() {
        let hedge = Hedge::p95(1, 0.1);
        for _ in 0..MIN_SAMPLES - 1 {
            hedge.record_commit(Duration::from_millis(100));
        }
        assert_eq!(hedge.delay(), None, "too few samples to know the tail");
        hedge.record_commit(Duration::from_millis(100));
        assert_eq!(hedge.delay(), Some(Duration::from_millis(100)));
        // 100 samples: 94 fast, 6 slow: the 95th percentile is a slow one.
        let hedge = Hedge::p95(1, 0.1);
        for index in 0..100 {
            let millis = if index % 16 == 0 { 2_000 } else { 100 + index };
            hedge.record_commit(Duration::from_millis(millis));
        }
        assert_eq!(hedge.delay(), Some(Duration::from_millis(2_000)));
        // Old samples leave the window.
        for _ in 0..SAMPLES {
            hedge.record_commit(Duration::from_millis(50));
        }
        assert_eq!(hedge.delay(), Some(Duration::from_millis(50)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_one_hedge_then_its_ratio() {
        let hedge = Hedge::fixed(Duration::from_millis(10), 1, 0.1);
        assert!(
            hedge.try_hedge(),
            "max(1, …): one hedge even with no requests"
        );
        assert!(!hedge.try_hedge());
        for _ in 0..30 {
            hedge.record_request();
        }
        assert!(hedge.try_hedge() && hedge.try_hedge(), "3 of 30 requests");
        assert!(!hedge.try_hedge());
    }
}
