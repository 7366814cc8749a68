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
        let bytes = read_body(request, state.body_limit()).await?;
        Ok(Self(ChatRequest::parse(&bytes)?))
    }
}

/// How much of a request body is read, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimit {
    /// `server.max_body`.
    pub bytes: usize,
    /// `server.body_timeout`.
    pub time: std::time::Duration,
}

/// Reads a request body within `limit`: 413 beyond its size, 408 beyond its
/// time, 400 when the connection fails mid-body.
pub(crate) async fn read_body(
    request: Request,
    limit: BodyLimit,
) -> Result<bytes::Bytes, ApiError> {
    read_limited(request.into_body(), limit).await
}

/// Reads `body` within `limit`: 413 beyond its size, 408 when it has not
/// all arrived in time (a client dripping bytes holds nothing for long),
/// 400 when the connection fails mid-body (never a 413 for that).
pub(crate) async fn read_limited(
    body: axum::body::Body,
    limit: BodyLimit,
) -> Result<bytes::Bytes, ApiError> {
    let read = axum::body::to_bytes(body, limit.bytes);
    let Ok(read) = tokio::time::timeout(limit.time, read).await else {
        return Err(ApiError::BodyTimeout {
            seconds: limit.time.as_secs(),
        });
    };
    read.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::BodyTooLarge { limit: limit.bytes }
        } else {
            ApiError::BodyUnreadable(error.to_string())
        }
    })
}
