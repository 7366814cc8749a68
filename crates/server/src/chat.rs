//! `POST /v1/chat/completions`: parse, route, and answer as JSON or SSE with
//! headers naming who answered.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use keel_router::{Answer, CacheStatus, Routed};

use crate::cache::KeyedBody;
use crate::extract::ChatBody;
use crate::headers::{X_KEEL_ATTEMPTS, X_KEEL_HEDGED, X_KEEL_MODEL, X_KEEL_PROVIDER};
use crate::ledger::Ledger;
use crate::limits::{settle_usage, Exceeded, Reservation};
use crate::route::{route_within_limits, Served, Unserved};
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
    let front = Front {
        endpoint: CHAT_ENDPOINT,
        body: KeyedBody::Chat,
        headers: &headers,
    };
    dispatch(&state, &tenant, request, front, respond).await
}

/// The endpoint name chat completions (and job runs) are cached under.
pub const CHAT_ENDPOINT: &str = "chat.completions";

/// Where a request came in, for its cache key and `Cache-Control`.
pub(crate) struct Front<'a> {
    /// The endpoint name in the cache key.
    pub endpoint: &'static str,
    /// The body the key is computed from.
    pub body: KeyedBody<'a>,
    /// The request's headers.
    pub headers: &'a axum::http::HeaderMap,
}

/// Answers a request within its tenant's limits, from the prompt cache or
/// the router ([`route_within_limits`]), with `respond` (or the routing
/// error), adding the tenant's rate-limit headers and, for a cached model,
/// `x-keel-cache`. Both front ends answer through here (admitted by `shed`
/// first).
pub(crate) async fn dispatch(
    state: &Arc<AppState>,
    tenant: &Tenant,
    request: keel_types::ChatRequest,
    front: Front<'_>,
    respond: impl FnOnce(Routed, Option<Reservation>) -> Response,
) -> Result<Response, ApiError> {
    let plan = crate::cache::plan(
        state,
        &tenant.name,
        front.endpoint,
        &request,
        front.body,
        front.headers,
    );
    let ledger = Ledger::open(&state.slos, &state.metrics, &tenant.name, request.model());
    let served =
        route_within_limits(&state.router, &state.limits, &tenant.name, request, plan).await;
    let (mut response, limit_headers) = match served {
        Ok(Served {
            mut routed,
            reservation,
            limit_headers,
            dropped,
        }) => {
            if let Answer::Stream { rest, .. } = &mut routed.answer {
                let stream = std::mem::replace(rest, futures_util::stream::empty().boxed());
                *rest = state.cutoff.guard(stream);
            }
            ledger.answered(&mut routed);
            let mut response = respond(routed, reservation);
            mark_dropped(&mut response, &dropped);
            (response, limit_headers)
        }
        Err(Unserved::Limited(exceeded)) => {
            ledger.refused_or_failed(StatusCode::TOO_MANY_REQUESTS.as_u16());
            return Err(tenant_limited(state, tenant, exceeded));
        }
        Err(Unserved::Failed {
            error,
            cache,
            limit_headers,
        }) => {
            let mut response = ApiError::from(error).into_response();
            ledger.refused_or_failed(response.status().as_u16());
            if let Some(status) = cache {
                crate::cache::mark(&mut response, status);
            }
            (response, limit_headers)
        }
    };
    if let Some(headers) = limit_headers {
        response.headers_mut().extend(headers);
    }
    Ok(response)
}

/// Names the fields the provider left out, so a client that asked for them
/// can tell.
fn mark_dropped(response: &mut Response, dropped: &[String]) {
    if dropped.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&dropped.join(",")) {
        response
            .headers_mut()
            .insert(crate::headers::X_KEEL_DROPPED, value);
    }
}

fn tenant_limited(state: &AppState, tenant: &Tenant, exceeded: Exceeded) -> ApiError {
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
}

fn respond(routed: Routed, reservation: Option<Reservation>) -> Response {
    let Routed {
        provider,
        model,
        attempts,
        hedged,
        cache,
        answer,
        ..
    } = routed;
    let (content_type, body) = match answer {
        Answer::Complete(completion) => {
            settle_usage(reservation.as_ref(), completion.usage.as_ref());
            ("application/json", Body::from(completion.body))
        }
        Answer::Stream { head, rest } => ("text/event-stream", sse::body(head, rest, reservation)),
    };
    let who = Answered {
        provider: &provider,
        model: &model,
        attempts,
        hedged,
        cache,
    };
    answered(content_type, body, &who)
}

/// Who answered a request, for the gateway's headers.
pub(crate) struct Answered<'a> {
    /// The provider.
    pub provider: &'a str,
    /// The upstream model.
    pub model: &'a str,
    /// Upstream attempts made for this request.
    pub attempts: u32,
    /// A hedge answered.
    pub hedged: bool,
    /// How the prompt cache took part.
    pub cache: Option<CacheStatus>,
}

/// A 200 with the body of a committed answer and the headers naming who
/// answered (`x-keel-hedged: true` when a hedge did, `x-keel-cache` for a
/// cached model).
pub(crate) fn answered(content_type: &'static str, body: Body, who: &Answered<'_>) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Ok(value) = HeaderValue::from_str(who.provider) {
        headers.insert(X_KEEL_PROVIDER, value);
    }
    if let Ok(value) = HeaderValue::from_str(who.model) {
        headers.insert(X_KEEL_MODEL, value);
    }
    headers.insert(X_KEEL_ATTEMPTS, HeaderValue::from(who.attempts));
    if who.hedged {
        headers.insert(X_KEEL_HEDGED, HeaderValue::from_static("true"));
    }
    if let Some(status) = who.cache {
        crate::cache::mark(&mut response, status);
    }
    response
}
