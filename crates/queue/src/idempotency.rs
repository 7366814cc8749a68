//! `Idempotency-Key` on job submission: the key row and the job are written
//! in one transaction together with the response to replay, so a key is
//! never seen half done; a duplicate waits on the first (Postgres blocks
//! the second insert until the first commits) and replays its response.
//! Live requests (non-stream chat completions) take the key first
//! (`in progress`), then store the response or release the key.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::store::{millis, KeyClaim, StoredKey};
use crate::{now_ms, Queue, StoreError, Submission, SubmitError, Submitted};

/// The longest key accepted (longer is a 400).
pub const MAX_KEY_LENGTH: usize = 255;

/// How long a duplicate waits for the first request before a 409.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// How often a waiting duplicate looks again.
pub(crate) const WAIT_STEP: Duration = Duration::from_millis(50);

/// How long a live request's key may stay in progress before another
/// request with the same key and body may take it over (the first gateway
/// died mid-request); longer than any request budget.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// What [`Queue::begin_request`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// This request owns the key: run it, then complete or release the key.
    Owned,
    /// The stored response of the first request with this key and body.
    Replay {
        /// Its status code.
        status: u16,
        /// Its body.
        body: String,
        /// Its headers of record (JSON `[[name, value], …]`).
        headers: Option<String>,
    },
}

/// The fingerprint of a request: hex SHA-256 of method, path and body, so
/// the same key on another endpoint or with another body is a mismatch.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    let digest = hasher.finalize();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What an existing key means for this submission: a replay, a mismatch,
/// or `None` while the first request is still in progress.
pub(crate) fn replay(
    submission: &Submission,
    stored: StoredKey,
) -> Result<Option<Submitted>, SubmitError> {
    let Some(key) = &submission.key else {
        return Ok(None);
    };
    if stored.request_hash != key.request_hash {
        return Err(SubmitError::KeyReused);
    }
    let Some(body) = stored.response_body else {
        return Ok(None);
    };
    let id = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| {
            value
                .get("id")
                .and_then(|id| id.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Ok(Some(Submitted::Replayed { id, body }))
}

// === impl Queue ===

impl Queue {
    /// Starts a live (non-job) request that carries an `Idempotency-Key`:
    /// owns the key, or replays its stored response, or waits (bounded)
    /// while another request with the key is in progress.
    pub async fn begin_request(
        &self,
        tenant: &str,
        claim: &KeyClaim,
    ) -> Result<KeyState, SubmitError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = now_ms();
            match self
                .store
                .begin_key(tenant, claim, now, now - millis(LOCK_TIMEOUT))
                .await?
            {
                None => return Ok(KeyState::Owned),
                Some(stored) if stored.request_hash != claim.request_hash => {
                    return Err(SubmitError::KeyReused)
                }
                Some(StoredKey {
                    response_status: Some(status),
                    response_body: Some(body),
                    response_headers: headers,
                    ..
                }) => {
                    return Ok(KeyState::Replay {
                        status,
                        body,
                        headers,
                    });
                }
                Some(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SubmitError::KeyInProgress);
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// Stores the response of an owned key, with its headers of record
    /// (JSON `[[name, value], …]`), for replay.
    pub async fn complete_request(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &str,
        headers: Option<&str>,
    ) -> Result<(), StoreError> {
        self.store
            .complete_key(tenant, key, status, body, headers)
            .await
    }

    /// Releases an owned key whose request produced nothing worth replaying
    /// (a 5xx, a rejection before execution, a client that went away).
    pub async fn release_request(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        self.store.release_key(tenant, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_covers_method_path_and_body() {
        let base = request_hash("POST", "/v1/jobs", b"{}");
        assert_eq!(base.len(), 64);
        assert_ne!(base, request_hash("POST", "/v1/chat/completions", b"{}"));
        assert_ne!(base, request_hash("POST", "/v1/jobs", b"{ }"));
        assert_eq!(base, request_hash("POST", "/v1/jobs", b"{}"));
    }
}
