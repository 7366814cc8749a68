//! `GET /admin/providers`, `GET /admin/slo` and `GET /dashboard`: what an
//! operator needs at 3 a.m. without reading logs. The JSON routes need the
//! admin key (off without one); the dashboard is a static page that holds
//! no data and reads them with the key its reader types in.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use keel_resilience::BreakerState;
use keel_router::{HealthState, ProviderView, Snapshot, TargetView};
use keel_slo::{Indicator, Report, ALERTS, BURN_WINDOWS};
use keel_telemetry::rfc3339;
use serde_json::{json, Value};

use crate::{Admin, AppState};

/// The dashboard: one self-contained page (inline CSS and JS).
const DASHBOARD: &str = include_str!("dashboard.html");

/// `GET /admin/providers`: per provider and target, breaker state and
/// since when, in-flight / cap, rate-limit tokens left, first-token
/// percentiles and error rate over the last five minutes, the last error.
pub(crate) async fn providers(_admin: Admin, State(state): State<Arc<AppState>>) -> Json<Value> {
    let clock = WallClock::now();
    let data: Vec<Value> = state
        .router
        .providers()
        .iter()
        .map(|provider| provider_json(provider, &clock))
        .collect();
    Json(json!({
        "object": "list",
        "generated_at": rfc3339(clock.wall),
        "data": data,
    }))
}

/// `GET /admin/slo`: per SLO, the SLI over its window, the error budget,
/// burn rates and the two multiwindow alerts.
pub(crate) async fn slo(_admin: Admin, State(state): State<Arc<AppState>>) -> Json<Value> {
    let since = rfc3339(state.slos.counting_since());
    let data: Vec<Value> = state
        .slos
        .reports()
        .iter()
        .map(|report| slo_json(report, &since))
        .collect();
    Json(json!({"object": "list", "since": since, "data": data}))
}

/// `GET /dashboard`: the page; open, since it holds nothing secret.
pub(crate) async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page talks only to this origin and runs only its own code.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        DASHBOARD,
    )
}

/// Turns tokio instants into wall-clock times.
struct WallClock {
    wall: SystemTime,
    instant: tokio::time::Instant,
}

impl WallClock {
    fn now() -> Self {
        Self {
            wall: SystemTime::now(),
            instant: tokio::time::Instant::now(),
        }
    }

    fn at(&self, instant: tokio::time::Instant) -> SystemTime {
        let ago = self.instant.saturating_duration_since(instant);
        self.wall.checked_sub(ago).unwrap_or(self.wall)
    }
}

fn provider_json(provider: &ProviderView<'_>, clock: &WallClock) -> Value {
    let controls = provider.controls;
    let bulkhead = &controls.bulkhead;
    use keel_resilience::RateLimit as _;
    let bucket_left =
        |bucket: &Option<keel_redis::RateBucket>| bucket.as_ref().map(|bucket| bucket.remaining());
    let bucket_size =
        |bucket: &Option<keel_redis::RateBucket>| bucket.as_ref().map(|bucket| bucket.capacity());
    let targets: Vec<Value> = provider
        .targets
        .iter()
        .map(|target| target_json(target, clock))
        .collect();
    json!({
        "provider": provider.name,
        "kind": controls.kind,
        "in_flight": bulkhead.in_flight(),
        "max_concurrent": bulkhead.is_bounded().then(|| bulkhead.capacity()),
        "adaptive": bulkhead
            .adaptive_policy()
            .map(|policy| json!({"min": policy.min, "max": policy.max})),
        "rate_limit": {
            "rpm": bucket_size(&controls.requests),
            "requests_left": bucket_left(&controls.requests),
            "tpm": bucket_size(&controls.tokens),
            "tokens_left": bucket_left(&controls.tokens),
        },
        "targets": targets,
    })
}

fn target_json(view: &TargetView<'_>, clock: &WallClock) -> Value {
    let target = view.target;
    let (state, since) = target.breaker.state_since();
    let Snapshot {
        attempts,
        errors,
        first_token,
        last_error,
    } = target.stats.snapshot();
    let millis = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let first_token_ms = match first_token {
        Some([p50, p95, p99]) => {
            json!({"p50": millis(p50), "p95": millis(p95), "p99": millis(p99)})
        }
        None => json!({"p50": null, "p95": null, "p99": null}),
    };
    let last_error = last_error.map(
        |error| json!({"kind": error.kind, "message": error.message, "at": rfc3339(error.at)}),
    );
    json!({
        "model": &*target.model,
        "public_models": view.public_models,
        "breaker": {
            "state": breaker_state(state),
            "since": rfc3339(clock.at(since)),
            "transitions": target.breaker.transitions(),
        },
        "first_token_ms": first_token_ms,
        "latency_ewma_ms": target.stats.latency_ewma().map(millis),
        "in_flight": target.stats.in_flight(),
        "window_seconds": keel_router::RECENT.as_secs(),
        "requests": attempts,
        "errors": errors,
        "error_rate": (attempts > 0).then(|| errors as f64 / attempts as f64),
        "last_error": last_error,
        "health": health_json(&target.controls.health.state()),
    })
}

/// The provider's health checks, shown on each of its targets.
fn health_json(state: &HealthState) -> Value {
    let mut health = json!({
        "state": state.as_str(),
        "checked_at": state.checked_at().map(rfc3339),
    });
    if let (Some(error), Some(object)) = (state.error(), health.as_object_mut()) {
        object.insert(String::from("error"), Value::from(error));
    }
    health
}

fn breaker_state(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half_open",
        BreakerState::Open => "open",
    }
}

fn slo_json(report: &Report, since: &str) -> Value {
    let threshold_ms = match report.indicator {
        Indicator::Availability => None,
        Indicator::FirstTokenUnder(threshold) => Some(threshold.as_millis() as u64),
    };
    let burn_rates: serde_json::Map<String, Value> = BURN_WINDOWS
        .iter()
        .zip(report.burn_rates)
        .map(|(window, rate)| (window.name.to_owned(), json!(rate)))
        .collect();
    let alerts: serde_json::Map<String, Value> = ALERTS
        .iter()
        .zip(report.alerts)
        .map(|(alert, firing)| {
            let windows = [
                BURN_WINDOWS[alert.long].name,
                BURN_WINDOWS[alert.short].name,
            ];
            let body = json!({"firing": firing, "threshold": alert.threshold, "windows": windows});
            (alert.name.to_owned(), body)
        })
        .collect();
    let budget = &report.budget;
    json!({
        "name": report.name,
        "model": report.model,
        "sli": report.indicator.as_str(),
        "threshold_ms": threshold_ms,
        "objective": report.objective,
        "window_seconds": report.window.as_secs(),
        "counting_since": since,
        "events": {
            "total": report.events.total,
            "good": report.events.good,
            "bad": report.events.bad,
        },
        "sli_value": report.sli,
        "error_budget": {
            "total": budget.total,
            "spent": budget.spent,
            "left": budget.left,
            "left_ratio": budget.left_ratio,
        },
        "burn_rates": burn_rates,
        "alerts": alerts,
    })
}
