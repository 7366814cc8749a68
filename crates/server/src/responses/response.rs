//! The `response` object of OpenAI's Responses API, whole (a non-stream
//! answer, and the terminal event of a stream) or in progress (the first
//! events of a stream). Settings the client sent are echoed from its body.

use serde::Serialize;
use serde_json::value::RawValue;

use keel_types::canonical::{FinishReason, Response, TokenUsage, ToolCall};
use keel_types::RawObject;

/// What a response object says about the request, read once.
pub(crate) struct Echo {
    id: String,
    created_at: u64,
    background: bool,
    instructions: Option<Box<RawValue>>,
    max_output_tokens: Option<Box<RawValue>>,
    parallel_tool_calls: Box<RawValue>,
    temperature: Box<RawValue>,
    top_p: Box<RawValue>,
    tool_choice: Box<RawValue>,
    tools: Box<RawValue>,
    text: Box<RawValue>,
    reasoning_effort: Option<Box<RawValue>>,
    user: Option<Box<RawValue>>,
    metadata: Box<RawValue>,
}

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

#[derive(Serialize)]
struct ObjectOut<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    error: Option<ErrorOut<'a>>,
    incomplete_details: Option<IncompleteOut>,
    instructions: Option<&'a RawValue>,
    max_output_tokens: Option<&'a RawValue>,
    model: &'a str,
    output: &'a [ItemOut<'a>],
    parallel_tool_calls: &'a RawValue,
    previous_response_id: Option<()>,
    reasoning: ReasoningOut<'a>,
    store: bool,
    temperature: &'a RawValue,
    text: &'a RawValue,
    tool_choice: &'a RawValue,
    tools: &'a RawValue,
    top_p: &'a RawValue,
    truncation: &'static str,
    usage: Option<UsageOut>,
    user: Option<&'a RawValue>,
    metadata: &'a RawValue,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    code: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct IncompleteOut {
    reason: &'static str,
}

#[derive(Serialize)]
struct ReasoningOut<'a> {
    effort: Option<&'a RawValue>,
    summary: Option<()>,
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
        let field = |key: &str| {
            raw.get(key)
                .filter(|value| value.get() != "null")
                .map(ToOwned::to_owned)
        };
        let or = |key: &str, default: &str| field(key).unwrap_or_else(|| raw_json(default));
        let reasoning_effort = raw
            .parse::<serde_json::Value>("reasoning")
            .and_then(Result::ok)
            .and_then(|reasoning| reasoning.get("effort").filter(|e| !e.is_null()).cloned())
            .map(|effort| raw_json(&effort.to_string()));
        Self {
            id,
            created_at,
            background: raw
                .get("background")
                .is_some_and(|value| value.get() == "true"),
            instructions: field("instructions"),
            max_output_tokens: field("max_output_tokens"),
            parallel_tool_calls: or("parallel_tool_calls", "true"),
            temperature: or("temperature", "1.0"),
            top_p: or("top_p", "1.0"),
            tool_choice: or("tool_choice", "\"auto\""),
            tools: or("tools", "[]"),
            text: or("text", r#"{"format":{"type":"text"}}"#),
            reasoning_effort,
            user: field("user"),
            metadata: or("metadata", "{}"),
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
            Status::Incomplete(reason) => ("incomplete", Some(IncompleteOut { reason })),
            Status::Failed => ("failed", None),
        };
        let object = ObjectOut {
            id: &self.id,
            object: "response",
            created_at: self.created_at,
            status: status_text,
            background: self.background,
            error: error.map(|message| ErrorOut {
                code: "server_error",
                message,
            }),
            incomplete_details: incomplete,
            instructions: self.instructions.as_deref(),
            max_output_tokens: self.max_output_tokens.as_deref(),
            model,
            output,
            parallel_tool_calls: &self.parallel_tool_calls,
            previous_response_id: None,
            reasoning: ReasoningOut {
                effort: self.reasoning_effort.as_deref(),
                summary: None,
            },
            // Keel keeps no responses: nothing can be fetched by this id.
            store: false,
            temperature: &self.temperature,
            text: &self.text,
            tool_choice: &self.tool_choice,
            tools: &self.tools,
            top_p: &self.top_p,
            truncation: "disabled",
            usage: usage.map(UsageOut::from),
            user: self.user.as_deref(),
            metadata: &self.metadata,
        };
        // Serialising these types into a Vec cannot fail.
        serde_json::to_vec(&object).unwrap_or_default()
    }
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
    let mut id = String::with_capacity(prefix.len() + 48);
    id.push_str(prefix);
    for _ in 0..3 {
        id.push_str(&format!("{:016x}", fastrand::u64(..)));
    }
    id
}

fn raw_json(text: &str) -> Box<RawValue> {
    // Only literals written here are parsed; `null` if one were not JSON.
    serde_json::from_str::<Box<RawValue>>(text).unwrap_or_default()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
