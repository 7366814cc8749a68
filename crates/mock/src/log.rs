//! The requests the mock received: the last [`LOG_CAPACITY`] API calls
//! (method, path, headers, body), so a test can read exactly what a gateway
//! sent upstream (`GET /_mock/requests`). Bounded: the oldest entry goes
//! when a new one comes past the capacity, and a body over
//! [`LOG_MAX_BODY`] is logged by its length only, so the log never holds
//! more than 64 MiB whatever the mock is sent.

use std::collections::{BTreeMap, VecDeque};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::state::MockState;

/// How many requests the log keeps.
pub const LOG_CAPACITY: usize = 64;

/// The longest body the log keeps; a longer one is logged empty.
pub const LOG_MAX_BODY: usize = 1024 * 1024;

/// One request as the mock received it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `POST`, …
    pub method: String,
    /// The path and query, e.g. `/v1/messages`.
    pub path: String,
    /// Every header, names lower-cased, repeated values joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as sent (invalid UTF-8 replaced); empty when it was
    /// longer than [`LOG_MAX_BODY`].
    pub body: String,
    /// The body's length in bytes, as received.
    pub body_len: usize,
}

/// The last [`LOG_CAPACITY`] requests, oldest first.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: VecDeque<LoggedRequest>,
}

// === impl RequestLog ===

impl RequestLog {
    /// Appends `request`, forgetting the oldest past the capacity.
    pub(crate) fn push(&mut self, request: LoggedRequest) {
        if self.entries.len() == LOG_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(request);
    }

    /// The entries, oldest first.
    pub(crate) fn entries(&self) -> Vec<LoggedRequest> {
        self.entries.iter().cloned().collect()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Middleware: logs every `/v1/` request with its whole body, then hands
/// the request on unchanged.
pub(crate) async fn record(
    State(state): State<MockState>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, crate::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, error.to_string()).into_response();
        }
    };
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined: &mut String| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    state.log_request(LoggedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_owned(),
            |path| path.as_str().to_owned(),
        ),
        headers,
        body: if bytes.len() > LOG_MAX_BODY {
            String::new()
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        },
        body_len: bytes.len(),
    });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> LoggedRequest {
        LoggedRequest {
            method: String::from("POST"),
            path: path.to_owned(),
            headers: BTreeMap::new(),
            body: String::new(),
            body_len: 0,
        }
    }

    #[test]
    fn the_log_keeps_the_newest_requests_in_order() {
        let mut log = RequestLog::default();
        for index in 0..LOG_CAPACITY + 2 {
            log.push(entry(&format!("/v1/{index}")));
        }
        let paths: Vec<String> = log.entries().into_iter().map(|entry| entry.path).collect();
        assert_eq!(paths.len(), LOG_CAPACITY);
        assert_eq!(paths.first().map(String::as_str), Some("/v1/2"));
        assert_eq!(
            paths.last().map(String::as_str),
            Some(format!("/v1/{}", LOG_CAPACITY + 1).as_str())
        );
        log.clear();
        assert!(log.entries().is_empty());
    }
}
