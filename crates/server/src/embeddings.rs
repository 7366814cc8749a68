//! `POST /v1/embeddings`: routed like a chat completion (ordered targets,
//! retries, breakers, fallback, limits, cache; never streamed or hedged)
//! and answered with the upstream's JSON as it came.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use keel_router::{Answer, Routed};

use crate::cache::KeyedBody;
use crate::chat::{answered, dispatch, Answered, Front};
use crate::extract::EmbeddingsBody;
use crate::limits::{settle_usage, Reservation};
use crate::{ApiError, AppState, Tenant};

/// The endpoint name embeddings are cached under.
pub const EMBEDDINGS_ENDPOINT: &str = "embeddings";

/// Routes one embeddings request.
pub async fn create(
    tenant: Tenant,
    State(state): State<Arc<AppState>>,
    EmbeddingsBody(request, headers): EmbeddingsBody,
) -> Result<Response, ApiError> {
    let front = Front {
        endpoint: EMBEDDINGS_ENDPOINT,
        body: KeyedBody::Chat,
        headers: &headers,
        // Never streamed, so never kept alive.
        in_band_error: crate::sse::in_band_error,
    };
    dispatch(&state, &tenant, request, front, respond).await
}

fn respond(routed: Routed, reservation: Option<Reservation>) -> Response {
    let (who, answer) = Answered::split(routed);
    match answer {
        Answer::Complete(completion) => {
            settle_usage(reservation.as_ref(), completion.usage.as_ref());
            answered("application/json", Body::from(completion.body), &who)
        }
        // Embeddings requests are never streamed; an upstream that streams
        // anyway sent something that is not an embeddings answer.
        Answer::Stream { .. } => crate::error::invalid_upstream_answer(format!(
            "provider '{}' answered an embeddings request with a stream",
            who.provider
        )),
    }
}
