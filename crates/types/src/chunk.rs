//! Classifies one OpenAI `chat.completion.chunk` by reading only the fields the
//! gateway acts on: does it carry a token (the commit point), does it finish
//! the choice, is it an in-band error, what usage does it report.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::canonical::openai::optional_text;

/// What one chunk means to the gateway.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkInfo {
    /// It carries content, a tool-call delta, a refusal or reasoning: the first
    /// such chunk is the commit point. Role-only and empty chunks do not count.
    pub has_token: bool,
    /// A choice has a `finish_reason`: the answer is complete.
    pub finished: bool,
    /// The data line is an `{"error": …}` object sent after a 200.
    pub is_error: bool,
    /// Token usage, when the chunk reports it.
    pub usage: Option<Usage>,
    /// It is the usage chunk: usage and no choices.
    pub usage_only: bool,
    /// The chunk's text, when text is all it carries that a translation
    /// acts on: one choice, its delta's `content` (perhaps with a `role`),
    /// no finish, usage, refusal, reasoning or tool call. A translating
    /// front end writes it without reading the chunk a second time.
    pub text: Option<ChunkText>,
}

/// Where a chunk's text is: a range of its JSON text when the string has
/// no escapes, the text itself (escapes resolved) otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkText {
    /// Bytes of the chunk's data.
    Span(std::ops::Range<usize>),
    /// The string, unescaped.
    Owned(String),
}

// === impl ChunkText ===

impl ChunkText {
    /// The text, given the chunk's data it was read from.
    pub fn as_str<'a>(&'a self, data: &'a [u8]) -> Option<&'a str> {
        match self {
            Self::Span(range) => std::str::from_utf8(data.get(range.clone())?).ok(),
            Self::Owned(text) => Some(text),
        }
    }
}

/// OpenAI token usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u64,
    /// The prompt's breakdown, when the upstream reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`: what of the prompt came from the
/// provider's prompt cache (billed at its `cached_input` price).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the provider's cache (part of `prompt_tokens`).
    #[serde(default)]
    pub cached_tokens: u64,
}

// === impl Usage ===

impl Usage {
    /// Prompt tokens read from the provider's cache, at most `prompt_tokens`.
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .map_or(0, |details| details.cached_tokens)
            .min(self.prompt_tokens)
    }
}

#[derive(Deserialize)]
struct ChunkProbe<'a> {
    #[serde(default, borrow)]
    choices: Choices<'a>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceProbe<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaProbe<'a>>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

/// A chunk's choices, read one at a time into what the gateway judges of
/// them all, the first one kept whole: no list is built.
#[derive(Default)]
struct Choices<'a> {
    count: usize,
    has_token: bool,
    finished: bool,
    first: Option<ChoiceProbe<'a>>,
}

struct ChoicesVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Deserialize<'de> for Choices<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ChoicesVisitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> serde::de::Visitor<'de> for ChoicesVisitor<'a> {
    type Value = Choices<'a>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an array of choices")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Choices<'a>, A::Error> {
        let mut choices = Choices::default();
        while let Some(choice) = seq.next_element::<ChoiceProbe<'a>>()? {
            choices.finished |= choice.finish_reason.is_some();
            choices.has_token |= choice.delta.as_ref().is_some_and(delta_has_token);
            if choices.count == 0 {
                choices.first = Some(choice);
            }
            choices.count += 1;
        }
        Ok(choices)
    }
}

/// Its strings are borrowed from the chunk where they have no escapes
/// (serde would copy every `Option<Cow<str>>`), which also says where the
/// text is for [`ChunkInfo::text`].
#[derive(Deserialize)]
struct DeltaProbe<'a> {
    #[serde(default, borrow, deserialize_with = "optional_text")]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    refusal: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    reasoning_content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    reasoning: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    function_call: Option<IgnoredAny>,
}

/// Classifies the JSON of one SSE `data:` line. Text that is not a chunk
/// object is reported as an error chunk, since forwarding it would hand the
/// client something it cannot parse.
pub fn inspect_chunk(data: &str) -> ChunkInfo {
    let Ok(probe) = serde_json::from_str::<ChunkProbe<'_>>(data) else {
        return ChunkInfo {
            is_error: true,
            ..ChunkInfo::default()
        };
    };
    let choices = probe.choices;
    let mut info = ChunkInfo {
        is_error: probe.error.is_some(),
        usage: probe.usage,
        usage_only: probe.usage.is_some() && choices.count == 0,
        has_token: choices.has_token,
        finished: choices.finished,
        ..ChunkInfo::default()
    };
    if !info.is_error && info.usage.is_none() && choices.count == 1 {
        info.text = choices.first.and_then(|choice| only_text(choice, data));
    }
    info
}

