//! The `response` object of OpenAI's Responses API, whole (a non-stream
//! answer, and the terminal event of a stream) or in progress (the first
//! events of a stream). Settings the client sent are echoed from its body.
//!
//! Objects are written by hand, byte for byte as serde_json writes them:
//! text that needs no escapes (nearly all of it) is copied as it is, and
//! field names are not escaped again for every object.

use std::borrow::Cow;

use bytes::BufMut;
use serde_json::value::RawValue;

use crate::json::{push_plain, push_string, push_u64};
use keel_types::canonical::{FinishReason, ResponseRef, TokenUsage};
use keel_types::RawObject;

/// What a response object says about the request, read once: the
/// client's settings, echoed as the JSON text it sent them in.
#[derive(Clone)]
pub(crate) struct Echo {
    id: String,
    created_at: u64,
    background: bool,
    /// `"instructions":…,` through `"reasoning":…,` (each setting the
    /// client sent, or its default), ready to copy into every object written.
    settings: Cow<'static, [u8]>,
}

/// The echoed settings, in the order they are written, with their defaults.
const ECHOED: [(&str, &str); 10] = [
    ("instructions", "null"),
    ("max_output_tokens", "null"),
    ("parallel_tool_calls", "true"),
    ("temperature", "1.0"),
    ("top_p", "1.0"),
    ("tool_choice", "\"auto\""),
    ("tools", "[]"),
    ("text", r#"{"format":{"type":"text"}}"#),
    ("user", "null"),
    ("metadata", "{}"),
];

/// About the length of a response object's fixed fields; items and
/// settings are added.
const OBJECT_LEN: usize = 576;

/// [`ECHOED`] with every default, and no reasoning effort.
pub(crate) const DEFAULT_SETTINGS: &[u8] = br#""instructions":null,"max_output_tokens":null,"parallel_tool_calls":true,"temperature":1.0,"top_p":1.0,"tool_choice":"auto","tools":[],"text":{"format":{"type":"text"}},"user":null,"metadata":{},"reasoning":{"effort":null,"summary":null},"#;

/// The state of a response object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// A background response waiting for a worker.
    Queued,
    /// Being generated (the first events of a stream, a running job).
    InProgress,
    /// A background response cancelled before it finished.
    Cancelled,
    /// Finished.
    Completed,
    /// Cut short: by `max_output_tokens` or a content filter.
    Incomplete(&'static str),
    /// Failed after it started (a stream's terminal event).
    Failed,
}

/// One item of `output`.
pub(crate) enum ItemOut<'a> {
    Message {
        id: &'a str,
        status: &'static str,
        role: &'static str,
        content: Option<TextOut<'a>>,
    },
    FunctionCall {
        id: &'a str,
        call_id: &'a str,
        name: &'a str,
        arguments: &'a str,
        status: &'static str,
    },
}

/// An `output_text` content part.
pub(crate) struct TextOut<'a> {
    pub kind: &'static str,
    pub text: &'a str,
}

// === impl Echo ===

impl Echo {
    /// The echo of `raw` (the client's body) for a new response id.
    pub(crate) fn new(raw: &RawObject) -> Self {
        Self::stored(raw, new_id("resp_"), unix_now())
    }

    /// The echo of `raw` for a response that has an id and creation time
    /// already (a background response, kept as a job).
    pub(crate) fn stored(raw: &RawObject, id: String, created_at: u64) -> Self {
        Self {
            id,
            created_at,
            background: raw
                .get("background")
                .is_some_and(|value| value.get() == "true"),
            settings: settings(raw),
        }
    }

