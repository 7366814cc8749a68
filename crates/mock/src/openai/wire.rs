//! OpenAI Chat Completions response types, in the field order OpenAI sends.

use serde::Serialize;

use crate::wire::Null;

/// The fingerprint every mock response carries.
pub(crate) const SYSTEM_FINGERPRINT: &str = "fp_keel_mock";

/// A `chat.completion` object.
#[derive(Serialize)]
pub(crate) struct ChatCompletion<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) choices: [Choice<'a>; 1],
    pub(crate) usage: Usage,
    pub(crate) service_tier: &'static str,
    pub(crate) system_fingerprint: &'static str,
}

/// One choice of a `chat.completion`.
#[derive(Serialize)]
pub(crate) struct Choice<'a> {
    pub(crate) index: u32,
    pub(crate) message: Message<'a>,
    pub(crate) logprobs: Null,
    pub(crate) finish_reason: &'static str,
}

/// The assistant message of a `chat.completion`.
#[derive(Serialize)]
pub(crate) struct Message<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: Option<&'a str>,
    pub(crate) refusal: Null,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_calls: Option<[ToolCall<'a>; 1]>,
    pub(crate) annotations: [Null; 0],
}

/// A complete tool call in a `chat.completion` message.
#[derive(Serialize)]
pub(crate) struct ToolCall<'a> {
    pub(crate) id: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) function: Function<'a>,
}

/// A function name and its arguments (a JSON string).
#[derive(Serialize)]
pub(crate) struct Function<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
    pub(crate) arguments: &'a str,
}

/// Token usage, with the detail objects OpenAI always includes.
#[derive(Serialize, Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
    pub(crate) prompt_tokens_details: PromptDetails,
    pub(crate) completion_tokens_details: CompletionDetails,
}

/// `usage.prompt_tokens_details`, all zero.
#[derive(Serialize, Clone, Copy, Default)]
pub(crate) struct PromptDetails {
    pub(crate) cached_tokens: u64,
    pub(crate) audio_tokens: u64,
}

/// `usage.completion_tokens_details`, all zero.
#[derive(Serialize, Clone, Copy, Default)]
pub(crate) struct CompletionDetails {
    pub(crate) reasoning_tokens: u64,
    pub(crate) audio_tokens: u64,
    pub(crate) accepted_prediction_tokens: u64,
    pub(crate) rejected_prediction_tokens: u64,
}

/// A `chat.completion.chunk` object.
#[derive(Serialize)]
pub(crate) struct Chunk<'a> {
    pub(crate) id: &'a str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: &'a str,
    pub(crate) service_tier: &'static str,
    pub(crate) system_fingerprint: &'static str,
    pub(crate) choices: &'a [ChunkChoice<'a>],
    /// Absent without `include_usage`; `null` on every chunk but the usage chunk with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) usage: Option<Option<Usage>>,
}

/// The one choice of a content chunk.
#[derive(Serialize)]
pub(crate) struct ChunkChoice<'a> {
    pub(crate) index: u32,
    pub(crate) delta: Delta<'a>,
    pub(crate) logprobs: Null,
    pub(crate) finish_reason: Option<&'static str>,
}

/// A chunk's delta; absent fields are omitted, `Some(None)` is sent as null.
#[derive(Serialize, Default)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tool_calls: Option<[DeltaToolCall<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refusal: Option<Null>,
}

/// A tool-call fragment in a chunk's delta.
#[derive(Serialize)]
pub(crate) struct DeltaToolCall<'a> {
    pub(crate) index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    pub(crate) function: Function<'a>,
}

/// A `GET /v1/models` list.
#[derive(Serialize)]
pub(crate) struct ModelList {
    pub(crate) object: &'static str,
    pub(crate) data: Vec<ModelEntry>,
}

/// One model of a `GET /v1/models` list.
#[derive(Serialize)]
pub(crate) struct ModelEntry {
    pub(crate) id: &'static str,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) owned_by: &'static str,
}

// === impl Usage ===

impl Usage {
    /// Usage with zeroed details.
    pub(crate) fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptDetails::default(),
            completion_tokens_details: CompletionDetails::default(),
        }
    }
}
