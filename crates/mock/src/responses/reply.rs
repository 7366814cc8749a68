//! One Responses API reply, rendered as a `response` object or as an event stream.

use std::cell::Cell;

use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::wire::{
    EmptyObject, Event, IncompleteDetails, OutputItem, OutputText, Reasoning, ResponseError,
    ResponseObject, Sequenced, TextConfig, TextFormat, Usage,
};
use crate::errors::Api;
use crate::reply::ToolCall;
use crate::stream::SseScript;
use crate::wire::{named_event, to_json, Null};

/// The only output item; every event names it by index 0.
const OUTPUT_INDEX: u32 = 0;

/// The only content part of the message item.
const CONTENT_INDEX: u32 = 0;

/// What the assistant says: text deltas or one function call.
#[derive(Debug)]
pub(crate) enum Content {
    /// Text, one word per chunk.
    Text(Vec<String>),
    /// One function call, its arguments split into fragments.
    Tool(ToolCall),
}

/// The request fields a `response` object echoes back.
#[derive(Debug)]
pub(crate) struct Echo {
    pub(crate) instructions: Option<String>,
    pub(crate) max_output_tokens: Option<u64>,
    pub(crate) tool_choice: Value,
    pub(crate) tools: Vec<Value>,
}

/// Everything needed to render one reply either way.
#[derive(Debug)]
pub(crate) struct ResponsesReply {
    pub(crate) id: String,
    pub(crate) created_at: u64,
    pub(crate) model: String,
    pub(crate) echo: Echo,
    /// The output item's id (`msg_...` or `fc_...`).
    pub(crate) item_id: String,
    pub(crate) content: Content,
    /// The whole text or arguments: the content chunks joined.
    pub(crate) full: String,
    /// Cut short by `max_output_tokens`.
    pub(crate) incomplete: bool,
    pub(crate) input_tokens: u64,
    /// The next event's `sequence_number`; a `Cell` so events can borrow the reply.
    pub(crate) next_sequence: Cell<u64>,
}

/// How far the output item has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Just added: no text, no arguments yet.
    Started,
    /// All content present.
    Finished,
}

// === impl Content ===

impl Content {
    /// The whole text, or the whole arguments string.
    pub(crate) fn joined(&self) -> String {
        match self {
            Content::Text(chunks) => chunks.concat(),
            Content::Tool(call) => call.arguments(),
        }
    }
}

// === impl ResponsesReply ===

impl ResponsesReply {
    /// The finished `response` JSON; its content equals the stream's deltas joined.
    pub(crate) fn response_json(&self) -> Bytes {
        Bytes::from(to_json(&self.finished_response()))
    }

    /// `completed`, or `incomplete` when cut by `max_output_tokens`.
    fn final_status(&self) -> &'static str {
        if self.incomplete {
            "incomplete"
        } else {
            "completed"
        }
    }

    fn finished_response(&self) -> ResponseObject<'_> {
        let mut response = self.response("in_progress");
        response.status = self.final_status();
        response.incomplete_details = self.incomplete.then_some(IncompleteDetails {
            reason: "max_output_tokens",
        });
        response.output = vec![self.item(Progress::Finished)];
        response.usage = Some(Usage::new(self.input_tokens, u64::from(self.content_len())));
        response
    }

    /// The response as first announced: `status`, no output, no usage.
    fn response(&self, status: &'static str) -> ResponseObject<'_> {
        ResponseObject {
            id: &self.id,
            object: "response",
            created_at: self.created_at,
            status,
            error: None,
            incomplete_details: None,
            instructions: self.echo.instructions.as_deref(),
            max_output_tokens: self.echo.max_output_tokens,
            model: &self.model,
            output: Vec::new(),
            parallel_tool_calls: true,
            previous_response_id: Null,
            reasoning: Reasoning {
                effort: Null,
                summary: Null,
            },
            store: true,
            temperature: 1.0,
            text: TextConfig {
                format: TextFormat { kind: "text" },
            },
            tool_choice: &self.echo.tool_choice,
            tools: &self.echo.tools,
            top_p: 1.0,
            truncation: "disabled",
            usage: None,
            user: Null,
            metadata: EmptyObject::default(),
        }
    }

    /// The output item, empty while `Started`, whole when `Finished`.
    fn item(&self, progress: Progress) -> OutputItem<'_> {
        let started = progress == Progress::Started;
        let status = if started {
            "in_progress"
        } else {
            self.final_status()
        };
        match &self.content {
            Content::Text(_) => OutputItem::Message {
                id: &self.item_id,
                status,
                role: "assistant",
                content: if started {
                    Vec::new()
                } else {
                    vec![text_part(&self.full)]
                },
            },
            Content::Tool(call) => OutputItem::FunctionCall {
                id: &self.item_id,
                call_id: &call.id,
                name: &call.name,
                arguments: if started { "" } else { &self.full },
                status,
            },
        }
    }

    /// Frames `event` with the next sequence number.
    fn emit(&self, event: &Event<'_>) -> Bytes {
        let sequence_number = self.next_sequence.get();
        self.next_sequence.set(sequence_number + 1);
        named_event(
            event.name(),
            &Sequenced {
                event,
                sequence_number,
            },
        )
    }

    /// The events that close the text part and the message item.
    fn text_tail(&self) -> Vec<Bytes> {
        let part = text_part(&self.full);
        vec![
            self.emit(&Event::OutputTextDone {
                item_id: &self.item_id,
                output_index: OUTPUT_INDEX,
                content_index: CONTENT_INDEX,
                text: &self.full,
                logprobs: [],
            }),
            self.emit(&Event::ContentPartDone {
                item_id: &self.item_id,
                output_index: OUTPUT_INDEX,
                content_index: CONTENT_INDEX,
                part,
            }),
        ]
    }

    /// The event that closes the function call's arguments.
    fn tool_tail(&self, call: &ToolCall) -> Bytes {
        self.emit(&Event::FunctionCallArgumentsDone {
            item_id: &self.item_id,
            output_index: OUTPUT_INDEX,
            name: &call.name,
            arguments: &self.full,
        })
    }
}

