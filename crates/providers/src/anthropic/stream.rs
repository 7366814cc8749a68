//! Anthropic Messages stream events → OpenAI chunks, through canonical
//! deltas. Each event is read with one typed, borrowing parse and each chunk
//! written straight from the delta: no JSON tree per event.
//!
//! Anthropic's content blocks are indexed across the message; OpenAI's tool
//! calls are indexed among tool calls, so the converter keeps one small
//! table from block index to what the block is.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use keel_sse::{DecodeError, Event};
use keel_types::canonical::openai::ChunkWriter;
use keel_types::canonical::{Delta, FinishReason, TokenUsage};
use serde::Deserialize;

use super::response::{finish_reason, in_band_error, UsageIn};
use crate::reply::{next_data_event, until_terminal};
use crate::{EventStream, ProviderError, StreamEvent};

/// The state of one stream's conversion.
pub(crate) struct StreamConverter {
    created: u64,
    include_usage: bool,
    writer: Option<ChunkWriter>,
    /// (Anthropic block index, what it is), in order of appearance. The
    /// index comes from the upstream: it is looked up, never used as a
    /// position, so a huge one costs nothing.
    blocks: Vec<(u64, Block)>,
    tool_calls: u32,
    usage: TokenUsage,
    finished: bool,
}

/// The highest content block index accepted; a stream past it cannot be
/// translated and ends the attempt (real messages have a handful).
const MAX_BLOCK_INDEX: u64 = 1024;

/// What the content block at one Anthropic index is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Block {
    Text,
    Thinking,
    /// A tool call, with its OpenAI tool-call index.
    Tool(u32),
    /// A block with no OpenAI counterpart (redacted thinking, server tools).
    Other,
}

#[derive(Deserialize)]
struct EventIn<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    index: u64,
    #[serde(default, borrow)]
    message: Option<MessageStartIn<'a>>,
    #[serde(default, borrow)]
    content_block: Option<BlockStartIn<'a>>,
    #[serde(default, borrow)]
    delta: Option<DeltaIn<'a>>,
    #[serde(default)]
    usage: Option<UsageIn>,
}

#[derive(Deserialize)]
struct MessageStartIn<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    model: Cow<'a, str>,
    #[serde(default)]
    usage: Option<UsageIn>,
}

#[derive(Deserialize)]
struct BlockStartIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

/// A `content_block_delta` delta (typed) or a `message_delta` delta (stop reason).
#[derive(Deserialize)]
struct DeltaIn<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stop_sequence: Option<Cow<'a, str>>,
}

// === impl StreamConverter ===

impl StreamConverter {
    /// A converter for one stream; `created` stamps every chunk.
    pub(crate) fn new(created: u64, include_usage: bool) -> Self {
        Self {
            created,
            include_usage,
            writer: None,
            blocks: Vec::new(),
            tool_calls: 0,
            usage: TokenUsage::default(),
            finished: false,
        }
    }

