//! `Idempotency-Key` on job submission: the key row and the job are written
//! in one transaction together with the response to replay, so a key is
//! never seen half done; a duplicate waits on the first (Postgres blocks
//! the second insert until the first commits) and replays its response.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::store::StoredKey;
use crate::{Submission, SubmitError, Submitted};

/// The longest key accepted (longer is a 400).
pub const MAX_KEY_LENGTH: usize = 255;

/// How long a duplicate waits for the first request before a 409.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// How often a waiting duplicate looks again.
pub(crate) const WAIT_STEP: Duration = Duration::from_millis(50);

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
