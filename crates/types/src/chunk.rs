//! Classifies one OpenAI `chat.completion.chunk` by reading only the fields the
//! gateway acts on: does it carry a token (the commit point), does it finish
//! the choice, is it an in-band error, what usage does it report.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// What one chunk means to the gateway.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkInfo {
    /// It carries content, a tool-call delta, a refusal or reasoning: the first
    /// such chunk is the commit point. Role-only and empty chunks do not count.
    pub has_token: bool,
    /// A choice has a `finish_reason`: the answer is complete.
    pub finished: bool,
    /// The data line is an `{"error": …}` object sent after a 200.
    pub is_error: bool,
    /// Token usage, when the chunk reports it.
    pub usage: Option<Usage>,
    /// It is the usage chunk: usage and no choices.
    pub usage_only: bool,
}

/// OpenAI token usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u64,
    /// The prompt's breakdown, when the upstream reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`: what of the prompt came from the
/// provider's prompt cache (billed at its `cached_input` price).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the provider's cache (part of `prompt_tokens`).
    #[serde(default)]
    pub cached_tokens: u64,
}

// === impl Usage ===

impl Usage {
    /// Prompt tokens read from the provider's cache, at most `prompt_tokens`.
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .map_or(0, |details| details.cached_tokens)
            .min(self.prompt_tokens)
    }
}

#[derive(Deserialize)]
struct ChunkProbe<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChoiceProbe<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceProbe<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaProbe<'a>>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct DeltaProbe<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    function_call: Option<IgnoredAny>,
}

/// Classifies the JSON of one SSE `data:` line. Text that is not a chunk
/// object is reported as an error chunk, since forwarding it would hand the
/// client something it cannot parse.
pub fn inspect_chunk(data: &str) -> ChunkInfo {
    let Ok(probe) = serde_json::from_str::<ChunkProbe<'_>>(data) else {
        return ChunkInfo {
            is_error: true,
            ..ChunkInfo::default()
        };
    };
    let mut info = ChunkInfo {
        is_error: probe.error.is_some(),
        usage: probe.usage,
        usage_only: probe.usage.is_some() && probe.choices.is_empty(),
        ..ChunkInfo::default()
    };
    for choice in &probe.choices {
        info.finished |= choice.finish_reason.is_some();
        if let Some(delta) = &choice.delta {
            info.has_token |= delta_has_token(delta);
        }
    }
    info
}

fn delta_has_token(delta: &DeltaProbe<'_>) -> bool {
    let non_empty =
        |text: &Option<std::borrow::Cow<'_, str>>| text.as_deref().is_some_and(|t| !t.is_empty());
    non_empty(&delta.content)
        || non_empty(&delta.refusal)
        || non_empty(&delta.reasoning_content)
        || non_empty(&delta.reasoning)
        || delta
            .tool_calls
            .as_ref()
            .is_some_and(|calls| !calls.is_empty())
        || delta.function_call.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_and_empty_chunks_are_not_tokens() {
        let role = inspect_chunk(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        );
        assert_eq!(role, ChunkInfo::default());
    }

    #[test]
    fn content_tool_calls_and_reasoning_are_tokens() {
        for data in [
            r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            r#"{"choices":[{"delta":{"content":"\u00e9"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"thinking"}}]}"#,
        ] {
            assert!(inspect_chunk(data).has_token, "{data}");
        }
    }

    #[test]
    fn finish_usage_and_errors_are_seen() {
        assert!(inspect_chunk(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#).finished);
        let usage = inspect_chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        )
        .usage;
        assert_eq!(usage.map(|u| u.total_tokens), Some(7));
        assert!(inspect_chunk(r#"{"error":{"message":"overloaded"}}"#).is_error);
        assert!(inspect_chunk("not json").is_error);
    }
}
