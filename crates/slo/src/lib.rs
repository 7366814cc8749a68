//! Service level objectives, measured in memory.
//!
//! Each configured SLO counts the requests for its public model as good or
//! bad ([`Outcome`] judged by its [`Indicator`]) in two sets of buckets: one
//! minute wide over the last six hours, for the burn rates, and at most 720
//! over the SLO's window, for the SLI and the error budget. Memory is fixed
//! per SLO whatever the traffic. From them come the SLI, the error budget
//! (total, spent, left), the burn rates over 5m, 30m, 1h and 6h, and the two
//! standard multiwindow burn-rate alerts: page when the 1h and 5m rates are
//! both above 14.4, ticket when the 6h and 30m rates are both above 6.
//! Counts survive nothing: a restart starts them again, and every report
//! says since when it counts.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use keel_config::{Sli, Slo};
use keel_resilience::{Outcomes, SlidingWindow};
use keel_telemetry::{
    Counter, Metrics, SloAlertLabels, SloEventLabels, SloLabels, SloWindowLabels,
};
use tokio::time::Instant;

/// The trailing windows burn rates are reported over, in minutes.
pub const BURN_WINDOWS: [BurnWindow; 4] = [
    BurnWindow {
        name: "5m",
        minutes: 5,
    },
    BurnWindow {
        name: "30m",
        minutes: 30,
    },
    BurnWindow {
        name: "1h",
        minutes: 60,
    },
    BurnWindow {
        name: "6h",
        minutes: 360,
    },
];

/// The two standard multiwindow burn-rate alerts.
pub const ALERTS: [Alert; 2] = [
    Alert {
        name: "page",
        threshold: 14.4,
        long: 2,
        short: 0,
    },
    Alert {
        name: "ticket",
        threshold: 6.0,
        long: 3,
        short: 1,
    },
];

/// The most buckets over an SLO's whole window (one an hour over 30 days).
const MAX_WINDOW_BUCKETS: u64 = 720;

/// One trailing window of the burn rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurnWindow {
    /// `5m`, `30m`, `1h` or `6h`.
    pub name: &'static str,
    /// Its length in minutes.
    pub minutes: u64,
}

/// A multiwindow burn-rate alert: it fires while the burn rates over both
/// its windows are above its threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Alert {
    /// `page` or `ticket`.
    pub name: &'static str,
    /// The burn rate both windows must exceed.
    pub threshold: f64,
    /// Its long window, an index into [`BURN_WINDOWS`].
    pub long: usize,
    /// Its short window, an index into [`BURN_WINDOWS`].
    pub short: usize,
}

/// How one request for a model ended, as the SLOs judge it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered; the first token (the whole answer, when not streamed)
    /// came `first_token` after the request was read.
    Answered {
        /// Time to the first token.
        first_token: Duration,
    },
    /// A stream failed after its first token.
    BrokenAfter {
        /// Time to the first token.
        first_token: Duration,
    },
    /// The gateway answered with a 5xx.
    Failed,
    /// The client's own doing (a 4xx: a bad request, its rate limit):
    /// available, and not a latency event.
    Refused,
}

/// What an SLO measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indicator {
    /// The share of requests not answered with a 5xx (a stream that breaks
    /// after its first token is not available either).
    Availability,
    /// The share of requests whose first token came within the threshold;
    /// a request that failed before its first token did not.
    FirstTokenUnder(Duration),
}

/// Every configured SLO.
pub struct Slos {
    objectives: Vec<Objective>,
    counting_since: SystemTime,
    metrics: Arc<Metrics>,
}

struct Objective {
    name: String,
    model: String,
    indicator: Indicator,
    target: f64,
    window: Duration,
    counts: Mutex<Counts>,
    good: Counter,
    bad: Counter,
}

/// `first` counts bad events, `second` good ones.
struct Counts {
    /// One-minute buckets over the longest burn window.
    recent: SlidingWindow<Outcomes>,
    /// Buckets over the SLO's window.
    whole: SlidingWindow<Outcomes>,
}

