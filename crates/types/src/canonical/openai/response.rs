//! OpenAI `chat.completion` JSON ↔ the canonical [`Response`].

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::canonical::{FinishReason, Response, ResponseRef, TokenUsage, ToolCallRef};
use crate::Usage;

#[derive(Serialize)]
struct CompletionOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChoiceOut<'a>; 1],
    usage: UsageOut,
    /// OpenAI sends it on every completion; no upstream of a translated
    /// answer has one, so it is `null`, as OpenAI's schema allows.
    system_fingerprint: Option<()>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    message: MessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    /// The stop sequence that matched, where vLLM reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<String>,
    /// Required by OpenAI's schema; a canonical answer's text (an
    /// Anthropic refusal included) is content, so it is always `null`.
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// OpenAI usage with the cache counts in `prompt_tokens_details`
/// (`cache_creation_tokens` is Keel's addition: OpenAI has no such count).
#[derive(Serialize)]
pub(crate) struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetailsOut,
}

#[derive(Serialize)]
struct PromptDetailsOut {
    cached_tokens: u64,
    cache_creation_tokens: u64,
}

#[derive(Default, Deserialize)]
pub(super) struct CompletionIn<'a> {
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
    #[serde(borrow)]
    pub(super) message: MessageIn<'a>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    pub(super) finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) stop_reason: StopText<'a>,
}

/// A choice's `stop_reason` (vLLM's extension, also written by Keel): the
/// matched stop sequence when it is text; a token id or `null` reads as none.
#[derive(Default)]
pub(crate) struct StopText<'a>(pub(super) Option<Cow<'a, str>>);

struct StopTextVisitor;

#[derive(Default, Deserialize)]
pub(super) struct MessageIn<'a> {
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
    pub(super) tool_calls: Option<Vec<ToolCallIn<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct ToolCallIn<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    function: FunctionIn<'a>,
}

#[derive(Deserialize)]
struct FunctionIn<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    arguments: Cow<'a, str>,
}

/// OpenAI usage as read from a completion or a chunk.
#[derive(Default, Deserialize)]
pub(crate) struct UsageIn {
    #[serde(default)]
    pub(super) prompt_tokens: u64,
    #[serde(default)]
    pub(super) completion_tokens: u64,
    #[serde(default)]
    pub(super) prompt_tokens_details: Option<PromptDetailsIn>,
}

#[derive(Default, Deserialize)]
pub(super) struct PromptDetailsIn {
    #[serde(default)]
    pub(super) cached_tokens: Option<u64>,
    #[serde(default)]
    pub(super) cache_creation_tokens: Option<u64>,
}

/// Writes `response` as an OpenAI `chat.completion`. Text blocks are joined;
/// `content` is `null` only when the answer is tool calls alone.
pub fn completion_json(response: &Response, created: u64) -> Vec<u8> {
    completion_json_with_id(response, &response.id, created)
}

/// [`completion_json`] under another id (a replayed answer gets a fresh one).
pub fn completion_json_with_id(response: &Response, id: &str, created: u64) -> Vec<u8> {
    let tool_calls: Vec<ToolCallOut<'_>> = response
        .tool_calls
        .iter()
        .map(|call| ToolCallOut {
            id: &call.id,
            kind: "function",
            function: FunctionOut {
                name: &call.name,
                arguments: &call.arguments,
            },
        })
        .collect();
    let content =
        (!response.text.is_empty() || tool_calls.is_empty()).then(|| response.text.concat());
    let message = MessageOut {
        role: "assistant",
        content,
        refusal: None,
        reasoning_content: response.reasoning.as_deref(),
        tool_calls,
    };
    let completion = CompletionOut {
        id,
        object: "chat.completion",
        created,
        model: &response.model,
        choices: [ChoiceOut {
            index: 0,
            message,
            logprobs: None,
            finish_reason: response.finish.map(FinishReason::openai),
            stop_reason: response.stop_sequence.as_deref(),
        }],
        usage: UsageOut::from(response.usage),
        system_fingerprint: None,
    };
    // Serialising these types into a Vec cannot fail.
    serde_json::to_vec(&completion).unwrap_or_default()
}

/// Reads an OpenAI `chat.completion` (its first choice) as a canonical response.
pub fn read_completion(body: &[u8]) -> Result<Response, serde_json::Error> {
    read_completion_borrowed(body).map(ResponseRef::into_owned)
}

/// [`read_completion`], borrowing the completion's text wherever it has no
/// escapes, for a front end that writes the answer out at once.
pub fn read_completion_borrowed(body: &[u8]) -> Result<ResponseRef<'_>, serde_json::Error> {
    // Text already checked as UTF-8 is not checked again string by string;
    // anything else is read as before (and refused where it was).
    let completion: CompletionIn<'_> = match std::str::from_utf8(body) {
        Ok(text) => match super::scan::completion(text) {
            Some(completion) => completion,
            None => serde_json::from_str(text)?,
        },
        Err(_) => serde_json::from_slice(body)?,
    };
    Ok(response_of(completion))
}

