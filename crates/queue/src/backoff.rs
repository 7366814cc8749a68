//! The delay before a failed job runs again, on the one full-jitter
//! backoff (`keel_resilience::Backoff`), and the ±10 % jitter of webhook
//! retry delays.

use std::time::Duration;

use keel_resilience::Backoff;

/// The full-jitter delay before the run after run number `attempt`
/// (1-based, as jobs count runs) failed: `uniform(0, min(max, base ×
/// 2^(attempt − 1)))`.
pub fn retry_delay(attempt: i64, base: Duration, max: Duration) -> Duration {
    policy(base, max).delay(retry_number(attempt))
}

/// The upper bound of [`retry_delay`] for `attempt`.
pub fn retry_ceiling(attempt: i64, base: Duration, max: Duration) -> Duration {
    policy(base, max).ceiling(retry_number(attempt))
}

fn policy(base_delay: Duration, max_delay: Duration) -> Backoff {
    Backoff {
        base_delay,
        max_delay,
    }
}

/// Run number `attempt` (1-based) failed: its retry is number
/// `attempt − 1` in `Backoff`'s 0-based count.
fn retry_number(attempt: i64) -> u32 {
    u32::try_from(attempt.saturating_sub(1).max(0)).unwrap_or(u32::MAX)
}

/// `delay` scaled by a random factor in [0.9, 1.1].
pub fn plus_minus_ten_percent(delay: Duration) -> Duration {
    delay.mul_f64(0.9 + 0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JQ-4: every retry delay lies in the full-jitter band of its attempt.
    #[test]
    fn jq4_retry_delays_stay_within_the_full_jitter_band() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 1..=12 {
            let bound = retry_ceiling(attempt, base, max);
            assert_eq!(
                bound,
                (base * 2_u32.pow(u32::try_from(attempt - 1).unwrap_or(0))).min(max)
            );
            for _ in 0..200 {
                assert!(retry_delay(attempt, base, max) <= bound);
            }
        }
        assert_eq!(retry_ceiling(i64::MIN, base, max), base);
        assert_eq!(retry_ceiling(i64::MAX, base, max), max);
    }

    #[test]
    fn webhook_jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let delay = plus_minus_ten_percent(Duration::from_secs(100));
            assert!(delay >= Duration::from_secs(90) && delay <= Duration::from_secs(110));
        }
    }
}
