//! One Anthropic reply, rendered as a `message` or as an event stream.

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::wire::{Block, BlockDelta, Event, MessageObject, OutputUsage, StopDelta, Usage};
use crate::errors::Api;
use crate::reply::ToolCall;
use crate::stream::SseScript;
use crate::wire::{frame, named_event, to_json, Null};

/// What the assistant says: text deltas or one tool call.
#[derive(Debug)]
pub(crate) enum Content {
    /// Text, one word per chunk.
    Text(Vec<String>),
    /// One tool call, its input JSON split into fragments.
    Tool(ToolCall),
}

/// Everything needed to render one reply either way.
#[derive(Debug)]
pub(crate) struct MessageReply {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) content: Content,
    pub(crate) stop_reason: &'static str,
    pub(crate) input_tokens: u64,
}

// === impl MessageReply ===

impl MessageReply {
    /// The `message` JSON; its content equals the stream's deltas joined.
    pub(crate) fn message_json(&self) -> Bytes {
        let text;
        let block = match &self.content {
            Content::Text(chunks) => {
                text = chunks.concat();
                Block::Text { text: &text }
            }
            Content::Tool(call) => Block::ToolUse {
                id: &call.id,
                name: &call.name,
                input: &call.input,
            },
        };
        let blocks = [block];
        let message = self.message(&blocks, Some(self.stop_reason), self.output_tokens());
        Bytes::from(to_json(&message))
    }

    fn message<'a>(
        &'a self,
        content: &'a [Block<'a>],
        stop_reason: Option<&'static str>,
        output: u64,
    ) -> MessageObject<'a> {
        MessageObject {
            id: &self.id,
            kind: "message",
            role: "assistant",
            model: &self.model,
            content,
            stop_reason,
            stop_sequence: Null,
            usage: Usage::new(self.input_tokens, output),
        }
    }

    fn output_tokens(&self) -> u64 {
        u64::from(self.content_len())
    }
}

fn event(event: &Event<'_>) -> Bytes {
    named_event(event.name(), event)
}

impl SseScript for MessageReply {
    fn head(&mut self) -> Vec<Bytes> {
        let empty_input = Value::Object(Map::new());
        let content_block = match &self.content {
            Content::Text(_) => Block::Text { text: "" },
            Content::Tool(call) => Block::ToolUse {
                id: &call.id,
                name: &call.name,
                input: &empty_input,
            },
        };
        // `message_start` reports the input tokens and a placeholder output count of 1.
        let message = self.message(&[], None, 1);
        vec![
            event(&Event::MessageStart { message }),
            event(&Event::ContentBlockStart {
                index: 0,
                content_block,
            }),
            event(&Event::Ping),
        ]
    }

    fn content_len(&self) -> u32 {
        let len = match &self.content {
            Content::Text(chunks) => chunks.len(),
            Content::Tool(call) => call.fragments.len(),
        };
        u32::try_from(len).unwrap_or(u32::MAX)
    }

    fn content(&mut self, index: u32) -> Bytes {
        let index = index as usize;
        let delta = match &self.content {
            Content::Text(chunks) => BlockDelta::TextDelta {
                text: chunks.get(index).map_or("", String::as_str),
            },
            Content::Tool(call) => BlockDelta::InputJsonDelta {
                partial_json: call.fragments.get(index).map_or("", String::as_str),
            },
        };
        event(&Event::ContentBlockDelta { index: 0, delta })
    }

    fn tail(&mut self) -> Vec<Bytes> {
        let delta = StopDelta {
            stop_reason: self.stop_reason,
            stop_sequence: Null,
        };
        let usage = OutputUsage {
            output_tokens: self.output_tokens(),
        };
        vec![
            event(&Event::ContentBlockStop { index: 0 }),
            event(&Event::MessageDelta { delta, usage }),
            event(&Event::MessageStop),
        ]
    }

    fn error_event(&mut self) -> Bytes {
        // Anthropic's usual mid-stream failure is an overloaded error.
        let status = StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let json = Api::Anthropic.error_json(status, "Overloaded");
        frame(Some("error"), &json)
    }
}
