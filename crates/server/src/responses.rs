//! `POST /v1/responses`: OpenAI's Responses API through the same router,
//! limits, cache and clocks as chat. The request is translated through the
//! canonical form into the chat request the router takes; the committed
//! answer goes back as a `response` object or as the Responses event
//! stream. A request behaves as the same request through
//! `/v1/chat/completions` in everything but its wire format.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::response::Response;
use keel_router::{Answer, Routed};
use keel_types::canonical::openai::read_completion_borrowed;
use keel_types::AnswerWriter;

use crate::cache::KeyedBody;
use crate::chat::{answered, dispatch, Answered, Front};
use crate::extract::read_body;
use crate::limits::{settle_usage, Reservation};
use crate::{ApiError, AppState, Tenant};

mod background;
mod native;
mod request;
mod response;
mod stream;

#[cfg(test)]
mod tests;

pub(crate) use background::{cancel, get};

/// The endpoint name Responses requests are cached under.
const RESPONSES_ENDPOINT: &str = "responses";

/// A Responses body as the router will take it: passed through to a model
/// whose targets all speak the API (`responses: native`; background
/// responses excepted), translated otherwise.
pub enum ResponsesBody {
    /// Translated for the chat route, with the client's body.
    Translated(request::Translated),
    /// Passed through as it came.
    Native(keel_types::ChatRequest),
}

impl FromRequest<Arc<AppState>> for ResponsesBody {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state.body_limit()).await?;
        let raw = keel_types::parse_object(&bytes)?;
        // Most model names have no escapes and are read in place.
        let native = match raw.parse::<&str>("model") {
            Some(Ok(model)) => state.router.serves_responses_natively(model),
            _ => raw
                .parse::<String>("model")
                .and_then(Result::ok)
                .is_some_and(|model| state.router.serves_responses_natively(&model)),
        };
        if native && !request::background(&raw) {
            let chat = keel_types::ChatRequest::parse_native_responses(&bytes)?;
            return Ok(Self::Native(chat));
        }
        Ok(Self::Translated(request::translate_object(raw)?))
    }
}

/// Routes one Responses request and encodes the committed answer.
pub async fn create(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: ResponsesBody,
) -> Result<Response, ApiError> {
    let translated = match body {
        ResponsesBody::Translated(translated) => translated,
        ResponsesBody::Native(chat) => return passthrough(&state, &tenant, chat, &headers).await,
    };
    let request::Translated { chat, raw } = translated;
    if request::background(&raw) {
        return Ok(background::create(&state, &tenant, &headers, &chat, &raw).await);
    }
    let echo = Arc::new(response::Echo::new(&raw));
    // The adapter's read of a completion writes the response object too.
    let chat = if chat.stream() {
        chat
    } else {
        let echo = echo.clone();
        chat.with_answer_writer(AnswerWriter::new(move |answer| {
            response::response_json(&echo, answer)
        }))
    };
    let front = Front {
        endpoint: RESPONSES_ENDPOINT,
        body: KeyedBody::Original(&raw),
        headers: &headers,
        in_band_error: native::in_band_error,
    };
    dispatch(&state, &tenant, chat, front, |routed, reservation| {
        respond(echo, routed, reservation)
    })
    .await
}

/// A native request: routed as it came, answered as the upstream answered.
async fn passthrough(
    state: &Arc<AppState>,
    tenant: &Tenant,
    chat: keel_types::ChatRequest,
    headers: &axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let front = Front {
        endpoint: RESPONSES_ENDPOINT,
        body: KeyedBody::Chat,
        headers,
        in_band_error: native::in_band_error,
    };
    dispatch(state, tenant, chat, front, |routed, reservation| {
        let (who, answer) = Answered::split(routed);
        match answer {
            Answer::Complete(completion) => {
                settle_usage(reservation.as_ref(), completion.usage.as_ref());
                answered("application/json", Body::from(completion.body), &who)
            }
            Answer::Stream { head, rest } => answered(
                "text/event-stream",
                native::body(head, rest, reservation),
                &who,
            ),
        }
    })
    .await
}

fn respond(
    echo: Arc<response::Echo>,
    routed: Routed,
    reservation: Option<Reservation>,
) -> Response {
    let (who, answer) = Answered::split(routed);
    match answer {
        Answer::Complete(completion) => {
            settle_usage(reservation.as_ref(), completion.usage.as_ref());
            let object = match completion.written {
                Some(written) => written,
                None => match read_completion_borrowed(&completion.body) {
                    Ok(answer) => response::response_json(&echo, &answer).into(),
                    Err(error) => return unreadable_completion(&who.provider, &error),
                },
            };
            answered("application/json", Body::from(object), &who)
        }
        Answer::Stream { head, rest } => {
            // A stream's request had no writer: the echo is this one's alone.
            let echo = Arc::unwrap_or_clone(echo);
            let writer = stream::EventWriter::new(echo, &who.model);
            answered(
                "text/event-stream",
                crate::translated::body(head, rest, writer, reservation),
                &who,
            )
        }
    }
}

/// A completion that passed the adapter's checks but is not one: a 502.
fn unreadable_completion(provider: &str, error: &serde_json::Error) -> Response {
    tracing::warn!(provider, %error, "an upstream completion could not be read for /v1/responses");
    crate::error::invalid_upstream_answer(format!(
        "provider '{provider}' sent a completion that could not be read"
    ))
}
