//! Exponential backoff with full jitter, and the ±10 % jitter of webhook
//! retry delays.

use std::time::Duration;

/// `uniform(0, min(max, base × 2^(attempt − 1)))`: the delay before the run
/// after run number `attempt` (1-based) failed.
pub fn full_jitter(attempt: i64, base: Duration, max: Duration) -> Duration {
    ceiling(attempt, base, max).mul_f64(fastrand::f64())
}

/// The upper bound of [`full_jitter`] for `attempt`.
pub fn ceiling(attempt: i64, base: Duration, max: Duration) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(1_u32 << exponent).min(max)
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
            let bound = ceiling(attempt, base, max);
            assert_eq!(
                bound,
                (base * 2_u32.pow(u32::try_from(attempt - 1).unwrap_or(0))).min(max)
            );
            for _ in 0..200 {
                assert!(full_jitter(attempt, base, max) <= bound);
            }
        }
    }

    #[test]
    fn webhook_jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let delay = plus_minus_ten_percent(Duration::from_secs(100));
            assert!(delay >= Duration::from_secs(90) && delay <= Duration::from_secs(110));
        }
    }
}
