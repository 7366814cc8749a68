//! The `response` object of OpenAI's Responses API, whole (a non-stream
//! answer, and the terminal event of a stream) or in progress (the first
//! events of a stream). Settings the client sent are echoed from its body.

use serde::Serialize;
use serde_json::value::RawValue;

use keel_types::canonical::{FinishReason, Response, TokenUsage, ToolCall};
use keel_types::RawObject;

/// What a response object says about the request, read once: the
/// client's settings, echoed as the JSON text it sent them in.
pub(crate) struct Echo {
    id: String,
    created_at: u64,
    background: bool,
    /// `"instructions":…,` through `"metadata":…` (each setting the client
    /// sent, or its default), ready to copy into every object written.
    settings: Vec<u8>,
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
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ItemOut<'a> {
    Message {
        id: &'a str,
        status: &'static str,
        role: &'static str,
        content: Vec<TextOut<'a>>,
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
#[derive(Serialize)]
pub(crate) struct TextOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: &'a str,
    pub annotations: [(); 0],
    pub logprobs: [(); 0],
}

/// Responses usage: `input_tokens` includes cached ones, as OpenAI counts.
#[derive(Serialize)]
struct UsageOut {
    input_tokens: u64,
    input_tokens_details: CachedOut,
    output_tokens: u64,
    output_tokens_details: ReasoningTokensOut,
    total_tokens: u64,
}

#[derive(Serialize)]
struct CachedOut {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningTokensOut {
    reasoning_tokens: u64,
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
        Self {
            id,
            created_at,
            background: raw
                .get("background")
                .is_some_and(|value| value.get() == "true"),
            settings,
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
        let mut out = Vec::with_capacity(512 + self.settings.len());
        out.extend_from_slice(b"{\"id\":");
        push_string(&mut out, &self.id);
        out.extend_from_slice(b",\"object\":\"response\",\"created_at\":");
        out.extend_from_slice(self.created_at.to_string().as_bytes());
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
        out.extend_from_slice(b",\"output\":");
        // Serialising these types into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, output);
        // Keel keeps no responses: nothing can be fetched by this id.
        out.extend_from_slice(b",\"previous_response_id\":null,\"store\":false,\"truncation\":\"disabled\",\"usage\":");
        let _ = serde_json::to_writer(&mut out, &usage.map(UsageOut::from));
        out.push(b'}');
        out
    }
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

/// `text` as a JSON string.
fn push_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a string into a Vec cannot fail.
    let _ = serde_json::to_writer(out, text);
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
pub(crate) fn response_json(echo: &Echo, response: &Response) -> Vec<u8> {
    let text = response.text.concat();
    let message_id = new_id("msg_");
    let call_ids: Vec<String> = response.tool_calls.iter().map(|_| new_id("fc_")).collect();
    let mut output = Vec::with_capacity(response.tool_calls.len() + 1);
    if !text.is_empty() {
        output.push(message_item(&message_id, &text, "completed"));
    }
    output.extend(
        response
            .tool_calls
            .iter()
            .zip(&call_ids)
            .map(|(call, id)| function_call_item(id, call, "completed")),
    );
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
    let content = if status == "in_progress" {
        Vec::new()
    } else {
        vec![output_text(text)]
    };
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
        annotations: [],
        logprobs: [],
    }
}

/// A function_call item for `call`.
pub(crate) fn function_call_item<'a>(
    id: &'a str,
    call: &'a ToolCall,
    status: &'static str,
) -> ItemOut<'a> {
    ItemOut::FunctionCall {
        id,
        call_id: &call.id,
        name: &call.name,
        arguments: &call.arguments,
        status,
    }
}

// === impl UsageOut ===

impl From<TokenUsage> for UsageOut {
    fn from(usage: TokenUsage) -> Self {
        let input_tokens = usage.prompt_total();
        Self {
            input_tokens,
            input_tokens_details: CachedOut {
                cached_tokens: usage.cache_read,
            },
            output_tokens: usage.output,
            output_tokens_details: ReasoningTokensOut {
                reasoning_tokens: 0,
            },
            total_tokens: input_tokens.saturating_add(usage.output),
        }
    }
}

/// `prefix` and 48 hex digits, as OpenAI's ids look.
pub(crate) fn new_id(prefix: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(prefix.len() + 48);
    id.push_str(prefix);
    for _ in 0..3 {
        let mut bits = fastrand::u64(..);
        for _ in 0..16 {
            id.push(char::from(HEX[(bits & 0xf) as usize]));
            bits >>= 4;
        }
    }
    id
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