    /// Converts one SSE event (`name` is its `event:` field, used when the
    /// data has no `type`), pushing the chunks it yields onto `out`;
    /// `message_stop` pushes [`StreamEvent::Done`] last.
    pub(crate) fn on_event(
        &mut self,
        provider: &str,
        name: &str,
        data: &str,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<(), ProviderError> {
        let event: EventIn<'_> =
            serde_json::from_str(data).map_err(|error| ProviderError::Protocol {
                provider: provider.to_owned(),
                detail: format!("an Anthropic stream event is not valid JSON: {error}"),
            })?;
        let kind = event.kind.as_deref().unwrap_or(name);
        match kind {
            "message_start" => self.message_start(event, out),
            "content_block_start" => self.block_start(provider, event, out)?,
            "content_block_delta" => self.block_delta(provider, event, out)?,
            "message_delta" => self.message_delta(event, out),
            "message_stop" => self.message_stop(out),
            "error" => return Err(in_band_error(provider, data)),
            // `ping`, `content_block_stop` and event types added later carry
            // nothing for the client.
            _ => {}
        }
        Ok(())
    }

    fn message_start(&mut self, event: EventIn<'_>, out: &mut VecDeque<StreamEvent>) {
        let (id, model, usage) = event.message.map_or_else(Default::default, |message| {
            (
                message.id.into_owned(),
                message.model.into_owned(),
                message.usage,
            )
        });
        if let Some(usage) = usage {
            usage.apply(&mut self.usage);
        }
        self.writer = Some(ChunkWriter::new(
            id,
            model,
            self.created,
            self.include_usage,
        ));
        self.push(&Delta::Role, out);
    }

    fn block_start(
        &mut self,
        provider: &str,
        event: EventIn<'_>,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<(), ProviderError> {
        self.require_start(provider)?;
        let Some(block) = event.content_block else {
            return Ok(());
        };
        let (kind, delta) = match block.kind.as_ref() {
            "text" => (Block::Text, block.text.map(Delta::Text)),
            "thinking" => (Block::Thinking, block.thinking.map(Delta::Reasoning)),
            "tool_use" => {
                let index = self.tool_calls;
                self.tool_calls += 1;
                let start = Delta::ToolCallStart {
                    index,
                    id: block.id.unwrap_or_default(),
                    name: block.name.unwrap_or_default(),
                };
                (Block::Tool(index), Some(start))
            }
            _ => (Block::Other, None),
        };
        if event.index > MAX_BLOCK_INDEX {
            return Err(ProviderError::Protocol {
                provider: provider.to_owned(),
                detail: format!(
                    "an Anthropic content block index {} is beyond {MAX_BLOCK_INDEX}",
                    event.index
                ),
            });
        }
        let known = self
            .blocks
            .iter()
            .position(|(index, _)| *index == event.index);
        match known {
            Some(position) => self.blocks[position].1 = kind,
            None => self.blocks.push((event.index, kind)),
        }
        if let Some(delta) = delta {
            self.push(&delta, out);
        }
        Ok(())
    }

    fn block_delta(
        &mut self,
        provider: &str,
        event: EventIn<'_>,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<(), ProviderError> {
        self.require_start(provider)?;
        let Some(delta) = event.delta else {
            return Ok(());
        };
        let block = self
            .blocks
            .iter()
            .find(|(index, _)| *index == event.index)
            .map_or(Block::Other, |(_, block)| *block);
        let delta = match (delta.kind.as_deref(), block) {
            (Some("text_delta"), _) => delta.text.map(Delta::Text),
            (Some("thinking_delta"), _) => delta.thinking.map(Delta::Reasoning),
            (Some("input_json_delta"), Block::Tool(index)) => delta
                .partial_json
                .map(|fragment| Delta::ToolCallArguments { index, fragment }),
            // Signatures and citations have no OpenAI counterpart.
            _ => None,
        };
        if let Some(delta) = delta {
            self.push(&delta, out);
        }
        Ok(())
    }

    fn message_delta(&mut self, event: EventIn<'_>, out: &mut VecDeque<StreamEvent>) {
        if let Some(usage) = event.usage {
            usage.apply(&mut self.usage);
        }
        let Some(delta) = event.delta else { return };
        if let Some(reason) = delta.stop_reason {
            self.finish(finish_reason(&reason), delta.stop_sequence, out);
        }
    }

    fn message_stop(&mut self, out: &mut VecDeque<StreamEvent>) {
        if !self.finished {
            self.finish(FinishReason::Stop, None, out);
        }
        if self.include_usage {
            self.push(&Delta::Usage(self.usage), out);
            if let Some(StreamEvent::Chunk { usage, .. }) = out.back_mut() {
                *usage = Some(self.usage.openai());
            }
        }
        out.push_back(StreamEvent::Done);
    }

    /// The finish chunk; it carries the usage for the router when the client
    /// gets no usage chunk.
    fn finish(
        &mut self,
        reason: FinishReason,
        stop_sequence: Option<Cow<'_, str>>,
        out: &mut VecDeque<StreamEvent>,
    ) {
        self.finished = true;
        let stop_sequence = stop_sequence.filter(|_| reason == FinishReason::StopSequence);
        self.push(
            &Delta::Finish {
                reason,
                stop_sequence,
            },
            out,
        );
        if !self.include_usage {
            if let Some(StreamEvent::Chunk { usage, .. }) = out.back_mut() {
                *usage = Some(self.usage.openai());
            }
        }
    }

    fn require_start(&self, provider: &str) -> Result<(), ProviderError> {
        match self.writer {
            Some(_) => Ok(()),
            None => Err(ProviderError::Protocol {
                provider: provider.to_owned(),
                detail: String::from("content arrived before message_start"),
            }),
        }
    }

    /// Writes one delta's chunk. Empty text and argument fragments are
    /// skipped: they carry nothing, and a token chunk marks the commit point.
    fn push(&self, delta: &Delta<'_>, out: &mut VecDeque<StreamEvent>) {
        let Some(writer) = &self.writer else { return };
        let token = match delta {
            Delta::Text(text)
            | Delta::Reasoning(text)
            | Delta::ToolCallArguments { fragment: text, .. }
                if text.is_empty() =>
            {
                return
            }
            Delta::Role | Delta::Finish { .. } | Delta::Usage(_) => false,
            Delta::Text(_)
            | Delta::Reasoning(_)
            | Delta::ToolCallStart { .. }
            | Delta::ToolCallArguments { .. } => true,
        };
        out.push_back(StreamEvent::Chunk {
            data: Bytes::from(writer.write(delta)),
            token,
            usage: None,
            text: None,
        });
    }
}

struct StreamState<S> {
    events: S,
    provider: Arc<str>,
    converter: StreamConverter,
    pending: VecDeque<StreamEvent>,
}

/// Turns the upstream body into OpenAI chunk events. A stream that ends
/// before `message_stop` is truncated.
pub(crate) fn event_stream<S, E>(
    provider: Arc<str>,
    bytes: S,
    converter: StreamConverter,
) -> EventStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let events = Box::pin(keel_sse::decode(bytes));
    let state = StreamState {
        events,
        provider,
        converter,
        pending: VecDeque::new(),
    };
    until_terminal(state, |mut state| async move {
        let item = next_event(&mut state).await;
        (item, state)
    })
}

async fn next_event<S, E>(state: &mut StreamState<S>) -> Result<StreamEvent, ProviderError>
where
    S: Stream<Item = Result<Event, DecodeError<E>>> + Unpin,
    E: std::fmt::Display,
{
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Ok(event);
        }
        let provider = &*state.provider;
        let event = next_data_event(&mut state.events, provider).await?;
        state
            .converter
            .on_event(provider, &event.event, &event.data, &mut state.pending)?;
    }
}
