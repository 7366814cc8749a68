//! The canonical answer: a whole response, its token usage and finish
//! reason, and the deltas a streamed answer is made of.

use std::borrow::Cow;

use crate::canonical::ToolCall;
use crate::Usage;

/// A whole, non-stream answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    /// The upstream's response id, kept for the client.
    pub id: String,
    /// The upstream model that answered.
    pub model: String,
    /// The text, in order (several blocks are joined for formats with one).
    pub text: Vec<String>,
    /// Reasoning the model showed (Anthropic thinking, OpenAI-compatible
    /// `reasoning_content`).
    pub reasoning: Option<String>,
    /// Tool calls, in order, ids kept.
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped.
    pub finish: Option<FinishReason>,
    /// The stop sequence that ended it, when the upstream says.
    pub stop_sequence: Option<String>,
    /// Token usage.
    pub usage: TokenUsage,
}

/// A whole answer read borrowing from the completion it came in: a
/// [`Response`] whose text is copied only where the completion escaped it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResponseRef<'a> {
    /// The upstream's response id.
    pub id: Cow<'a, str>,
    /// The upstream model that answered.
    pub model: Cow<'a, str>,
    /// The text, in order.
    pub text: Vec<Cow<'a, str>>,
    /// Reasoning the model showed.
    pub reasoning: Option<Cow<'a, str>>,
    /// Tool calls, in order, ids kept.
    pub tool_calls: Vec<ToolCallRef<'a>>,
    /// Why generation stopped.
    pub finish: Option<FinishReason>,
    /// The stop sequence that ended it, when the upstream says.
    pub stop_sequence: Option<Cow<'a, str>>,
    /// Token usage.
    pub usage: TokenUsage,
}

/// A [`ToolCall`] borrowing its text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolCallRef<'a> {
    /// The call id.
    pub id: Cow<'a, str>,
    /// The function name.
    pub name: Cow<'a, str>,
    /// The arguments, as JSON text.
    pub arguments: Cow<'a, str>,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end (OpenAI `stop`, Anthropic `end_turn`).
    Stop,
    /// A stop sequence matched (OpenAI `stop`, Anthropic `stop_sequence`).
    StopSequence,
    /// The token limit (OpenAI `length`, Anthropic `max_tokens`).
    Length,
    /// The model called tools (OpenAI `tool_calls`, Anthropic `tool_use`).
    ToolCalls,
    /// Withheld by a filter (OpenAI `content_filter`, Anthropic `refusal`).
    ContentFilter,
}

/// Token usage in the finest form any provider reports. `input` excludes
/// cached tokens, as Anthropic counts; OpenAI's `prompt_tokens` is the sum
/// of the three input counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Input tokens neither read from nor written to a cache.
    pub input: u64,
    /// Generated tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation: u64,
}

/// One step of a streamed answer. Text borrows from the upstream event it
/// was read from, so converting a stream builds no JSON tree per event.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta<'a> {
    /// The assistant's turn opens (no content yet).
    Role,
    /// More text.
    Text(Cow<'a, str>),
    /// More reasoning.
    Reasoning(Cow<'a, str>),
    /// A tool call opens; `index` counts tool calls from 0.
    ToolCallStart {
        /// The tool call's position among this answer's tool calls.
        index: u32,
        /// The call id.
        id: Cow<'a, str>,
        /// The function name.
        name: Cow<'a, str>,
    },
    /// More of a tool call's arguments JSON.
    ToolCallArguments {
        /// The tool call's position among this answer's tool calls.
        index: u32,
        /// The next fragment of the arguments text.
        fragment: Cow<'a, str>,
    },
    /// Generation stopped, by a stop sequence when it is named.
    Finish {
        /// Why.
        reason: FinishReason,
        /// The stop sequence that matched, when the upstream says.
        stop_sequence: Option<Cow<'a, str>>,
    },
    /// The answer's token usage.
    Usage(TokenUsage),
}

// === impl ResponseRef ===

impl ResponseRef<'_> {
    /// The answer with its text copied.
    pub fn into_owned(self) -> Response {
        Response {
            id: self.id.into_owned(),
            model: self.model.into_owned(),
            text: self.text.into_iter().map(Cow::into_owned).collect(),
            reasoning: self.reasoning.map(Cow::into_owned),
            tool_calls: self
                .tool_calls
                .into_iter()
                .map(ToolCallRef::into_owned)
                .collect(),
            finish: self.finish,
            stop_sequence: self.stop_sequence.map(Cow::into_owned),
            usage: self.usage,
        }
    }
}