/// One SLO's figures at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The SLO's name.
    pub name: String,
    /// The public model it measures.
    pub model: String,
    /// What it measures.
    pub indicator: Indicator,
    /// The target share of good events, e.g. 0.999.
    pub objective: f64,
    /// The window the SLI and the budget are measured over.
    pub window: Duration,
    /// Events counted over the window (since start, when shorter).
    pub events: Events,
    /// The good share over the window; `None` before any event.
    pub sli: Option<f64>,
    /// The window's error budget.
    pub budget: Budget,
    /// Burn rates over [`BURN_WINDOWS`], in that order.
    pub burn_rates: [f64; 4],
    /// Whether each of [`ALERTS`] fires, in that order.
    pub alerts: [bool; 2],
}

/// Good and bad events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// Every event.
    pub total: u64,
    /// Good ones.
    pub good: u64,
    /// Bad ones.
    pub bad: u64,
}

/// An error budget, in events.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Bad events the objective allows over the window's events.
    pub total: f64,
    /// Bad events so far.
    pub spent: f64,
    /// `total - spent` (negative once overspent).
    pub left: f64,
    /// `left / total`: 1 untouched, 0 spent, below 0 overspent; 1 before
    /// any event.
    pub left_ratio: f64,
}

// === impl Slos ===

impl Slos {
    /// The SLOs of the configuration, counting from now; each records its
    /// events into `metrics`.
    pub fn new(slos: &[Slo], metrics: Arc<Metrics>) -> Self {
        let objectives = slos
            .iter()
            .map(|slo| Objective::new(slo, &metrics))
            .collect();
        Self {
            objectives,
            counting_since: SystemTime::now(),
            metrics,
        }
    }

    /// Whether any SLO is configured.
    pub fn is_empty(&self) -> bool {
        self.objectives.is_empty()
    }

    /// When counting started (the process start: counts are in memory).
    pub fn counting_since(&self) -> SystemTime {
        self.counting_since
    }

    /// Counts one request for the public model `model` in each of its SLOs.
    pub fn record(&self, model: &str, outcome: Outcome) {
        let now = Instant::now();
        for objective in self.objectives.iter().filter(|o| o.model == model) {
            objective.record(now, outcome);
        }
    }

    /// Every SLO's figures now, in configuration order.
    pub fn reports(&self) -> Vec<Report> {
        let now = Instant::now();
        self.objectives
            .iter()
            .map(|objective| objective.report(now))
            .collect()
    }

    /// Sets the `keel_slo_*` gauges from the figures now (at scrape).
    pub fn export_gauges(&self) {
        let metrics = &self.metrics.slo;
        for report in self.reports() {
            let labels = SloLabels {
                slo: report.name.clone(),
                model: report.model.clone(),
            };
            metrics
                .objective
                .get_or_create(&labels)
                .set(report.objective);
            metrics
                .sli
                .get_or_create(&labels)
                .set(report.sli.unwrap_or(1.0));
            metrics
                .error_budget_remaining
                .get_or_create(&labels)
                .set(report.budget.left_ratio);
            for (window, rate) in BURN_WINDOWS.iter().zip(report.burn_rates) {
                let labels = SloWindowLabels {
                    slo: report.name.clone(),
                    model: report.model.clone(),
                    window: window.name.to_owned(),
                };
                metrics.burn_rate.get_or_create(&labels).set(rate);
            }
            for (alert, firing) in ALERTS.iter().zip(report.alerts) {
                let labels = SloAlertLabels {
                    slo: report.name.clone(),
                    model: report.model.clone(),
                    alert: alert.name.to_owned(),
                };
                metrics
                    .alert_firing
                    .get_or_create(&labels)
                    .set(i64::from(firing));
            }
        }
    }
}

// === impl Objective ===

