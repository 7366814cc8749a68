//! Anthropic Messages response types and stream events, in Anthropic's field order.

use serde::Serialize;
use serde_json::Value;

use crate::wire::Null;

/// A `message` object, complete or (in `message_start`) with empty content.
#[derive(Serialize)]
pub(crate) struct MessageObject<'a> {
    pub(crate) id: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) role: &'static str,
    pub(crate) model: &'a str,
    pub(crate) content: &'a [Block<'a>],
    pub(crate) stop_reason: Option<&'static str>,
    pub(crate) stop_sequence: Null,
    pub(crate) usage: Usage,
}

/// A content block.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Block<'a> {
    /// Text.
    Text { text: &'a str },
    /// A tool call with its input object.
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
}

/// A `content_block_delta` payload.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum BlockDelta<'a> {
    /// More text.
    TextDelta { text: &'a str },
    /// A fragment of the tool input's JSON.
    InputJsonDelta { partial_json: &'a str },
}

/// Token usage of a message.
#[derive(Serialize, Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) input_tokens: u64,
    pub(crate) cache_creation_input_tokens: u64,
    pub(crate) cache_read_input_tokens: u64,
    pub(crate) output_tokens: u64,
}

/// `message_delta.delta`.
#[derive(Serialize)]
pub(crate) struct StopDelta {
    pub(crate) stop_reason: &'static str,
    pub(crate) stop_sequence: Null,
}

/// `message_delta.usage`: the cumulative output token count.
#[derive(Serialize)]
pub(crate) struct OutputUsage {
    pub(crate) output_tokens: u64,
}

/// One stream event; its `type` is also the SSE event name.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Event<'a> {
    /// The message with empty content.
    MessageStart { message: MessageObject<'a> },
    /// A content block opens.
    ContentBlockStart {
        index: u32,
        content_block: Block<'a>,
    },
    /// Keep-alive.
    Ping,
    /// More of a content block.
    ContentBlockDelta { index: u32, delta: BlockDelta<'a> },
    /// A content block closes.
    ContentBlockStop { index: u32 },
    /// The stop reason and final usage.
    MessageDelta {
        delta: StopDelta,
        usage: OutputUsage,
    },
    /// The end of the stream.
    MessageStop,
}

// === impl Usage ===

impl Usage {
    /// Usage without cache tokens.
    pub(crate) fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
            output_tokens,
        }
    }
}

// === impl Event ===

impl Event<'_> {
    /// The SSE event name, equal to the JSON `type`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::Ping => "ping",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
        }
    }
}
