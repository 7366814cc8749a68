//! Load shedding: beyond `server.max_in_flight` requests in flight, answer
//! 503 with Retry-After before doing any work. A request stays in flight
//! until its body (a stream included) has been sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use keel_types::ErrorBody;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::LoggedError;
use crate::AppState;

/// Admits the request into the in-flight set or sheds it.
pub async fn shed(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
        state.metrics.shed.inc();
        return overloaded();
    };
    holding(next.run(request).await, permit)
}

/// `response` with `permit` held until its body is finished or dropped.
pub(crate) fn holding(response: Response, permit: OwnedSemaphorePermit) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(PermitBody {
            inner: body,
            _permit: permit,
        }),
    )
}

fn overloaded() -> Response {
    let message = "this Keel instance is at its server.max_in_flight limit; retry shortly";
    let body = ErrorBody::new(message, "server_error", None, Some("overloaded"));
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_json(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
        .extensions_mut()
        .insert(LoggedError(message.to_owned()));
    response
}

/// A body that holds the in-flight permit until it is finished or dropped.
struct PermitBody {
    inner: Body,
    _permit: OwnedSemaphorePermit,
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
