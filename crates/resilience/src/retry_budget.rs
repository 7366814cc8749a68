//! A retry budget: retries in the trailing window may not exceed
//! `max(min_retries, ratio × first tries in the same window)` (after
//! Envoy's and Finagle's budgets). A dead upstream then sees at most
//! `1 + ratio` times the offered load, not `attempts` times.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::window::{SlidingWindow, Tries};

/// The budget's policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudgetPolicy {
    /// Retries allowed per first try.
    pub ratio: f64,
    /// Retries always allowed in a window.
    pub min_retries: u64,
    /// The trailing window.
    pub window: Duration,
}

/// The shared budget of one provider.
#[derive(Debug)]
pub struct RetryBudget {
    policy: RetryBudgetPolicy,
    /// `first` counts first tries, `second` counts retries.
    window: Mutex<SlidingWindow<Tries>>,
}

// === impl RetryBudget ===

impl RetryBudget {
    /// An empty budget.
    pub fn new(policy: RetryBudgetPolicy) -> Self {
        Self {
            policy,
            window: Mutex::new(SlidingWindow::new(policy.window, 10)),
        }
    }

    /// Records a first try.
    pub fn record_first_try(&self) {
        if let Ok(mut window) = self.window.lock() {
            window.add(
                Instant::now(),
                Tries {
                    first: 1,
                    retries: 0,
                },
            );
        }
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_retry(&self) -> bool {
        let Ok(mut window) = self.window.lock() else {
            return false;
        };
        let now = Instant::now();
        let totals = window.totals(now);
        let allowed =
            ((totals.first as f64 * self.policy.ratio) as u64).max(self.policy.min_retries);
        if totals.retries >= allowed {
            return false;
        }
        window.add(
            now,
            Tries {
                first: 0,
                retries: 1,
            },
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> RetryBudget {
        RetryBudget::new(RetryBudgetPolicy {
            ratio: 0.2,
            min_retries: 3,
            window: Duration::from_secs(10),
        })
    }

    /// RB-1: with few requests the floor of 3 retries holds.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn rb1_the_floor_allows_three_retries() {
        let budget = budget();
        for _ in 0..5 {
            budget.record_first_try();
        }
        let granted = (0..10).filter(|_| budget.try_retry()).count();
        assert_eq!(granted, 3);
    }

    /// RB-1: with many requests retries stay within 20 % of them.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn rb1_retries_stay_within_the_ratio() {
        let budget = budget();
        for _ in 0..100 {
            budget.record_first_try();
        }
        let granted = (0..100).filter(|_| budget.try_retry()).count();
        assert_eq!(granted, 20);
    }

    /// The budget refills as the window slides past the spent retries.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_budget_refills_after_the_window() {
        let budget = budget();
        let spent = (0..100).take_while(|_| budget.try_retry()).count();
        assert_eq!(spent, 3);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(budget.try_retry());
    }
}
