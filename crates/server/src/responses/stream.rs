//! A committed OpenAI chunk stream → the Responses API's typed events, each
//! with its `sequence_number`: `response.created`, `response.in_progress`;
//! per output item `response.output_item.added`, then for a message
//! `response.content_part.added`, `response.output_text.delta`s,
//! `response.output_text.done`, `response.content_part.done`, and for a
//! function call `response.function_call_arguments.delta`s and `.done`;
//! `response.output_item.done`; and exactly one terminal event:
//! `response.completed`, `response.incomplete` (cut by `max_output_tokens`
//! or a content filter) or `response.failed` (the stream failed after it
//! started). Text goes into one message item; a tool call starting closes
//! it. Tool calls stay open until the answer finishes, so arguments that
//! arrive late still reach their item.

use bytes::{BufMut, BytesMut};
use keel_router::ProviderError;
use keel_types::canonical::openai::ChunkMeta;
use keel_types::canonical::{Delta, FinishReason, TokenUsage, ToolCall};
use keel_types::Usage;

use super::response::{
    finished, function_call_item, message_item, new_id, output_text, Echo, ItemOut, Status, TextOut,
};
use crate::error::stream_failure_message;
use crate::json::{push_plain, push_string, push_u64};
use crate::translated::EventEncoder;

/// The state of one stream's conversion.
pub(crate) struct EventWriter {
    echo: Echo,
    model: String,
    sequence: u64,
    started: bool,
    /// Output items in order; `open` says which is still being written.
    items: Vec<Item>,
    /// The index in `items` of the message item being written, if any.
    open_message: Option<usize>,
    finish: Option<FinishReason>,
    usage: Option<TokenUsage>,
}

enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        index: u32,
        call: ToolCall,
        open: bool,
    },
}

/// One event, written by hand as serde_json would write it with its name
/// as the `type` tag (see `response.rs`).
enum EventOut<'a> {
    Created {
        sequence_number: u64,
        response: &'a [u8],
    },
    InProgress {
        sequence_number: u64,
        response: &'a [u8],
    },
    ItemAdded {
        sequence_number: u64,
        output_index: usize,
        item: ItemOut<'a>,
    },
    PartAdded {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        part: TextOut<'a>,
    },
    TextDelta {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        delta: &'a str,
    },
    TextDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        text: &'a str,
    },
    PartDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        content_index: u32,
        part: TextOut<'a>,
    },
    ArgumentsDelta {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        delta: &'a str,
    },
    ArgumentsDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: usize,
        name: &'a str,
        arguments: &'a str,
    },
    ItemDone {
        sequence_number: u64,
        output_index: usize,
        item: ItemOut<'a>,
    },
    Completed {
        sequence_number: u64,
        response: &'a [u8],
    },
    Incomplete {
        sequence_number: u64,
        response: &'a [u8],
    },
    Failed {
        sequence_number: u64,
        response: &'a [u8],
    },
}

// === impl EventWriter ===

impl EventWriter {
    /// A writer for a stream answered by `model` (used until a chunk names it).
    pub(crate) fn new(echo: Echo, model: &str) -> Self {
        Self {
            echo,
            model: model.to_owned(),
            sequence: 0,
            started: false,
            items: Vec::new(),
            open_message: None,
            finish: None,
            usage: None,
        }
    }

    /// `response.created` and `response.in_progress`, once, before anything else.
    fn start(&mut self, meta: Option<&ChunkMeta<'_>>, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(model) = meta
            .map(|meta| &meta.model)
            .filter(|model| !model.is_empty())
        {
            self.model = model.to_string();
        }
        let response = self.object(Status::InProgress, None);
        let sequence_number = self.next();
        write(
            out,
            &EventOut::Created {
                sequence_number,
                response: &response,
            },
        );
        let sequence_number = self.next();
        write(
            out,
            &EventOut::InProgress {
                sequence_number,
                response: &response,
            },
        );
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        let index = match self.open_message {
            Some(index) => index,
            None => self.open_message_item(out),
        };
        let sequence_number = self.next();
        let Some(Item::Message { id, text: written }) = self.items.get_mut(index) else {
            return;
        };
        written.push_str(text);
        let event = EventOut::TextDelta {
            sequence_number,
            item_id: id,
            output_index: index,
            content_index: 0,
            delta: text,
        };
        write(out, &event);
    }

