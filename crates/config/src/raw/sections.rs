//! The `Raw*` structs: the shape of each section, with unknown keys denied.
//! Every field is optional here; `validate` reports missing required ones
//! with their path and fills defaults.

use serde::Deserialize;

use super::shapes::{OrderedMap, Scalar, ScalarList};

/// `server:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of server settings")]
pub(crate) struct RawServer {
    pub(crate) listen: Option<Scalar>,
    pub(crate) max_in_flight: Option<Scalar>,
    pub(crate) request_timeout: Option<Scalar>,
    pub(crate) admin_key: Option<Scalar>,
    pub(crate) shutdown_grace: Option<Scalar>,
    pub(crate) max_body: Option<Scalar>,
    pub(crate) metrics_listen: Option<Scalar>,
    pub(crate) body_timeout: Option<Scalar>,
    pub(crate) max_upstream_body: Option<Scalar>,
    pub(crate) cors: Option<RawCors>,
    pub(crate) sse_keepalive: Option<Scalar>,
    pub(crate) workers: Option<Scalar>,
}

/// `server.cors`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with the key origins")]
pub(crate) struct RawCors {
    pub(crate) origins: Option<ScalarList>,
}

/// `database:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with the key url")]
pub(crate) struct RawDatabase {
    pub(crate) url: Option<Scalar>,
}

/// `tenants[i]`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a tenant: name, keys or key_hashes, limits"
)]
pub(crate) struct RawTenant {
    pub(crate) name: Option<Scalar>,
    pub(crate) keys: Option<ScalarList>,
    pub(crate) key_hashes: Option<ScalarList>,
    pub(crate) limits: Option<RawTenantLimits>,
}

/// `tenants[i].limits`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with rpm, tpm, max_in_flight and/or max_queued_jobs"
)]
pub(crate) struct RawTenantLimits {
    pub(crate) rpm: Option<Scalar>,
    pub(crate) tpm: Option<Scalar>,
    pub(crate) max_in_flight: Option<Scalar>,
    pub(crate) max_queued_jobs: Option<Scalar>,
}

/// `providers.<name>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of provider settings")]
pub(crate) struct RawProvider {
    pub(crate) kind: Option<Scalar>,
    pub(crate) base_url: Option<Scalar>,
    pub(crate) api_key: Option<Scalar>,
    pub(crate) api_version: Option<Scalar>,
    pub(crate) headers: Option<OrderedMap<Scalar>>,
    pub(crate) max_concurrent: Option<RawMaxConcurrent>,
    pub(crate) rpm: Option<Scalar>,
    pub(crate) tpm: Option<Scalar>,
    pub(crate) max_tokens: Option<Scalar>,
    pub(crate) timeouts: Option<RawTimeouts>,
    pub(crate) retry: Option<RawRetry>,
    pub(crate) breaker: Option<RawBreaker>,
    pub(crate) responses: Option<Scalar>,
    pub(crate) drop_unsupported: Option<Scalar>,
    pub(crate) health_check: Option<RawHealthCheck>,
}

/// `providers.<name>.max_concurrent`: a number or `adaptive` (a scalar),
/// or the bounds of an adaptive cap (a mapping).
#[derive(Debug)]
pub(crate) enum RawMaxConcurrent {
    Scalar(Scalar),
    Adaptive(RawAdaptive),
}

/// `providers.<name>.max_concurrent: {min, max}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with min and max")]
pub(crate) struct RawAdaptive {
    pub(crate) min: Option<Scalar>,
    pub(crate) max: Option<Scalar>,
}

/// `providers.<name>.health_check`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with the key interval")]
pub(crate) struct RawHealthCheck {
    pub(crate) interval: Option<Scalar>,
}

/// `providers.<name>.timeouts`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of timeout names to durations"
)]
pub(crate) struct RawTimeouts {
    pub(crate) connect: Option<Scalar>,
    pub(crate) headers: Option<Scalar>,
    pub(crate) first_token: Option<Scalar>,
    pub(crate) inactivity: Option<Scalar>,
    pub(crate) total: Option<Scalar>,
}

/// `providers.<name>.retry`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of retry settings")]
pub(crate) struct RawRetry {
    pub(crate) attempts: Option<Scalar>,
    pub(crate) base_delay: Option<Scalar>,
    pub(crate) max_delay: Option<Scalar>,
    pub(crate) budget_ratio: Option<Scalar>,
}

/// `providers.<name>.breaker`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of circuit breaker settings"
)]
pub(crate) struct RawBreaker {
    pub(crate) failure_rate: Option<Scalar>,
    pub(crate) window: Option<Scalar>,
    pub(crate) min_requests: Option<Scalar>,
    pub(crate) cooldown: Option<Scalar>,
    pub(crate) half_open_trials: Option<Scalar>,
}

