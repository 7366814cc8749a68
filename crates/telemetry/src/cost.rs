//! `keel_cost_usd_total` and `keel_unpriced_requests_total`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::TargetLabels;

/// Labels of spending.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CostLabels {
    /// The tenant that asked.
    pub tenant: String,
    /// The upstream model that answered.
    pub model: String,
    /// The provider that answered.
    pub provider: String,
}

/// The cost metrics.
#[derive(Debug, Default)]
pub struct CostMetrics {
    /// `keel_cost_usd_total{tenant,model,provider}`: answers priced from
    /// their usage and the target's `price`.
    pub usd: Family<CostLabels, Counter<f64, AtomicU64>>,
    /// `keel_unpriced_requests_total{provider,model}`: answers from a
    /// target without a `price`, which would otherwise count as $0.
    pub unpriced: Family<TargetLabels, Counter>,
}

// === impl CostMetrics ===

impl CostMetrics {
    /// Registers the cost metrics in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "cost_usd",
            "Spending in USD, priced from usage and the target's price",
            metrics.usd.clone(),
        );
        registry.register(
            "unpriced_requests",
            "Answers from targets without a price",
            metrics.unpriced.clone(),
        );
        metrics
    }
}
