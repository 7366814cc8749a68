//! `x-request-id` in and out, the one log line per failed request, and the
//! request count and latency metrics.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use tokio::time::Instant;

use crate::api::Inner;
use crate::error::LoggedError;
use crate::routes::{CHAT_PATH, MESSAGES_PATH};
use crate::{ApiError, AppState};

use crate::headers::X_REQUEST_ID as REQUEST_ID;

/// The outermost middleware, around every request: echoes the client's
/// `x-request-id` (or makes one), opens the request's span, answers too
/// many headers in the error shape, then logs a failure `ApiError` put in
/// the response and counts the request by route and status.
pub async fn observe(state: Arc<AppState>, request: Request, next: impl Inner) -> Response {
    let started = Instant::now();
    let route = route_label(request.uri().path());
    let id = match request.headers().get(REQUEST_ID) {
        Some(value) if value.len() <= 128 => value.clone(),
        _ => new_id(),
    };
    let mut response = if request.headers().len() > crate::MAX_HEADERS {
        // hyper refuses far more headers with an empty 431; this bound
        // answers first, in the error shape.
        ApiError::TooManyHeaders {
            max: crate::MAX_HEADERS,
        }
        .into_response()
    } else {
        let span = request_span(&id, &request);
        tracing::Instrument::instrument(next.run(request), span).await
    };
    if let Some(LoggedError(message)) = response.extensions().get::<LoggedError>() {
        tracing::info!(request_id = ?id, route, status = response.status().as_u16(), error = %message, "request failed");
    }
    response.headers_mut().insert(REQUEST_ID, id);
    state.metrics.record_request(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The request's span. A debug span: at the default `info` level, creating
/// and formatting a span per request cost about 11 % of the gateway's
/// instructions per request (callgrind); the failure line carries the id
/// itself. The `gen_ai.*` fields are OpenTelemetry's GenAI attribute
/// names; the handler records them once it knows the model and the answer.
fn request_span(id: &HeaderValue, request: &Request) -> tracing::Span {
    tracing::debug_span!(
        "keel.request",
        request_id = ?id,
        method = %request.method(),
        path = request.uri().path(),
        gen_ai.request.model = tracing::field::Empty,
        gen_ai.response.model = tracing::field::Empty,
        gen_ai.provider.name = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        keel.attempts = tracing::field::Empty,
        keel.cost_usd = tracing::field::Empty,
    )
}

/// A bounded route label: known paths by name, job ids folded, the rest `other`.
fn route_label(path: &str) -> &'static str {
    match path {
        CHAT_PATH => CHAT_PATH,
        MESSAGES_PATH => MESSAGES_PATH,
        "/v1/models" => "/v1/models",
        path if path.starts_with("/v1/models/") => "/v1/models/{id}",
        "/v1/jobs" => "/v1/jobs",
        path if path.starts_with("/v1/jobs/") => "/v1/jobs/{id}",
        "/healthz" | "/readyz" | "/metrics" => "health",
        _ => "other",
    }
}

/// `req_` and 24 random hex digits, written without `format!` (the
/// formatter showed up at 1.8 % of a request's instructions).
fn new_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = *b"req_000000000000000000000000";
    let random = (u128::from(fastrand::u64(..)) << 32) | u128::from(fastrand::u32(..));
    for (index, digit) in id[4..].iter_mut().enumerate() {
        let shift = 4 * (23 - index);
        *digit = HEX[((random >> shift) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("req_unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_req_and_24_hex_digits_and_differ() {
        let (first, second) = (new_id(), new_id());
        for id in [&first, &second] {
            let text = id.to_str().unwrap_or_default();
            assert_eq!(text.len(), 28, "{text}");
            assert!(text.starts_with("req_"), "{text}");
            assert!(
                text[4..]
                    .bytes()
                    .all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase()),
                "{text}"
            );
        }
        assert_ne!(first, second);
    }
}
