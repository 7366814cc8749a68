//! Active health checks (`providers.<name>.health_check`): while a provider
//! is idle, a request that costs no tokens (its models list) every
//! interval. The probe counts in every breaker of the provider the way a
//! call does: it takes the breaker's permit (a half-open trial once the
//! cooldown has passed, nothing while it is open) and records its outcome,
//! so an outage opens the breakers before a user finds it, and a recovery
//! closes them through their trials. `/admin/providers` shows the last
//! outcome.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use keel_providers::{Clock, Provider, ProviderError};
use keel_resilience::{Outcome, TrialPermit};
use tokio::time::MissedTickBehavior;

use crate::{admission, ProviderControls, Router, Target};

/// The longest error message kept, in bytes.
const MAX_MESSAGE: usize = 512;

/// A provider's health check: its schedule, when configured, and the last
/// outcome.
#[derive(Debug)]
pub struct Health {
    schedule: Option<HealthSchedule>,
    state: Mutex<HealthState>,
}

/// When probes are sent and how long one may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthSchedule {
    /// The time between two probes.
    pub interval: Duration,
    /// The longest a probe may take before it counts as failed.
    pub timeout: Duration,
}

/// What `/admin/providers` shows of a provider's health checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthState {
    /// The provider has no `health_check`.
    NotConfigured,
    /// Configured, not probed yet.
    Pending,
    /// The last probe succeeded.
    Healthy {
        /// When it ended.
        checked_at: SystemTime,
    },
    /// The last probe failed.
    Unhealthy {
        /// When it ended.
        checked_at: SystemTime,
        /// Why, at most 512 bytes.
        error: String,
    },
}

/// One provider's probe loop: its adapter, controls and every target (one
/// per breaker).
struct Checked<'r> {
    name: &'r str,
    provider: &'r Arc<dyn Provider>,
    controls: &'r ProviderControls,
    targets: Vec<&'r Target>,
}

// === impl Health ===

impl Health {
    /// No health checks.
    pub fn off() -> Self {
        Self::with(None, HealthState::NotConfigured)
    }

    /// Probes on `schedule`.
    pub fn every(schedule: HealthSchedule) -> Self {
        Self::with(Some(schedule), HealthState::Pending)
    }

    fn with(schedule: Option<HealthSchedule>, state: HealthState) -> Self {
        Self {
            schedule,
            state: Mutex::new(state),
        }
    }

    /// The schedule, when health checks are configured.
    pub fn schedule(&self) -> Option<HealthSchedule> {
        self.schedule
    }

    /// The last outcome.
    pub fn state(&self) -> HealthState {
        self.lock().clone()
    }

    /// Records a probe's outcome; `true` when it changed the state's kind
    /// (healthy to unhealthy or back), which is worth a log line.
    fn record(&self, outcome: Result<(), &ProviderError>) -> bool {
        let checked_at = SystemTime::now();
        let next = match outcome {
            Ok(()) => HealthState::Healthy { checked_at },
            Err(error) => {
                let mut error = error.to_string();
                crate::stats::truncate_on_char(&mut error, MAX_MESSAGE);
                HealthState::Unhealthy { checked_at, error }
            }
        };
        let mut state = self.lock();
        let changed = state.as_str() != next.as_str();
        *state = next;
        changed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl HealthState ===

impl HealthState {
    /// `not_configured`, `pending`, `healthy` or `unhealthy`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Pending => "pending",
            Self::Healthy { .. } => "healthy",
            Self::Unhealthy { .. } => "unhealthy",
        }
    }

    /// When the last probe ended, if one has.
    pub fn checked_at(&self) -> Option<SystemTime> {
        match self {
            Self::Healthy { checked_at } | Self::Unhealthy { checked_at, .. } => Some(*checked_at),
            Self::NotConfigured | Self::Pending => None,
        }
    }

