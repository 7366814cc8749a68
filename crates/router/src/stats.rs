//! What an operator asks of one target at 3 a.m.: how often it failed
//! lately, how fast its first tokens came, and what its last error was.
//! Bounded: a fixed set of buckets, at most [`SAMPLES`] first-token times.
//! Beside them, two lock-free figures the routing strategies read on every
//! request: the calls in flight and a moving average of first-token times.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use keel_providers::{ErrorKind, ProviderError};
use keel_resilience::{Outcomes, SlidingWindow};
use tokio::time::Instant;

/// How far back the figures look.
pub const RECENT: Duration = Duration::from_secs(300);

/// The most first-token times kept (the newest).
const SAMPLES: usize = 1024;

/// The longest last-error message kept, in bytes.
const MAX_MESSAGE: usize = 512;

/// The weight of the newest first-token time in the moving average: about
/// the last half-dozen answers count, so a target that turns slow (or
/// recovers) is noticed within a few of them.
const LATENCY_ALPHA: f64 = 0.3;

/// The moving average's bits before the first sample (a NaN no average of
/// finite times can produce).
const NO_LATENCY: u64 = u64::MAX;

/// Recent outcomes of one target (shared by every model that routes to the
/// same provider + upstream model, like its breaker).
#[derive(Debug)]
pub struct TargetStats {
    recent: Mutex<Recent>,
    /// Calls on this target now: attempts, and committed streams until
    /// they end (`least_busy` compares these).
    in_flight: AtomicUsize,
    /// The exponentially weighted moving average of first-token times, in
    /// seconds, as `f64` bits (`latency` orders by it); [`NO_LATENCY`]
    /// until the first sample.
    latency_ewma: AtomicU64,
}

/// One call in flight on a target, counted until it is dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<TargetStats>);

// === impl InFlight ===

impl InFlight {
    /// The stats of the target the call is on.
    pub(crate) fn stats(&self) -> &TargetStats {
        &self.0
    }
}

#[derive(Debug)]
struct Recent {
    /// Failed and successful attempts.
    outcomes: SlidingWindow<Outcomes>,
    first_tokens: VecDeque<(Instant, Duration)>,
    last_error: Option<LastError>,
    /// When the newest attempt ended (health checks probe only idle
    /// providers).
    last_ended: Option<Instant>,
}

/// The last failure of a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastError {
    /// Its kind (`timeout`, `server_error`, …).
    pub kind: &'static str,
    /// What happened, at most 512 bytes.
    pub message: String,
    /// When.
    pub at: SystemTime,
}

/// A target's figures over the last [`RECENT`].
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Attempts that ended.
    pub attempts: u64,
    /// Those that failed (the request's own faults, 4xx, are not counted).
    pub errors: u64,
    /// First-token percentiles in that order: p50, p95, p99; `None`
    /// without samples.
    pub first_token: Option<[Duration; 3]>,
    /// The last failure, however long ago.
    pub last_error: Option<LastError>,
}

// === impl TargetStats ===

impl TargetStats {
    /// Empty figures.
    pub fn new() -> Self {
        Self {
            recent: Mutex::new(Recent {
                outcomes: SlidingWindow::new(RECENT, 10),
                first_tokens: VecDeque::with_capacity(SAMPLES),
                last_error: None,
                last_ended: None,
            }),
            in_flight: AtomicUsize::new(0),
            latency_ewma: AtomicU64::new(NO_LATENCY),
        }
    }

    /// An attempt reached its first token after `elapsed`.
    pub fn record_first_token(&self, elapsed: Duration) {
        self.update_latency_ewma(elapsed);
        let mut recent = self.lock();
        if recent.first_tokens.len() == SAMPLES {
            recent.first_tokens.pop_front();
        }
        recent.first_tokens.push_back((Instant::now(), elapsed));
    }

