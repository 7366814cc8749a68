//! Canonical stream [`Delta`]s ↔ OpenAI `chat.completion.chunk` JSON. Both
//! directions work on borrowed text: a chunk is written straight from the
//! delta and read without building a JSON tree.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::response::{finish, optional_text, StopText, UsageIn, UsageOut};
use crate::canonical::{Delta, TokenUsage};

/// Writes the chunks of one stream: the same `id`, `created` and `model` on
/// every chunk, and `"usage": null` on each when the client asked for usage
/// (as OpenAI does).
#[derive(Clone, Debug)]
pub struct ChunkWriter {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
}

/// The stream-wide fields of one chunk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkMeta<'a> {
    /// The completion id.
    pub id: Cow<'a, str>,
    /// The model that answered.
    pub model: Cow<'a, str>,
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    /// `null`, as on the completion (see `completion_json`).
    system_fingerprint: Option<()>,
    choices: &'a [ChoiceOut<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageOut>>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    /// The stop sequence that matched, where vLLM reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    /// `Some(None)` writes the `"refusal": null` OpenAI puts in the role
    /// chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDeltaOut<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDeltaOut<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDeltaOut<'a>,
}

#[derive(Serialize)]
struct FunctionDeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Default, Deserialize)]
pub(super) struct ChunkIn<'a> {
    #[serde(default, borrow)]
    pub(super) id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) model: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(super) choices: Vec<ChoiceIn<'a>>,
    #[serde(default)]
    pub(super) usage: Option<UsageIn>,
}

#[derive(Deserialize)]
pub(super) struct ChoiceIn<'a> {
    #[serde(default, borrow)]
    pub(super) delta: Option<DeltaIn<'a>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub(super) finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) stop_reason: StopText<'a>,
}

#[derive(Default, Deserialize)]
pub(super) struct DeltaIn<'a> {
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub(super) role: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub(super) content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub(super) refusal: Option<Cow<'a, str>>,
    #[serde(
        default,
        borrow,
        alias = "reasoning",
        deserialize_with = "optional_text"
    )]
    pub(super) reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) tool_calls: Option<Vec<ToolCallDeltaIn<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct ToolCallDeltaIn<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<FunctionDeltaIn<'a>>,
}

#[derive(Deserialize)]
struct FunctionDeltaIn<'a> {
    #[serde(default, borrow, deserialize_with = "optional_text")]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    arguments: Option<Cow<'a, str>>,
}

// === impl ChunkWriter ===

impl ChunkWriter {
    /// A writer for the stream with this id and model.
    pub fn new(id: String, model: String, created: u64, include_usage: bool) -> Self {
        Self {
            id,
            model,
            created,
            include_usage,
        }
    }

    /// Whether the client asked for the usage chunk.
    pub fn include_usage(&self) -> bool {
        self.include_usage
    }

    /// The chunk JSON for one delta. A [`Delta::Usage`] is the usage chunk
    /// (no choices); callers write it only when [`Self::include_usage`].
    pub fn write(&self, delta: &Delta<'_>) -> Vec<u8> {
        if let Delta::Usage(usage) = delta {
            return self.serialise(&[], Some(UsageOut::from(*usage)));
        }
        let mut choice = ChoiceOut {
            index: 0,
            delta: DeltaOut::default(),
            logprobs: None,
            finish_reason: None,
            stop_reason: None,
        };
        match delta {
            Delta::Role => {
                choice.delta.role = Some("assistant");
                choice.delta.content = Some("");
                choice.delta.refusal = Some(None);
            }
            Delta::Text(text) => choice.delta.content = Some(text),
            Delta::Reasoning(text) => choice.delta.reasoning_content = Some(text),
            Delta::ToolCallStart { index, id, name } => {
                let function = FunctionDeltaOut {
                    name: Some(name),
                    arguments: "",
                };
                choice.delta.tool_calls = Some([ToolCallDeltaOut {
                    index: *index,
                    id: Some(id),
                    kind: Some("function"),
                    function,
                }]);
            }
            Delta::ToolCallArguments { index, fragment } => {
                let function = FunctionDeltaOut {
                    name: None,
                    arguments: fragment,
                };
                choice.delta.tool_calls = Some([ToolCallDeltaOut {
                    index: *index,
                    id: None,
                    kind: None,
                    function,
                }]);
            }
            Delta::Finish {
                reason,
                stop_sequence,
            } => {
                choice.finish_reason = Some(reason.openai());
                choice.stop_reason = stop_sequence.as_deref();
            }
            Delta::Usage(_) => {}
        }
        self.serialise(&[choice], None)
    }

    fn serialise(&self, choices: &[ChoiceOut<'_>], usage: Option<UsageOut>) -> Vec<u8> {
        let chunk = ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices,
            usage: self.include_usage.then_some(usage),
        };
        // Serialising these types into a Vec cannot fail.
        serde_json::to_vec(&chunk).unwrap_or_default()
    }
}

/// Reads one OpenAI chunk, calling `on_delta` with the chunk's id and model
/// and each delta it carries, in order (role, reasoning, text, tool calls,
/// finish, usage). Empty text and empty argument fragments are skipped.
pub fn read_chunk<'a>(
    data: &'a str,
    on_delta: impl FnMut(&ChunkMeta<'a>, Delta<'a>),
) -> Result<(), serde_json::Error> {
    // One pass where that reads as serde would (see `scan`), serde otherwise.
    let chunk: ChunkIn<'a> = match super::scan::chunk(data) {
        Some(chunk) => chunk,
        None => serde_json::from_str(data)?,
    };
    deltas_of(chunk, on_delta);
    Ok(())
}

/// The deltas of a chunk read, in order.
pub(super) fn deltas_of<'a>(
    chunk: ChunkIn<'a>,
    mut on_delta: impl FnMut(&ChunkMeta<'a>, Delta<'a>),
) {
    let meta = ChunkMeta {
        id: chunk.id,
        model: chunk.model,
    };
    let mut on_delta = |delta| on_delta(&meta, delta);
    for choice in chunk.choices {
        if let Some(delta) = choice.delta {
            read_delta(delta, &mut on_delta);
        }
        if let Some((reason, stop_sequence)) =
            finish(choice.finish_reason.as_deref(), choice.stop_reason)
        {
            on_delta(Delta::Finish {
                reason,
                stop_sequence,
            });
        }
    }
    if let Some(usage) = chunk.usage {
        on_delta(Delta::Usage(TokenUsage::from(usage)));
    }
}

fn read_delta<'a>(delta: DeltaIn<'a>, on_delta: &mut impl FnMut(Delta<'a>)) {
    let non_empty = |text: Option<Cow<'a, str>>| text.filter(|text| !text.is_empty());
    if delta.role.is_some() {
        on_delta(Delta::Role);
    }
    if let Some(text) = non_empty(delta.reasoning_content) {
        on_delta(Delta::Reasoning(text));
    }
    if let Some(text) = non_empty(delta.content) {
        on_delta(Delta::Text(text));
    }
    if let Some(text) = non_empty(delta.refusal) {
        on_delta(Delta::Text(text));
    }
    for call in delta.tool_calls.unwrap_or_default() {
        let index = call.index;
        let (name, arguments) = call
            .function
            .map_or((None, None), |function| (function.name, function.arguments));
        if call.id.is_some() || name.is_some() {
            on_delta(Delta::ToolCallStart {
                index,
                id: call.id.unwrap_or_default(),
                name: name.unwrap_or_default(),
            });
        }
        if let Some(fragment) = non_empty(arguments) {
            on_delta(Delta::ToolCallArguments { index, fragment });
        }
    }
}
