//! `Idempotency-Key` on non-stream `POST /v1/chat/completions`, as a
//! middleware on that route: the key is taken (`in progress`) before the
//! handler runs; a response the upstream produced (a 2xx, or a 4xx the
//! upstream answered) is stored and replayed byte for byte to later requests
//! with the same key and body (`Idempotent-Replayed: true`); anything else
//! (5xx, a model's last resort standing in for one, a request rejected
//! before execution, a client that went away) releases the key. Same key, other body: 422. A concurrent duplicate waits
//! for the first (bounded), then gets 409. Job submissions handle their key
//! in `jobs`; streams pass through untouched.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_queue::{KeyState, Queue};
use keel_types::ChatRequest;

use crate::api::Inner;
use crate::headers::{
    IDEMPOTENCY_KEY, X_KEEL_ATTEMPTS, X_KEEL_DEGRADED, X_KEEL_HEDGED, X_KEEL_MODEL, X_KEEL_PROVIDER,
};
use crate::jobs::{self, JobsError};
use crate::{ApiError, AppState, Tenant};

/// The route's path, part of the request fingerprint.
const PATH: &str = crate::routes::CHAT_PATH;

/// Whether [`chat`] applies: `POST /v1/chat/completions`.
pub(crate) fn applies_to(request: &Request) -> bool {
    request.method() == axum::http::Method::POST && request.uri().path() == PATH
}

/// The idempotency keys of `POST /v1/chat/completions`, run by `shed`
/// once the request is admitted.
pub(crate) async fn chat(state: Arc<AppState>, request: Request, next: impl Inner) -> Response {
    let Some(queue) = state.jobs.clone() else {
        return next.run(request).await;
    };
    if !request.headers().contains_key(IDEMPOTENCY_KEY) || jobs::wants_async(request.headers()) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    // Without a tenant the handler answers 401, which is never stored.
    let Ok(tenant) = Tenant::from_request_parts(&mut parts, &state).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let read =
        crate::extract::read_limited_unless_read(body, state.body_limit(), &parts.extensions);
    let bytes = match read.await {
        Ok(bytes) => bytes,
        Err(error) => return error.into_response(),
    };
    let stream = ChatRequest::parse(&bytes)
        .map(|request| request.stream())
        .unwrap_or(false);
    let claim = match jobs::idempotency_key(&parts.headers, PATH, &bytes) {
        Ok(Some(claim)) if !stream => claim,
        Ok(_) => {
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(error) => return ApiError::from(error).into_response(),
    };
    match queue.begin_request(&tenant.name, &claim).await {
        Ok(KeyState::Owned) => {}
        Ok(KeyState::Replay {
            status,
            body,
            headers,
        }) => return replay(status, body, headers.as_deref()),
        Err(error) => return ApiError::from(JobsError::from(error)).into_response(),
    }
    let owned = HeldKey {
        queue,
        tenant: tenant.name.to_string(),
        key: Some(claim.key),
        max_answer: state.max_upstream_body,
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    owned.settle(response).await
}

/// A key this request holds; released if the request is dropped unsettled.
struct HeldKey {
    queue: Arc<Queue>,
    tenant: String,
    key: Option<String>,
    /// The largest answer stored (an upstream answer is bounded by
    /// `server.max_upstream_body` already).
    max_answer: usize,
}

// === impl HeldKey ===

impl HeldKey {
    /// Stores a replayable response, or releases the key.
    async fn settle(mut self, response: Response) -> Response {
        // The key stays in `self` until it is stored or released: a client
        // that leaves during the awaits below drops `self`, whose `Drop`
        // frees the key for the client's retry.
        let Some(key) = self.key.clone() else {
            return response;
        };
        let executed = response
            .headers()
            .get(X_KEEL_ATTEMPTS)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u32>().ok())
            .is_some_and(|attempts| attempts > 0);
        let status = response.status();
        // A last resort hides a failure: the client's retry deserves a
        // real attempt, not the stored apology.
        let degraded = response.headers().contains_key(X_KEEL_DEGRADED);
        if status.is_server_error() || degraded || !executed {
            self.release(&key).await;
            return response;
        }
        let (parts, body) = response.into_parts();
        let headers = headers_of_record(&parts.headers);
        let Ok(bytes) = axum::body::to_bytes(body, self.max_answer).await else {
            self.release(&key).await;
            return ApiError::from(JobsError::InvalidBody {
                message: String::from("the upstream answer could not be read"),
                param: None,
            })
            .into_response();
        };
        match std::str::from_utf8(&bytes) {
            Ok(text) => {
                if let Err(error) = self
                    .queue
                    .complete_request(&self.tenant, &key, status.as_u16(), text, Some(&headers))
                    .await
                {
                    tracing::warn!(%error, "cannot store an idempotent response; the key is released");
                    self.release(&key).await;
                }
            }
            Err(_) => self.release(&key).await,
        }
        self.key = None;
        Response::from_parts(parts, Body::from(bytes))
    }

    async fn release(&mut self, key: &str) {
        if let Err(error) = self.queue.release_request(&self.tenant, key).await {
            tracing::warn!(%error, "cannot release an idempotency key; it expires after the lock timeout");
        }
        self.key = None;
    }
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        // The client went away mid-request: free the key for its retry.
        if let Some(key) = self.key.take() {
            let (queue, tenant) = (self.queue.clone(), std::mem::take(&mut self.tenant));
            tokio::spawn(async move {
                let _ = queue.release_request(&tenant, &key).await;
            });
        }
    }
}

