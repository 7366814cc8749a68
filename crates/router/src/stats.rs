//! What an operator asks of one target at 3 a.m.: how often it failed
//! lately, how fast its first tokens came, and what its last error was.
//! Bounded: a fixed set of buckets, at most [`SAMPLES`] first-token times.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use keel_providers::{ErrorKind, ProviderError};
use keel_resilience::SlidingWindow;
use tokio::time::Instant;

/// How far back the figures look.
pub const RECENT: Duration = Duration::from_secs(300);

/// The most first-token times kept (the newest).
const SAMPLES: usize = 1024;

/// The longest last-error message kept, in bytes.
const MAX_MESSAGE: usize = 512;

/// Recent outcomes of one target (shared by every model that routes to the
/// same provider + upstream model, like its breaker).
#[derive(Debug)]
pub struct TargetStats {
    recent: Mutex<Recent>,
}

#[derive(Debug)]
struct Recent {
    /// `first` counts failed attempts, `second` successful ones.
    outcomes: SlidingWindow,
    first_tokens: VecDeque<(Instant, Duration)>,
    last_error: Option<LastError>,
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
            }),
        }
    }

    /// An attempt reached its first token after `elapsed`.
    pub fn record_first_token(&self, elapsed: Duration) {
        let mut recent = self.lock();
        if recent.first_tokens.len() == SAMPLES {
            recent.first_tokens.pop_front();
        }
        recent.first_tokens.push_back((Instant::now(), elapsed));
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
        match failure {
            None => recent.outcomes.add(now, 0, 1),
            Some(error) => {
                recent.outcomes.add(now, 1, 0);
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
            attempts: totals.first + totals.second,
            errors: totals.first,
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

/// The nearest-rank percentile of sorted, non-empty `times`.
fn nearest_rank(times: &[Duration], percent: usize) -> Duration {
    let rank = (times.len() * percent).div_ceil(100).max(1);
    times[rank.min(times.len()) - 1]
}

fn truncate_on_char(text: &mut String, max: usize) {
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
