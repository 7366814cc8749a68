//! `POST /v1/chat/completions`: parse, route, and answer as JSON or SSE with
//! headers naming who answered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt as _;
use keel_router::{Answer, CacheStatus, Routed};
use keel_types::ErrorBody;
use tracing::Instrument as _;

use crate::cache::KeyedBody;
use crate::extract::ChatBody;
use crate::headers::{X_KEEL_ATTEMPTS, X_KEEL_HEDGED, X_KEEL_MODEL, X_KEEL_PROVIDER};
use crate::last_resort::LastResort;
use crate::ledger::Ledger;
use crate::limits::{settle_usage, Exceeded, Reservation};
use crate::route::{admit, Admission, Served, Unserved};
use crate::{keepalive, sse, ApiError, AppState, Tenant};

/// Routes one chat completion and encodes the committed answer.
pub async fn completions(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    ChatBody(request, headers): ChatBody,
) -> Result<Response, ApiError> {
    if crate::jobs::wants_async(&headers) {
        // A stream ignores `wait`: its answer starts as soon as it can.
        match crate::jobs::async_wait(&headers) {
            Some(_) if request.stream() => {}
            Some(wait) => {
                let answer = crate::wait::answer_or_queue(&state, &tenant, &headers, request, wait);
                return Ok(answer.await);
            }
            None => return Ok(crate::jobs::submit_chat(&tenant, &state, &headers, &request).await),
        }
    }
    let front = Front {
        endpoint: CHAT_ENDPOINT,
        body: KeyedBody::Chat,
        headers: &headers,
        in_band_error: sse::in_band_error,
    };
    dispatch(&state, &tenant, request, front, respond).await
}

/// The endpoint name chat completions (and job runs) are cached under.
pub const CHAT_ENDPOINT: &str = "chat.completions";

/// Where a request came in, for its cache key, `Cache-Control`, and how its
/// stream tells of a failure once its 200 has gone out.
pub(crate) struct Front<'a> {
    /// The endpoint name in the cache key.
    pub endpoint: &'static str,
    /// The body the key is computed from.
    pub body: KeyedBody<'a>,
    /// The request's headers.
    pub headers: &'a axum::http::HeaderMap,
    /// The endpoint's SSE error event (and end) for a stream whose routing
    /// fails after keep-alive comments were sent.
    pub in_band_error: fn(&ErrorBody) -> Bytes,
}

/// Answers a request within its tenant's limits, from the prompt cache or
/// the router ([`admit`], then routing upstream), with `respond` (or the
/// routing error), adding the tenant's rate-limit headers and, for a cached
/// model, `x-keel-cache`. A stream still waiting for its first token after
/// `server.sse_keepalive` gets its 200 now and keep-alive comments until
/// then ([`keep_alive`]). When routing fails for the gateway's reasons, a
/// model with `on_failure.respond` answers its text instead
/// ([`LastResort`]). Both front ends answer through here (admitted by
/// `shed` first).
pub(crate) async fn dispatch<R>(
    state: &Arc<AppState>,
    tenant: &Tenant,
    request: keel_types::ChatRequest,
    front: Front<'_>,
    respond: R,
) -> Result<Response, ApiError>
where
    R: FnOnce(Routed, Option<Reservation>) -> Response + Send + 'static,
{
    let request =
        crate::affinity::tag_session(&state.router, &tenant.name, Some(front.headers), request);
    let plan = crate::cache::plan(
        state,
        &tenant.name,
        front.endpoint,
        &request,
        front.body,
        front.headers,
    );
    let ledger = Ledger::open(&state.slos, &state.metrics, &tenant.name, request.model());
    let keep_alive_every = keep_alive_interval(state, &request);
    let last_resort = LastResort::of(&state.router, &request);
    let admitted = admit(&state.router, &state.limits, &tenant.name, request, plan).await;
    let served = match admitted {
        Ok(Admission::Hit(served)) => Ok(served),
        Err(unserved) => Err(unserved),
        Ok(Admission::Upstream(upstream)) => {
            let Some(every) = keep_alive_every else {
                let served = upstream.route(state.router.clone()).await;
                return Ok(settle(
                    state,
                    &tenant.name,
                    ledger,
                    served,
                    last_resort,
                    respond,
                ));
            };
            let limit_headers = upstream.limit_headers.clone();
            let mut routing = Box::pin(upstream.route(state.router.clone()).in_current_span());
            match tokio::time::timeout(every, &mut routing).await {
                Ok(served) => served,
                Err(_still_routing) => {
                    let waiting = Waiting {
                        state: state.clone(),
                        tenant: tenant.name.clone(),
                        ledger,
                        in_band_error: front.in_band_error,
                        last_resort,
                    };
                    return Ok(keep_alive(every, waiting, routing, respond, limit_headers));
                }
            }
        }
    };
    Ok(settle(
        state,
        &tenant.name,
        ledger,
        served,
        last_resort,
        respond,
    ))
}