/// The gateway headers stored with a response and replayed with it: they
/// say which provider and upstream model answered and after how many
/// attempts (the request id is the replaying request's own).
static HEADERS_OF_RECORD: [HeaderName; 4] = [
    X_KEEL_PROVIDER,
    X_KEEL_MODEL,
    X_KEEL_ATTEMPTS,
    X_KEEL_HEDGED,
];

fn headers_of_record(headers: &header::HeaderMap) -> String {
    let pairs: Vec<[&str; 2]> = HEADERS_OF_RECORD
        .iter()
        .filter_map(|name| Some([name.as_str(), headers.get(name)?.to_str().ok()?]))
        .collect();
    serde_json::to_string(&pairs).unwrap_or_default()
}

fn replay(status: u16, body: String, headers: Option<&str>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    let stored: Vec<(String, String)> = headers
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    for (name, value) in stored {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trust boundary 12: a client that leaves while its answer is being
    /// stored frees the key for its retry (it once stayed locked for the
    /// 10-minute lock timeout).
    #[tokio::test]
    async fn tb12_a_client_leaving_while_the_answer_is_stored_frees_the_key(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let store = keel_queue::open("sqlite::memory:").await?;
        store.migrate().await?;
        let policy = keel_queue::WebhookPolicy {
            keys: Vec::new(),
            timeout: std::time::Duration::from_secs(1),
            allow_private: false,
            retry_schedule: Vec::new(),
            concurrency: 1,
            disable_after: std::time::Duration::from_secs(1),
        };
        let queue = Arc::new(Queue::new(store, &policy));
        let claim = keel_queue::KeyClaim {
            key: String::from("k"),
            request_hash: String::from("h"),
        };
        assert!(matches!(
            queue.begin_request("t", &claim).await?,
            KeyState::Owned
        ));
        let owned = HeldKey {
            queue: queue.clone(),
            tenant: String::from("t"),
            key: Some(claim.key.clone()),
            max_answer: 1024,
        };
        // An answer whose body never ends: storing it waits for ever, and
        // the client leaves meanwhile (the future is dropped).
        let mut response = Response::new(Body::from_stream(futures_util::stream::pending::<
            Result<bytes::Bytes, std::io::Error>,
        >()));
        response
            .headers_mut()
            .insert(X_KEEL_ATTEMPTS, axum::http::HeaderValue::from(1));
        let left =
            tokio::time::timeout(std::time::Duration::from_millis(50), owned.settle(response))
                .await;
        assert!(left.is_err(), "still storing when the client left");
        // The release runs in a task of its own; the retry gets the key.
        let retried = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            queue.begin_request("t", &claim),
        )
        .await??;
        assert!(matches!(retried, KeyState::Owned));
        Ok(())
    }
}
