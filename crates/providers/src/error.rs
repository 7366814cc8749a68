//! The failure of one upstream attempt, classified where it is made so that
//! routing, retries and breakers ask the error instead of parsing strings.

use std::time::Duration;

use keel_types::ErrorBody;

/// Why an upstream attempt failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProviderError {
    /// No connection could be made (refused, DNS, TLS, connect timeout).
    #[error("cannot connect to provider {provider}: {detail}")]
    Connect {
        /// The provider name.
        provider: String,
        /// What the transport said.
        detail: String,
    },
    /// The upstream answered with a non-success status.
    #[error("provider {provider} answered {status}: {}", body.error.message)]
    Status {
        /// The provider name.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// The upstream error, in OpenAI's shape.
        body: ErrorBody,
        /// The upstream's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The connection failed after the response head (reset, closed).
    #[error("provider {provider} connection failed mid-response: {detail}")]
    Transport {
        /// The provider name.
        provider: String,
        /// What the transport said.
        detail: String,
    },
    /// The upstream sent bytes Keel cannot understand.
    #[error("provider {provider} sent an invalid response: {detail}")]
    Protocol {
        /// The provider name.
        provider: String,
        /// What was wrong.
        detail: String,
    },
    /// An error inside a 200 stream (an SSE `error` event or `{"error":…}`).
    #[error("provider {provider} reported an error mid-stream: {}", body.error.message)]
    InBand {
        /// The provider name.
        provider: String,
        /// The error, in OpenAI's shape.
        body: ErrorBody,
    },
    /// One of the attempt's clocks ran out.
    #[error("provider {provider} timed out: {clock}")]
    Timeout {
        /// The provider name.
        provider: String,
        /// Which clock ran out.
        clock: Clock,
    },
    /// The stream ended without its terminal event.
    #[error("provider {provider} ended the stream before it was complete")]
    Truncated {
        /// The provider name.
        provider: String,
    },
    /// The gateway cut the stream: its shutdown grace period ran out.
    #[error("the gateway shut down before provider {provider} finished the stream")]
    Shutdown {
        /// The provider name.
        provider: String,
    },
}

/// Phrases in the error messages of upstreams that refused a prompt for its
/// length, lower case: OpenAI and vLLM ("This model's maximum context length
/// is 8192 tokens"), Anthropic ("prompt is too long: 210000 tokens > 200000
/// maximum"), vLLM's newer wordings ("… is longer than the model's context
/// length", "… is longer than the maximum model length of 4096").
const CONTEXT_LENGTH_MESSAGES: [&str; 4] = [
    "maximum context length",
    "prompt is too long",
    "longer than the model's context length",
    "longer than the maximum model length",
];

/// The clocks of one attempt (the README's "Clocks").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Request sent → response head (streams only).
    Headers,
    /// Request sent → first token (the whole answer for a non-stream request).
    FirstToken,
    /// The longest gap between tokens once the first has come.
    Inactivity,
    /// The whole attempt.
    Total,
    /// The request's own budget over all attempts.
    Budget,
}

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Headers => "no response headers in time",
            Self::FirstToken => "no first token in time",
            Self::Inactivity => "the stream stalled between tokens",
            Self::Total => "the attempt took longer than its total limit",
            Self::Budget => "the request's time budget ran out",
        })
    }
}

/// A low-cardinality class of failure, usable as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connection could not be made.
    Connect,
    /// A 4xx caused by the request itself; never retried.
    Client,
    /// 401, 403 or 404: the provider's key, access or model mapping is
    /// wrong. A failure of the target (the gateway's side), never of the
    /// client: it fails over and counts in the breaker, but the same target
    /// is not tried again for this request.
    Misconfigured,
    /// Rate limited (429).
    RateLimited,
    /// A 5xx, 408, 409 or Anthropic 529.
    Server,
    /// Broken transport, protocol or stream.
    Broken,
    /// A clock ran out.
    Timeout,
}

// === impl ErrorKind ===

impl ErrorKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect_error",
            Self::Client => "client_error",
            Self::Misconfigured => "misconfigured",
            Self::RateLimited => "rate_limited",
            Self::Server => "server_error",
            Self::Broken => "broken_stream",
            Self::Timeout => "timeout",
        }
    }
}

// === impl ProviderError ===

