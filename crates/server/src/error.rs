//! The one place where failures become HTTP responses: status, OpenAI error
//! body and the headers that go with them.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_router::RouteError;
use keel_router::{ErrorKind, ProviderError};
use keel_types::{ErrorBody, RequestError};

/// Every error the HTTP API returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No key, or a key no tenant has.
    #[error("invalid or missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'")]
    Unauthorized,
    /// The body could not be used.
    #[error("{0}")]
    BadRequest(#[from] RequestError),
    /// The body is larger than `server.max_body`.
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read from the connection.
    #[error("the request body could not be read: {0}")]
    BodyUnreadable(String),
    /// The request has more header fields than Keel reads.
    #[error("the request has more than {max} header fields")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// The body did not arrive within `server.body_timeout`.
    #[error("the request body did not arrive within {seconds} s")]
    BodyTimeout {
        /// The limit in whole seconds.
        seconds: u64,
    },
    /// No route has this path.
    #[error("no route for {method} {path}")]
    NotFound {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// `GET /v1/models/{id}` for a model that is not served.
    #[error("the model '{model}' does not exist")]
    ModelNotFound {
        /// The requested model.
        model: String,
    },
    /// The path exists but not with this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// Routing failed.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A job route (or a background response) failed.
    #[error(transparent)]
    Jobs(#[from] crate::jobs::JobsError),
    /// The tenant has `limits.max_in_flight` requests in flight already.
    #[error("the tenant already has {max} requests in flight (its limits.max_in_flight); retry when one has finished")]
    TenantBusy {
        /// The limit.
        max: u32,
    },
    /// The tenant's rate limit is reached.
    #[error("rate limit reached for {limit} per minute; retry after {}s", retry_after_seconds(.retry_after))]
    TenantLimited {
        /// `requests` or `tokens`.
        limit: &'static str,
        /// When the request would be admitted.
        retry_after: std::time::Duration,
        /// The `x-ratelimit-*` headers.
        headers: Box<axum::http::HeaderMap>,
    },
}

fn retry_after_seconds(wait: &std::time::Duration) -> u64 {
    // Whole seconds, rounded up, never 0 (RL-1).
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero())))
}

/// A routing failure's `Retry-After` for the client: Keel's own estimate or
/// an upstream's, clamped to 1–60 s, so no upstream figure is passed on as
/// it is.
fn route_retry_after_seconds(wait: &std::time::Duration) -> u64 {
    retry_after_seconds(wait).clamp(1, 60)
}

/// Put in the response extensions so the logging middleware can report the
/// error without `IntoResponse` having side effects.
#[derive(Clone, Debug)]
pub struct LoggedError(pub String);

/// The one way an error answer is written, whichever error it comes from
/// ([`ApiError`], which holds the job routes' `JobsError`, shedding, an
/// unreadable upstream answer): `status`, OpenAI's error `body` as JSON, and `logged`,
/// what the request log records (which may say more than the client is
/// told). The caller adds its own headers.
pub(crate) fn error_response(status: StatusCode, body: &ErrorBody, logged: String) -> Response {
    let mut response = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_json(),
    )
        .into_response();
    response.extensions_mut().insert(LoggedError(logged));
    response
}

// === impl ApiError ===

impl From<keel_queue::StoreError> for ApiError {
    fn from(error: keel_queue::StoreError) -> Self {
        Self::Jobs(error.into())
    }
}

impl From<keel_queue::SubmitError> for ApiError {
    fn from(error: keel_queue::SubmitError) -> Self {
        Self::Jobs(error.into())
    }
}

