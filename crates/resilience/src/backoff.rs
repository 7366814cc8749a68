//! Exponential backoff with full jitter (AWS architecture blog, gRPC A6):
//! `sleep = uniform(0, min(max_delay, base_delay × 2^retry))`, where `retry`
//! counts from 0 for the first retry. Spreading retries uniformly is what
//! keeps a recovering upstream from being hit by every client at once.

use std::time::Duration;

/// The backoff policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The delay ceiling of the first retry.
    pub base_delay: Duration,
    /// The largest ceiling any retry may have.
    pub max_delay: Duration,
}

// === impl Backoff ===

impl Backoff {
    /// The ceiling for retry number `retry` (0 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A delay drawn uniformly from `[0, ceiling(retry))` with `unit`, a
    /// uniform sample in `[0, 1)` (injected so tests can pin it).
    pub fn full_jitter(&self, retry: u32, unit: f64) -> Duration {
        self.ceiling(retry).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// A delay with jitter from the process's random source.
    pub fn delay(&self, retry: u32) -> Duration {
        self.full_jitter(retry, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff {
        base_delay: Duration::from_millis(25),
        max_delay: Duration::from_millis(250),
    };

    /// RT-1: every delay lies in [0, min(cap, base × 2^n)).
    #[test]
    fn rt1_delays_stay_inside_the_full_jitter_bounds() {
        assert_eq!(POLICY.ceiling(0), Duration::from_millis(25));
        assert_eq!(POLICY.ceiling(1), Duration::from_millis(50));
        assert_eq!(POLICY.ceiling(2), Duration::from_millis(100));
        assert_eq!(POLICY.ceiling(10), Duration::from_millis(250));
        assert_eq!(POLICY.ceiling(u32::MAX), Duration::from_millis(250));
        for retry in 0..6 {
            for _ in 0..10_000 {
                assert!(POLICY.delay(retry) < POLICY.ceiling(retry));
            }
        }
    }

    /// RT-1: the delays are uniform (Kolmogorov–Smirnov statistic against
    /// U(0, ceiling) below the 1 % critical value 1.63/√n).
    #[test]
    fn rt1_delays_are_uniform() {
        let n = 10_000;
        let ceiling = POLICY.ceiling(2).as_secs_f64();
        let mut samples: Vec<f64> = (0..n)
            .map(|_| POLICY.delay(2).as_secs_f64() / ceiling)
            .collect();
        samples.sort_by(f64::total_cmp);
        let statistic = samples
            .iter()
            .enumerate()
            .map(|(i, x)| {
                ((i + 1) as f64 / n as f64 - x)
                    .abs()
                    .max((x - i as f64 / n as f64).abs())
            })
            .fold(0.0, f64::max);
        assert!(
            statistic < 1.63 / (n as f64).sqrt(),
            "KS statistic {statistic}"
        );
    }

    #[test]
    fn jitter_is_proportional_to_the_unit_sample() {
        assert_eq!(POLICY.full_jitter(1, 0.0), Duration::ZERO);
        assert_eq!(POLICY.full_jitter(1, 0.5), Duration::from_millis(25));
    }
}
