//! Paths to handlers, and the middleware every request passes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Json;

use crate::api::Inner;
use crate::{chat, jobs, request_id, shed, ApiError, AppState, Tenant};

/// The paths of the routes that carry model traffic.
pub(crate) const CHAT_PATH: &str = "/v1/chat/completions";
pub(crate) const MESSAGES_PATH: &str = "/v1/messages";
pub(crate) const RESPONSES_PATH: &str = "/v1/responses";
pub(crate) const EMBEDDINGS_PATH: &str = "/v1/embeddings";

/// The whole HTTP API through axum's router ([`crate::Api`] serves the
/// model routes without it).
pub fn app(state: Arc<AppState>) -> axum::Router {
    // Health, metrics and admin routes are never shed.
    let api = axum::Router::new()
        .route(CHAT_PATH, post(chat::completions))
        .route(MESSAGES_PATH, post(crate::messages::create))
        .route(EMBEDDINGS_PATH, post(crate::embeddings::create))
        .route(RESPONSES_PATH, post(crate::responses::create))
        .route("/v1/responses/{id}", get(crate::responses::get))
        .route("/v1/responses/{id}/cancel", post(crate::responses::cancel))
        .route("/v1/models", get(models))
        // A model name may hold a `/` (`meta/llama-3`), as the SDKs send it.
        .route("/v1/models/{*id}", get(model))
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/webhook/redeliver", post(jobs::redeliver))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            shed::shed,
        ));
    axum::Router::new()
        .merge(api)
        // Admin routes authenticate the admin key themselves; they are not
        // a tenant's requests, so admission (`shed`) does not apply.
        .route("/admin/cache", axum::routing::delete(crate::cache::purge))
        .route("/admin/providers", get(crate::admin::providers))
        .route("/admin/slo", get(crate::admin::slo))
        .route("/dashboard", get(crate::admin::dashboard))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), front))
        .with_state(state)
}

/// Every request's outermost middleware, [`outermost`].
async fn front(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    outermost(state, request, next).await
}

/// Every request's outermost step: `request_id::observe`, then, on
/// `/v1/messages`, the answer in Anthropic's shape (after `observe`, so it
/// sees the request id and every refusal). One layer for both: each
/// `from_fn` layer boxes its own services and futures on every request.
pub(crate) async fn outermost(
    state: Arc<AppState>,
    request: axum::extract::Request,
    next: impl Inner,
) -> axum::response::Response {
    let anthropic = crate::messages::speaks_anthropic(request.uri().path());
    let response = request_id::observe(state, request, next).await;
    if anthropic {
        crate::messages::in_anthropic_shape(response).await
    } else {
        response
    }
}

/// `GET /v1/models`: the public models that can be served (a model whose
/// providers are all disabled, fallbacks included, would only answer 503),
/// in OpenAI's list shape.
async fn models(_tenant: Tenant, State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let data: Vec<_> = state
        .router
        .served_model_names()
        .map(model_object)
        .collect();
    Json(serde_json::json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{id}`: one model of the list, or 404 `model_not_found`.
async fn model(
    _tenant: Tenant,
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let served = state.router.served_model_names().find(|name| *name == id);
    served
        .map(|name| Json(model_object(name)))
        .ok_or(ApiError::ModelNotFound { model: id })
}

/// OpenAI's model object for a public model.
fn model_object(name: &str) -> serde_json::Value {
    serde_json::json!({"id": name, "object": "model", "created": 0, "owned_by": "keel"})
}

/// Only `/metrics`, open, for `server.metrics_listen` (a private scrape network).
pub fn metrics_app(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(open_metrics))
        .fallback(not_found)
        .with_state(state)
}

/// `/metrics` on the public listener: behind the admin key when one is
/// set, absent when a metrics listener serves it instead, open otherwise.
async fn metrics(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if state.metrics_elsewhere {
        return not_found(method, uri).await.into_response();
    }
    if let Err(refused) = crate::auth::check_admin(&state, &headers) {
        return refused.into_response();
    }
    open_metrics(State(state)).await.into_response()
}

/// Prometheus text format; gauges read from live state first.
async fn open_metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    state.router.export_gauges();
    state.slos.export_gauges();
    if let Some(link) = state.shared.link() {
        state.metrics.redis_up.set(i64::from(link.is_up()));
        // The link counts; the counter catches up to it, never back.
        state
            .metrics
            .redis_fallbacks
            .inner()
            .fetch_max(link.fallbacks(), std::sync::atomic::Ordering::Relaxed);
    }
    state.router.export_cache_gauges().await;
    if let Some(jobs) = &state.jobs {
        jobs.export_gauges().await;
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Liveness: the process answers.
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: configuration is loaded and the router built (the store check
/// joins it when the job queue does).
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let store_ready = match &state.jobs {
        Some(queue) => queue.ready().await,
        None => true,
    };
    let models = state.router.model_names().count();
    if !store_ready {
        let body =
            serde_json::json!({"status": "not ready", "models": models, "store": "unreachable"});
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    (
        axum::http::StatusCode::OK,
        Json(serde_json::json!({"status": "ready", "models": models})),
    )
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
