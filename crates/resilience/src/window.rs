//! A sliding-window event counter made of fixed buckets: cheap to update,
//! precise to one bucket width. What it counts is a [`Tally`] each use
//! names for itself ([`Outcomes`] for a breaker, [`Tries`] for a retry
//! budget), so no reader has to remember which number is which.

use std::time::Duration;

use tokio::time::Instant;

/// What one bucket of a [`SlidingWindow`] counts: a few named numbers that
/// add up.
pub trait Tally: Copy + Default {
    /// The sum of two tallies.
    fn plus(self, other: Self) -> Self;
}

/// Calls that failed and calls that succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Failed calls.
    pub failures: u64,
    /// Successful calls.
    pub successes: u64,
}

/// First tries and retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tries {
    /// First tries of a call.
    pub first: u64,
    /// Retries.
    pub retries: u64,
}

/// Counts of a [`Tally`] over a trailing window.
#[derive(Debug)]
pub struct SlidingWindow<T: Tally> {
    origin: Instant,
    bucket_width: Duration,
    buckets: Vec<Bucket<T>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket<T> {
    /// Which bucket-width slot since the window's origin this bucket holds.
    slot: u64,
    counts: T,
}

// === impl Outcomes ===

impl Outcomes {
    /// One failure.
    pub const FAILURE: Self = Self {
        failures: 1,
        successes: 0,
    };
    /// One success.
    pub const SUCCESS: Self = Self {
        failures: 0,
        successes: 1,
    };

    /// Failures and successes together.
    pub fn calls(&self) -> u64 {
        self.failures + self.successes
    }
}

impl Tally for Outcomes {
    fn plus(self, other: Self) -> Self {
        Self {
            failures: self.failures + other.failures,
            successes: self.successes + other.successes,
        }
    }
}

// === impl Tries ===

impl Tally for Tries {
    fn plus(self, other: Self) -> Self {
        Self {
            first: self.first + other.first,
            retries: self.retries + other.retries,
        }
    }
}

// === impl SlidingWindow ===

impl<T: Tally> SlidingWindow<T> {
    /// A window of `length` split into `buckets` buckets.
    pub fn new(length: Duration, buckets: u32) -> Self {
        let buckets = buckets.max(1);
        let bucket_width = (length / buckets).max(Duration::from_millis(1));
        Self {
            origin: Instant::now(),
            bucket_width,
            buckets: vec![
                Bucket {
                    slot: u64::MAX,
                    counts: T::default(),
                };
                buckets as usize
            ],
        }
    }

    /// Adds `counts` at `now`.
    pub fn add(&mut self, now: Instant, counts: T) {
        let slot = self.slot(now);
        let position = (slot % self.buckets.len() as u64) as usize;
        let bucket = &mut self.buckets[position];
        if bucket.slot != slot {
            *bucket = Bucket {
                slot,
                counts: T::default(),
            };
        }
        bucket.counts = bucket.counts.plus(counts);
    }

    /// The totals of the buckets still inside the window at `now`.
    pub fn totals(&self, now: Instant) -> T {
        self.totals_of_last(now, self.buckets.len())
    }

    /// The totals of the last `buckets` buckets at `now` (the current one
    /// and those before it), at most the whole window: a shorter trailing
    /// window read from the same counts.
    pub fn totals_of_last(&self, now: Instant, buckets: usize) -> T {
        let current = self.slot(now);
        let span = buckets.clamp(1, self.buckets.len()) as u64;
        let oldest = current.saturating_sub(span - 1);
        self.buckets
            .iter()
            .filter(|bucket| {
                bucket.slot != u64::MAX && bucket.slot >= oldest && bucket.slot <= current
            })
            .fold(T::default(), |totals, bucket| totals.plus(bucket.counts))
    }

    /// The width of one bucket.
    pub fn bucket_width(&self) -> Duration {
        self.bucket_width
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.buckets
            .iter_mut()
            .for_each(|bucket| bucket.slot = u64::MAX);
    }

    fn slot(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        (since.as_nanos() / self.bucket_width.as_nanos().max(1)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(failures: u64, successes: u64) -> Outcomes {
        Outcomes {
            failures,
            successes,
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn events_leave_the_window_after_its_length() {
        let mut window = SlidingWindow::new(Duration::from_secs(10), 10);
        window.add(Instant::now(), outcomes(3, 1));
        tokio::time::advance(Duration::from_secs(5)).await;
        window.add(Instant::now(), Outcomes::FAILURE);
        assert_eq!(window.totals(Instant::now()), outcomes(4, 1));
        tokio::time::advance(Duration::from_millis(5_500)).await;
        assert_eq!(window.totals(Instant::now()), outcomes(1, 0));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(window.totals(Instant::now()), Outcomes::default());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_shorter_trailing_window_counts_only_its_buckets() {
        let mut window = SlidingWindow::new(Duration::from_secs(60), 60);
        for _ in 0..10 {
            window.add(
                Instant::now(),
                Tries {
                    first: 1,
                    retries: 2,
                },
            );
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Ten buckets hold one event each; the current (11th) is empty.
        let now = Instant::now();
        assert_eq!(
            window.totals_of_last(now, 3),
            Tries {
                first: 2,
                retries: 4
            }
        );
        assert_eq!(window.totals_of_last(now, 0), Tries::default());
        assert_eq!(window.totals_of_last(now, 1_000), window.totals(now));
        assert_eq!(
            window.totals(now),
            Tries {
                first: 10,
                retries: 20
            }
        );
    }
}
