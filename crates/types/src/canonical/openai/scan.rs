//! A `chat.completion` (or one `chat.completion.chunk`) read in one pass
//! over its text, without serde's machinery, for the shape upstreams send:
//! a front end that translates the answer reads what the adapter has
//! already scanned for its usage, and serde's generic visitors cost as much
//! again as that scan.
//!
//! The reader only answers when it is sure to agree with serde: anything it
//! does not read exactly as serde would (tool calls, a key given twice,
//! a float where a count goes, an escaped key, deep nesting, a
//! malformed value anywhere) makes it answer `None`, and the caller reads
//! the completion with serde, which decides.

use std::borrow::Cow;

use crate::json_scan::Scan;
use crate::{PromptTokensDetails, Usage};

use super::chunk::{ChoiceIn as ChunkChoiceIn, ChunkIn, DeltaIn};
use super::response::{ChoiceIn, CompletionIn, MessageIn, PromptDetailsIn, StopText, UsageIn};

/// The completion in `text`, or `None` when serde must read it.
pub(super) fn completion(text: &str) -> Option<CompletionIn<'_>> {
    let mut scan = Scan::new(text);
    let completion = scan.completion()?;
    scan.finished().then_some(completion)
}

/// The completion in `text` and the usage the adapter's own check reads
/// of it ([`crate::inspect_answer`]), or `None` wherever that check must
/// decide: a key this pass leaves to serde, no `choices`, any `error` key,
/// usage that check cannot read in one pass.
pub(super) fn checked_completion(text: &str) -> Option<(CompletionIn<'_>, Option<Usage>)> {
    let mut scan = Scan::new(text);
    let answer = scan.answer(Scan::choice, Scan::checked_usage)?;
    if !scan.finished() || answer.error || !answer.has_choices {
        return None;
    }
    let (usage, checked_usage) = answer.usage.unzip();
    let completion = CompletionIn {
        id: answer.id,
        model: answer.model,
        choices: answer.choices,
        usage,
    };
    Some((completion, checked_usage))
}

/// The stream chunk in `text`, or `None` when serde must read it.
pub(super) fn chunk(text: &str) -> Option<ChunkIn<'_>> {
    let mut scan = Scan::new(text);
    let chunk = scan.chunk()?;
    scan.finished().then_some(chunk)
}

/// The fields a completion and a stream chunk share.
struct Answer<'a, C, U> {
    id: Cow<'a, str>,
    model: Cow<'a, str>,
    choices: Vec<C>,
    usage: Option<U>,
    /// `choices` was there.
    has_choices: bool,
    /// An `error` key was there (its value passed over).
    error: bool,
}

// === impl Scan ===