    /// Writes the response object.
    pub(crate) fn write(
        &self,
        model: &str,
        status: Status,
        output: &[ItemOut<'_>],
        usage: Option<TokenUsage>,
        error: Option<&str>,
    ) -> Vec<u8> {
        let (status_text, incomplete) = match status {
            Status::Queued => ("queued", None),
            Status::InProgress => ("in_progress", None),
            Status::Cancelled => ("cancelled", None),
            Status::Completed => ("completed", None),
            Status::Incomplete(reason) => ("incomplete", Some(reason)),
            Status::Failed => ("failed", None),
        };
        // Sized for the whole object, so it is written without growing.
        let items: usize = output.iter().map(ItemOut::len_hint).sum();
        let mut out = Vec::with_capacity(OBJECT_LEN + self.settings.len() + model.len() + items);
        out.extend_from_slice(b"{\"id\":");
        push_string(&mut out, &self.id);
        out.extend_from_slice(b",\"object\":\"response\",\"created_at\":");
        push_u64(&mut out, self.created_at);
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(status_text.as_bytes());
        out.extend_from_slice(if self.background {
            b"\",\"background\":true,\"error\":"
        } else {
            b"\",\"background\":false,\"error\":"
        });
        match error {
            Some(message) => {
                out.extend_from_slice(b"{\"code\":\"server_error\",\"message\":");
                push_string(&mut out, message);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"incomplete_details\":");
        match incomplete {
            Some(reason) => {
                out.extend_from_slice(b"{\"reason\":\"");
                out.extend_from_slice(reason.as_bytes());
                out.extend_from_slice(b"\"}");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b',');
        out.extend_from_slice(&self.settings);
        out.extend_from_slice(b"\"model\":");
        push_string(&mut out, model);
        out.extend_from_slice(b",\"output\":[");
        for (position, item) in output.iter().enumerate() {
            if position > 0 {
                out.push(b',');
            }
            item.write(&mut out);
        }
        // Keel keeps no responses: nothing can be fetched by this id.
        out.extend_from_slice(b"],\"previous_response_id\":null,\"store\":false,\"truncation\":\"disabled\",\"usage\":");
        match usage {
            Some(usage) => push_usage(&mut out, usage),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        out
    }
}

/// The settings a response object echoes, as `"key":value,` text: the
/// defaults written once when the client sent none of them (most bodies).
pub(crate) fn settings(raw: &RawObject) -> Cow<'static, [u8]> {
    let sent_any = raw
        .fields()
        .any(|(key, _)| key == "reasoning" || ECHOED.iter().any(|(echoed, _)| *echoed == key));
    if !sent_any {
        return Cow::Borrowed(DEFAULT_SETTINGS);
    }
    let mut settings = Vec::with_capacity(256);
    for (key, default) in ECHOED {
        let sent = raw
            .get(key)
            .map(|value| value.get())
            .filter(|value| *value != "null");
        push_field(&mut settings, key, sent.unwrap_or(default));
    }
    // `reasoning.effort` as sent; the summary is never produced.
    let effort = raw
        .get("reasoning")
        .and_then(|reasoning| serde_json::from_str::<ReasoningIn<'_>>(reasoning.get()).ok())
        .and_then(|reasoning| reasoning.effort)
        .map_or("null", |effort| effort.get());
    settings.extend_from_slice(b"\"reasoning\":{\"effort\":");
    settings.extend_from_slice(effort.as_bytes());
    settings.extend_from_slice(b",\"summary\":null},");
    Cow::Owned(settings)
}

#[derive(serde::Deserialize)]
struct ReasoningIn<'a> {
    #[serde(borrow, default)]
    effort: Option<&'a RawValue>,
}

/// `"key":value,` with `value` JSON text.
fn push_field(out: &mut Vec<u8>, key: &str, value: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(value.as_bytes());
    out.push(b',');
}

/// Responses usage: `input_tokens` includes cached ones, as OpenAI counts.
fn push_usage(out: &mut Vec<u8>, usage: TokenUsage) {
    let input_tokens = usage.prompt_total();
    out.extend_from_slice(b"{\"input_tokens\":");
    push_u64(out, input_tokens);
    out.extend_from_slice(b",\"input_tokens_details\":{\"cached_tokens\":");
    push_u64(out, usage.cache_read);
    out.extend_from_slice(b"},\"output_tokens\":");
    push_u64(out, usage.output);
    out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
    push_u64(out, input_tokens.saturating_add(usage.output));
    out.push(b'}');
}

/// The status a finished answer has.
pub(crate) fn finished(reason: Option<FinishReason>) -> Status {
    match reason {
        Some(FinishReason::Length) => Status::Incomplete("max_output_tokens"),
        Some(FinishReason::ContentFilter) => Status::Incomplete("content_filter"),
        _ => Status::Completed,
    }
}

/// A whole answer as a response object: its text as one message item (when
/// it has text), then one function_call item per tool call.
pub(crate) fn response_json(echo: &Echo, response: &ResponseRef<'_>) -> Vec<u8> {
    let text = match response.text.as_slice() {
        [one] => Cow::Borrowed(one.as_ref()),
        parts => Cow::Owned(parts.concat()),
    };
    let message_id = new_id("msg_");
    let call_ids: Vec<String> = response.tool_calls.iter().map(|_| new_id("fc_")).collect();
    let mut output = Vec::with_capacity(response.tool_calls.len() + 1);
    if !text.is_empty() {
        output.push(message_item(&message_id, &text, "completed"));
    }
    output.extend(response.tool_calls.iter().zip(&call_ids).map(|(call, id)| {
        function_call_item(id, &call.id, &call.name, &call.arguments, "completed")
    }));
    echo.write(
        &response.model,
        finished(response.finish),
        &output,
        Some(response.usage),
        None,
    )
}

/// A message item holding `text` (no content part when it is empty and
/// in progress).
pub(crate) fn message_item<'a>(id: &'a str, text: &'a str, status: &'static str) -> ItemOut<'a> {
    let content = (status != "in_progress").then(|| output_text(text));
    ItemOut::Message {
        id,
        status,
        role: "assistant",
        content,
    }
}

/// An `output_text` part.
pub(crate) fn output_text(text: &str) -> TextOut<'_> {
    TextOut {
        kind: "output_text",
        text,
    }
}