impl Objective {
    fn new(slo: &Slo, metrics: &Metrics) -> Self {
        let events = |result: &str| {
            let labels = SloEventLabels {
                slo: slo.name.clone(),
                model: slo.model.clone(),
                result: result.to_owned(),
            };
            metrics.slo.events.get_or_create(&labels).clone()
        };
        let longest_burn = BURN_WINDOWS[BURN_WINDOWS.len() - 1].minutes;
        let window_buckets = (slo.window.as_secs() / 60).clamp(1, MAX_WINDOW_BUCKETS);
        let counts = Counts {
            recent: SlidingWindow::new(Duration::from_secs(longest_burn * 60), longest_burn as u32),
            whole: SlidingWindow::new(slo.window, window_buckets as u32),
        };
        Self {
            name: slo.name.clone(),
            model: slo.model.clone(),
            indicator: match slo.sli {
                Sli::Availability => Indicator::Availability,
                Sli::FirstTokenUnder(threshold) => Indicator::FirstTokenUnder(threshold),
            },
            target: slo.target,
            window: slo.window,
            counts: Mutex::new(counts),
            good: events("good"),
            bad: events("bad"),
        }
    }

    fn record(&self, now: Instant, outcome: Outcome) {
        let Some(good) = self.indicator.judge(outcome) else {
            return;
        };
        let (bad, good) = if good {
            self.good.inc();
            (0, 1)
        } else {
            self.bad.inc();
            (1, 0)
        };
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        // A bad event fails the SLO; a good one succeeds.
        let events = Outcomes {
            failures: bad,
            successes: good,
        };
        counts.recent.add(now, events);
        counts.whole.add(now, events);
    }

    fn report(&self, now: Instant) -> Report {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let whole = counts.whole.totals(now);
        let burn_rates = BURN_WINDOWS.map(|window| {
            let totals = counts.recent.totals_of_last(now, window.minutes as usize);
            self.burn_rate(totals.failures, totals.calls())
        });
        drop(counts);
        let events = Events {
            total: whole.calls(),
            good: whole.successes,
            bad: whole.failures,
        };
        Report {
            name: self.name.clone(),
            model: self.model.clone(),
            indicator: self.indicator,
            objective: self.target,
            window: self.window,
            events,
            sli: (events.total > 0).then(|| events.good as f64 / events.total as f64),
            budget: self.budget(events),
            burn_rates,
            alerts: ALERTS.map(|alert| {
                burn_rates[alert.long] > alert.threshold
                    && burn_rates[alert.short] > alert.threshold
            }),
        }
    }

    /// The share of bad events over the share the objective allows.
    fn burn_rate(&self, bad: u64, total: u64) -> f64 {
        if total == 0 {
            return 0.0;
        }
        (bad as f64 / total as f64) / (1.0 - self.target)
    }

    fn budget(&self, events: Events) -> Budget {
        let total = (1.0 - self.target) * events.total as f64;
        let spent = events.bad as f64;
        let left = total - spent;
        Budget {
            total,
            spent,
            left,
            left_ratio: if events.total == 0 { 1.0 } else { left / total },
        }
    }
}

// === impl Indicator ===

impl Indicator {
    /// Whether `outcome` is a good event; `None` when it is not an event
    /// of this indicator.
    pub fn judge(self, outcome: Outcome) -> Option<bool> {
        match (self, outcome) {
            (Self::Availability, Outcome::Answered { .. } | Outcome::Refused) => Some(true),
            (Self::Availability, Outcome::BrokenAfter { .. } | Outcome::Failed) => Some(false),
            (
                Self::FirstTokenUnder(threshold),
                Outcome::Answered { first_token } | Outcome::BrokenAfter { first_token },
            ) => Some(first_token <= threshold),
            (Self::FirstTokenUnder(_), Outcome::Failed) => Some(false),
            (Self::FirstTokenUnder(_), Outcome::Refused) => None,
        }
    }

    /// `availability` or `first_token_under`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Availability => "availability",
            Self::FirstTokenUnder(_) => "first_token_under",
        }
    }
}

#[cfg(test)]
mod tests;
