//! Error bodies in each provider's own shape, for validation errors,
//! injected failures and in-band stream errors.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use crate::faults::FailNext;
use crate::wire::to_json;

/// Which provider's wire format a route speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    /// OpenAI Chat Completions: `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// Anthropic Messages: `{"type":"error","error":{"type","message"}}`.
    Anthropic,
}

#[derive(Serialize)]
struct OpenAiBody<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

#[derive(Serialize)]
struct AnthropicBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicError<'a>,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

// === impl Api ===

impl Api {
    /// A JSON error response with `status` and `message`.
    pub(crate) fn error(self, status: StatusCode, message: &str) -> Response {
        json_response(status, self.error_json(status, message))
    }

    /// The error body for `status` and `message`, typed the way the provider types it.
    pub(crate) fn error_json(self, status: StatusCode, message: &str) -> Bytes {
        let json = match self {
            Api::OpenAi => {
                let (kind, code) = openai_kind(status);
                to_json(&OpenAiBody {
                    error: OpenAiError {
                        message,
                        kind,
                        param: None,
                        code,
                    },
                })
            }
            Api::Anthropic => to_json(&AnthropicBody {
                kind: "error",
                error: AnthropicError {
                    kind: anthropic_kind(status),
                    message,
                },
            }),
        };
        Bytes::from(json)
    }

    /// The response for an injected failure: the plan's body or the provider's
    /// error shape, with `Retry-After` when the plan sets it.
    pub(crate) fn injected_failure(self, fail: &FailNext) -> Response {
        let status = StatusCode::from_u16(fail.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match &fail.body {
            Some(body) => Bytes::from(to_json(body)),
            None => self.error_json(status, &self.injected_message(status)),
        };
        let mut response = json_response(status, body);
        let retry_after = fail.retry_after.as_deref().map(HeaderValue::from_str);
        if let Some(Ok(value)) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }

    /// The message of an injected failure, worded like the provider's.
    pub(crate) fn injected_message(self, status: StatusCode) -> String {
        let reason = match (self, status.as_u16()) {
            (Api::Anthropic, 529) => "Overloaded",
            (Api::OpenAi, 503) => "The engine is currently overloaded, please try again later",
            (_, 429) => "Rate limit reached for requests",
            (_, 500..) => "The server had an error while processing your request",
            _ => status.canonical_reason().unwrap_or("Injected failure"),
        };
        format!("{reason} (injected by keel mock)")
    }
}

/// A response with a JSON body.
pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// OpenAI's `(type, code)` for a status.
fn openai_kind(status: StatusCode) -> (&'static str, Option<&'static str>) {
    match status.as_u16() {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        500.. => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

/// Anthropic's error `type` for a status.
fn anthropic_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn parse(bytes: Bytes) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn openai_shape_has_message_type_param_code() {
        let body = parse(Api::OpenAi.error_json(StatusCode::TOO_MANY_REQUESTS, "slow down"));
        let expected = json!({"error": {"message": "slow down", "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
        assert_eq!(body, expected);
        let body = parse(Api::OpenAi.error_json(StatusCode::SERVICE_UNAVAILABLE, "x"));
        assert_eq!(body["error"]["type"], "server_error");
    }

    #[test]
    fn anthropic_529_is_overloaded_error() {
        let status = StatusCode::from_u16(529).unwrap();
        let body = parse(Api::Anthropic.error_json(status, "Overloaded"));
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        );
    }
}