impl ProviderError {
    /// The failure class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect { .. } => ErrorKind::Connect,
            Self::Status { status, .. } => match status {
                429 => ErrorKind::RateLimited,
                408 | 409 => ErrorKind::Server,
                401 | 403 | 404 => ErrorKind::Misconfigured,
                400..=499 => ErrorKind::Client,
                _ => ErrorKind::Server,
            },
            Self::Transport { .. }
            | Self::Protocol { .. }
            | Self::InBand { .. }
            | Self::Truncated { .. }
            | Self::Shutdown { .. } => ErrorKind::Broken,
            Self::Timeout { .. } => ErrorKind::Timeout,
        }
    }

    /// Whether another attempt (on this target or the next) may succeed: every
    /// failure but a client error.
    pub fn is_retryable(&self) -> bool {
        self.kind() != ErrorKind::Client
    }

    /// Whether the upstream refused the request for being longer than its
    /// context window: a client error of this target's size, which a target
    /// with a larger window may still answer. Recognised by OpenAI's and
    /// Azure's `code: context_length_exceeded` or by the messages OpenAI,
    /// Anthropic and vLLM write (vLLM's body is not OpenAI-shaped and reaches
    /// here as its raw text in the message).
    pub fn is_context_length(&self) -> bool {
        let Self::Status { body, .. } = self else {
            return false;
        };
        if self.kind() != ErrorKind::Client {
            return false;
        }
        let detail = &body.error;
        if detail.code.as_deref() == Some("context_length_exceeded") {
            return true;
        }
        let message = detail.message.to_ascii_lowercase();
        CONTEXT_LENGTH_MESSAGES
            .iter()
            .any(|phrase| message.contains(phrase))
    }

    /// Whether trying the same target again is pointless (its key, access
    /// or model mapping is wrong), though another target may answer.
    pub fn skips_target(&self) -> bool {
        self.kind() == ErrorKind::Misconfigured
    }

    /// The upstream's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The name of the provider that failed.
    pub fn provider(&self) -> &str {
        match self {
            Self::Connect { provider, .. }
            | Self::Status { provider, .. }
            | Self::Transport { provider, .. }
            | Self::Protocol { provider, .. }
            | Self::InBand { provider, .. }
            | Self::Timeout { provider, .. }
            | Self::Truncated { provider }
            | Self::Shutdown { provider } => provider,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> ProviderError {
        ProviderError::Status {
            provider: String::from("p"),
            status,
            body: ErrorBody::new("m", "t", None, None),
            retry_after: None,
        }
    }

    fn refusal(status: u16, message: &str, kind: &str, code: Option<&str>) -> ProviderError {
        ProviderError::Status {
            provider: String::from("p"),
            status,
            body: ErrorBody::new(message, kind, None, code),
            retry_after: None,
        }
    }

    #[test]
    fn context_length_refusals_are_recognised_in_each_published_format() {
        let too_long = [
            // OpenAI and Azure: the code, whatever the message.
            refusal(400, "Input too long.", "invalid_request_error", Some("context_length_exceeded")),
            refusal(
                400,
                "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
                "invalid_request_error",
                None,
            ),
            // Anthropic, as its adapter reshapes it.
            refusal(
                400,
                "prompt is too long: 210000 tokens > 200000 maximum",
                "invalid_request_error",
                Some("invalid_request_error"),
            ),
            // vLLM's bare body, kept as text in the message.
            refusal(
                400,
                r#"upstream status 400: {"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","code":400}"#,
                "invalid_request_error",
                None,
            ),
            refusal(
                400,
                "The decoder prompt (length 5000) is longer than the maximum model length of 4096.",
                "BadRequestError",
                None,
            ),
        ];
        for error in &too_long {
            assert!(error.is_context_length(), "{error}");
            assert!(!error.is_retryable(), "still a client error: {error}");
        }
        let other = [
            refusal(
                400,
                "Invalid value for 'temperature'",
                "invalid_request_error",
                None,
            ),
            // A 5xx that mentions the context is the upstream's failure.
            refusal(
                500,
                "maximum context length lookup failed",
                "server_error",
                None,
            ),
            refusal(429, "prompt is too long", "rate_limit_error", None),
        ];
        for error in &other {
            assert!(!error.is_context_length(), "{error}");
        }
    }

    #[test]
    fn only_client_errors_are_final() {
        for code in [401, 403, 404, 408, 409, 429, 500, 502, 503, 504, 529] {
            assert!(status(code).is_retryable(), "{code}");
        }
        for code in [400, 413, 415, 422] {
            assert!(!status(code).is_retryable(), "{code}");
        }
        for code in [401, 403, 404] {
            assert!(status(code).skips_target(), "{code}: the gateway's side");
        }
        assert!(ProviderError::Truncated {
            provider: String::from("p")
        }
        .is_retryable());
    }
}