/// A function_call item for the call `call_id`.
pub(crate) fn function_call_item<'a>(
    id: &'a str,
    call_id: &'a str,
    name: &'a str,
    arguments: &'a str,
    status: &'static str,
) -> ItemOut<'a> {
    ItemOut::FunctionCall {
        id,
        call_id,
        name,
        arguments,
        status,
    }
}

// === impl ItemOut ===

impl ItemOut<'_> {
    /// About the length of the item's JSON (at least that, unless escaped).
    fn len_hint(&self) -> usize {
        match self {
            Self::Message { id, content, .. } => {
                128 + id.len() + content.as_ref().map_or(0, |part| 64 + part.text.len())
            }
            Self::FunctionCall {
                id,
                call_id,
                name,
                arguments,
                ..
            } => 96 + id.len() + call_id.len() + name.len() + arguments.len(),
        }
    }

    /// Writes the item as JSON.
    pub(crate) fn write<B: BufMut>(&self, out: &mut B) {
        match self {
            Self::Message {
                id,
                status,
                role,
                content,
            } => {
                out.put_slice(b"{\"type\":\"message\",\"id\":");
                push_plain(out, id);
                out.put_slice(b",\"status\":");
                push_plain(out, status);
                out.put_slice(b",\"role\":");
                push_plain(out, role);
                out.put_slice(b",\"content\":[");
                if let Some(content) = content {
                    content.write(out);
                }
                out.put_slice(b"]}");
            }
            Self::FunctionCall {
                id,
                call_id,
                name,
                arguments,
                status,
            } => {
                out.put_slice(b"{\"type\":\"function_call\",\"id\":");
                push_plain(out, id);
                out.put_slice(b",\"call_id\":");
                push_string(out, call_id);
                out.put_slice(b",\"name\":");
                push_string(out, name);
                out.put_slice(b",\"arguments\":");
                push_string(out, arguments);
                out.put_slice(b",\"status\":");
                push_plain(out, status);
                out.put_u8(b'}');
            }
        }
    }
}

// === impl TextOut ===

impl TextOut<'_> {
    /// Writes the part as JSON.
    pub(crate) fn write<B: BufMut>(&self, out: &mut B) {
        out.put_slice(b"{\"type\":");
        push_plain(out, self.kind);
        out.put_slice(b",\"text\":");
        push_string(out, self.text);
        out.put_slice(b",\"annotations\":[],\"logprobs\":[]}");
    }
}

/// `prefix` and 48 hex digits, as OpenAI's ids look.
pub(crate) fn new_id(prefix: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 48];
    // Two digits per random byte, low nibble first.
    for group in digits.chunks_exact_mut(16) {
        let bytes = fastrand::u64(..).to_le_bytes();
        for (pair, byte) in group.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX[usize::from(byte & 0xf)];
            pair[1] = HEX[usize::from(byte >> 4)];
        }
    }
    let mut id = String::with_capacity(prefix.len() + 48);
    id.push_str(prefix);
    // Hex digits are ASCII.
    id.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    id
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