    fn open_message_item(&mut self, out: &mut BytesMut) -> usize {
        let index = self.items.len();
        let id = new_id("msg_");
        let sequence_number = self.next();
        write(
            out,
            &EventOut::ItemAdded {
                sequence_number,
                output_index: index,
                item: message_item(&id, "", "in_progress"),
            },
        );
        let sequence_number = self.next();
        write(
            out,
            &EventOut::PartAdded {
                sequence_number,
                item_id: &id,
                output_index: index,
                content_index: 0,
                part: output_text(""),
            },
        );
        self.items.push(Item::Message {
            id,
            text: String::new(),
        });
        self.open_message = Some(index);
        index
    }

    fn close_message(&mut self, out: &mut BytesMut) {
        let Some(index) = self.open_message.take() else {
            return;
        };
        let sequences = [self.next(), self.next(), self.next()];
        let Some(Item::Message { id, text }) = self.items.get(index) else {
            return;
        };
        let (item_id, output_index) = (id.as_str(), index);
        write(
            out,
            &EventOut::TextDone {
                sequence_number: sequences[0],
                item_id,
                output_index,
                content_index: 0,
                text,
            },
        );
        write(
            out,
            &EventOut::PartDone {
                sequence_number: sequences[1],
                item_id,
                output_index,
                content_index: 0,
                part: output_text(text),
            },
        );
        write(
            out,
            &EventOut::ItemDone {
                sequence_number: sequences[2],
                output_index,
                item: message_item(item_id, text, "completed"),
            },
        );
    }

    fn call_start(&mut self, index: u32, call_id: &str, name: &str, out: &mut BytesMut) {
        self.close_message(out);
        let output_index = self.items.len();
        let call = ToolCall {
            id: call_id.to_owned(),
            name: name.to_owned(),
            arguments: String::new(),
        };
        let id = new_id("fc_");
        let sequence_number = self.next();
        write(
            out,
            &EventOut::ItemAdded {
                sequence_number,
                output_index,
                item: call_item(&id, &call, "in_progress"),
            },
        );
        self.items.push(Item::Call {
            id,
            index,
            call,
            open: true,
        });
    }

    /// Arguments go to their call's item; arguments for a call never
    /// started are dropped (there is no item to put them in).
    fn arguments(&mut self, index: u32, fragment: &str, out: &mut BytesMut) {
        let sequence_number = self.sequence;
        let found =
            self.items
                .iter_mut()
                .enumerate()
                .rev()
                .find_map(|(position, item)| match item {
                    Item::Call {
                        id,
                        index: known,
                        call,
                        open: true,
                    } if *known == index => Some((position, id, call)),
                    _ => None,
                });
        let Some((output_index, id, call)) = found else {
            return;
        };
        call.arguments.push_str(fragment);
        write(
            out,
            &EventOut::ArgumentsDelta {
                sequence_number,
                item_id: id,
                output_index,
                delta: fragment,
            },
        );
        self.sequence += 1;
    }

    fn close_calls(&mut self, out: &mut BytesMut) {
        for output_index in 0..self.items.len() {
            if !matches!(self.items[output_index], Item::Call { open: true, .. }) {
                continue;
            }
            let sequences = [self.next(), self.next()];
            let Some(Item::Call { id, call, open, .. }) = self.items.get_mut(output_index) else {
                continue;
            };
            *open = false;
            if call.arguments.is_empty() {
                call.arguments.push_str("{}");
            }
            let item_id = id.as_str();
            write(
                out,
                &EventOut::ArgumentsDone {
                    sequence_number: sequences[0],
                    item_id,
                    output_index,
                    name: &call.name,
                    arguments: &call.arguments,
                },
            );
            write(
                out,
                &EventOut::ItemDone {
                    sequence_number: sequences[1],
                    output_index,
                    item: call_item(item_id, call, "completed"),
                },
            );
        }
    }

