//! Metric and span names shared by every Keel crate, and [`Metrics`], the one
//! Prometheus registry they are recorded in. Labels carry only bounded values
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

/// Every Keel metric.
pub struct Metrics {
    registry: Registry,
    /// `keel_requests_total{route,status}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `keel_request_duration_seconds{route,status}` (to the response head).
    pub request_duration: Family<RequestLabels, Histogram>,
    /// `keel_upstream_attempts_total{provider,model,outcome}`.
    pub upstream_attempts: Family<AttemptLabels, Counter>,
    /// `keel_retries_total{provider}`.
    pub retries: Family<ProviderLabels, Counter>,
    /// `keel_retry_budget_exhausted_total{provider}`.
    pub retry_budget_exhausted: Family<ProviderLabels, Counter>,
    /// `keel_health_checks_total{provider,outcome}`.
    pub health_checks: Family<HealthCheckLabels, Counter>,
    /// `keel_circuit_state{provider,model}`: 0 closed, 1 half-open, 2 open.
    pub circuit_state: Family<TargetLabels, Gauge>,
    /// `keel_circuit_transitions_total{provider,model}`.
    pub circuit_transitions: Family<TargetLabels, Counter>,
    /// `keel_circuit_rejections_total{provider,model}`.
    pub circuit_rejections: Family<TargetLabels, Counter>,
    /// `keel_bulkhead_in_flight{provider}`.
    pub bulkhead_in_flight: Family<ProviderLabels, Gauge>,
    /// `keel_redis_up`: 1 while limits and the cache level are shared
    /// through Redis, 0 while this instance runs on its own (absent
    /// without `redis:`).
    pub redis_up: Gauge,
    /// `keel_redis_fallbacks_total`: limit calls answered by the local
    /// fallback because Redis failed, took too long, or was down.
    pub redis_fallbacks: Counter,
    /// `keel_bulkhead_limit{provider}`: the cap now, for bounded bulkheads
    /// (it moves with `max_concurrent: adaptive`).
    pub bulkhead_limit: Family<ProviderLabels, Gauge>,
    /// `keel_bulkhead_rejections_total{provider}`.
    pub bulkhead_rejections: Family<ProviderLabels, Counter>,
    /// `keel_rate_limited_total{scope,name}`.
    pub rate_limited: Family<LimitLabels, Counter>,
    /// `keel_shed_requests_total`.
    pub shed: Counter,
    /// `keel_time_to_first_token_seconds{provider,model}`.
    pub first_token: Family<TargetLabels, Histogram>,
    /// `keel_upstream_duration_seconds{provider,model}` (whole attempt).
    pub upstream_duration: Family<TargetLabels, Histogram>,
    /// `keel_queue_jobs{state}`: jobs in the store by status (read at scrape).
    pub queue_jobs: Family<StateLabels, Gauge>,
    /// `keel_webhook_deliveries_total{outcome}`: delivery attempts by this instance.
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    /// Handles of `requests` and `request_duration` by (route, status),
    /// so recording a request allocates no label strings.
    request_handles: std::sync::RwLock<Vec<RequestHandles>>,
    /// `keel_hedges_total{model}`: hedged attempts started.
    pub hedges: Family<ModelLabels, Counter>,
    /// `keel_hedge_wins_total{model}`: answers that came from a hedge.
    pub hedge_wins: Family<ModelLabels, Counter>,
    /// `keel_hedge_budget_exhausted_total{model}`: hedges the budget refused.
    pub hedge_budget_exhausted: Family<ModelLabels, Counter>,
    /// `keel_webhook_endpoints_disabled_total`: endpoints this instance
    /// disabled (410 Gone, or failing for `webhooks.disable_after`).
    pub webhook_endpoints_disabled: Counter,
    /// `keel_cache_requests_total{model,result}`: prompt-cache decisions.
    pub cache_requests: Family<CacheLabels, Counter>,
    /// `keel_cache_entries`: answers in the prompt cache (read at scrape).
    pub cache_entries: Gauge,
    /// `keel_cache_bytes`: their accounted size in bytes (read at scrape).
    pub cache_bytes: Gauge,
    /// `keel_cache_evictions_total`: entries evicted to keep within `cache.max_bytes`.
    pub cache_evictions: Counter,
    /// `keel_cache_single_flight_waiters_total`: requests that waited for an
    /// identical request's upstream call instead of making their own.
    pub cache_single_flight_waiters: Counter,
    /// `keel_slo_*`: service level objectives.
    pub slo: SloMetrics,
    /// `keel_cost_usd_total` and `keel_unpriced_requests_total`.
    pub cost: CostMetrics,
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

// === impl Metrics ===

impl Metrics {
    /// Registers every metric, one entry each: its field, its name (after
    /// `keel_`; counters gain `_total`), its help and its kind. They are
    /// exported in this order.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keel");
        let r = &mut registry;
        let requests = metric(r, "requests", "HTTP requests answered", Family::default());
        let request_duration = metric(
            r,
            "request_duration_seconds",
            "Time to the response head",
            latencies(),
        );
        let upstream_attempts = metric(
            r,
            "upstream_attempts",
            "Upstream attempts by outcome",
            Family::default(),
        );
        let retries = metric(
            r,
            "retries",
            "Retries of the same target",
            Family::default(),
        );
        let retry_budget_exhausted = metric(
            r,
            "retry_budget_exhausted",
            "Retries refused by the retry budget",
            Family::default(),
        );
        let health_checks = metric(
            r,
            "health_checks",
            "Active health checks of idle providers, by outcome",
            Family::default(),
        );
        let circuit_state = metric(
            r,
            "circuit_state",
            "Breaker state: 0 closed, 1 half-open, 2 open",
            Family::default(),
        );
        let circuit_transitions = metric(
            r,
            "circuit_transitions",
            "Breaker state changes",
            Family::default(),
        );
        let circuit_rejections = metric(
            r,
            "circuit_rejections",
            "Calls refused by an open breaker",
            Family::default(),
        );
        let bulkhead_in_flight = metric(
            r,
            "bulkhead_in_flight",
            "Upstream calls in flight",
            Family::default(),
        );
        let redis_up = metric(
            r,
            "redis_up",
            "Whether Redis answers (1) or this instance runs on local limits and cache (0)",
            Gauge::default(),
        );
        let redis_fallbacks = metric(
            r,
            "redis_fallbacks",
            "Limit calls answered by the local fallback because Redis failed, timed out or was down",
            Counter::default(),
        );
        let bulkhead_limit = metric(
            r,
            "bulkhead_limit",
            "The bulkhead's cap now (max_concurrent; it moves when adaptive)",
            Family::default(),
        );
        let bulkhead_rejections = metric(
            r,
            "bulkhead_rejections",
            "Calls refused by a full bulkhead",
            Family::default(),
        );
        let rate_limited = metric(
            r,
            "rate_limited",
            "Requests refused by a rate limit",
            Family::default(),
        );
        let shed = metric(
            r,
            "shed_requests",
            "Requests shed by server.max_in_flight",
            Counter::default(),
        );
        let first_token = metric(
            r,
            "time_to_first_token_seconds",
            "Upstream time to first token",
            latencies(),
        );
        let upstream_duration = metric(
            r,
            "upstream_duration_seconds",
            "Upstream attempt duration",
            latencies(),
        );
        let queue_jobs = metric(
            r,
            "queue_jobs",
            "Jobs in the store by status",
            Family::default(),
        );
        let webhook_deliveries = metric(
            r,
            "webhook_deliveries",
            "Webhook delivery attempts by outcome",
            Family::default(),
        );
        let hedges = metric(r, "hedges", "Hedged attempts started", Family::default());
        let hedge_wins = metric(
            r,
            "hedge_wins",
            "Answers that came from a hedged attempt",
            Family::default(),
        );
        let hedge_budget_exhausted = metric(
            r,
            "hedge_budget_exhausted",
            "Hedges refused by the hedge budget",
            Family::default(),
        );
        let webhook_endpoints_disabled = metric(
            r,
            "webhook_endpoints_disabled",
            "Webhook endpoints disabled after 410 Gone or continuous failure",
            Counter::default(),
        );
        let cache_requests = metric(
            r,
            "cache_requests",
            "Prompt-cache decisions by result",
            Family::default(),
        );
        let cache_entries = metric(
            r,
            "cache_entries",
            "Answers in the prompt cache",
            Gauge::default(),
        );
        let cache_bytes = metric(
            r,
            "cache_bytes",
            "Accounted bytes of the prompt cache",
            Gauge::default(),
        );
        let cache_evictions = metric(
            r,
            "cache_evictions",
            "Prompt-cache entries evicted to stay within cache.max_bytes",
            Counter::default(),
        );
        let cache_single_flight_waiters = metric(
            r,
            "cache_single_flight_waiters",
            "Requests that waited for an identical request's upstream call",
            Counter::default(),
        );
        let slo = SloMetrics::register(r);
        let cost = CostMetrics::register(r);
        Self {
            registry,
            slo,
            cost,
            requests,
            request_duration,
            upstream_attempts,
            retries,
            retry_budget_exhausted,
            health_checks,
            circuit_state,
            circuit_transitions,
            circuit_rejections,
            bulkhead_in_flight,
            bulkhead_limit,
            redis_up,
            redis_fallbacks,
            bulkhead_rejections,
            rate_limited,
            shed,
            first_token,
            upstream_duration,
            queue_jobs,
            webhook_deliveries,
            request_handles: std::sync::RwLock::default(),
            hedges,
            hedge_wins,
            hedge_budget_exhausted,
            webhook_endpoints_disabled,
            cache_requests,
            cache_entries,
            cache_bytes,
            cache_evictions,
            cache_single_flight_waiters,
        }
    }

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
