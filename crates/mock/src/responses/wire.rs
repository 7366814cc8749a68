//! OpenAI Responses API objects and stream events, in the field order OpenAI sends.

use serde::Serialize;
use serde_json::Value;

use crate::wire::Null;

/// A `response` object: in progress, completed, incomplete or failed.
#[derive(Serialize)]
pub(crate) struct ResponseObject<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created_at: u64,
    pub(crate) status: &'static str,
    pub(crate) error: Option<ResponseError<'a>>,
    pub(crate) incomplete_details: Option<IncompleteDetails>,
    pub(crate) instructions: Option<&'a str>,
    pub(crate) max_output_tokens: Option<u64>,
    pub(crate) model: &'a str,
    pub(crate) output: Vec<OutputItem<'a>>,
    pub(crate) parallel_tool_calls: bool,
    pub(crate) previous_response_id: Null,
    pub(crate) reasoning: Reasoning,
    pub(crate) store: bool,
    pub(crate) temperature: f64,
    pub(crate) text: TextConfig,
    pub(crate) tool_choice: &'a Value,
    pub(crate) tools: &'a [Value],
    pub(crate) top_p: f64,
    pub(crate) truncation: &'static str,
    pub(crate) usage: Option<Usage>,
    pub(crate) user: Null,
    pub(crate) metadata: EmptyObject,
}

/// `response.error` of a failed response.
#[derive(Serialize)]
pub(crate) struct ResponseError<'a> {
    pub(crate) code: &'static str,
    pub(crate) message: &'a str,
}

/// `response.incomplete_details`.
#[derive(Serialize)]
pub(crate) struct IncompleteDetails {
    pub(crate) reason: &'static str,
}

/// `response.reasoning` of a model that does not reason: both fields null.
#[derive(Serialize)]
pub(crate) struct Reasoning {
    pub(crate) effort: Null,
    pub(crate) summary: Null,
}

/// `response.text`: plain text output.
#[derive(Serialize)]
pub(crate) struct TextConfig {
    pub(crate) format: TextFormat,
}

/// `response.text.format`.
#[derive(Serialize)]
pub(crate) struct TextFormat {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
}

/// Serializes as `{}`.
#[derive(Serialize, Default)]
pub(crate) struct EmptyObject {}

/// One item of `response.output`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum OutputItem<'a> {
    /// An assistant message.
    Message {
        id: &'a str,
        status: &'static str,
        role: &'static str,
        content: Vec<OutputText<'a>>,
    },
    /// A call of a function tool.
    FunctionCall {
        id: &'a str,
        call_id: &'a str,
        name: &'a str,
        arguments: &'a str,
        status: &'static str,
    },
}

/// An `output_text` content part.
#[derive(Serialize, Clone, Copy)]
pub(crate) struct OutputText<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) text: &'a str,
    pub(crate) annotations: [Null; 0],
}

/// Token usage, with the detail objects OpenAI always includes.
#[derive(Serialize, Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) input_tokens: u64,
    pub(crate) input_tokens_details: InputDetails,
    pub(crate) output_tokens: u64,
    pub(crate) output_tokens_details: OutputDetails,
    pub(crate) total_tokens: u64,
}

/// `usage.input_tokens_details`, all zero.
#[derive(Serialize, Clone, Copy, Default)]
pub(crate) struct InputDetails {
    pub(crate) cached_tokens: u64,
    pub(crate) cache_write_tokens: u64,
}

/// `usage.output_tokens_details`, all zero.
#[derive(Serialize, Clone, Copy, Default)]
pub(crate) struct OutputDetails {
    pub(crate) reasoning_tokens: u64,
}

/// One stream event; its `type` is also the SSE event name.
#[derive(Serialize)]
#[serde(tag = "type")]
pub(crate) enum Event<'a> {
    #[serde(rename = "response.created")]
    Created { response: ResponseObject<'a> },
    #[serde(rename = "response.in_progress")]
    InProgress { response: ResponseObject<'a> },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        output_index: u32,
        item: OutputItem<'a>,
    },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        part: OutputText<'a>,
    },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        delta: &'a str,
        logprobs: [Null; 0],
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        text: &'a str,
        logprobs: [Null; 0],
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        part: OutputText<'a>,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta {
        item_id: &'a str,
        output_index: u32,
        delta: &'a str,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        item_id: &'a str,
        output_index: u32,
        name: &'a str,
        arguments: &'a str,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        output_index: u32,
        item: OutputItem<'a>,
    },
    #[serde(rename = "response.completed")]
    Completed { response: ResponseObject<'a> },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: ResponseObject<'a> },
    #[serde(rename = "response.failed")]
    Failed { response: ResponseObject<'a> },
    #[serde(rename = "error")]
    Error {
        code: &'static str,
        message: &'a str,
        param: Null,
    },
}

/// An event with the stream position every Responses event carries.
#[derive(Serialize)]
pub(crate) struct Sequenced<'a> {
    #[serde(flatten)]
    pub(crate) event: &'a Event<'a>,
    pub(crate) sequence_number: u64,
}

// === impl Usage ===

impl Usage {
    /// Usage with zeroed details.
    pub(crate) fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            input_tokens_details: InputDetails::default(),
            output_tokens,
            output_tokens_details: OutputDetails::default(),
            total_tokens: input_tokens + output_tokens,
        }
    }
}

// === impl Event ===

impl Event<'_> {
    /// The SSE event name, equal to the JSON `type`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Event::Created { .. } => "response.created",
            Event::InProgress { .. } => "response.in_progress",
            Event::OutputItemAdded { .. } => "response.output_item.added",
            Event::ContentPartAdded { .. } => "response.content_part.added",
            Event::OutputTextDelta { .. } => "response.output_text.delta",
            Event::OutputTextDone { .. } => "response.output_text.done",
            Event::ContentPartDone { .. } => "response.content_part.done",
            Event::FunctionCallArgumentsDelta { .. } => "response.function_call_arguments.delta",
            Event::FunctionCallArgumentsDone { .. } => "response.function_call_arguments.done",
            Event::OutputItemDone { .. } => "response.output_item.done",
            Event::Completed { .. } => "response.completed",
            Event::Incomplete { .. } => "response.incomplete",
            Event::Failed { .. } => "response.failed",
            Event::Error { .. } => "error",
        }
    }
}
