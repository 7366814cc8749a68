//! One OpenAI reply, rendered as a `chat.completion` or as a chunk stream.

use axum::http::StatusCode;
use bytes::Bytes;

use super::wire::{
    ChatCompletion, Choice, Chunk, ChunkChoice, Delta, DeltaToolCall, Function, Message,
    ToolCall as WireToolCall, Usage, SYSTEM_FINGERPRINT,
};
use crate::errors::Api;
use crate::reply::ToolCall;
use crate::stream::SseScript;
use crate::wire::{data_event, frame, to_json, Null};

/// What the assistant says: text deltas or one tool call.
#[derive(Debug)]
pub(crate) enum Content {
    /// Text, one word per chunk.
    Text(Vec<String>),
    /// One tool call, its arguments split into fragments.
    Tool(ToolCall),
}

/// Everything needed to render one reply either way.
#[derive(Debug)]
pub(crate) struct ChatReply {
    pub(crate) id: String,
    pub(crate) created: u64,
    pub(crate) model: String,
    pub(crate) content: Content,
    pub(crate) finish_reason: &'static str,
    pub(crate) prompt_tokens: u64,
    pub(crate) include_usage: bool,
}

// === impl ChatReply ===

impl ChatReply {
    /// The `chat.completion` JSON; its content equals the stream's deltas joined.
    pub(crate) fn completion_json(&self) -> Bytes {
        let text;
        let arguments;
        let (content, tool_calls) = match &self.content {
            Content::Text(chunks) => {
                text = chunks.concat();
                (Some(text.as_str()), None)
            }
            Content::Tool(call) => {
                arguments = call.arguments();
                let function = Function {
                    name: Some(&call.name),
                    arguments: &arguments,
                };
                (
                    None,
                    Some([WireToolCall {
                        id: &call.id,
                        kind: "function",
                        function,
                    }]),
                )
            }
        };
        let message = Message {
            role: "assistant",
            content,
            refusal: Null,
            tool_calls,
            annotations: [],
        };
        let completion = ChatCompletion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices: [Choice {
                index: 0,
                message,
                logprobs: Null,
                finish_reason: self.finish_reason,
            }],
            usage: self.usage(),
            service_tier: "default",
            system_fingerprint: SYSTEM_FINGERPRINT,
        };
        Bytes::from(to_json(&completion))
    }

    fn usage(&self) -> Usage {
        Usage::new(self.prompt_tokens, u64::from(self.content_len()))
    }

    /// One chunk event with the given choices (none for the usage chunk).
    fn chunk(&self, choices: &[ChunkChoice<'_>], usage: Option<Usage>) -> Bytes {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            service_tier: "default",
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage: self.include_usage.then_some(usage),
        };
        data_event(&chunk)
    }

    fn delta_chunk(&self, delta: Delta<'_>, finish_reason: Option<&'static str>) -> Bytes {
        self.chunk(
            &[ChunkChoice {
                index: 0,
                delta,
                logprobs: Null,
                finish_reason,
            }],
            None,
        )
    }
}

fn tool_delta<'a>(
    id: Option<&'a str>,
    name: Option<&'a str>,
    arguments: &'a str,
) -> [DeltaToolCall<'a>; 1] {
    let kind = id.map(|_| "function");
    [DeltaToolCall {
        index: 0,
        id,
        kind,
        function: Function { name, arguments },
    }]
}

impl SseScript for ChatReply {
    fn head(&mut self) -> Vec<Bytes> {
        // The first chunk names the role; for a tool call it also opens the call.
        let delta = match &self.content {
            Content::Text(_) => Delta {
                role: Some("assistant"),
                content: Some(Some("")),
                refusal: Some(Null),
                ..Delta::default()
            },
            Content::Tool(call) => Delta {
                role: Some("assistant"),
                content: Some(None),
                tool_calls: Some(tool_delta(Some(&call.id), Some(&call.name), "")),
                refusal: Some(Null),
            },
        };
        vec![self.delta_chunk(delta, None)]
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
            Content::Text(chunks) => Delta {
                content: chunks.get(index).map(|chunk| Some(chunk.as_str())),
                ..Delta::default()
            },
            Content::Tool(call) => {
                let fragment = call.fragments.get(index).map_or("", String::as_str);
                Delta {
                    tool_calls: Some(tool_delta(None, None, fragment)),
                    ..Delta::default()
                }
            }
        };
        self.delta_chunk(delta, None)
    }

    fn tail(&mut self) -> Vec<Bytes> {
        let mut events = vec![self.delta_chunk(Delta::default(), Some(self.finish_reason))];
        if self.include_usage {
            events.push(self.chunk(&[], Some(self.usage())));
        }
        events.push(frame(None, b"[DONE]"));
        events
    }

    fn error_event(&mut self) -> Bytes {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        let json = Api::OpenAi.error_json(status, &Api::OpenAi.injected_message(status));
        frame(None, &json)
    }
}
