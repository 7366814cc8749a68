//! `ChatBody`: reads the body under the size limit and parses it, so bad
//! JSON and oversize bodies get OpenAI-shaped errors.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use bytes::Bytes;
use keel_types::ChatRequest;

use crate::{ApiError, AppState};

/// A parsed chat completion request, and the request's headers (moved
/// out, not copied).
pub struct ChatBody(pub ChatRequest, pub HeaderMap);

impl FromRequest<Arc<AppState>> for ChatBody {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let (headers, bytes) = headers_and_body(request, state.body_limit()).await?;
        Ok(Self(ChatRequest::parse(&bytes)?, headers))
    }
}

/// A parsed embeddings request, and the request's headers.
pub struct EmbeddingsBody(pub ChatRequest, pub HeaderMap);

impl FromRequest<Arc<AppState>> for EmbeddingsBody {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let (headers, bytes) = headers_and_body(request, state.body_limit()).await?;
        Ok(Self(ChatRequest::parse_embeddings(&bytes)?, headers))
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

/// The bytes of a request body that admission (`shed`) has read whole,
/// under the limits, already: reading them again costs no clock, no check
/// and no copy.
#[derive(Clone, Debug)]
pub(crate) struct BodyRead(pub Bytes);

/// Reads a request body within `limit`: 413 beyond its size, 408 beyond its
/// time, 400 when the connection fails mid-body.
pub(crate) async fn read_body(request: Request, limit: BodyLimit) -> Result<Bytes, ApiError> {
    let (_, bytes) = headers_and_body(request, limit).await?;
    Ok(bytes)
}

/// A request's headers and its body's bytes, read within `limit` unless
/// admission has read them.
async fn headers_and_body(
    request: Request,
    limit: BodyLimit,
) -> Result<(HeaderMap, Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = read_limited_unless_read(body, limit, &parts.extensions).await?;
    Ok((parts.headers, bytes))
}

/// [`read_limited`], or for a body admission has read already, its bytes.
pub(crate) async fn read_limited_unless_read(
    body: axum::body::Body,
    limit: BodyLimit,
    extensions: &axum::http::Extensions,
) -> Result<Bytes, ApiError> {
    match extensions.get::<BodyRead>() {
        Some(BodyRead(bytes)) => Ok(bytes.clone()),
        None => read_limited(body, limit).await,
    }
}

/// Reads `body` within `limit`: 413 beyond its size, 408 when it has not
/// all arrived in time (a client dripping bytes holds nothing for long),
/// 400 when the connection fails mid-body (never a 413 for that).
pub(crate) async fn read_limited(
    body: axum::body::Body,
    limit: BodyLimit,
) -> Result<Bytes, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Trust boundary 12: a body whose connection breaks is a 400, not a
    /// 413; the limits are still 413 and 408.
    #[tokio::test(start_paused = true)]
    async fn tb12_a_broken_body_is_a_400_and_the_limits_are_413_and_408() {
        let limit = BodyLimit {
            bytes: 8,
            time: std::time::Duration::from_secs(30),
        };
        let broken = axum::body::Body::from_stream(futures_util::stream::iter([
            Ok(bytes::Bytes::from_static(b"{")),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
        ]));
        assert!(matches!(
            read_limited(broken, limit).await,
            Err(ApiError::BodyUnreadable(_))
        ));
        let large = axum::body::Body::from("0123456789");
        assert!(matches!(
            read_limited(large, limit).await,
            Err(ApiError::BodyTooLarge { limit: 8 })
        ));
        let slow = axum::body::Body::from_stream(futures_util::stream::pending::<
            Result<bytes::Bytes, std::io::Error>,
        >());
        assert!(matches!(
            read_limited(slow, limit).await,
            Err(ApiError::BodyTimeout { seconds: 30 })
        ));
    }
}
