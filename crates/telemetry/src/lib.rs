//! [`Metrics`], every Keel metric, and the one Prometheus registry they are
//! recorded in. Labels carry only bounded values
//! from the configuration (provider, model, tenant names) and fixed outcome
//! words, never keys, ids or prompts.

use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
pub use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

mod cost;
mod slo;
mod time;

pub use cost::{CostLabels, CostMetrics};
pub use slo::{SloAlertLabels, SloEventLabels, SloLabels, SloMetrics, SloWindowLabels};
pub use time::rfc3339;

/// Labels of one upstream attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// Provider name.
    pub provider: String,
    /// Upstream model.
    pub model: String,
    /// `ok` or an error kind (`timeout`, `server_error`, …).
    pub outcome: String,
}

/// Labels naming a provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// Provider name.
    pub provider: String,
}

/// Labels of one active health check.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthCheckLabels {
    /// Provider name.
    pub provider: String,
    /// `healthy` or `unhealthy`.
    pub outcome: String,
}

/// Labels naming a target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// Provider name.
    pub provider: String,
    /// Upstream model.
    pub model: String,
}

/// Labels of a rate-limit rejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// `tenant` or `provider`.
    pub scope: String,
    /// The tenant's or provider's name.
    pub name: String,
}

/// Labels naming a public model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// The public model name.
    pub model: String,
}

/// Labels of one prompt-cache decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// The public model name.
    pub model: String,
    /// `hit`, `miss`, `bypass` or `stale`.
    pub result: String,
}

/// Labels naming a job status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
}

/// Labels naming an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `retry` or `failed`.
    pub outcome: String,
}

/// Labels of a finished HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route pattern, e.g. `/v1/chat/completions`.
    pub route: String,
    /// The status code.
    pub status: String,
}

