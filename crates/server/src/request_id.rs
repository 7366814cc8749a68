//! `x-request-id` in and out, and the one log line per failed request.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::LoggedError;

const REQUEST_ID: &str = "x-request-id";

/// Echoes the client's `x-request-id` (or makes one), records it on the
/// request span, and logs errors put in the response by `ApiError`.
pub async fn stamp(request: Request, next: Next) -> Response {
    let id = match request.headers().get(REQUEST_ID) {
        Some(value) if value.len() <= 128 => value.clone(),
        _ => new_id(),
    };
    let span = tracing::info_span!("keel.request", request_id = ?id, method = %request.method(), path = request.uri().path());
    let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    if let Some(LoggedError(message)) = response.extensions().get::<LoggedError>() {
        span.in_scope(|| tracing::info!(status = response.status().as_u16(), error = %message, "request failed"));
    }
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

fn new_id() -> HeaderValue {
    let id = format!("req_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..));
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("req_unknown"))
}
