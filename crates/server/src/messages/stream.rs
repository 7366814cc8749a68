//! A committed OpenAI chunk stream → Anthropic's SSE event sequence:
//! `message_start`, then per content block `content_block_start`,
//! `content_block_delta`s and `content_block_stop`, then `message_delta`
//! (stop reason and usage) and `message_stop`. A failure after the commit
//! point ends the stream with Anthropic's `event: error`.
//!
//! Each chunk is read with one borrowing parse into canonical deltas and
//! each event written straight into the output buffer.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use keel_router::ProviderError;
use keel_types::canonical::openai::ChunkMeta;
use keel_types::canonical::{Delta, FinishReason, TokenUsage};
use serde::Serialize;

use super::response::{stop_reason, ToolInput, UsageOut};
use crate::error::stream_failure_message;
use crate::translated::EventEncoder;

/// The state of one stream's conversion.
pub(crate) struct EventWriter {
    model: String,
    started: bool,
    open: Option<(u32, Open)>,
    next_index: u32,
    /// OpenAI tool-call index → content block index.
    tools: Vec<(u32, u32)>,
    stop: Option<FinishReason>,
    stop_sequence: Option<String>,
    usage: TokenUsage,
}

/// The kind of the content block that is open.
#[derive(Clone, Copy, PartialEq)]
enum Open {
    Text,
    Thinking,
    Tool(u32),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventOut<'a> {
    MessageStart {
        message: StartMessage<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: BlockStart<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: StopDelta<'a>,
        usage: UsageOut,
    },
    MessageStop,
    Error {
        error: ErrorOut<'a>,
    },
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: UsageOut,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockStart<'a> {
    Text {
        text: &'static str,
    },
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: ToolInput<'static>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum BlockDelta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

// === impl EventWriter ===

impl EventWriter {
    /// A writer for a stream answered by `model` (used until a chunk names it).
    pub(crate) fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            open: None,
            next_index: 0,
            tools: Vec::new(),
            stop: None,
            stop_sequence: None,
            usage: TokenUsage::default(),
        }
    }

    /// `message_start`, once, before anything else.
    fn start(&mut self, meta: Option<&ChunkMeta<'_>>, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let id = meta.map_or(Cow::Borrowed("msg_keel"), |meta| meta.id.clone());
        if let Some(model) = meta
            .map(|meta| &meta.model)
            .filter(|model| !model.is_empty())
        {
            self.model = model.to_string();
        }
        let message = StartMessage {
            id: &id,
            kind: "message",
            role: "assistant",
            model: &self.model,
            content: [],
            stop_reason: None,
            stop_sequence: None,
            usage: UsageOut::from(self.usage),
        };
        write(out, "message_start", &EventOut::MessageStart { message });
    }

    /// A delta for a text or thinking block, opening one when another kind is open.
    fn block_delta(&mut self, kind: Open, delta: BlockDelta<'_>, out: &mut BytesMut) {
        let index = match self.open {
            Some((index, open)) if open == kind => index,
            _ => {
                let content_block = if kind == Open::Thinking {
                    BlockStart::Thinking {
                        thinking: "",
                        signature: "",
                    }
                } else {
                    BlockStart::Text { text: "" }
                };
                self.open_block(kind, content_block, out)
            }
        };
        write(
            out,
            "content_block_delta",
            &EventOut::ContentBlockDelta { index, delta },
        );
    }

    fn tool_start(&mut self, tool: u32, id: &str, name: &str, out: &mut BytesMut) {
        let content_block = BlockStart::ToolUse {
            id,
            name,
            input: ToolInput::Empty,
        };
        let index = self.open_block(Open::Tool(tool), content_block, out);
        self.tools.push((tool, index));
    }

    /// Arguments go to their tool's block, even one already closed (the SDKs
    /// accumulate by index); arguments for a tool never started are dropped.
    fn tool_arguments(&mut self, tool: u32, fragment: &str, out: &mut BytesMut) {
        let Some(&(_, index)) = self.tools.iter().rev().find(|(known, _)| *known == tool) else {
            return;
        };
        write(
            out,
            "content_block_delta",
            &EventOut::ContentBlockDelta {
                index,
                delta: BlockDelta::InputJson {
                    partial_json: fragment,
                },
            },
        );
    }

    fn open_block(&mut self, kind: Open, content_block: BlockStart<'_>, out: &mut BytesMut) -> u32 {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        write(
            out,
            "content_block_start",
            &EventOut::ContentBlockStart {
                index,
                content_block,
            },
        );
        index
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            write(
                out,
                "content_block_stop",
                &EventOut::ContentBlockStop { index },
            );
        }
    }
}