    /// Moves the average a step towards `elapsed` (the first sample sets
    /// it), without a lock: concurrent answers each get their step in.
    fn update_latency_ewma(&self, elapsed: Duration) {
        let sample = elapsed.as_secs_f64();
        let step = |bits: u64| {
            let average = if bits == NO_LATENCY {
                sample
            } else {
                let previous = f64::from_bits(bits);
                previous + LATENCY_ALPHA * (sample - previous)
            };
            Some(average.to_bits())
        };
        // The step never declines, so the update always lands.
        let _ = self
            .latency_ewma
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step);
    }

    /// The moving average of first-token times; `None` before the first.
    pub fn latency_ewma(&self) -> Option<Duration> {
        let bits = self.latency_ewma.load(Ordering::Relaxed);
        (bits != NO_LATENCY).then(|| Duration::from_secs_f64(f64::from_bits(bits)))
    }

    /// Calls on this target now, committed streams included.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one call until the returned guard is dropped.
    pub(crate) fn start_call(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// An attempt ended: `Ok` served (or the client left), `Err` failed.
    /// A request the upstream refused as malformed (4xx) is the client's
    /// fault, not the target's, so it counts as served, as in the breaker.
    pub fn record_end(&self, outcome: Result<(), &ProviderError>) {
        let failure = outcome
            .err()
            .filter(|error| error.kind() != ErrorKind::Client);
        let mut recent = self.lock();
        let now = Instant::now();
        recent.last_ended = Some(now);
        match failure {
            None => recent.outcomes.add(now, Outcomes::SUCCESS),
            Some(error) => {
                recent.outcomes.add(now, Outcomes::FAILURE);
                let mut message = error.to_string();
                truncate_on_char(&mut message, MAX_MESSAGE);
                recent.last_error = Some(LastError {
                    kind: error.kind().as_str(),
                    message,
                    at: SystemTime::now(),
                });
            }
        }
    }

    /// Whether a call is in flight or an attempt ended within `period`:
    /// traffic already tells how the target is doing.
    pub fn busy_within(&self, period: Duration) -> bool {
        if self.in_flight() > 0 {
            return true;
        }
        let now = Instant::now();
        self.lock()
            .last_ended
            .is_some_and(|ended| now.saturating_duration_since(ended) < period)
    }

    /// The figures now.
    pub fn snapshot(&self) -> Snapshot {
        let recent = self.lock();
        let now = Instant::now();
        let totals = recent.outcomes.totals(now);
        let mut times: Vec<Duration> = recent
            .first_tokens
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= RECENT)
            .map(|(_, elapsed)| *elapsed)
            .collect();
        let last_error = recent.last_error.clone();
        drop(recent);
        times.sort_unstable();
        Snapshot {
            attempts: totals.calls(),
            errors: totals.failures,
            first_token: (!times.is_empty())
                .then(|| [50, 95, 99].map(|percent| nearest_rank(&times, percent))),
            last_error,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for TargetStats {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The nearest-rank percentile of sorted, non-empty `times`.
fn nearest_rank(times: &[Duration], percent: usize) -> Duration {
    let rank = (times.len() * percent).div_ceil(100).max(1);
    times[rank.min(times.len()) - 1]
}

pub(crate) fn truncate_on_char(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error() -> ProviderError {
        ProviderError::Truncated {
            provider: String::from("p"),
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn percentiles_errors_and_the_last_error_over_the_recent_window() {
        let stats = TargetStats::new();
        for millis in 1..=100 {
            stats.record_first_token(Duration::from_millis(millis));
            stats.record_end(Ok(()));
        }
        stats.record_end(Err(&server_error()));
        let client = ProviderError::Status {
            provider: String::from("p"),
            status: 400,
            body: keel_types::ErrorBody::new("bad request", "invalid_request_error", None, None),
            retry_after: None,
        };
        stats.record_end(Err(&client));
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.attempts, 102);
        assert_eq!(
            snapshot.errors, 1,
            "a 400 is the client's, not the target's"
        );
        assert_eq!(
            snapshot.first_token,
            Some([50, 95, 99].map(Duration::from_millis))
        );
        let last = snapshot.last_error.as_ref().map(|error| error.kind);
        assert_eq!(last, Some(server_error().kind().as_str()));

        // Past the window: counts and samples go, the last error stays.
        tokio::time::advance(RECENT + Duration::from_secs(31)).await;
        let later = stats.snapshot();
        assert_eq!(
            (later.attempts, later.errors, later.first_token),
            (0, 0, None)
        );
        assert_eq!(later.last_error, snapshot.last_error);
    }

    #[test]
    fn the_latency_average_starts_at_the_first_sample_and_moves_by_alpha() {
        let stats = TargetStats::new();
        assert_eq!(stats.latency_ewma(), None);
        stats.record_first_token(Duration::from_millis(100));
        assert_eq!(stats.latency_ewma(), Some(Duration::from_millis(100)));
        stats.record_first_token(Duration::from_millis(1100));
        let millis = stats
            .latency_ewma()
            .map(|average| average.as_secs_f64() * 1000.0);
        assert!(
            millis.is_some_and(|millis| (millis - 400.0).abs() < 1e-6),
            "100 + 0.3 x 1000 = 400, got {millis:?}"
        );
    }

    #[test]
    fn a_call_counts_in_flight_until_its_guard_is_dropped() {
        let stats = Arc::new(TargetStats::new());
        let first = stats.start_call();
        let second = stats.start_call();
        assert_eq!(stats.in_flight(), 2);
        drop(first);
        assert_eq!(stats.in_flight(), 1);
        drop(second);
        assert_eq!(stats.in_flight(), 0);
    }

    #[test]
    fn samples_and_messages_are_bounded() {
        let stats = TargetStats::new();
        for _ in 0..SAMPLES * 3 {
            stats.record_first_token(Duration::from_millis(1));
        }
        assert_eq!(stats.lock().first_tokens.len(), SAMPLES);
        let mut long = "é".repeat(MAX_MESSAGE);
        truncate_on_char(&mut long, MAX_MESSAGE + 1);
        assert!(long.len() <= MAX_MESSAGE + 1 + '…'.len_utf8());
        assert!(long.ends_with('…'));
    }
}
