//! A circuit breaker per target: closed → open when the failure rate over a
//! sliding window reaches `failure_rate` with at least `min_requests` calls;
//! open for `cooldown`; then half-open, admitting at most
//! `half_open_trials` concurrent trials. A failed trial re-opens it; once
//! `half_open_trials` trials have succeeded it closes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::window::{Outcomes, SlidingWindow};

/// The breaker's policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerPolicy {
    /// The failure share (0..=1) that opens the breaker.
    pub failure_rate: f64,
    /// The sliding window the rate is computed over.
    pub window: Duration,
    /// Calls needed in the window before the rate counts.
    pub min_requests: u32,
    /// How long the breaker stays open.
    pub cooldown: Duration,
    /// Concurrent trials allowed while half-open.
    pub half_open_trials: u32,
}

/// The breaker's state, as exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused.
    Open,
    /// A few trial calls probe the upstream.
    HalfOpen,
}

/// How a call ended, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream served the call.
    Success,
    /// The upstream failed it (5xx, connect error, timeout, broken stream).
    Failure,
    /// Says nothing of the upstream's health (rate limited, client cancelled).
    Ignored,
}

/// A circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: String,
    policy: BreakerPolicy,
    inner: Mutex<Inner>,
    transitions: AtomicU64,
}

/// Leave to make one call. Record its outcome; dropping it unrecorded frees
/// a half-open trial slot without counting anything.
#[derive(Debug)]
pub struct TrialPermit {
    breaker: Arc<CircuitBreaker>,
    trial: bool,
    recorded: bool,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// `first` counts failures, `second` successes.
    window: SlidingWindow<Outcomes>,
    /// When `state` was entered.
    since: Instant,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

// === impl CircuitBreaker ===

impl CircuitBreaker {
    /// A closed breaker; `name` appears in its transition logs.
    pub fn new(name: impl Into<String>, policy: BreakerPolicy) -> Arc<Self> {
        let inner = Inner {
            state: State::Closed,
            window: SlidingWindow::new(policy.window, 10),
            since: Instant::now(),
        };
        Arc::new(Self {
            name: name.into(),
            policy,
            inner: Mutex::new(inner),
            transitions: AtomicU64::new(0),
        })
    }

    /// Asks to make a call. `Err` carries how long the breaker stays open (or
    /// the cooldown when every half-open trial slot is taken).
    pub fn try_acquire(self: &Arc<Self>) -> Result<TrialPermit, Duration> {
        let mut inner = self.lock();
        let now = Instant::now();
        if let State::Open { until } = inner.state {
            if now < until {
                return Err(until - now);
            }
            self.transition(
                &mut inner,
                State::HalfOpen {
                    in_flight: 0,
                    succeeded: 0,
                },
            );
        }
        match &mut inner.state {
            State::Closed => Ok(TrialPermit {
                breaker: self.clone(),
                trial: false,
                recorded: false,
            }),
            State::HalfOpen {
                in_flight,
                succeeded,
            } => {
                if *in_flight + *succeeded >= self.policy.half_open_trials {
                    return Err(self.policy.cooldown);
                }
                *in_flight += 1;
                Ok(TrialPermit {
                    breaker: self.clone(),
                    trial: true,
                    recorded: false,
                })
            }
            State::Open { .. } => Err(self.policy.cooldown),
        }
    }

    /// The current state (an expired open state reads as half-open).
    pub fn state(&self) -> BreakerState {
        self.state_since().0
    }

    /// The current state and when it was entered (an expired open state
    /// reads as half-open since its cooldown ended).
    pub fn state_since(&self) -> (BreakerState, Instant) {
        let inner = self.lock();
        match inner.state {
            State::Closed => (BreakerState::Closed, inner.since),
            State::Open { until } if Instant::now() >= until => (BreakerState::HalfOpen, until),
            State::Open { .. } => (BreakerState::Open, inner.since),
            State::HalfOpen { .. } => (BreakerState::HalfOpen, inner.since),
        }
    }

    /// State changes so far.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    fn record(&self, trial: bool, outcome: Outcome) {
        let mut inner = self.lock();
        let now = Instant::now();
        match (inner.state, trial) {
            (
                State::HalfOpen {
                    in_flight,
                    succeeded,
                },
                true,
            ) => {
                let in_flight = in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Failure => self.open(&mut inner, now),
                    Outcome::Success if succeeded + 1 >= self.policy.half_open_trials => {
                        self.transition(&mut inner, State::Closed)
                    }
                    Outcome::Success => {
                        inner.state = State::HalfOpen {
                            in_flight,
                            succeeded: succeeded + 1,
                        }
                    }
                    Outcome::Ignored => {
                        inner.state = State::HalfOpen {
                            in_flight,
                            succeeded,
                        }
                    }
                }
            }
            (State::Closed, false) => {
                match outcome {
                    Outcome::Failure => inner.window.add(now, Outcomes::FAILURE),
                    Outcome::Success => inner.window.add(now, Outcomes::SUCCESS),
                    Outcome::Ignored => return,
                }
                let totals = inner.window.totals(now);
                let calls = totals.calls();
                if calls >= u64::from(self.policy.min_requests.max(1))
                    && totals.failures as f64 >= self.policy.failure_rate * calls as f64
                {
                    self.open(&mut inner, now);
                }
            }
            // A call admitted in an earlier state says nothing about this one.
            _ => {}
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        self.transition(
            inner,
            State::Open {
                until: now + self.policy.cooldown,
            },
        );
    }

    fn transition(&self, inner: &mut Inner, next: State) {
        inner.window.reset();
        inner.state = next;
        inner.since = Instant::now();
        self.transitions.fetch_add(1, Ordering::Relaxed);
        let state = match next {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half-open",
        };
        tracing::warn!(breaker = %self.name, state, "circuit breaker changed state");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent counters behind.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === impl TrialPermit ===

impl TrialPermit {
    /// Records how the call ended.
    pub fn record(mut self, outcome: Outcome) {
        self.recorded = true;
        self.breaker.record(self.trial, outcome);
    }
}

impl Drop for TrialPermit {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.record(self.trial, Outcome::Ignored);
        }
    }
}

#[cfg(test)]
#[path = "breaker/tests.rs"]
mod tests;
