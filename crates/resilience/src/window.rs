//! A sliding-window event counter made of fixed buckets: cheap to update,
//! precise to one bucket width.

use std::time::Duration;

use tokio::time::Instant;

/// Counts of two kinds of events over a trailing window.
#[derive(Debug)]
pub struct SlidingWindow {
    origin: Instant,
    bucket_width: Duration,
    buckets: Vec<Bucket>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket-width slot since the window's origin this bucket holds.
    slot: u64,
    first: u64,
    second: u64,
}

/// Totals over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Events of the first kind (e.g. failures, or first tries).
    pub first: u64,
    /// Events of the second kind (e.g. successes, or retries).
    pub second: u64,
}

// === impl SlidingWindow ===

impl SlidingWindow {
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
                    ..Bucket::default()
                };
                buckets as usize
            ],
        }
    }

    /// Adds events at `now`.
    pub fn add(&mut self, now: Instant, first: u64, second: u64) {
        let slot = self.slot(now);
        let position = (slot % self.buckets.len() as u64) as usize;
        let bucket = &mut self.buckets[position];
        if bucket.slot != slot {
            *bucket = Bucket {
                slot,
                first: 0,
                second: 0,
            };
        }
        bucket.first += first;
        bucket.second += second;
    }

    /// The totals of the buckets still inside the window at `now`.
    pub fn totals(&self, now: Instant) -> Totals {
        self.totals_of_last(now, self.buckets.len())
    }

    /// The totals of the last `buckets` buckets at `now` (the current one
    /// and those before it), at most the whole window: a shorter trailing
    /// window read from the same counts.
    pub fn totals_of_last(&self, now: Instant, buckets: usize) -> Totals {
        let current = self.slot(now);
        let span = buckets.clamp(1, self.buckets.len()) as u64;
        let oldest = current.saturating_sub(span - 1);
        self.buckets
            .iter()
            .filter(|bucket| {
                bucket.slot != u64::MAX && bucket.slot >= oldest && bucket.slot <= current
            })
            .fold(Totals::default(), |totals, bucket| Totals {
                first: totals.first + bucket.first,
                second: totals.second + bucket.second,
            })
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

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn events_leave_the_window_after_its_length() {
        let mut window = SlidingWindow::new(Duration::from_secs(10), 10);
        window.add(Instant::now(), 3, 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        window.add(Instant::now(), 1, 0);
        assert_eq!(
            window.totals(Instant::now()),
            Totals {
                first: 4,
                second: 1
            }
        );
        tokio::time::advance(Duration::from_millis(5_500)).await;
        assert_eq!(
            window.totals(Instant::now()),
            Totals {
                first: 1,
                second: 0
            }
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(window.totals(Instant::now()), Totals::default());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_shorter_trailing_window_counts_only_its_buckets() {
        let mut window = SlidingWindow::new(Duration::from_secs(60), 60);
        for _ in 0..10 {
            window.add(Instant::now(), 1, 2);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Ten buckets hold one event each; the current (11th) is empty.
        let now = Instant::now();
        assert_eq!(
            window.totals_of_last(now, 3),
            Totals {
                first: 2,
                second: 4
            }
        );
        assert_eq!(window.totals_of_last(now, 0), Totals::default());
        assert_eq!(window.totals_of_last(now, 1_000), window.totals(now));
        assert_eq!(
            window.totals(now),
            Totals {
                first: 10,
                second: 20
            }
        );
    }
}
