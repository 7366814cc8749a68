//! `keel_slo_*`: each configured SLO's events, and the figures Keel computes
//! from them in memory (set at scrape).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A gauge holding a float.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Labels naming an SLO.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloLabels {
    /// The SLO's name.
    pub slo: String,
    /// The public model it measures.
    pub model: String,
}

/// Labels of the events an SLO counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloEventLabels {
    /// The SLO's name.
    pub slo: String,
    /// The public model it measures.
    pub model: String,
    /// `good` or `bad`.
    pub result: String,
}

/// Labels of a burn rate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloWindowLabels {
    /// The SLO's name.
    pub slo: String,
    /// The public model it measures.
    pub model: String,
    /// `5m`, `30m`, `1h` or `6h`.
    pub window: String,
}

/// Labels of a burn-rate alert.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloAlertLabels {
    /// The SLO's name.
    pub slo: String,
    /// The public model it measures.
    pub model: String,
    /// `page` or `ticket`.
    pub alert: String,
}

/// The SLO metrics.
#[derive(Debug, Default)]
pub struct SloMetrics {
    /// `keel_slo_events_total{slo,model,result}`: requests each SLO counted.
    /// Prometheus computes burn rates over several instances from these.
    pub events: Family<SloEventLabels, Counter>,
    /// `keel_slo_objective{slo,model}`: the target, e.g. 0.999.
    pub objective: Family<SloLabels, FloatGauge>,
    /// `keel_slo_sli{slo,model}`: the good share over the SLO's window.
    pub sli: Family<SloLabels, FloatGauge>,
    /// `keel_slo_error_budget_remaining{slo,model}`: the share of the
    /// window's error budget left (1 untouched, below 0 overspent).
    pub error_budget_remaining: Family<SloLabels, FloatGauge>,
    /// `keel_slo_burn_rate{slo,model,window}`: how fast the budget burns
    /// (1 = exactly spent by the end of the window).
    pub burn_rate: Family<SloWindowLabels, FloatGauge>,
    /// `keel_slo_alert_firing{slo,model,alert}`: 1 while a multiwindow
    /// burn-rate alert fires.
    pub alert_firing: Family<SloAlertLabels, Gauge>,
}

// === impl SloMetrics ===

impl SloMetrics {
    /// Registers the SLO metrics in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "slo_events",
            "Requests counted by each SLO, good or bad",
            metrics.events.clone(),
        );
        registry.register(
            "slo_objective",
            "The SLO's target share of good requests",
            metrics.objective.clone(),
        );
        registry.register(
            "slo_sli",
            "The share of good requests over the SLO's window (in memory, since start)",
            metrics.sli.clone(),
        );
        registry.register(
            "slo_error_budget_remaining",
            "Share of the window's error budget left (1 untouched, below 0 overspent)",
            metrics.error_budget_remaining.clone(),
        );
        registry.register(
            "slo_burn_rate",
            "Error-budget burn rate over a trailing window",
            metrics.burn_rate.clone(),
        );
        registry.register(
            "slo_alert_firing",
            "1 while a multiwindow burn-rate alert fires (page: 1h and 5m above 14.4; ticket: 6h and 30m above 6)",
            metrics.alert_firing.clone(),
        );
        metrics
    }
}
