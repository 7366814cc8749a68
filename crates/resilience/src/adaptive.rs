//! An adaptive concurrency limit: the cap of a bulkhead follows the
//! latency the upstream shows, so a provider that slows down under load
//! gets fewer concurrent calls before a queue builds up in front of it,
//! and more again once it is fast, with no hand-tuned number.
//!
//! The rule is the gradient of Netflix's concurrency-limits (`Gradient2`):
//! a long-term average of latency is the provider's unloaded speed; each
//! sample's ratio to it (with some tolerance) is the gradient by which the
//! limit shrinks, and a queue allowance of √limit lets it probe upwards
//! while latency holds. A failed call that says the provider is overloaded
//! (timeout, 429, 5xx) cuts the limit by a fixed factor, as AIMD does.
//! Nothing here reads a clock: samples are durations the caller measured,
//! so the rule is tested by feeding it samples.

use std::time::Duration;

/// `max_concurrent: adaptive` bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptivePolicy {
    /// The cap never goes below this (at least 1).
    pub min: usize,
    /// Nor above this.
    pub max: usize,
}

/// The latency ratio (sample / long-term average) tolerated before the
/// limit shrinks: samples up to 1.5 × the average leave it where it is.
const TOLERANCE: f64 = 1.5;

/// How many samples the long-term average spans (its EWMA weight is the
/// inverse): long enough that load-induced latency reads as a change for a
/// few hundred calls. Latency that stays high longer than that becomes the
/// provider's new normal, as in `Gradient2`.
const LONG_WINDOW: f64 = 600.0;

/// Samples whose minimum starts the long-term average, before it becomes
/// an EWMA.
const WARM_UP: u64 = 10;

/// The cap a provider starts at (within its bounds): low enough that the
/// first calls measure the provider before a burst can queue up in front
/// of it; it grows by about √limit / 5 per call while latency holds (from
/// 20 to 100 in under 60 calls).
const INITIAL: usize = 20;

/// How much of each new estimate goes into the limit.
const SMOOTHING: f64 = 0.2;

/// What an overload failure multiplies the limit by.
const BACKOFF_RATIO: f64 = 0.9;

/// The gradient limiter's state.
#[derive(Clone, Debug)]
pub struct GradientLimit {
    policy: AdaptivePolicy,
    limit: f64,
    /// The long-term average latency in seconds; `None` before a sample.
    long: Option<f64>,
    samples: u64,
}

// === impl AdaptivePolicy ===

impl AdaptivePolicy {
    /// The defaults of a bare `max_concurrent: adaptive`.
    pub const DEFAULT: Self = Self { min: 1, max: 1000 };
}

// === impl GradientLimit ===

impl GradientLimit {
    /// A limit starting at [`INITIAL`], within the policy's bounds.
    pub fn new(policy: AdaptivePolicy) -> Self {
        let min = policy.min.max(1);
        let policy = AdaptivePolicy {
            min,
            max: policy.max.max(min),
        };
        Self {
            policy,
            limit: INITIAL.clamp(policy.min, policy.max) as f64,
            long: None,
            samples: 0,
        }
    }

    /// The cap now.
    pub fn limit(&self) -> usize {
        // The limit is kept within [min, max], both `usize`s.
        self.limit.round() as usize
    }

    /// The bounds.
    pub fn policy(&self) -> AdaptivePolicy {
        self.policy
    }

    /// A call that succeeded after `latency`, started while `in_flight`
    /// calls (itself included) were running. Returns the new cap.
    pub fn on_success(&mut self, latency: Duration, in_flight: usize) -> usize {
        let sample = latency.as_secs_f64().max(1e-6);
        let long = self.long_average(sample);
        let gradient = (TOLERANCE * long / sample).clamp(0.5, 1.0);
        // A provider used far below the cap says nothing about a higher
        // one: growing then would only let a burst through unmeasured.
        if gradient >= 1.0 && (in_flight as f64) < self.limit / 2.0 {
            return self.limit();
        }
        let estimate = self.limit * gradient + self.limit.sqrt();
        self.set(self.limit * (1.0 - SMOOTHING) + estimate * SMOOTHING)
    }

    /// A call that failed in a way that says the provider is overloaded
    /// (timeout, 429, 5xx). Returns the new cap.
    pub fn on_overload(&mut self) -> usize {
        self.set(self.limit * BACKOFF_RATIO)
    }