    /// Why the last probe failed, if it did.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Unhealthy { error, .. } => Some(error),
            _ => None,
        }
    }
}

// === impl Router ===

impl Router {
    /// Probes every provider with a health check on its schedule, for as
    /// long as the future is polled (the binary aborts it on shutdown);
    /// ends at once when no provider has one.
    pub async fn run_health_checks(&self) {
        join_all(self.checked_providers().into_iter().filter_map(|checked| {
            let schedule = checked.controls.health.schedule()?;
            Some(self.check_loop(checked, schedule))
        }))
        .await;
    }

    /// Every provider with its targets, one per breaker, in table order.
    fn checked_providers(&self) -> Vec<Checked<'_>> {
        let mut providers: Vec<Checked<'_>> = Vec::new();
        for target in self.table.targets() {
            let position = providers
                .iter()
                .position(|checked| checked.name == &*target.provider_name);
            let Some(position) = position else {
                providers.push(Checked {
                    name: &target.provider_name,
                    provider: &target.provider,
                    controls: &target.controls,
                    targets: vec![target],
                });
                continue;
            };
            let checked = &mut providers[position];
            let known = checked
                .targets
                .iter()
                .any(|seen| Arc::ptr_eq(&seen.breaker, &target.breaker));
            if !known {
                checked.targets.push(target);
            }
        }
        providers
    }

    /// Each tick, probes the provider unless it had traffic within the
    /// last interval: then its calls already feed the breakers, and a
    /// probe would only add load.
    async fn check_loop(&self, checked: Checked<'_>, schedule: HealthSchedule) {
        let mut ticks = tokio::time::interval(schedule.interval);
        // A slow probe delays the next one instead of causing a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !checked.is_busy(schedule.interval) {
                self.probe(&checked, schedule.timeout).await;
            }
        }
    }

    /// Sends one probe and records it in the breakers, the health state
    /// and `keel_health_checks_total`.
    async fn probe(&self, checked: &Checked<'_>, timeout: Duration) {
        let Some(probe) = checked.provider.health_check() else {
            tracing::debug!(provider = checked.name, "this adapter has no health check");
            return;
        };
        // Taken before the probe is sent, like a call's: a half-open
        // breaker lends it one of its trials; an open one is left alone.
        let permits: Vec<TrialPermit> = checked
            .targets
            .iter()
            .filter_map(|target| target.breaker.try_acquire().ok())
            .collect();
        let outcome = tokio::time::timeout(timeout, probe)
            .await
            .unwrap_or_else(|_| {
                Err(ProviderError::Timeout {
                    provider: checked.name.to_owned(),
                    clock: Clock::Headers,
                })
            });
        let for_breakers = match &outcome {
            Ok(()) => Outcome::Success,
            Err(error) => admission::breaker_outcome(error),
        };
        for permit in permits {
            permit.record(for_breakers);
        }
        let changed = checked.controls.health.record(outcome.as_ref().map(|_| ()));
        let word = if outcome.is_ok() {
            "healthy"
        } else {
            "unhealthy"
        };
        let labels = keel_telemetry::HealthCheckLabels {
            provider: checked.name.to_owned(),
            outcome: word.to_owned(),
        };
        self.metrics.health_checks.get_or_create(&labels).inc();
        match (&outcome, changed) {
            (Err(error), true) => {
                tracing::warn!(provider = checked.name, %error, "health check failed");
            }
            (Ok(()), true) => tracing::info!(provider = checked.name, "health check passed"),
            (outcome, false) => {
                tracing::debug!(
                    provider = checked.name,
                    ok = outcome.is_ok(),
                    "health check"
                );
            }
        }
    }
}

// === impl Checked ===

impl Checked<'_> {
    /// Whether any of its targets had a call in flight or an attempt end
    /// within `period`.
    fn is_busy(&self, period: Duration) -> bool {
        self.targets
            .iter()
            .any(|target| target.stats.busy_within(period))
    }
}