    /// The response object now, with the finished items as its output.
    fn object(&self, status: Status, error: Option<&str>) -> Vec<u8> {
        let output: Vec<ItemOut<'_>> = if status == Status::InProgress {
            Vec::new()
        } else {
            self.items.iter().map(Item::out).collect()
        };
        let usage = (status != Status::InProgress).then(|| self.usage.unwrap_or_default());
        self.echo.write(&self.model, status, &output, usage, error)
    }

    fn next(&mut self) -> u64 {
        let sequence = self.sequence;
        self.sequence += 1;
        sequence
    }
}

// === impl EventEncoder ===

impl EventEncoder for EventWriter {
    /// Ends a complete stream: every open item, then `response.completed`
    /// or `response.incomplete`.
    fn done(&mut self, out: &mut BytesMut) {
        self.start(None, out);
        self.close_message(out);
        self.close_calls(out);
        let status = finished(self.finish);
        let response = self.object(status, None);
        let sequence_number = self.next();
        let event = match status {
            Status::Incomplete(_) => EventOut::Incomplete {
                sequence_number,
                response: &response,
            },
            _ => EventOut::Completed {
                sequence_number,
                response: &response,
            },
        };
        write(out, &event);
    }

    /// Ends a failed stream with `response.failed`.
    fn error(&mut self, error: &ProviderError, out: &mut BytesMut) {
        self.start(None, out);
        let message = stream_failure_message(error);
        let response = self.object(Status::Failed, Some(&message));
        let sequence_number = self.next();
        write(
            out,
            &EventOut::Failed {
                sequence_number,
                response: &response,
            },
        );
    }

    fn delta(&mut self, meta: &ChunkMeta<'_>, delta: Delta<'_>, out: &mut BytesMut) {
        self.start(Some(meta), out);
        match delta {
            Delta::Role | Delta::Reasoning(_) => {}
            Delta::Text(text) => self.text(&text, out),
            Delta::ToolCallStart { index, id, name } => self.call_start(index, &id, &name, out),
            Delta::ToolCallArguments { index, fragment } => self.arguments(index, &fragment, out),
            Delta::Finish { reason, .. } => self.finish = Some(reason),
            Delta::Usage(usage) => self.usage = Some(usage),
        }
    }

    fn text_only(&mut self, text: &str, out: &mut BytesMut) -> bool {
        if self.started {
            self.text(text, out);
        }
        self.started
    }

    /// Usage also arrives on chunks kept from the client (metered only).
    fn usage(&mut self, usage: &Usage) {
        self.usage = Some(TokenUsage {
            input: usage.prompt_tokens.saturating_sub(usage.cached_tokens()),
            output: usage.completion_tokens,
            cache_read: usage.cached_tokens(),
            cache_creation: 0,
        });
    }
}

// === impl Item ===

impl Item {
    fn out(&self) -> ItemOut<'_> {
        match self {
            Self::Message { id, text } => message_item(id, text, "completed"),
            Self::Call { id, call, .. } => call_item(id, call, "completed"),
        }
    }
}

/// A function_call item for `call`.
fn call_item<'a>(id: &'a str, call: &'a ToolCall, status: &'static str) -> ItemOut<'a> {
    function_call_item(id, &call.id, &call.name, &call.arguments, status)
}

/// Writes one named SSE event.
fn write(out: &mut BytesMut, event: &EventOut<'_>) {
    let name = event.name().as_bytes();
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\ndata: ");
    event.write_json(out);
    out.extend_from_slice(b"\n\n");
}

// === impl EventOut ===