// === impl EventEncoder ===

impl EventEncoder for EventWriter {
    /// Ends a complete stream: the open block, `message_delta`, `message_stop`.
    fn done(&mut self, out: &mut BytesMut) {
        self.start(None, out);
        self.close(out);
        let delta = StopDelta {
            stop_reason: stop_reason(self.stop),
            stop_sequence: self.stop_sequence.as_deref(),
        };
        write(
            out,
            "message_delta",
            &EventOut::MessageDelta {
                delta,
                usage: UsageOut::from(self.usage),
            },
        );
        write(out, "message_stop", &EventOut::MessageStop);
    }

    /// Ends a failed stream with Anthropic's error event.
    fn error(&mut self, error: &ProviderError, out: &mut BytesMut) {
        failure_event(error, out);
    }

    fn text_only(&mut self, text: &str, out: &mut BytesMut) -> bool {
        if self.started {
            self.block_delta(Open::Text, BlockDelta::Text { text }, out);
        }
        self.started
    }

    fn delta(&mut self, meta: &ChunkMeta<'_>, delta: Delta<'_>, out: &mut BytesMut) {
        self.start(Some(meta), out);
        match delta {
            Delta::Role => {}
            Delta::Text(text) => {
                self.block_delta(Open::Text, BlockDelta::Text { text: &text }, out)
            }
            Delta::Reasoning(text) => self.block_delta(
                Open::Thinking,
                BlockDelta::Thinking { thinking: &text },
                out,
            ),
            Delta::ToolCallStart { index, id, name } => self.tool_start(index, &id, &name, out),
            Delta::ToolCallArguments { index, fragment } => {
                self.tool_arguments(index, &fragment, out)
            }
            Delta::Finish {
                reason,
                stop_sequence,
            } => {
                self.stop = Some(reason);
                self.stop_sequence = stop_sequence.map(Cow::into_owned);
                self.close(out);
            }
            Delta::Usage(usage) => self.usage = usage,
        }
    }
}

/// Anthropic's `event: error` ending a stream that failed after it started
/// (the translated one's, and one passed through).
pub(crate) fn failure_event(error: &ProviderError, out: &mut BytesMut) {
    let message = stream_failure_message(error);
    let kind = match error {
        ProviderError::InBand { body, .. }
            if body.error.code.as_deref() == Some("overloaded_error") =>
        {
            "overloaded_error"
        }
        ProviderError::Timeout { .. } => "timeout_error",
        _ => "api_error",
    };
    write(
        out,
        "error",
        &EventOut::Error {
            error: ErrorOut {
                kind,
                message: &message,
            },
        },
    );
}

/// Writes one named SSE event.
/// Anthropic's `event: error` for a stream whose routing failed after its
/// headers (and keep-alive comments) were sent.
pub(crate) fn in_band_error(body: &keel_types::ErrorBody) -> bytes::Bytes {
    let kind = match body.error.kind.as_str() {
        "invalid_request_error" => "invalid_request_error",
        "rate_limit_error" => "rate_limit_error",
        "timeout" => "timeout_error",
        _ => "api_error",
    };
    let mut out = BytesMut::new();
    let error = ErrorOut {
        kind,
        message: &body.error.message,
    };
    write(&mut out, "error", &EventOut::Error { error });
    out.freeze()
}

fn write(out: &mut BytesMut, name: &str, event: &EventOut<'_>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serialising these types into a buffer cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), event);
    out.extend_from_slice(b"\n\n");
}