/// `models.<name>`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of model settings")]
pub(crate) struct RawModel {
    pub(crate) endpoint: Option<Scalar>,
    pub(crate) strategy: Option<Scalar>,
    pub(crate) targets: Option<Vec<RawTarget>>,
    pub(crate) fallback: Option<ScalarList>,
    pub(crate) timeout: Option<Scalar>,
    pub(crate) hedge: Option<RawHedge>,
    pub(crate) cache: Option<RawModelCache>,
    pub(crate) on_failure: Option<RawOnFailure>,
    pub(crate) affinity: Option<RawAffinity>,
}

/// `models.<name>.affinity`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with key, ttl and max_sessions"
)]
pub(crate) struct RawAffinity {
    pub(crate) key: Option<Scalar>,
    pub(crate) ttl: Option<Scalar>,
    pub(crate) max_sessions: Option<Scalar>,
}

/// `models.<name>.on_failure`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with respond")]
pub(crate) struct RawOnFailure {
    pub(crate) respond: Option<RawRespond>,
}

/// `models.<name>.on_failure.respond`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with content")]
pub(crate) struct RawRespond {
    pub(crate) content: Option<Scalar>,
}

/// `models.<name>.targets[i]`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a target: provider, model, price, max_tokens, weight, context_window"
)]
pub(crate) struct RawTarget {
    pub(crate) provider: Option<Scalar>,
    pub(crate) model: Option<Scalar>,
    pub(crate) price: Option<RawPrice>,
    pub(crate) max_tokens: Option<Scalar>,
    pub(crate) weight: Option<Scalar>,
    pub(crate) context_window: Option<Scalar>,
}

/// `models.<name>.targets[i].price`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with input, output and cached_input prices"
)]
pub(crate) struct RawPrice {
    pub(crate) input: Option<Scalar>,
    pub(crate) output: Option<Scalar>,
    pub(crate) cached_input: Option<Scalar>,
}

/// `models.<name>.hedge`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of hedge settings")]
pub(crate) struct RawHedge {
    pub(crate) after: Option<Scalar>,
    pub(crate) max: Option<Scalar>,
    pub(crate) budget: Option<Scalar>,
}

/// `models.<name>.cache`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with ttl and stale_if_error"
)]
pub(crate) struct RawModelCache {
    pub(crate) ttl: Option<Scalar>,
    pub(crate) stale_if_error: Option<Scalar>,
}

/// `cache:`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with the keys max_bytes, max_entry_bytes and shared"
)]
pub(crate) struct RawCache {
    pub(crate) max_bytes: Option<Scalar>,
    pub(crate) max_entry_bytes: Option<Scalar>,
    pub(crate) shared: Option<Scalar>,
}

/// `jobs:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of job settings")]
pub(crate) struct RawJobs {
    pub(crate) workers: Option<Scalar>,
    pub(crate) lease: Option<Scalar>,
    pub(crate) max_attempts: Option<Scalar>,
    pub(crate) retry: Option<RawJobRetry>,
    pub(crate) retention: Option<Scalar>,
}

/// `jobs.retry`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with base_delay and max_delay"
)]
pub(crate) struct RawJobRetry {
    pub(crate) base_delay: Option<Scalar>,
    pub(crate) max_delay: Option<Scalar>,
}

/// `webhooks:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of webhook settings")]
pub(crate) struct RawWebhooks {
    pub(crate) secret: Option<Scalar>,
    pub(crate) timeout: Option<Scalar>,
    pub(crate) allow_private: Option<Scalar>,
    pub(crate) retry_schedule: Option<ScalarList>,
    pub(crate) disable_after: Option<Scalar>,
}

/// `idempotency:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with the key ttl")]
pub(crate) struct RawIdempotency {
    pub(crate) ttl: Option<Scalar>,
}

/// `telemetry:`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with the key otlp_endpoint"
)]
pub(crate) struct RawTelemetry {
    pub(crate) otlp_endpoint: Option<Scalar>,
}

/// `redis`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with url, expected_instances and timeout"
)]
pub(crate) struct RawRedis {
    pub(crate) url: Option<Scalar>,
    pub(crate) expected_instances: Option<Scalar>,
    pub(crate) timeout: Option<Scalar>,
}

/// `slos[i]`
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an SLO: name, model, sli, threshold, target, window"
)]
pub(crate) struct RawSlo {
    pub(crate) name: Option<Scalar>,
    pub(crate) model: Option<Scalar>,
    pub(crate) sli: Option<Scalar>,
    pub(crate) threshold: Option<Scalar>,
    pub(crate) target: Option<Scalar>,
    pub(crate) window: Option<Scalar>,
}
