//! `POST /v1/messages`: Anthropic's Messages API in front of the same router.
//!
//! The Anthropic request is read into the canonical request and written as
//! the OpenAI chat request the router and every provider adapter take
//! (`request`); the committed answer is turned back into Anthropic's
//! `message` JSON (`response`) or its exact SSE event sequence (`stream`).
//! So an Anthropic SDK can be served by an OpenAI target or an Anthropic
//! one. Errors before the answer keep the gateway's one error shape.

mod request;
mod response;
mod stream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_router::{Answer, Routed};
use keel_types::canonical::openai::read_completion;
use keel_types::ChatRequest;

use crate::headers::{X_KEEL_ATTEMPTS, X_KEEL_MODEL, X_KEEL_PROVIDER};
use crate::limits::Reservation;
use crate::{ApiError, AppState, Tenant};

/// A Messages request, already written as the router's chat request.
pub struct MessagesBody(pub ChatRequest);

/// Routes one Messages request and encodes the committed answer in
/// Anthropic's format.
pub async fn create(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    MessagesBody(request): MessagesBody,
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
        answer,
    } = routed;
    let (content_type, body) = match answer {
        Answer::Complete(completion) => {
            if let (Some(reservation), Some(usage)) = (&reservation, completion.usage) {
                reservation.settle(usage.total_tokens);
            }
            match read_completion(&completion.body) {
                Ok(message) => (
                    "application/json",
                    Body::from(response::message_json(&message)),
                ),
                Err(error) => return unreadable_completion(&provider, &error),
            }
        }
        Answer::Stream { head, rest } => {
            let writer = stream::EventWriter::new(&model);
            (
                "text/event-stream",
                stream::body(head, rest, writer, reservation),
            )
        }
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Ok(value) = HeaderValue::from_str(&provider) {
        headers.insert(X_KEEL_PROVIDER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&model) {
        headers.insert(X_KEEL_MODEL, value);
    }
    headers.insert(X_KEEL_ATTEMPTS, HeaderValue::from(attempts));
    response
}

/// A completion that passed the adapter's checks but is not one: a 502.
fn unreadable_completion(provider: &str, error: &serde_json::Error) -> Response {
    tracing::warn!(provider, %error, "an upstream completion could not be read for /v1/messages");
    let body = keel_types::ErrorBody::new(
        format!("provider '{provider}' sent a completion that could not be read"),
        "server_error",
        None,
        Some("upstream_invalid_response"),
    );
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_json(),
    )
        .into_response()
}

impl FromRequest<Arc<AppState>> for MessagesBody {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let limit = state.max_body;
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|error| {
                let too_large = std::error::Error::source(&error)
                    .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
                if too_large {
                    ApiError::BodyTooLarge { limit }
                } else {
                    ApiError::BodyUnreadable(error.to_string())
                }
            })?;
        Ok(Self(request::chat_request(&bytes)?))
    }
}

#[cfg(test)]
#[path = "messages/tests.rs"]
mod tests;
