//! The serde-derived reading of a chunk: the one that decides where the
//! one-pass read of [`super::inspect_chunk`] cannot be sure.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{ChunkInfo, ChunkText, Usage};
use crate::canonical::openai::optional_text;

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
pub(super) fn inspect_chunk(data: &str) -> ChunkInfo {
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
