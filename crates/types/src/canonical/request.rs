//! The canonical chat request: messages made of typed parts, tools, tool
//! choice and sampling parameters, independent of any wire format.

use serde_json::value::RawValue;

/// A chat request in no particular wire format.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// The model name (the public model at a front end, the upstream model
    /// once routed).
    pub model: String,
    /// The conversation, system messages included, in order.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<Tool>,
    /// Whether and which tool the model must call.
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)` when the model must call at most one tool per turn.
    pub parallel_tool_calls: Option<bool>,
    /// The most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    pub top_p: Option<f64>,
    /// Sample from the `k` likeliest tokens only (Anthropic's `top_k`;
    /// OpenAI-compatible servers such as vLLM take it in chat bodies, and
    /// the Anthropic adapter reads it back from there).
    pub top_k: Option<u64>,
    /// Sequences that end generation.
    pub stop: Vec<String>,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// Whether a streamed answer ends with a usage report.
    pub include_usage: bool,
    /// An opaque end-user id for abuse monitoring.
    pub user: Option<String>,
    /// OpenAI's `response_format` (structured output), as JSON text.
    pub response_format: Option<String>,
    /// OpenAI's `reasoning_effort` (`minimal`, `low`, `medium`, `high`).
    pub reasoning_effort: Option<String>,
    /// OpenAI's `service_tier` (`default` is Anthropic's `standard_only`).
    pub service_tier: Option<String>,
}

/// One message of the conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said, in order.
    pub parts: Vec<Part>,
}

/// The speaker of a message. Tool results are [`Part::ToolResult`]s of user
/// messages, as Anthropic has them; OpenAI's `tool` messages map onto them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Instructions (OpenAI `system`/`developer`, Anthropic top-level `system`).
    System,
    /// The user, and the results of tool calls.
    User,
    /// The model, and its tool calls.
    Assistant,
}

/// One piece of a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// Text.
    Text(String),
    /// An image (user messages and tool results).
    Image(Image),
    /// A tool call the assistant made.
    ToolUse(ToolCall),
    /// The result of a tool call, sent back by the user.
    ToolResult(ToolResult),
}

/// An image, by URL or inline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Image {
    /// An `http(s)` URL.
    Url(String),
    /// Inline base64 data with its media type (OpenAI sends it as a `data:` URL).
    Base64 {
        /// E.g. `image/png`.
        media_type: String,
        /// The base64 text.
        data: String,
    },
}

/// A tool call: its id, the function and its arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCall {
    /// The call id, kept across formats so results can refer to it.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments as JSON text (an object).
    pub arguments: String,
}

/// The result of one tool call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolResult {
    /// The id of the call this answers.
    pub tool_call_id: String,
    /// Text and image parts.
    pub content: Vec<Part>,
    /// The tool failed (Anthropic `is_error`; OpenAI cannot say it).
    pub is_error: bool,
}

/// A function the model may call.
#[derive(Clone, Debug)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// The JSON schema of its arguments, verbatim.
    pub parameters: Option<Box<RawValue>>,
    /// Whether the arguments must follow the schema exactly (OpenAI's
    /// `strict`), when the client said; written for OpenAI upstreams.
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool call.
    None,
    /// At least one tool call (OpenAI `required`, Anthropic `any`).
    Required,
    /// This tool.
    Named(String),
}

// === impl Request ===

impl Request {
    /// The text of every system message, joined by blank lines; `None` when
    /// there is none.
    pub fn system_text(&self) -> Option<String> {
        let texts: Vec<&str> = self
            .messages
            .iter()
            .filter(|message| message.role == Role::System)
            .flat_map(|message| message.parts.iter())
            .filter_map(|part| match part {
                Part::Text(text) if !text.is_empty() => Some(text.as_str()),
                _ => None,
            })
            .collect();
        (!texts.is_empty()).then(|| texts.join("\n\n"))
    }
}

// === impl Part ===

impl Part {
    /// The text of a text part.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            _ => None,
        }
    }
}

// === impl Tool ===

impl PartialEq for Tool {
    fn eq(&self, other: &Self) -> bool {
        let schema = |tool: &Tool| tool.parameters.as_ref().map(|raw| raw.get().to_owned());
        self.name == other.name
            && self.description == other.description
            && schema(self) == schema(other)
            && self.strict == other.strict
    }
}