impl ApiError {
    /// The status it is answered with (in-band after a keep-alive).
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) | Self::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyHeaders { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotFound { .. } | Self::ModelNotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Route(error) => route_status(error),
            Self::Jobs(error) => error.status(),
            Self::TenantLimited { .. } | Self::TenantBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Its error body.
    pub(crate) fn body(&self) -> ErrorBody {
        let message = self.to_string();
        match self {
            Self::Unauthorized => ErrorBody::new(
                message,
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ),
            Self::BadRequest(error) => {
                ErrorBody::new(message, "invalid_request_error", error.param(), None)
            }
            Self::BodyTooLarge { .. } => ErrorBody::new(
                message,
                "invalid_request_error",
                None,
                Some("body_too_large"),
            ),
            Self::BodyUnreadable(_) => ErrorBody::new(message, "invalid_request_error", None, None),
            Self::BodyTimeout { .. } => {
                ErrorBody::new(message, "invalid_request_error", None, Some("body_timeout"))
            }
            Self::TooManyHeaders { .. } => ErrorBody::new(
                message,
                "invalid_request_error",
                None,
                Some("too_many_headers"),
            ),
            Self::NotFound { .. } => {
                ErrorBody::new(message, "invalid_request_error", None, Some("unknown_url"))
            }
            Self::ModelNotFound { .. } => ErrorBody::new(
                message,
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
            Self::MethodNotAllowed { .. } => ErrorBody::new(
                message,
                "invalid_request_error",
                None,
                Some("method_not_allowed"),
            ),
            Self::Route(error) => route_body(error),
            Self::Jobs(error) => error.body(),
            Self::TenantLimited { .. } => ErrorBody::new(
                message,
                "rate_limit_error",
                None,
                Some("rate_limit_exceeded"),
            ),
            Self::TenantBusy { .. } => ErrorBody::new(
                message,
                "rate_limit_error",
                None,
                Some("too_many_in_flight"),
            ),
        }
    }
}

/// Whether a routing failure is final: Keel's own retries and failover have
/// run, or the request cannot succeed as sent. `Unavailable` is not: no
/// target was tried, and its `Retry-After` says when one may take it, like
/// load shedding.
fn route_is_final(error: &RouteError) -> bool {
    !matches!(error, RouteError::Unavailable { .. })
}

fn route_status(error: &RouteError) -> StatusCode {
    match error {
        RouteError::UnknownModel { .. } | RouteError::WrongEndpoint { .. } => {
            StatusCode::BAD_REQUEST
        }
        RouteError::NoTargets { .. } => StatusCode::SERVICE_UNAVAILABLE,
        RouteError::Rejected {
            error: ProviderError::Status { status, .. },
            ..
        } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
        RouteError::Rejected { .. } => StatusCode::BAD_REQUEST,
        RouteError::Exhausted { last, .. } if last.kind() == ErrorKind::RateLimited => {
            StatusCode::TOO_MANY_REQUESTS
        }
        RouteError::Exhausted { .. } => StatusCode::BAD_GATEWAY,
        RouteError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
        RouteError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn route_body(error: &RouteError) -> ErrorBody {
    match error {
        RouteError::UnknownModel { .. } => ErrorBody::new(
            error.to_string(),
            "invalid_request_error",
            Some("model"),
            Some("model_not_found"),
        ),
        RouteError::WrongEndpoint { .. } => ErrorBody::new(
            error.to_string(),
            "invalid_request_error",
            Some("model"),
            None,
        ),
        RouteError::NoTargets { .. } => ErrorBody::new(
            error.to_string(),
            "server_error",
            None,
            Some("no_enabled_provider"),
        ),
        // A refusal describes the client's own request, so its message is
        // passed on; that is what the client needs to fix it.
        RouteError::Rejected {
            error: ProviderError::Status { body, .. },
            ..
        } => body.clone(),
        RouteError::Rejected { error, .. } => {
            ErrorBody::new(error.to_string(), "invalid_request_error", None, None)
        }
        RouteError::Exhausted { model, last, .. } => {
            // Upstream bodies of server errors stay in the logs.
            let message = format!(
                "every target of the model '{model}' failed; the last, provider '{}', {}",
                last.provider(),
                failure_summary(last)
            );
            let kind = if last.kind() == ErrorKind::RateLimited {
                "rate_limit_error"
            } else {
                "upstream_error"
            };
            ErrorBody::new(message, kind, None, Some("upstream_unavailable"))
        }
        RouteError::DeadlineExceeded { .. } => {
            ErrorBody::new(error.to_string(), "timeout", None, Some("request_timeout"))
        }
        RouteError::Unavailable { .. } => ErrorBody::new(
            error.to_string(),
            "server_error",
            None,
            Some("no_target_available"),
        ),
    }
}

/// A 502 for an upstream answer that passed the adapter's checks but is
/// not what the front end needs (`message` says what was wrong); final,
/// like every routing failure, so `x-should-retry: false`.
pub(crate) fn invalid_upstream_answer(message: String) -> Response {
    let body = ErrorBody::new(
        message.clone(),
        "server_error",
        None,
        Some("upstream_invalid_response"),
    );
    let mut response = error_response(StatusCode::BAD_GATEWAY, &body, message);
    response.headers_mut().insert(
        crate::headers::X_SHOULD_RETRY,
        HeaderValue::from_static("false"),
    );
    response
}

/// What a client is told, in band, of a stream that failed after it started.
pub(crate) fn stream_failure_message(error: &ProviderError) -> String {
    format!(
        "the stream from provider '{}' failed after it started: it {}",
        error.provider(),
        failure_summary(error)
    )
}

/// A short, detail-free description of an upstream failure for clients.
pub(crate) fn failure_summary(error: &ProviderError) -> String {
    match error {
        ProviderError::Connect { .. } => String::from("could not be reached"),
        ProviderError::Status { status, .. } => format!("answered with status {status}"),
        ProviderError::Transport { .. } => String::from("dropped the connection"),
        ProviderError::Protocol { .. } => String::from("sent an invalid response"),
        ProviderError::InBand { .. } => String::from("reported an error in the stream"),
        ProviderError::Truncated { .. } => String::from("ended the stream before it was complete"),
        ProviderError::Shutdown { .. } => {
            String::from("was cut off: the gateway shut down before the stream ended")
        }
        ProviderError::Timeout { clock, .. } => format!("timed out ({clock})"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let logged = match &self {
            Self::Jobs(error) => error.logged(),
            _ => self.to_string(),
        };
        let mut response = error_response(self.status(), &self.body(), logged);
        let headers = response.headers_mut();
        if let Self::Route(route) = &self {
            headers.insert(
                crate::headers::X_KEEL_ATTEMPTS,
                crate::headers::count_value(route.attempts()),
            );
            let retry_after = match route {
                RouteError::Exhausted { last, .. } | RouteError::Rejected { error: last, .. } => {
                    last.retry_after()
                }
                RouteError::Unavailable { retry_after, .. } => Some(*retry_after),
                _ => None,
            };
            if let Some(delay) = retry_after {
                headers.insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(route_retry_after_seconds(&delay)),
                );
            }
            if route_is_final(route) {
                headers.insert(
                    crate::headers::X_SHOULD_RETRY,
                    HeaderValue::from_static("false"),
                );
            }
        }
        let retry_soon = match &self {
            Self::TenantBusy { .. } => true,
            Self::Jobs(error) => error.retry_soon(),
            _ => false,
        };
        if retry_soon {
            headers.insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            );
        }
        if let Self::TenantLimited {
            retry_after,
            headers: limits,
            ..
        } = &self
        {
            headers.extend((**limits).clone());
            headers.insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(retry_after)),
            );
        }
        response
    }
}