    /// Folds `sample` into the long-term average and returns it. When the
    /// average is far above the sample (latency fell: the provider
    /// recovered), it decays faster, so the limit does not stay low for a
    /// whole window after a slow spell.
    fn long_average(&mut self, sample: f64) -> f64 {
        self.samples = self.samples.saturating_add(1);
        let long = match self.long {
            None => sample,
            // The fastest of the first samples: a provider loaded from its
            // first call never shows its unloaded speed in an average.
            Some(long) if self.samples <= WARM_UP => long.min(sample),
            Some(long) => long + (sample - long) / LONG_WINDOW,
        };
        let long = if long > 2.0 * sample {
            long * 0.95
        } else {
            long
        };
        self.long = Some(long);
        long
    }

    fn set(&mut self, limit: f64) -> usize {
        self.limit = limit.clamp(self.policy.min as f64, self.policy.max as f64);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_millis(100);
    const SLOW: Duration = Duration::from_millis(200);

    fn limiter(min: usize, max: usize) -> GradientLimit {
        GradientLimit::new(AdaptivePolicy { min, max })
    }

    /// One call of `latency` started with the cap full.
    fn busy_call(limit: &mut GradientLimit, latency: Duration) -> usize {
        let in_flight = limit.limit();
        limit.on_success(latency, in_flight)
    }

    /// Calls of `latency`, the cap full, until `until` holds of the cap;
    /// how many it took, or an error after `at_most`.
    fn calls_until(
        limit: &mut GradientLimit,
        latency: Duration,
        at_most: usize,
        until: impl Fn(usize) -> bool,
    ) -> Result<usize, String> {
        for calls in 1..=at_most {
            if until(busy_call(limit, latency)) {
                return Ok(calls);
            }
        }
        Err(format!(
            "the cap is {} after {at_most} calls",
            limit.limit()
        ))
    }

    /// A limiter at its ceiling of 100 after a steady, fully used start.
    fn warmed(min: usize) -> Result<GradientLimit, String> {
        let mut limit = limiter(min, 100);
        assert_eq!(limit.limit(), 20.max(min), "starts low");
        calls_until(&mut limit, FAST, 100, |cap| cap == 100)?;
        for _ in 0..200 {
            busy_call(&mut limit, FAST);
        }
        assert_eq!(limit.limit(), 100, "a steady provider keeps its cap");
        Ok(limit)
    }

    #[test]
    fn bh3_a_steady_provider_in_full_use_grows_to_the_ceiling() -> Result<(), String> {
        warmed(1).map(drop)
    }

    #[test]
    fn bh3_latency_that_doubles_lowers_the_cap_within_a_bounded_number_of_calls(
    ) -> Result<(), String> {
        let mut limit = warmed(1)?;
        let calls = calls_until(&mut limit, SLOW, 30, |cap| cap <= 60)?;
        assert!(calls >= 5, "lowered after {calls} calls: too jumpy");
        for _ in calls..100 {
            busy_call(&mut limit, SLOW);
        }
        assert!(limit.limit() < 50, "only lowered to {}", limit.limit());
        Ok(())
    }

    #[test]
    fn bh3_the_cap_comes_back_when_latency_recovers() -> Result<(), String> {
        let mut limit = warmed(1)?;
        for _ in 0..100 {
            busy_call(&mut limit, SLOW);
        }
        calls_until(&mut limit, FAST, 60, |cap| cap == 100)?;
        for _ in 0..1_000 {
            assert!(busy_call(&mut limit, FAST) <= 100, "above the ceiling");
        }
        Ok(())
    }

    #[test]
    fn bh3_the_cap_never_goes_below_its_floor() -> Result<(), String> {
        let mut limit = warmed(45)?;
        for _ in 0..2_000 {
            assert!(busy_call(&mut limit, SLOW) >= 45, "below the floor");
        }
        for _ in 0..100 {
            assert!(limit.on_overload() >= 45, "below the floor");
        }
        Ok(())
    }

    #[test]
    fn an_idle_provider_does_not_grow_its_cap() {
        let mut limit = limiter(1, 100);
        for _ in 0..1_000 {
            limit.on_success(FAST, 1);
        }
        assert_eq!(limit.limit(), 20, "grew while one call was in flight");
    }

    #[test]
    fn overload_failures_cut_the_cap_by_a_tenth() {
        let mut limit = limiter(5, 100);
        assert_eq!(limit.on_overload(), 18);
        assert_eq!(limit.on_overload(), 16);
        for _ in 0..100 {
            limit.on_overload();
        }
        assert_eq!(limit.limit(), 5);
    }

    #[test]
    fn bounds_are_made_consistent() {
        let limit = limiter(0, 0);
        assert_eq!(limit.policy(), AdaptivePolicy { min: 1, max: 1 });
        assert_eq!(limit.limit(), 1);
    }
}