impl<'a> Scan<'a> {
    fn completion(&mut self) -> Option<CompletionIn<'a>> {
        let Answer {
            id,
            model,
            choices,
            usage,
            ..
        } = self.answer(Self::choice, Self::usage)?;
        Some(CompletionIn {
            id,
            model,
            choices,
            usage,
        })
    }

    fn chunk(&mut self) -> Option<ChunkIn<'a>> {
        let Answer {
            id,
            model,
            choices,
            usage,
            ..
        } = self.answer(Self::chunk_choice, Self::usage)?;
        Some(ChunkIn {
            id,
            model,
            choices,
            usage,
        })
    }

    /// What a completion and a chunk both hold, the `choices` each read
    /// by `choice` and the usage by `usage`.
    fn answer<C, U>(
        &mut self,
        mut choice: impl FnMut(&mut Self) -> Option<C>,
        mut usage: impl FnMut(&mut Self) -> Option<U>,
    ) -> Option<Answer<'a, C, U>> {
        let mut answer = Answer {
            id: Cow::Borrowed(""),
            model: Cow::Borrowed(""),
            choices: Vec::new(),
            usage: None,
            has_choices: false,
            error: false,
        };
        let mut seen = [false; 4];
        self.object(|scan, key| {
            match key {
                "id" => answer.id = scan.once(&mut seen[0])?.string()?,
                "model" => answer.model = scan.once(&mut seen[1])?.string()?,
                "choices" => {
                    let choices = &mut answer.choices;
                    scan.once(&mut seen[2])?
                        .array(|scan| choice(scan).map(|choice| choices.push(choice)))?;
                    answer.has_choices = true;
                }
                "usage" => answer.usage = scan.once(&mut seen[3])?.nullable(&mut usage)?,
                "error" => {
                    answer.error = true;
                    scan.skip()?;
                }
                _ => scan.skip()?,
            }
            Some(())
        })?;
        Some(answer)
    }

    fn chunk_choice(&mut self) -> Option<ChunkChoiceIn<'a>> {
        let (delta, finish_reason, stop_reason) =
            self.choice_with("delta", |scan| scan.nullable(Self::delta))?;
        Some(ChunkChoiceIn {
            delta: delta.flatten(),
            finish_reason,
            stop_reason,
        })
    }

    fn choice(&mut self) -> Option<ChoiceIn<'a>> {
        let (message, finish_reason, stop_reason) = self.choice_with("message", Self::message)?;
        Some(ChoiceIn {
            message: message?,
            finish_reason,
            stop_reason,
        })
    }

    /// A choice of a completion or a chunk: its `body` (`message` or
    /// `delta`, read by `read`), `finish_reason` and `stop_reason`.
    fn choice_with<T>(
        &mut self,
        body: &str,
        mut read: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<(Option<T>, Option<Cow<'a, str>>, StopText<'a>)> {
        let mut content = None;
        let mut finish_reason = None;
        let mut stop_reason = StopText::default();
        let mut seen = [false; 3];
        self.object(|scan, key| {
            match key {
                _ if key == body => content = Some(read(scan.once(&mut seen[0])?)?),
                "finish_reason" => {
                    finish_reason = scan.once(&mut seen[1])?.nullable(Self::string)?;
                }
                "stop_reason" => {
                    stop_reason = StopText(scan.once(&mut seen[2])?.nullable(Self::string)?);
                }
                _ => scan.skip()?,
            }
            Some(())
        })?;
        Some((content, finish_reason, stop_reason))
    }

    fn delta(&mut self) -> Option<DeltaIn<'a>> {
        let mut delta = DeltaIn::default();
        let mut seen = [false; 5];
        self.object(|scan, key| {
            match key {
                "role" => delta.role = scan.once(&mut seen[0])?.nullable(Self::string)?,
                "content" => delta.content = scan.once(&mut seen[1])?.nullable(Self::string)?,
                "refusal" => delta.refusal = scan.once(&mut seen[2])?.nullable(Self::string)?,
                "reasoning_content" | "reasoning" => {
                    delta.reasoning_content = scan.once(&mut seen[3])?.nullable(Self::string)?;
                }
                "tool_calls" => {
                    delta.tool_calls = scan.once(&mut seen[4])?.nullable(Self::no_tool_calls)?
                }
                _ => scan.skip()?,
            }
            Some(())
        })?;
        Some(delta)
    }

    /// A `tool_calls` list holding no call. Calls themselves are left to
    /// serde (`None`: read the whole thing there).
    fn no_tool_calls<T>(&mut self) -> Option<Vec<T>> {
        self.array(|_| None)?;
        Some(Vec::new())
    }

    fn message(&mut self) -> Option<MessageIn<'a>> {
        let mut message = MessageIn::default();
        let mut seen = [false; 4];
        self.object(|scan, key| {
            match key {
                "content" => message.content = scan.once(&mut seen[0])?.nullable(Self::string)?,
                "refusal" => message.refusal = scan.once(&mut seen[1])?.nullable(Self::string)?,
                "reasoning_content" | "reasoning" => {
                    message.reasoning_content = scan.once(&mut seen[2])?.nullable(Self::string)?;
                }
                "tool_calls" => {
                    message.tool_calls = scan.once(&mut seen[3])?.nullable(Self::no_tool_calls)?
                }
                _ => scan.skip()?,
            }
            Some(())
        })?;
        Some(message)
    }

    fn usage(&mut self) -> Option<UsageIn> {
        self.usage_both_ways(false).map(|(usage, _)| usage)
    }

    /// `usage` as [`Self::usage`] reads it and as the adapter's check does
    /// (`crate::chunk::scan_usage`), in one pass: `None` wherever either
    /// would refuse it, or leave it to serde.
    fn checked_usage(&mut self) -> Option<(UsageIn, Usage)> {
        self.usage_both_ways(true)
    }

    /// `usage` for the canonical form and, where `checked`, as the
    /// adapter's check reads it too: then `total_tokens` and `cached_tokens`
    /// must be counts, as that check requires (the canonical reading passes
    /// over the first and takes `null` for the second).
    fn usage_both_ways(&mut self, checked: bool) -> Option<(UsageIn, Usage)> {
        let (mut usage, mut read) = (UsageIn::default(), Usage::default());
        let mut seen = [false; 4];
        self.object(|scan, key| {
            match key {
                "prompt_tokens" => {
                    usage.prompt_tokens = scan.once(&mut seen[0])?.count()?;
                    read.prompt_tokens = usage.prompt_tokens;
                }
                "completion_tokens" => {
                    usage.completion_tokens = scan.once(&mut seen[1])?.count()?;
                    read.completion_tokens = usage.completion_tokens;
                }
                "total_tokens" if checked => {
                    read.total_tokens = scan.once(&mut seen[2])?.count()?
                }
                "prompt_tokens_details" => {
                    let details = scan
                        .once(&mut seen[3])?
                        .nullable(|scan| scan.details_both_ways(checked))?;
                    (usage.prompt_tokens_details, read.prompt_tokens_details) = details.unzip();
                }
                _ => scan.skip()?,
            }
            Some(())
        })?;
        Some((usage, read))
    }

    /// `prompt_tokens_details` read both ways (see [`Self::usage_both_ways`]).
    fn details_both_ways(
        &mut self,
        checked: bool,
    ) -> Option<(PromptDetailsIn, PromptTokensDetails)> {
        let (mut details, mut read) = (PromptDetailsIn::default(), PromptTokensDetails::default());
        let mut seen = [false; 2];
        self.object(|scan, key| {
            match key {
                "cached_tokens" => {
                    let scan = scan.once(&mut seen[0])?;
                    details.cached_tokens = if checked {
                        Some(scan.count()?)
                    } else {
                        scan.nullable(Self::count)?
                    };
                    read.cached_tokens = details.cached_tokens.unwrap_or(0);
                }
                "cache_creation_tokens" => {
                    details.cache_creation_tokens =
                        scan.once(&mut seen[1])?.nullable(Self::count)?;
                }
                _ => scan.skip()?,
            }
            Some(())
        })?;
        Some((details, read))
    }
}
