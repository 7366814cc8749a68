//! Anthropic `message` JSON and error bodies → the canonical response and
//! OpenAI-shape errors.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use keel_types::canonical::{FinishReason, Response, TokenUsage, ToolCall};
use keel_types::ErrorBody;

use crate::ProviderError;

#[derive(Deserialize)]
struct MessageIn {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<BlockIn>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    stop_sequence: Option<String>,
    #[serde(default)]
    usage: Option<UsageIn>,
}

#[derive(Deserialize)]
struct BlockIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Box<RawValue>>,
}

/// Anthropic usage; every count is optional because `message_delta`
/// reports only what changed.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct UsageIn {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

/// `{"type":"error","error":{"type","message"}}`, in a body or an SSE event.
#[derive(Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub(crate) error: ErrorIn,
}

/// The inner Anthropic error.
#[derive(Deserialize)]
pub(crate) struct ErrorIn {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// Reads a non-stream `message` into the canonical response.
pub(crate) fn read_message(body: &[u8]) -> Result<Response, serde_json::Error> {
    let message: MessageIn = serde_json::from_slice(body)?;
    let mut response = Response {
        id: message.id,
        model: message.model,
        finish: message.stop_reason.as_deref().map(finish_reason),
        stop_sequence: message.stop_sequence,
        ..Response::default()
    };
    if let Some(usage) = message.usage {
        usage.apply(&mut response.usage);
    }
    let mut reasoning = String::new();
    for block in message.content {
        match block {
            BlockIn {
                kind,
                text: Some(text),
                ..
            } if kind == "text" => response.text.push(text),
            BlockIn {
                kind,
                thinking: Some(thinking),
                ..
            } if kind == "thinking" => reasoning.push_str(&thinking),
            BlockIn {
                kind,
                id: Some(id),
                name: Some(name),
                input,
                ..
            } if kind == "tool_use" => {
                let arguments =
                    input.map_or_else(|| String::from("{}"), |raw| raw.get().to_owned());
                response.tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments,
                });
            }
            // Redacted thinking, server tool blocks and block types added
            // later have no OpenAI counterpart.
            _ => {}
        }
    }
    response.reasoning = (!reasoning.is_empty()).then_some(reasoning);
    Ok(response)
}

/// Anthropic's stop reason; one this build does not know reads as a natural end.
pub(crate) fn finish_reason(reason: &str) -> FinishReason {
    FinishReason::from_anthropic(reason).unwrap_or(FinishReason::Stop)
}

/// Classifies a non-success response. Anthropic's error body becomes an
/// OpenAI-shape body whose `code` keeps Anthropic's error type.
pub(crate) fn error_from_status(
    provider: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ProviderError {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) => ProviderError::Status {
            provider: provider.to_owned(),
            status,
            body: envelope.error.openai(),
            retry_after,
        },
        Err(_) => crate::openai::error_from_status(provider, status, body, retry_after),
    }
}

/// An SSE `error` event: an in-band failure (retryable before the first token).
pub(crate) fn in_band_error(provider: &str, data: &str) -> ProviderError {
    let body = match serde_json::from_str::<ErrorEnvelope>(data) {
        Ok(envelope) => envelope.error.openai(),
        Err(_) => ErrorBody::new(
            "the upstream reported an error in the stream",
            "server_error",
            None,
            None,
        ),
    };
    ProviderError::InBand {
        provider: provider.to_owned(),
        body,
    }
}

// === impl ErrorIn ===

impl ErrorIn {
    /// The error in OpenAI's shape: the class in `type`, Anthropic's type in `code`.
    pub(crate) fn openai(self) -> ErrorBody {
        let kind = match self.kind.as_str() {
            "rate_limit_error" => "rate_limit_error",
            "api_error" | "overloaded_error" | "timeout_error" => "server_error",
            _ => "invalid_request_error",
        };
        let code = (!self.kind.is_empty()).then_some(self.kind.as_str());
        ErrorBody::new(self.message, kind, None, code)
    }
}

// === impl UsageIn ===

impl UsageIn {
    /// Overwrites the counts this report has: Anthropic's counts are
    /// cumulative, and `message_delta` omits the ones that did not change.
    pub(crate) fn apply(self, usage: &mut TokenUsage) {
        let counts = [
            (self.input_tokens, &mut usage.input),
            (self.output_tokens, &mut usage.output),
            (self.cache_read_input_tokens, &mut usage.cache_read),
            (self.cache_creation_input_tokens, &mut usage.cache_creation),
        ];
        for (reported, count) in counts {
            if let Some(reported) = reported {
                *count = reported;
            }
        }
    }
}