/// The completion read once for both the adapter's check and a front
/// end's translation: the answer, and the usage that check
/// ([`crate::inspect_answer`]) reads. `None` wherever that check must
/// decide (see `scan::checked_completion`); where this answers, that check
/// passes the completion with the same usage.
pub fn read_checked_completion(body: &[u8]) -> Option<(ResponseRef<'_>, Option<Usage>)> {
    let text = std::str::from_utf8(body).ok()?;
    let (completion, usage) = super::scan::checked_completion(text)?;
    Some((response_of(completion), usage))
}

/// The answer a completion holds: its first choice.
pub(super) fn response_of(completion: CompletionIn<'_>) -> ResponseRef<'_> {
    let mut response = ResponseRef {
        id: completion.id,
        model: completion.model,
        usage: completion.usage.map(TokenUsage::from).unwrap_or_default(),
        ..ResponseRef::default()
    };
    let Some(choice) = completion.choices.into_iter().next() else {
        return response;
    };
    let message = choice.message;
    response
        .text
        .extend(message.content.filter(|text| !text.is_empty()));
    response
        .text
        .extend(message.refusal.filter(|text| !text.is_empty()));
    response.reasoning = message.reasoning_content.filter(|text| !text.is_empty());
    let calls = message.tool_calls.unwrap_or_default().into_iter();
    response.tool_calls = calls
        .map(|call| ToolCallRef {
            id: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
        })
        .collect();
    if let Some((reason, stop_sequence)) =
        finish(choice.finish_reason.as_deref(), choice.stop_reason)
    {
        response.finish = Some(reason);
        response.stop_sequence = stop_sequence;
    }
    response
}

/// A string that may be absent or `null`, borrowed from the JSON where it
/// has no escapes (serde reads an `Option<Cow<str>>` as an owned copy
/// whatever `borrow` says).
pub(crate) fn optional_text<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Option::<Text<'a>>::deserialize(deserializer).map(|text| text.map(|Text(text)| text))
}

/// A string read borrowed where it can be.
struct Text<'a>(Cow<'a, str>);

struct TextVisitor;

/// The canonical finish of an OpenAI choice: a `stop` with a textual
/// `stop_reason` was a stop sequence.
pub(crate) fn finish<'a>(
    finish_reason: Option<&str>,
    stop_reason: StopText<'a>,
) -> Option<(FinishReason, Option<Cow<'a, str>>)> {
    let reason = FinishReason::from_openai(finish_reason?)?;
    match (reason, stop_reason.0) {
        (FinishReason::Stop, Some(sequence)) => Some((FinishReason::StopSequence, Some(sequence))),
        (reason, _) => Some((reason, None)),
    }
}

// === impl Text ===

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> serde::de::Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text)))
    }
}

// === impl StopText ===

impl<'de: 'a, 'a> Deserialize<'de> for StopText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StopTextVisitor)
    }
}

impl<'de> serde::de::Visitor<'de> for StopTextVisitor {
    type Value = StopText<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a stop sequence, a token id or null")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<StopText<'de>, E> {
        Ok(StopText(Some(Cow::Borrowed(text))))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<StopText<'de>, E> {
        Ok(StopText(Some(Cow::Owned(text.to_owned()))))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<StopText<'de>, E> {
        Ok(StopText(None))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<StopText<'de>, E> {
        Ok(StopText(None))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<StopText<'de>, E> {
        Ok(StopText(None))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<StopText<'de>, E> {
        Ok(StopText(None))
    }
}

// === impl UsageOut ===

impl From<TokenUsage> for UsageOut {
    fn from(usage: TokenUsage) -> Self {
        let prompt_tokens = usage.prompt_total();
        Self {
            prompt_tokens,
            completion_tokens: usage.output,
            total_tokens: prompt_tokens.saturating_add(usage.output),
            prompt_tokens_details: PromptDetailsOut {
                cached_tokens: usage.cache_read,
                cache_creation_tokens: usage.cache_creation,
            },
        }
    }
}

// === impl TokenUsage ===

impl From<UsageIn> for TokenUsage {
    fn from(usage: UsageIn) -> Self {
        let details = usage.prompt_tokens_details.unwrap_or(PromptDetailsIn {
            cached_tokens: None,
            cache_creation_tokens: None,
        });
        let cache_read = details.cached_tokens.unwrap_or(0);
        let cache_creation = details.cache_creation_tokens.unwrap_or(0);
        Self {
            input: usage
                .prompt_tokens
                .saturating_sub(cache_read)
                .saturating_sub(cache_creation),
            output: usage.completion_tokens,
            cache_read,
            cache_creation,
        }
    }
}
