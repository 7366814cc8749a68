//! `POST /v1/chat/completions`: parse, route, and answer as JSON or SSE with
//! headers naming who answered.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_router::{Answer, Routed};

use crate::extract::ChatBody;
use crate::headers::{X_KEEL_ATTEMPTS, X_KEEL_HEDGED, X_KEEL_MODEL, X_KEEL_PROVIDER};
use crate::limits::{settle_usage, Reservation};
use crate::{sse, ApiError, AppState, Tenant};

/// Routes one chat completion and encodes the committed answer.
pub async fn completions(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    ChatBody(request): ChatBody,
) -> Result<Response, ApiError> {
    if crate::jobs::wants_async(&headers) {
        return Ok(crate::jobs::submit_chat(&tenant, &state, &headers, &request).await);
    }
    dispatch(&state, &tenant, request, respond).await
}

/// Admits a request under the tenant's limits, routes it, and answers with
/// `respond` (or the routing error), adding the tenant's rate-limit headers.
/// Both front ends answer through here.
pub(crate) async fn dispatch(
    state: &AppState,
    tenant: &Tenant,
    request: keel_types::ChatRequest,
    respond: impl FnOnce(Routed, Option<Reservation>) -> Response,
) -> Result<Response, ApiError> {
    let reservation = state
        .limits
        .admit(&tenant.name, &request, request.body_len())
        .map_err(|exceeded| {
            let labels = keel_telemetry::LimitLabels {
                scope: String::from("tenant"),
                name: tenant.name.to_string(),
            };
            state.metrics.rate_limited.get_or_create(&labels).inc();
            ApiError::TenantLimited {
                limit: exceeded.limit,
                retry_after: exceeded.retry_after,
                headers: exceeded.headers,
            }
        })?;
    let limit_headers = reservation.as_ref().map(Reservation::headers);
    let mut response = match state.router.dispatch(Arc::new(request)).await {
        Ok(routed) => respond(routed, reservation),
        Err(error) => ApiError::from(error).into_response(),
    };
    if let Some(headers) = limit_headers {
        response.headers_mut().extend(headers);
    }
    Ok(response)
}

fn respond(routed: Routed, reservation: Option<Reservation>) -> Response {
    let Routed {
        provider,
        model,
        attempts,
        hedged,
        answer,
    } = routed;
    let (content_type, body) = match answer {
        Answer::Complete(completion) => {
            settle_usage(reservation.as_ref(), completion.usage.as_ref());
            ("application/json", Body::from(completion.body))
        }
        Answer::Stream { head, rest } => ("text/event-stream", sse::body(head, rest, reservation)),
    };
    answered(content_type, body, &provider, &model, attempts, hedged)
}

/// A 200 with the body of a committed answer and the headers naming who
/// answered (and `x-keel-hedged: true` when a hedge did).
pub(crate) fn answered(
    content_type: &'static str,
    body: Body,
    provider: &str,
    model: &str,
    attempts: u32,
    hedged: bool,
) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Ok(value) = HeaderValue::from_str(provider) {
        headers.insert(X_KEEL_PROVIDER, value);
    }
    if let Ok(value) = HeaderValue::from_str(model) {
        headers.insert(X_KEEL_MODEL, value);
    }
    headers.insert(X_KEEL_ATTEMPTS, HeaderValue::from(attempts));
    if hedged {
        headers.insert(X_KEEL_HEDGED, HeaderValue::from_static("true"));
    }
    response
}
