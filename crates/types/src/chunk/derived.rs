//! The serde-derived reading of a chunk: the one that decides where the
//! one-pass read of [`super::inspect_chunk`] cannot be sure.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{chunk_info, ChoiceProbe, Choices, ChunkInfo, ChunkText, DeltaProbe, Text, Usage};
use crate::canonical::openai::optional_text;

#[derive(Deserialize)]
struct ChunkProbe<'a> {
    #[serde(default, borrow)]
    choices: ChoicesIn<'a>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceIn<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaIn<'a>>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

/// Its strings are borrowed from the chunk where they have no escapes
/// (serde would copy every `Option<Cow<str>>`), which also says where the
/// text is for [`ChunkInfo::text`].
#[derive(Deserialize)]
struct DeltaIn<'a> {
    #[serde(default, borrow, deserialize_with = "optional_text")]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "optional_text")]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    function_call: Option<IgnoredAny>,
}

/// The choices, read one at a time into what the gateway judges of them
/// all (the rules of [`Choices`]): no list is built.
#[derive(Default)]
struct ChoicesIn<'a>(Choices<Cow<'a, str>>);

impl Text for Cow<'_, str> {
    fn is_empty(&self) -> bool {
        str::is_empty(self)
    }
}

impl<'a> From<ChoiceIn<'a>> for ChoiceProbe<Cow<'a, str>> {
    fn from(choice: ChoiceIn<'a>) -> Self {
        let delta = choice.delta.map(|delta| DeltaProbe {
            content: delta.content,
            refusal: delta.refusal,
            reasoning_content: delta.reasoning_content,
            reasoning: delta.reasoning,
            tool_calls: delta.tool_calls.map(|calls| calls.len()),
            function_call: delta.function_call.is_some(),
        });
        Self {
            delta,
            finished: choice.finish_reason.is_some(),
        }
    }
}

struct ChoicesVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Deserialize<'de> for ChoicesIn<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ChoicesVisitor(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> serde::de::Visitor<'de> for ChoicesVisitor<'a> {
    type Value = ChoicesIn<'a>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an array of choices")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<ChoicesIn<'a>, A::Error> {
        let mut choices = Choices::default();
        while let Some(choice) = seq.next_element::<ChoiceIn<'a>>()? {
            choices.add(choice.into());
        }
        Ok(ChoicesIn(choices))
    }
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
    let error = probe.error.is_some();
    chunk_info(probe.choices.0, probe.usage, error, |text| {
        chunk_text(text, data)
    })
}

/// Where a text read from `data` is: its place when serde borrowed it, the
/// text itself when it had escapes.
fn chunk_text(text: Cow<'_, str>, data: &str) -> Option<ChunkText> {
    match text {
        Cow::Owned(text) => Some(ChunkText::Owned(text)),
        Cow::Borrowed(text) => {
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
