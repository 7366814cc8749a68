//! `ChatBody`: reads the body under the size limit and parses it, so bad
//! JSON and oversize bodies get OpenAI-shaped errors.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use keel_types::ChatRequest;

use crate::{ApiError, AppState};

/// A parsed chat completion request.
pub struct ChatBody(pub ChatRequest);

impl FromRequest<Arc<AppState>> for ChatBody {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state.max_body).await?;
        Ok(Self(ChatRequest::parse(&bytes)?))
    }
}

/// Reads a request body of at most `limit` bytes: 413 beyond, 400 when the
/// connection fails mid-body.
pub(crate) async fn read_body(request: Request, limit: usize) -> Result<bytes::Bytes, ApiError> {
    read_limited(request.into_body(), limit).await
}

/// Reads `body`, at most `limit` bytes: 413 beyond, 400 when the connection
/// fails mid-body (never a 413 for that).
pub(crate) async fn read_limited(
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::BodyTooLarge { limit }
        } else {
            ApiError::BodyUnreadable(error.to_string())
        }
    })
}
