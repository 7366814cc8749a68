//! `POST /v1/messages`: Anthropic's Messages API in front of the same router.
//!
//! The Anthropic request is read into the canonical request and written as
//! the OpenAI chat request the router and every provider adapter take
//! (`request`); the committed answer is turned back into Anthropic's
//! `message` JSON (`response`) or its exact SSE event sequence (`stream`).
//! So an Anthropic SDK can be served by an OpenAI target or an Anthropic
//! one. Errors before the answer are written in Anthropic's error shape
//! (`errors`), with a `request-id` header.

mod errors;
mod request;
mod response;
mod stream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::response::Response;
use keel_router::{Answer, Routed};
use keel_types::canonical::openai::read_completion;
use keel_types::ChatRequest;

use crate::limits::{settle_usage, Reservation};
use crate::{ApiError, AppState, Tenant};

pub(crate) use errors::anthropic_errors;

/// A Messages request, already written as the router's chat request, and
/// the body's fields as the client sent them (the cache keys those).
pub struct MessagesBody(pub ChatRequest, pub keel_types::RawObject);

/// Reads a `POST /v1/messages` body as the router's chat request (the
/// Anthropic front end's parser; also the fuzz targets' entry point).
pub fn messages_request(body: &[u8]) -> Result<ChatRequest, keel_types::RequestError> {
    request::chat_request(body)
}

/// The endpoint name Messages requests are cached under.
const MESSAGES_ENDPOINT: &str = "messages";

/// Routes one Messages request and encodes the committed answer in
/// Anthropic's format.
pub async fn create(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    MessagesBody(request, body): MessagesBody,
) -> Result<Response, ApiError> {
    let front = crate::chat::Front {
        endpoint: MESSAGES_ENDPOINT,
        body: crate::cache::KeyedBody::Original(&body),
        headers: &headers,
        in_band_error: stream::in_band_error,
    };
    crate::chat::dispatch(&state, &tenant, request, front, respond).await
}

fn respond(routed: Routed, reservation: Option<Reservation>) -> Response {
    let (who, answer) = crate::chat::Answered::split(routed);
    let (content_type, body) = match answer {
        Answer::Complete(completion) => {
            settle_usage(reservation.as_ref(), completion.usage.as_ref());
            match read_completion(&completion.body) {
                Ok(message) => (
                    "application/json",
                    Body::from(response::message_json(&message)),
                ),
                Err(error) => return unreadable_completion(&who.provider, &error),
            }
        }
        Answer::Stream { head, rest } => {
            let writer = stream::EventWriter::new(&who.model);
            (
                "text/event-stream",
                crate::translated::body(head, rest, writer, reservation),
            )
        }
    };
    crate::chat::answered(content_type, body, &who)
}

/// A completion that passed the adapter's checks but is not one: a 502.
fn unreadable_completion(provider: &str, error: &serde_json::Error) -> Response {
    tracing::warn!(provider, %error, "an upstream completion could not be read for /v1/messages");
    crate::error::invalid_upstream_answer(format!(
        "provider '{provider}' sent a completion that could not be read"
    ))
}

impl FromRequest<Arc<AppState>> for MessagesBody {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let bytes = crate::extract::read_body(request, state.body_limit()).await?;
        let (request, body) = request::chat_request_and_body(&bytes)?;
        Ok(Self(request, body))
    }
}

#[cfg(test)]
#[path = "messages/tests.rs"]
mod tests;