impl SseScript for ResponsesReply {
    fn head(&mut self) -> Vec<Bytes> {
        let mut events = vec![
            self.emit(&Event::Created {
                response: self.response("in_progress"),
            }),
            self.emit(&Event::InProgress {
                response: self.response("in_progress"),
            }),
            self.emit(&Event::OutputItemAdded {
                output_index: OUTPUT_INDEX,
                item: self.item(Progress::Started),
            }),
        ];
        if let Content::Text(_) = self.content {
            events.push(self.emit(&Event::ContentPartAdded {
                item_id: &self.item_id,
                output_index: OUTPUT_INDEX,
                content_index: CONTENT_INDEX,
                part: text_part(""),
            }));
        }
        events
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
        let event = match &self.content {
            Content::Text(chunks) => Event::OutputTextDelta {
                item_id: &self.item_id,
                output_index: OUTPUT_INDEX,
                content_index: CONTENT_INDEX,
                delta: chunks.get(index).map_or("", String::as_str),
                logprobs: [],
            },
            Content::Tool(call) => Event::FunctionCallArgumentsDelta {
                item_id: &self.item_id,
                output_index: OUTPUT_INDEX,
                delta: call.fragments.get(index).map_or("", String::as_str),
            },
        };
        self.emit(&event)
    }

    fn tail(&mut self) -> Vec<Bytes> {
        let mut events = match &self.content {
            Content::Text(_) => self.text_tail(),
            Content::Tool(call) => vec![self.tool_tail(call)],
        };
        events.push(self.emit(&Event::OutputItemDone {
            output_index: OUTPUT_INDEX,
            item: self.item(Progress::Finished),
        }));
        let response = self.finished_response();
        events.push(self.emit(&if self.incomplete {
            Event::Incomplete { response }
        } else {
            Event::Completed { response }
        }));
        events
    }

    /// OpenAI's mid-stream failure: an `error` event, then `response.failed`.
    ///
    /// Both go out in one write, so the stream ends with its terminal event.
    fn error_event(&mut self) -> Bytes {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        let message = Api::OpenAi.injected_message(status);
        let code = "server_error";
        let mut response = self.response("failed");
        response.error = Some(ResponseError {
            code,
            message: &message,
        });
        let error = self.emit(&Event::Error {
            code,
            message: &message,
            param: Null,
        });
        let failed = self.emit(&Event::Failed { response });
        let mut both = BytesMut::with_capacity(error.len() + failed.len());
        both.extend_from_slice(&error);
        both.extend_from_slice(&failed);
        both.freeze()
    }
}

/// An `output_text` part holding `text`.
fn text_part(text: &str) -> OutputText<'_> {
    OutputText {
        kind: "output_text",
        text,
        annotations: [],
    }
}
