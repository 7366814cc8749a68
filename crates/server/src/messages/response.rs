//! The canonical response → an Anthropic `message` JSON body.

use serde::Serialize;
use serde_json::value::RawValue;

use keel_types::canonical::{FinishReason, ResponseRef, TokenUsage};

use crate::json::{push_plain, push_string, push_u64};

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
/// text block, each tool call as a `tool_use` block with its id. Written by
/// hand, byte for byte as serde_json would write the message's fields in
/// this order (the golden fixtures hold it so).
pub(crate) fn message_json(response: &ResponseRef<'_>) -> Vec<u8> {
    let text_len: usize = response.text.iter().map(|text| text.len()).sum();
    let mut out = Vec::with_capacity(320 + text_len);
    out.extend_from_slice(b"{\"id\":");
    push_string(&mut out, &response.id);
    out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    push_string(&mut out, &response.model);
    out.extend_from_slice(b",\"content\":[");
    let mut blocks = 0;
    let mut next_block = |out: &mut Vec<u8>| {
        if blocks > 0 {
            out.push(b',');
        }
        blocks += 1;
    };
    if let Some(reasoning) = &response.reasoning {
        next_block(&mut out);
        out.extend_from_slice(b"{\"type\":\"thinking\",\"thinking\":");
        push_string(&mut out, reasoning);
        out.extend_from_slice(b",\"signature\":\"\"}");
    }
    if !response.text.is_empty() {
        next_block(&mut out);
        out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
        match response.text.as_slice() {
            [one] => push_string(&mut out, one),
            pieces => push_string(&mut out, &pieces.concat()),
        }
        out.push(b'}');
    }
    for call in &response.tool_calls {
        next_block(&mut out);
        out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
        push_string(&mut out, &call.id);
        out.extend_from_slice(b",\"name\":");
        push_string(&mut out, &call.name);
        out.extend_from_slice(b",\"input\":");
        match tool_input(&call.arguments) {
            ToolInput::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            ToolInput::Empty => out.extend_from_slice(b"{}"),
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"stop_reason\":");
    push_plain(&mut out, stop_reason(response.finish));
    out.extend_from_slice(b",\"stop_sequence\":");
    match &response.stop_sequence {
        Some(sequence) => push_string(&mut out, sequence),
        None => out.extend_from_slice(b"null"),
    }
    let usage = UsageOut::from(response.usage);
    out.extend_from_slice(b",\"usage\":{\"input_tokens\":");
    push_u64(&mut out, usage.input_tokens);
    out.extend_from_slice(b",\"cache_creation_input_tokens\":");
    push_u64(&mut out, usage.cache_creation_input_tokens);
    out.extend_from_slice(b",\"cache_read_input_tokens\":");
    push_u64(&mut out, usage.cache_read_input_tokens);
    out.extend_from_slice(b",\"output_tokens\":");
    push_u64(&mut out, usage.output_tokens);
    out.extend_from_slice(b"}}");
    out
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