/// How long a stream request may wait for its first token before its
/// headers go out; `None` for a whole answer, or when
/// `server.sse_keepalive` is 0.
fn keep_alive_interval(state: &AppState, request: &keel_types::ChatRequest) -> Option<Duration> {
    let every = state.sse_keepalive;
    (request.stream() && !every.is_zero()).then_some(every)
}

/// The response to a routed request: the committed answer through
/// `respond`, or the error (or the model's last resort in its place);
/// either way booked once.
pub(crate) fn settle(
    state: &AppState,
    tenant: &str,
    ledger: Ledger,
    served: Result<Served, Unserved>,
    last_resort: Option<LastResort>,
    respond: impl FnOnce(Routed, Option<Reservation>) -> Response,
) -> Response {
    match served {
        Ok(mut served) => {
            let limit_headers = served.limit_headers.take();
            with_limit_headers(answer(state, ledger, served, respond), limit_headers)
        }
        Err(unserved) => {
            let Failure {
                error,
                cache,
                limit_headers,
            } = failure(state, tenant, unserved);
            // A last resort is booked as the failure it hides: the model's
            // SLOs measure its answers, not the gateway's apologies.
            ledger.refused_or_failed(error.status().as_u16());
            let templated = last_resort.and_then(|resort| resort.answer(&error, cache, respond));
            if let Some(response) = templated {
                return with_limit_headers(response, limit_headers);
            }
            let mut response = error.into_response();
            if let Some(status) = cache {
                crate::cache::mark(&mut response, status);
            }
            with_limit_headers(response, limit_headers)
        }
    }
}

/// A committed answer, booked, its stream ended cleanly by the shutdown
/// cutoff, encoded by `respond`.
fn answer(
    state: &AppState,
    ledger: Ledger,
    served: Served,
    respond: impl FnOnce(Routed, Option<Reservation>) -> Response,
) -> Response {
    let Served {
        mut routed,
        reservation,
        dropped,
        ..
    } = served;
    if let Answer::Stream { rest, .. } = &mut routed.answer {
        let stream = std::mem::replace(rest, futures_util::stream::empty().boxed());
        *rest = state.cutoff.guard(stream);
    }
    ledger.answered(&mut routed);
    let mut response = respond(routed, reservation);
    mark_dropped(&mut response, &dropped);
    response
}

/// Why a request has no answer, as its client is told.
struct Failure {
    error: ApiError,
    /// `x-keel-cache` for the failure, for a cached model.
    cache: Option<CacheStatus>,
    limit_headers: Option<HeaderMap>,
}

fn failure(state: &AppState, tenant: &str, unserved: Unserved) -> Failure {
    match unserved {
        Unserved::Limited(exceeded) => Failure {
            error: tenant_limited(state, tenant, exceeded),
            cache: None,
            limit_headers: None,
        },
        Unserved::Failed {
            error,
            cache,
            limit_headers,
        } => Failure {
            error: ApiError::from(error),
            cache,
            limit_headers,
        },
    }
}

