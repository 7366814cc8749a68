//! Admission of every API request, cheapest refusal first: the caller's
//! key (401, before any body is read), the tenant's `limits.max_in_flight`
//! (429), the body under `server.max_body` and `server.body_timeout`
//! (413, 408), then the instance's `server.max_in_flight` (503, load
//! shedding) before any work is done. A body that trickles in holds only its
//! tenant's slot, never one of the instance's. Both slots ride on the
//! response body, so a stream counts until it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use keel_types::ErrorBody;
use tokio::sync::OwnedSemaphorePermit;

use crate::api::Inner;
use crate::error::error_response;
use crate::{ApiError, AppState, Tenant};

/// Admits the request (see the module doc) or refuses it.
pub async fn shed(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    admit(state, request, next).await
}

/// [`shed`] before any `next`: the router's layer, or the chat route's
/// direct path (`crate::api`).
pub(crate) async fn admit(state: Arc<AppState>, request: Request, next: impl Inner) -> Response {
    let (mut parts, body) = request.into_parts();
    let tenant = match Tenant::from_request_parts(&mut parts, &state).await {
        Ok(tenant) => tenant,
        Err(refused) => return refused.into_response(),
    };
    let tenant_slot = match state.limits.enter(&tenant.name) {
        Ok(slot) => slot,
        Err(max) => return ApiError::TenantBusy { max }.into_response(),
    };
    let bytes = match crate::extract::read_limited(body, state.body_limit()).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused.into_response(),
    };
    let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
        state.metrics.shed.inc();
        return overloaded();
    };
    // The handlers' extractors find the tenant and the body's bytes here
    // instead of hashing the key and timing the body again.
    parts.extensions.insert(tenant);
    parts
        .extensions
        .insert(crate::extract::BodyRead(bytes.clone()));
    let request = Request::from_parts(parts, Body::from(bytes));
    // The chat route's idempotency keys are checked here rather than by a
    // layer of their own: each `from_fn` layer boxes its own services and
    // futures on every request.
    let response = if crate::idempotency::applies_to(&request) {
        crate::idempotency::chat(state, request, next).await
    } else {
        next.run(request).await
    };
    holding(response, (permit, tenant_slot))
}

/// `response` with `slots` held until its body is finished or dropped.
fn holding(
    response: Response,
    slots: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(PermitBody {
            inner: body,
            _slots: slots,
        }),
    )
}

fn overloaded() -> Response {
    let message = "this Keel instance is at its server.max_in_flight limit; retry shortly";
    let body = ErrorBody::new(message, "server_error", None, Some("overloaded"));
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, &body, message.to_owned());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A body that holds the in-flight slots until it is finished or dropped.
struct PermitBody {
    inner: Body,
    /// The instance's slot and the tenant's, when it has a limit.
    _slots: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
}

impl http_body::Body for PermitBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
