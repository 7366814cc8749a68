//! The gateway's own header names, and those it reads on every request,
//! made once: inserting a custom header by `&str` allocates its name on
//! every response, and looking one up by `&str` parses the name first.

use axum::http::{HeaderName, HeaderValue};

/// The provider that answered.
pub const X_KEEL_PROVIDER: HeaderName = HeaderName::from_static("x-keel-provider");
/// The upstream model that answered.
pub const X_KEEL_MODEL: HeaderName = HeaderName::from_static("x-keel-model");
/// Upstream attempts made, failed ones included.
pub const X_KEEL_ATTEMPTS: HeaderName = HeaderName::from_static("x-keel-attempts");
/// `true` when the answer came from a hedged attempt.
pub const X_KEEL_HEDGED: HeaderName = HeaderName::from_static("x-keel-hedged");
/// `true` when the answer is the model's `on_failure` text, given because
/// routing failed.
pub const X_KEEL_DEGRADED: HeaderName = HeaderName::from_static("x-keel-degraded");
/// The request's id, echoed or made.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// How the prompt cache took part: `hit`, `miss`, `bypass` or `stale`.
pub const X_KEEL_CACHE: HeaderName = HeaderName::from_static("x-keel-cache");
/// The request fields the answering provider left out (its
/// `drop_unsupported`), comma-separated.
pub const X_KEEL_DROPPED: HeaderName = HeaderName::from_static("x-keel-dropped");
/// `false` on a final error: Keel has retried and failed over already, so
/// the official SDKs (which honour this header before the status) must not
/// repeat the request.
pub const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");
/// RFC 7240 preferences: `respond-async` (and `wait`) ask for a job.
pub const PREFER: HeaderName = HeaderName::from_static("prefer");
/// A client's key for a request it may send again.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Anthropic's header for the API key.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// A count as a header value: the counts most answers carry (one to nine
/// attempts) are static, so writing one allocates nothing.
pub fn count_value(count: u32) -> HeaderValue {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match DIGITS.get(count as usize) {
        Some(digit) => HeaderValue::from_static(digit),
        None => HeaderValue::from(count),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_written_in_decimal() {
        for count in [0, 1, 9, 10, 11, 99, 1_000, u32::MAX] {
            assert_eq!(super::count_value(count), count.to_string().as_str());
        }
    }
}