// === impl ToolCallRef ===

impl ToolCallRef<'_> {
    /// The call with its text copied.
    pub fn into_owned(self) -> ToolCall {
        ToolCall {
            id: self.id.into_owned(),
            name: self.name.into_owned(),
            arguments: self.arguments.into_owned(),
        }
    }
}

// === impl FinishReason ===

impl FinishReason {
    /// OpenAI's `finish_reason`.
    pub fn openai(self) -> &'static str {
        match self {
            Self::Stop | Self::StopSequence => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
        }
    }

    /// Reads OpenAI's `finish_reason` (`function_call` is the legacy tool call).
    pub fn from_openai(reason: &str) -> Option<Self> {
        match reason {
            "stop" => Some(Self::Stop),
            "length" => Some(Self::Length),
            "tool_calls" | "function_call" => Some(Self::ToolCalls),
            "content_filter" => Some(Self::ContentFilter),
            _ => None,
        }
    }

    /// Anthropic's `stop_reason`.
    pub fn anthropic(self) -> &'static str {
        match self {
            Self::Stop => "end_turn",
            Self::StopSequence => "stop_sequence",
            Self::Length => "max_tokens",
            Self::ToolCalls => "tool_use",
            Self::ContentFilter => "refusal",
        }
    }

    /// Reads Anthropic's `stop_reason`. `pause_turn` (a server tool paused
    /// the turn) reads as a natural end, `model_context_window_exceeded` as
    /// the token limit.
    pub fn from_anthropic(reason: &str) -> Option<Self> {
        match reason {
            "end_turn" | "pause_turn" => Some(Self::Stop),
            "stop_sequence" => Some(Self::StopSequence),
            "max_tokens" | "model_context_window_exceeded" => Some(Self::Length),
            "tool_use" => Some(Self::ToolCalls),
            "refusal" => Some(Self::ContentFilter),
            _ => None,
        }
    }
}

// === impl TokenUsage ===

impl TokenUsage {
    /// Every input token, cached or not (OpenAI's `prompt_tokens`).
    pub fn prompt_total(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_creation)
    }

    /// The usage in OpenAI's three counts, for the router and metering.
    pub fn openai(&self) -> Usage {
        let prompt_tokens = self.prompt_total();
        Usage {
            prompt_tokens,
            completion_tokens: self.output,
            total_tokens: prompt_tokens.saturating_add(self.output),
            prompt_tokens_details: (self.cache_read > 0).then_some(crate::PromptTokensDetails {
                cached_tokens: self.cache_read,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_map_both_ways() {
        for reason in [
            FinishReason::Stop,
            FinishReason::StopSequence,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::ContentFilter,
        ] {
            assert_eq!(
                FinishReason::from_anthropic(reason.anthropic()),
                Some(reason)
            );
        }
        assert_eq!(
            FinishReason::from_openai(FinishReason::StopSequence.openai()),
            Some(FinishReason::Stop)
        );
        assert_eq!(
            FinishReason::from_anthropic("pause_turn").map(FinishReason::openai),
            Some("stop")
        );
        assert_eq!(FinishReason::from_anthropic("something_new"), None);
    }

    #[test]
    fn prompt_tokens_include_cached_ones() {
        let usage = TokenUsage {
            input: 10,
            output: 5,
            cache_read: 100,
            cache_creation: 20,
        };
        assert_eq!(
            usage.openai(),
            Usage {
                prompt_tokens: 130,
                completion_tokens: 5,
                total_tokens: 135,
                prompt_tokens_details: Some(crate::PromptTokensDetails { cached_tokens: 100 }),
            }
        );
    }
}
