//! `POST /v1/messages`: Anthropic's Messages API in front of the same router.
//!
//! The Anthropic request is read into the canonical request and written as
//! the OpenAI chat request the router and every provider adapter take
//! (`request`); the committed answer is turned back into Anthropic's
//! `message` JSON (`response`) or its exact SSE event sequence (`stream`).
//! So an Anthropic SDK can be served by an OpenAI target or an Anthropic
//! one. Errors before the answer are written in Anthropic's error shape
//! (`errors`), with a `request-id` header.
//!
//! When every target the model may reach is Anthropic-kind, nothing needs
//! translating: the body goes through verbatim with only `model` rewritten,
//! with the client's `anthropic-beta` and `anthropic-version`, and the
//! answer comes back as the upstream sent it (`native`). Such answers are
//! the upstream's own objects, with their ids: never cached
//! (`x-keel-cache: bypass` for a cached model).

mod errors;
mod native;
mod request;
mod response;
mod stream;

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::response::Response;
use keel_router::{Answer, Routed};
use keel_types::canonical::openai::read_completion_borrowed;
use keel_types::{AnswerWriter, ChatRequest};

use crate::limits::{settle_usage, Reservation};
use crate::{ApiError, AppState, Tenant};

pub(crate) use errors::{in_anthropic_shape, speaks_anthropic};

/// A Messages body as the router will take it: passed through to a model
/// whose targets are all Anthropic-kind, translated otherwise.
pub enum MessagesBody {
    /// Written as the router's chat request, with the body's fields as the
    /// client sent them (the cache keys those).
    Translated(ChatRequest, keel_types::RawObject),
    /// Passed through as it came, with the client's Anthropic headers.
    Native(ChatRequest),
}

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
    body: MessagesBody,
) -> Result<Response, ApiError> {
    let (request, body) = match body {
        MessagesBody::Translated(request, body) => (request, body),
        MessagesBody::Native(request) => {
            return passthrough(&state, &tenant, request, &headers).await
        }
    };
    let front = crate::chat::Front {
        endpoint: MESSAGES_ENDPOINT,
        body: crate::cache::KeyedBody::Original(&body),
        headers: &headers,
        in_band_error: stream::in_band_error,
    };
    // The adapter's read of a completion writes the message too.
    let request = if request.stream() {
        request
    } else {
        request.with_answer_writer(MESSAGE_WRITER.clone())
    };
    crate::chat::dispatch(&state, &tenant, request, front, respond).await
}

/// Writes a completion as a message, for the adapter.
static MESSAGE_WRITER: LazyLock<AnswerWriter> =
    LazyLock::new(|| AnswerWriter::new(response::message_json));

/// A request passed through: routed as it came, answered as the upstream
/// answered.
async fn passthrough(
    state: &Arc<AppState>,
    tenant: &Tenant,
    request: ChatRequest,
    headers: &axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let cached_model = state.router.caches(request.model());
    if cached_model {
        state.router.count_cache_bypass(request.model());
    }
    let front = crate::chat::Front {
        endpoint: MESSAGES_ENDPOINT,
        body: crate::cache::KeyedBody::Chat,
        headers,
        in_band_error: stream::in_band_error,
    };
    let mut response = crate::chat::dispatch(state, tenant, request, front, respond_native).await;
    if cached_model {
        if let Ok(response) = &mut response {
            crate::cache::mark(response, keel_router::CacheStatus::Bypass);
        }
    }
    response
}

/// The upstream's answer as it came. The model's last resort is the one
/// answer Keel writes itself (no provider named), as a chat completion: it
/// is translated like any.
fn respond_native(routed: Routed, reservation: Option<Reservation>) -> Response {
    if routed.provider.is_empty() {
        return respond(routed, reservation);
    }
    let (who, answer) = crate::chat::Answered::split(routed);
    match answer {
        Answer::Complete(completion) => {
            settle_usage(reservation.as_ref(), completion.usage.as_ref());
            crate::chat::answered("application/json", Body::from(completion.body), &who)
        }
        Answer::Stream { head, rest } => crate::chat::answered(
            "text/event-stream",
            native::body(head, rest, reservation),
            &who,
        ),
    }
}

fn respond(routed: Routed, reservation: Option<Reservation>) -> Response {
    let (who, answer) = crate::chat::Answered::split(routed);
    let (content_type, body) = match answer {
        Answer::Complete(completion) => {
            settle_usage(reservation.as_ref(), completion.usage.as_ref());
            let message = match completion.written {
                Some(written) => written,
                None => match read_completion_borrowed(&completion.body) {
                    Ok(message) => response::message_json(&message).into(),
                    Err(error) => return unreadable_completion(&who.provider, &error),
                },
            };
            ("application/json", Body::from(message))
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
        let forwarded = forwarded_headers(request.headers());
        let bytes = crate::extract::read_body(request, state.body_limit()).await?;
        let raw = keel_types::parse_object(&bytes)?;
        let native = raw
            .parse::<String>("model")
            .and_then(Result::ok)
            .is_some_and(|model| state.router.serves_messages_natively(&model));
        if native {
            let request = ChatRequest::parse_native_messages(&bytes)?;
            return Ok(Self::Native(request.with_forwarded_headers(forwarded)));
        }
        let (request, body) = request::from_object(raw)?;
        Ok(Self::Translated(request, body))
    }
}

/// The client's Anthropic headers a body passed through takes along
/// (several `anthropic-beta` lines joined with commas, as HTTP allows).
fn forwarded_headers(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    keel_router::ANTHROPIC_FORWARDED_HEADERS
        .iter()
        .filter_map(|name| {
            let values: Vec<&str> = headers
                .get_all(*name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| ((*name).to_owned(), values.join(",")))
        })
        .collect()
}

#[cfg(test)]
#[path = "messages/tests.rs"]
mod tests;
