//! The canonical response → an Anthropic `message` JSON body.

use serde::Serialize;
use serde_json::value::RawValue;

use keel_types::canonical::{FinishReason, Response, TokenUsage};

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<BlockOut<'a>>,
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
    usage: UsageOut,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'static str,
    },
    Text {
        text: String,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: ToolInput<'a>,
    },
}

/// Anthropic usage: `input_tokens` excludes the cached counts.
#[derive(Serialize)]
pub(crate) struct UsageOut {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

/// Writes `response` as an Anthropic `message`: reasoning as a thinking
/// block (with no signature: no Anthropic model signed it), the text as one
/// text block, each tool call as a `tool_use` block with its id.
pub(crate) fn message_json(response: &Response) -> Vec<u8> {
    let mut content = Vec::with_capacity(response.tool_calls.len() + 2);
    if let Some(reasoning) = &response.reasoning {
        content.push(BlockOut::Thinking {
            thinking: reasoning,
            signature: "",
        });
    }
    if !response.text.is_empty() {
        content.push(BlockOut::Text {
            text: response.text.concat(),
        });
    }
    for call in &response.tool_calls {
        content.push(BlockOut::ToolUse {
            id: &call.id,
            name: &call.name,
            input: tool_input(&call.arguments),
        });
    }
    let message = MessageOut {
        id: &response.id,
        kind: "message",
        role: "assistant",
        model: &response.model,
        content,
        stop_reason: stop_reason(response.finish),
        stop_sequence: response.stop_sequence.as_deref(),
        usage: UsageOut::from(response.usage),
    };
    // Serialising these types into a Vec cannot fail.
    serde_json::to_vec(&message).unwrap_or_default()
}

/// Anthropic's stop reason; an answer without one ended naturally.
pub(crate) fn stop_reason(finish: Option<FinishReason>) -> &'static str {
    finish.map_or("end_turn", FinishReason::anthropic)
}

/// A tool call's `input`: the arguments verbatim, or `{}`.
#[derive(Clone, Copy)]
pub(crate) enum ToolInput<'a> {
    /// A JSON object, as the upstream wrote it.
    Raw(&'a RawValue),
    /// Arguments that were empty or not a JSON object (an upstream cut off
    /// by its token limit).
    Empty,
}

/// Tool arguments as Anthropic's `input` object.
pub(crate) fn tool_input(arguments: &str) -> ToolInput<'_> {
    match serde_json::from_str::<&RawValue>(arguments) {
        Ok(raw) if raw.get().trim_start().starts_with('{') => ToolInput::Raw(raw),
        _ => ToolInput::Empty,
    }
}

// === impl ToolInput ===

impl Serialize for ToolInput<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Raw(raw) => raw.serialize(serializer),
            Self::Empty => serde::ser::SerializeMap::end(serializer.serialize_map(Some(0))?),
        }
    }
}

// === impl UsageOut ===

impl From<TokenUsage> for UsageOut {
    fn from(usage: TokenUsage) -> Self {
        Self {
            input_tokens: usage.input,
            cache_creation_input_tokens: usage.cache_creation,
            cache_read_input_tokens: usage.cache_read,
            output_tokens: usage.output,
        }
    }
}