impl EventOut<'_> {
    /// Writes the event's JSON: `type`, `sequence_number`, then its fields
    /// in the order they are declared.
    fn write_json(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(self.name().as_bytes());
        out.extend_from_slice(b"\",\"sequence_number\":");
        match self {
            Self::Created {
                sequence_number,
                response,
            }
            | Self::InProgress {
                sequence_number,
                response,
            }
            | Self::Completed {
                sequence_number,
                response,
            }
            | Self::Incomplete {
                sequence_number,
                response,
            }
            | Self::Failed {
                sequence_number,
                response,
            } => {
                push_u64(out, *sequence_number);
                out.extend_from_slice(b",\"response\":");
                out.extend_from_slice(response);
            }
            Self::ItemAdded {
                sequence_number,
                output_index,
                item,
            }
            | Self::ItemDone {
                sequence_number,
                output_index,
                item,
            } => {
                push_u64(out, *sequence_number);
                push_index(out, b",\"output_index\":", *output_index);
                out.extend_from_slice(b",\"item\":");
                item.write(out);
            }
            Self::PartAdded {
                sequence_number,
                item_id,
                output_index,
                content_index,
                part,
            }
            | Self::PartDone {
                sequence_number,
                item_id,
                output_index,
                content_index,
                part,
            } => {
                push_u64(out, *sequence_number);
                push_text_position(out, item_id, *output_index, *content_index);
                out.extend_from_slice(b",\"part\":");
                part.write(out);
            }
            Self::TextDelta {
                sequence_number,
                item_id,
                output_index,
                content_index,
                delta: text,
            }
            | Self::TextDone {
                sequence_number,
                item_id,
                output_index,
                content_index,
                text,
            } => {
                push_u64(out, *sequence_number);
                push_text_position(out, item_id, *output_index, *content_index);
                out.extend_from_slice(if matches!(self, Self::TextDelta { .. }) {
                    b",\"delta\":"
                } else {
                    b",\"text\":"
                });
                push_string(out, text);
                out.extend_from_slice(b",\"logprobs\":[]");
            }
            Self::ArgumentsDelta {
                sequence_number,
                item_id,
                output_index,
                delta,
            } => {
                push_u64(out, *sequence_number);
                push_item_position(out, item_id, *output_index);
                out.extend_from_slice(b",\"delta\":");
                push_string(out, delta);
            }
            Self::ArgumentsDone {
                sequence_number,
                item_id,
                output_index,
                name,
                arguments,
            } => {
                push_u64(out, *sequence_number);
                push_item_position(out, item_id, *output_index);
                out.extend_from_slice(b",\"name\":");
                push_string(out, name);
                out.extend_from_slice(b",\"arguments\":");
                push_string(out, arguments);
            }
        }
        out.put_u8(b'}');
    }
    fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "response.created",
            Self::InProgress { .. } => "response.in_progress",
            Self::ItemAdded { .. } => "response.output_item.added",
            Self::PartAdded { .. } => "response.content_part.added",
            Self::TextDelta { .. } => "response.output_text.delta",
            Self::TextDone { .. } => "response.output_text.done",
            Self::PartDone { .. } => "response.content_part.done",
            Self::ArgumentsDelta { .. } => "response.function_call_arguments.delta",
            Self::ArgumentsDone { .. } => "response.function_call_arguments.done",
            Self::ItemDone { .. } => "response.output_item.done",
            Self::Completed { .. } => "response.completed",
            Self::Incomplete { .. } => "response.incomplete",
            Self::Failed { .. } => "response.failed",
        }
    }
}

/// `,"item_id":…,"output_index":…`.
fn push_item_position(out: &mut BytesMut, item_id: &str, output_index: usize) {
    out.extend_from_slice(b",\"item_id\":");
    // Item ids are Keel's own hex ids.
    push_plain(out, item_id);
    push_index(out, b",\"output_index\":", output_index);
}

/// `,"item_id":…,"output_index":…,"content_index":…`.
fn push_text_position(out: &mut BytesMut, item_id: &str, output_index: usize, content_index: u32) {
    push_item_position(out, item_id, output_index);
    push_index(out, b",\"content_index\":", content_index as usize);
}

/// `key` (`,"name":`) and `index`.
fn push_index(out: &mut BytesMut, key: &[u8], index: usize) {
    out.extend_from_slice(key);
    push_u64(out, index as u64);
}
