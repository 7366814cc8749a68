//! `/v1/messages` answers errors as Anthropic does: the body
//! `{"type":"error","error":{"type","message"},"request_id"}` with
//! Anthropic's error types, and a `request-id` header (the value of
//! `x-request-id`) on every answer. Every refusal before this route's
//! handler (auth, admission, body limits) is written by the gateway's one
//! error path in OpenAI's shape; rewriting the finished response here keeps
//! that path single and catches all of them.

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use keel_types::{ErrorBody, ErrorDetail};
use serde::Serialize;

use crate::headers::X_REQUEST_ID;

/// Anthropic's request id header.
const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// Error bodies are Keel's own or an upstream's refusal, whole in memory;
/// one of unknown or larger size is passed on as it is.
const MAX_ERROR_BODY: usize = 1 << 20;

/// The error types Anthropic documents; an upstream Anthropic refusal
/// carries its own in `code`, which is kept.
const ANTHROPIC_TYPES: [&str; 10] = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
];

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicDetail<'a>,
    request_id: Option<&'a str>,
}

#[derive(Serialize)]
struct AnthropicDetail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// Whether `path` is the one whose errors [`in_anthropic_shape`] rewrites.
pub(crate) fn speaks_anthropic(path: &str) -> bool {
    path == crate::routes::MESSAGES_PATH
}

/// A `/v1/messages` response as Anthropic's clients read it: `request-id`
/// added, and an OpenAI-shaped error body rewritten in Anthropic's shape.
pub(crate) async fn in_anthropic_shape(mut response: Response) -> Response {
    let id = response.headers().get(X_REQUEST_ID).cloned();
    if let Some(id) = &id {
        response.headers_mut().insert(REQUEST_ID, id.clone());
    }
    if !is_json_error(&response) {
        return response;
    }
    let id = id.as_ref().and_then(|id| id.to_str().ok());
    rewrite_error(response, id).await
}

fn is_json_error(response: &Response) -> bool {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    json && (response.status().is_client_error() || response.status().is_server_error())
}

async fn rewrite_error(response: Response, request_id: Option<&str>) -> Response {
    let known_small = http_body::Body::size_hint(response.body())
        .upper()
        .is_some_and(|size| size <= MAX_ERROR_BODY as u64);
    if !known_small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        // An in-memory body of known size does not fail.
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(openai) = serde_json::from_slice::<ErrorBody>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let body = anthropic_body(parts.status, &openai.error, request_id);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// The Anthropic error body for an OpenAI error detail sent with `status`.
fn anthropic_body(status: StatusCode, detail: &ErrorDetail, request_id: Option<&str>) -> Vec<u8> {
    let error = AnthropicError {
        kind: "error",
        error: AnthropicDetail {
            kind: anthropic_type(status, detail.code.as_deref()),
            message: &detail.message,
        },
        request_id,
    };
    // Serialising these types into a Vec cannot fail.
    serde_json::to_vec(&error).unwrap_or_default()
}

/// Anthropic's error type: an Anthropic upstream's own, else the one its
/// documentation gives the status.
fn anthropic_type(status: StatusCode, code: Option<&str>) -> &str {
    if let Some(kind) = code.filter(|code| ANTHROPIC_TYPES.contains(code)) {
        return kind;
    }
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_anthropic_types_and_upstream_types_are_kept() {
        let cases = [
            (400, None, "invalid_request_error"),
            (408, Some("body_timeout"), "invalid_request_error"),
            (401, Some("invalid_api_key"), "authentication_error"),
            (403, None, "permission_error"),
            (404, Some("unknown_url"), "not_found_error"),
            (413, Some("body_too_large"), "request_too_large"),
            (429, Some("rate_limit_exceeded"), "rate_limit_error"),
            (502, Some("upstream_unavailable"), "api_error"),
            (503, Some("overloaded"), "overloaded_error"),
            (504, Some("request_timeout"), "timeout_error"),
            (400, Some("not_found_error"), "not_found_error"),
        ];
        for (status, code, expected) in cases {
            let status = StatusCode::from_u16(status).map_err(|error| error.to_string());
            assert_eq!(
                status.map(|status| anthropic_type(status, code)),
                Ok(expected),
                "{code:?}"
            );
        }
    }

    #[test]
    fn the_body_is_anthropics_shape_with_the_request_id() {
        let openai = ErrorBody::new(
            "no such model",
            "invalid_request_error",
            Some("model"),
            None,
        );
        let body = anthropic_body(StatusCode::BAD_REQUEST, &openai.error, Some("req_1"));
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"no such model"},"request_id":"req_1"}"#
        );
    }
}