/// Declares [`Metrics`] from one table: each row is a metric's field (with
/// its doc), its kind and how it is made, its name (after `keel_`;
/// counters gain `_total`) and its help. The registry exports them in the
/// table's order, then the SLO and cost families.
macro_rules! metrics {
    ($($(#[$doc:meta])* $field:ident: $kind:ty = $make:expr, $name:literal, $help:literal;)*) => {
        /// Every Keel metric.
        pub struct Metrics {
            registry: Registry,
            /// Handles of `requests` and `request_duration` by (route,
            /// status), so recording a request allocates no label strings.
            request_handles: std::sync::RwLock<Vec<RequestHandles>>,
            /// `keel_slo_*`: service level objectives.
            pub slo: SloMetrics,
            /// `keel_cost_usd_total` and `keel_unpriced_requests_total`.
            pub cost: CostMetrics,
            $($(#[$doc])* pub $field: $kind,)*
        }

        // === impl Metrics ===

        impl Metrics {
            /// Registers every metric of the table.
            pub fn new() -> Self {
                let mut registry = Registry::with_prefix("keel");
                $(let $field: $kind = metric(&mut registry, $name, $help, $make);)*
                let slo = SloMetrics::register(&mut registry);
                let cost = CostMetrics::register(&mut registry);
                Self {
                    registry,
                    request_handles: std::sync::RwLock::default(),
                    slo,
                    cost,
                    $($field,)*
                }
            }
        }
    };
}

metrics! {
    /// `keel_requests_total{route,status}`.
    requests: Family<RequestLabels, Counter> = Family::default(),
        "requests", "HTTP requests answered";
    /// `keel_request_duration_seconds{route,status}` (to the response head).
    request_duration: Family<RequestLabels, Histogram> = latencies(),
        "request_duration_seconds", "Time to the response head";
    /// `keel_upstream_attempts_total{provider,model,outcome}`.
    upstream_attempts: Family<AttemptLabels, Counter> = Family::default(),
        "upstream_attempts", "Upstream attempts by outcome";
    /// `keel_retries_total{provider}`.
    retries: Family<ProviderLabels, Counter> = Family::default(),
        "retries", "Retries of the same target";
    /// `keel_retry_budget_exhausted_total{provider}`.
    retry_budget_exhausted: Family<ProviderLabels, Counter> = Family::default(),
        "retry_budget_exhausted", "Retries refused by the retry budget";
    /// `keel_health_checks_total{provider,outcome}`.
    health_checks: Family<HealthCheckLabels, Counter> = Family::default(),
        "health_checks", "Active health checks of idle providers, by outcome";
    /// `keel_circuit_state{provider,model}`: 0 closed, 1 half-open, 2 open.
    circuit_state: Family<TargetLabels, Gauge> = Family::default(),
        "circuit_state", "Breaker state: 0 closed, 1 half-open, 2 open";
    /// `keel_circuit_transitions_total{provider,model}`.
    circuit_transitions: Family<TargetLabels, Counter> = Family::default(),
        "circuit_transitions", "Breaker state changes";
    /// `keel_circuit_rejections_total{provider,model}`.
    circuit_rejections: Family<TargetLabels, Counter> = Family::default(),
        "circuit_rejections", "Calls refused by an open breaker";
    /// `keel_bulkhead_in_flight{provider}`.
    bulkhead_in_flight: Family<ProviderLabels, Gauge> = Family::default(),
        "bulkhead_in_flight", "Upstream calls in flight";
    /// `keel_redis_up`: 1 while limits and the cache level are shared
    /// through Redis, 0 while this instance runs on its own (absent
    /// without `redis:`).
    redis_up: Gauge = Gauge::default(),
        "redis_up", "Whether Redis answers (1) or this instance runs on local limits and cache (0)";
    /// `keel_redis_fallbacks_total`: limit calls answered by the local
    /// fallback because Redis failed, took too long, or was down.
    redis_fallbacks: Counter = Counter::default(),
        "redis_fallbacks",
        "Limit calls answered by the local fallback because Redis failed, timed out or was down";
    /// `keel_bulkhead_limit{provider}`: the cap now, for bounded bulkheads
    /// (it moves with `max_concurrent: adaptive`).
    bulkhead_limit: Family<ProviderLabels, Gauge> = Family::default(),
        "bulkhead_limit", "The bulkhead's cap now (max_concurrent; it moves when adaptive)";
    /// `keel_bulkhead_rejections_total{provider}`.
    bulkhead_rejections: Family<ProviderLabels, Counter> = Family::default(),
        "bulkhead_rejections", "Calls refused by a full bulkhead";
    /// `keel_rate_limited_total{scope,name}`.
    rate_limited: Family<LimitLabels, Counter> = Family::default(),
        "rate_limited", "Requests refused by a rate limit";
    /// `keel_shed_requests_total`.
    shed: Counter = Counter::default(), "shed_requests", "Requests shed by server.max_in_flight";
    /// `keel_time_to_first_token_seconds{provider,model}`.
    first_token: Family<TargetLabels, Histogram> = latencies(),
        "time_to_first_token_seconds", "Upstream time to first token";
    /// `keel_upstream_duration_seconds{provider,model}` (whole attempt).
    upstream_duration: Family<TargetLabels, Histogram> = latencies(),
        "upstream_duration_seconds", "Upstream attempt duration";
    /// `keel_queue_jobs{state}`: jobs in the store by status (read at scrape).
    queue_jobs: Family<StateLabels, Gauge> = Family::default(),
        "queue_jobs", "Jobs in the store by status";
    /// `keel_webhook_deliveries_total{outcome}`: delivery attempts by this instance.
    webhook_deliveries: Family<OutcomeLabels, Counter> = Family::default(),
        "webhook_deliveries", "Webhook delivery attempts by outcome";
    /// `keel_hedges_total{model}`: hedged attempts started.
    hedges: Family<ModelLabels, Counter> = Family::default(), "hedges", "Hedged attempts started";
    /// `keel_hedge_wins_total{model}`: answers that came from a hedge.
    hedge_wins: Family<ModelLabels, Counter> = Family::default(),
        "hedge_wins", "Answers that came from a hedged attempt";
    /// `keel_hedge_budget_exhausted_total{model}`: hedges the budget refused.
    hedge_budget_exhausted: Family<ModelLabels, Counter> = Family::default(),
        "hedge_budget_exhausted", "Hedges refused by the hedge budget";
    /// `keel_webhook_endpoints_disabled_total`: endpoints this instance
    /// disabled (410 Gone, or failing for `webhooks.disable_after`).
    webhook_endpoints_disabled: Counter = Counter::default(),
        "webhook_endpoints_disabled",
        "Webhook endpoints disabled after 410 Gone or continuous failure";
    /// `keel_cache_requests_total{model,result}`: prompt-cache decisions.
    cache_requests: Family<CacheLabels, Counter> = Family::default(),
        "cache_requests", "Prompt-cache decisions by result";
    /// `keel_cache_entries`: answers in the prompt cache (read at scrape).
    cache_entries: Gauge = Gauge::default(), "cache_entries", "Answers in the prompt cache";
    /// `keel_cache_bytes`: their accounted size in bytes (read at scrape).
    cache_bytes: Gauge = Gauge::default(), "cache_bytes", "Accounted bytes of the prompt cache";
    /// `keel_cache_evictions_total`: entries evicted to keep within `cache.max_bytes`.
    cache_evictions: Counter = Counter::default(),
        "cache_evictions", "Prompt-cache entries evicted to stay within cache.max_bytes";
    /// `keel_cache_single_flight_waiters_total`: requests that waited for an
    /// identical request's upstream call instead of making their own.
    cache_single_flight_waiters: Counter = Counter::default(),
        "cache_single_flight_waiters",
        "Requests that waited for an identical request's upstream call";
}

/// The request metrics of one (route, status).
#[derive(Debug)]
struct RequestHandles {
    route: &'static str,
    status: u16,
    count: Counter,
    duration: Histogram,
}

/// A family of latency histograms: 1 ms to about 2 minutes, doubling.
fn latencies<L: Clone + std::hash::Hash + Eq>() -> Family<L, Histogram> {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 18)))
}

/// Registers `metric` under `name` with `help` and hands it back (the
/// registry keeps a handle to the same metric).
fn metric<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Counts one finished request and observes its duration.
    pub fn record_request(&self, route: &'static str, status: u16, seconds: f64) {
        if let Ok(handles) = self.request_handles.read() {
            let known = handles
                .iter()
                .find(|handles| handles.route == route && handles.status == status);
            if let Some(handles) = known {
                handles.count.inc();
                handles.duration.observe(seconds);
                return;
            }
        }
        let labels = RequestLabels {
            route: route.to_owned(),
            status: status.to_string(),
        };
        let handles = RequestHandles {
            route,
            status,
            count: self.requests.get_or_create(&labels).clone(),
            duration: self.request_duration.get_or_create(&labels).clone(),
        };
        handles.count.inc();
        handles.duration.observe(seconds);
        if let Ok(mut known) = self.request_handles.write() {
            known.push(handles);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `TargetLabels` from names.
pub fn target(provider: &str, model: &str) -> TargetLabels {
    TargetLabels {
        provider: provider.to_owned(),
        model: model.to_owned(),
    }
}

/// `ProviderLabels` from a name.
pub fn provider(provider: &str) -> ProviderLabels {
    ProviderLabels {
        provider: provider.to_owned(),
    }
}