fn with_limit_headers(mut response: Response, limit_headers: Option<HeaderMap>) -> Response {
    if let Some(headers) = limit_headers {
        response.headers_mut().extend(headers);
    }
    response
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

/// What a stream answered after its headers needs to finish: its books,
/// and how to tell of a failure in band.
struct Waiting {
    state: Arc<AppState>,
    tenant: Arc<str>,
    ledger: Ledger,
    in_band_error: fn(&ErrorBody) -> Bytes,
    last_resort: Option<LastResort>,
}

/// The 200 and SSE headers of a stream still being routed (without
/// `x-keel-provider` / `-model`: nobody has answered yet), and a body of
/// keep-alive comments until `routing` resolves, then the committed
/// stream's frames, or the error event in band. The body owns `routing`:
/// a client that leaves cancels it.
fn keep_alive<F, R>(
    every: Duration,
    waiting: Waiting,
    routing: Pin<Box<F>>,
    respond: R,
    limit_headers: Option<HeaderMap>,
) -> Response
where
    F: Future<Output = Result<Served, Unserved>> + Send + 'static,
    R: FnOnce(Routed, Option<Reservation>) -> Response + Send + 'static,
{
    let answer = async move {
        let Waiting {
            state,
            tenant,
            ledger,
            in_band_error,
            last_resort,
        } = waiting;
        match routing.await {
            Ok(served) => answer(&state, ledger, served, respond).into_body(),
            Err(unserved) => {
                let Failure { error, cache, .. } = failure(&state, &tenant, unserved);
                ledger.refused_or_failed(error.status().as_u16());
                // The headers went out with the keep-alives, so the text
                // goes in band, without `x-keel-degraded`.
                let templated =
                    last_resort.and_then(|resort| resort.answer(&error, cache, respond));
                if let Some(response) = templated {
                    return response.into_body();
                }
                tracing::warn!(%error, "a stream failed before its first token, after its headers were sent");
                Body::from(in_band_error(&error.body()))
            }
        }
    };
    let mut response = (StatusCode::OK, keepalive::body(every, answer)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_limit_headers(response, limit_headers)
}

fn tenant_limited(state: &AppState, tenant: &str, exceeded: Exceeded) -> ApiError {
    let labels = keel_telemetry::LimitLabels {
        scope: String::from("tenant"),
        name: tenant.to_owned(),
    };
    state.metrics.rate_limited.get_or_create(&labels).inc();
    ApiError::TenantLimited {
        limit: exceeded.limit,
        retry_after: exceeded.retry_after,
        headers: exceeded.headers,
    }
}

pub(crate) fn respond(routed: Routed, reservation: Option<Reservation>) -> Response {
    let (who, answer) = Answered::split(routed);
    let (content_type, body) = match answer {
        Answer::Complete(completion) => {
            settle_usage(reservation.as_ref(), completion.usage.as_ref());
            ("application/json", Body::from(completion.body))
        }
        Answer::Stream { head, rest } => ("text/event-stream", sse::body(head, rest, reservation)),
    };
    answered(content_type, body, &who)
}

/// Who answered a request, for the gateway's headers.
pub(crate) struct Answered {
    /// The provider.
    pub provider: Arc<str>,
    /// The upstream model.
    pub model: Arc<str>,
    /// Upstream attempts made for this request.
    pub attempts: u32,
    /// A hedge answered.
    pub hedged: bool,
    /// How the prompt cache took part.
    pub cache: Option<CacheStatus>,
}

// === impl Answered ===

impl Answered {
    /// Who answered `routed`, and its answer.
    pub(crate) fn split(routed: Routed) -> (Self, Answer) {
        let who = Self {
            provider: routed.provider,
            model: routed.model,
            attempts: routed.attempts,
            hedged: routed.hedged,
            cache: routed.cache,
        };
        (who, routed.answer)
    }
}

/// A 200 with the body of a committed answer and the headers naming who
/// answered (`x-keel-hedged: true` when a hedge did, `x-keel-cache` for a
/// cached model).
pub(crate) fn answered(content_type: &'static str, body: Body, who: &Answered) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Ok(value) = HeaderValue::from_str(&who.provider) {
        headers.insert(X_KEEL_PROVIDER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&who.model) {
        headers.insert(X_KEEL_MODEL, value);
    }
    headers.insert(X_KEEL_ATTEMPTS, crate::headers::count_value(who.attempts));
    if who.hedged {
        headers.insert(X_KEEL_HEDGED, HeaderValue::from_static("true"));
    }
    if let Some(status) = who.cache {
        crate::cache::mark(&mut response, status);
    }
    response
}