/// The text of a chunk's one choice when it carries only text (see
/// [`ChunkInfo::text`]).
fn only_text(choice: ChoiceProbe<'_>, data: &str) -> Option<ChunkText> {
    let delta = choice.delta.filter(|_| choice.finish_reason.is_none())?;
    let empty =
        |text: &Option<std::borrow::Cow<'_, str>>| text.as_deref().is_none_or(str::is_empty);
    let only_text = empty(&delta.refusal)
        && empty(&delta.reasoning_content)
        && empty(&delta.reasoning)
        && delta.tool_calls.is_none_or(|calls| calls.is_empty())
        && delta.function_call.is_none();
    match delta.content.filter(|text| only_text && !text.is_empty())? {
        std::borrow::Cow::Owned(text) => Some(ChunkText::Owned(text)),
        std::borrow::Cow::Borrowed(text) => {
            // Borrowed from `data`: its place is where its pointer is.
            let start = (text.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
            let span = start..start + text.len();
            let same = data
                .get(span.clone())
                .is_some_and(|at| std::ptr::eq(at, text));
            same.then_some(ChunkText::Span(span))
        }
    }
}

fn delta_has_token(delta: &DeltaProbe<'_>) -> bool {
    let non_empty =
        |text: &Option<std::borrow::Cow<'_, str>>| text.as_deref().is_some_and(|t| !t.is_empty());
    non_empty(&delta.content)
        || non_empty(&delta.refusal)
        || non_empty(&delta.reasoning_content)
        || non_empty(&delta.reasoning)
        || delta
            .tool_calls
            .as_ref()
            .is_some_and(|calls| !calls.is_empty())
        || delta.function_call.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_and_empty_chunks_are_not_tokens() {
        let role = inspect_chunk(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        );
        assert_eq!(role, ChunkInfo::default());
    }

    #[test]
    fn content_tool_calls_and_reasoning_are_tokens() {
        for data in [
            r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            r#"{"choices":[{"delta":{"content":"\u00e9"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"thinking"}}]}"#,
        ] {
            assert!(inspect_chunk(data).has_token, "{data}");
        }
    }

    #[test]
    fn finish_usage_and_errors_are_seen() {
        assert!(inspect_chunk(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#).finished);
        let usage = inspect_chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        )
        .usage;
        assert_eq!(usage.map(|u| u.total_tokens), Some(7));
        assert!(inspect_chunk(r#"{"error":{"message":"overloaded"}}"#).is_error);
        assert!(inspect_chunk("not json").is_error);
    }

    #[test]
    fn a_chunk_of_text_only_says_where_its_text_is() {
        let text_of = |data: &str| {
            let text = inspect_chunk(data).text?;
            text.as_str(data.as_bytes()).map(str::to_owned)
        };
        let plain = r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi there"},"finish_reason":null}]}"#;
        assert_eq!(inspect_chunk(plain).text, Some(ChunkText::Span(52..60)));
        assert_eq!(text_of(plain).as_deref(), Some("Hi there"));
        for (data, text) in [
            (
                r#"{"choices":[{"delta":{"content":"a\nb \u00e9"}}]}"#,
                "a\nb é",
            ),
            (
                r#"{"choices":[{"delta":{"role":"assistant","content":"x","refusal":null,"tool_calls":[]}}]}"#,
                "x",
            ),
            (
                r#"{"usage":null,"choices":[{"delta":{"content":"y","reasoning_content":""}}]}"#,
                "y",
            ),
        ] {
            assert_eq!(text_of(data).as_deref(), Some(text), "{data}");
        }
        for data in [
            r#"{"choices":[{"delta":{"content":""}}]}"#,
            r#"{"choices":[{"delta":{"content":"x"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#,
            r#"{"choices":[{"delta":{"content":"x"}},{"delta":{"content":"y"}}]}"#,
            r#"{"choices":[{"delta":{"content":"x","refusal":"no"}}]}"#,
            r#"{"choices":[{"delta":{"content":"x","reasoning":"hm"}}]}"#,
            r#"{"choices":[{"delta":{"content":"x","tool_calls":[{"index":0}]}}]}"#,
            r#"{"choices":[{"delta":{"content":"x","function_call":{"name":"f"}}}]}"#,
            r#"{"choices":[{"delta":{"content":"x"}}],"error":{"message":"m"}}"#,
            r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
        ] {
            assert_eq!(inspect_chunk(data).text, None, "{data}");
        }
    }

    /// Where the text says a chunk is text only, reading the whole chunk
    /// finds that text and nothing else a translation acts on (a role is
    /// acted on by none), on thousands of mutated chunks.
    #[test]
    fn the_text_of_a_text_only_chunk_is_what_reading_it_finds() {
        use crate::canonical::openai::read_chunk;
        use crate::canonical::Delta;
        let seeds = [
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello wor\u00e9ld"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"a\nb","refusal":null},"finish_reason":null}],"usage":null}"#,
        ];
        let mut found = 0;
        for seed in 0..20_000u64 {
            let body = crate::hostile::mutation(seeds[(seed % 2) as usize].as_bytes(), seed);
            let Ok(data) = std::str::from_utf8(&body) else {
                continue;
            };
            let Some(text) = inspect_chunk(data).text else {
                continue;
            };
            let text = text.as_str(data.as_bytes()).map(str::to_owned);
            let mut deltas = Vec::new();
            let read = read_chunk(data, |_, delta| match delta {
                Delta::Role => {}
                Delta::Text(text) => deltas.push(Some(text.into_owned())),
                _ => deltas.push(None),
            });
            if read.is_ok() {
                found += 1;
                assert_eq!(deltas, [text], "seed {seed}: {data}");
            }
        }
        assert!(
            found > 1_000,
            "only {found} mutations were text-only chunks"
        );
    }
}
