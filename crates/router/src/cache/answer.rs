//! A cached answer: one canonical completion, assembled from what the
//! upstream sent (a whole completion, or a stream up to its terminal event)
//! and rendered back for each hit as JSON or as a well-formed chunk stream.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use keel_providers::{Completion, StreamEvent};
use keel_types::canonical::openai::{
    completion_json_with_id, read_chunk, read_completion, ChunkWriter,
};
use keel_types::canonical::{Delta, Response, TokenUsage, ToolCall};
use keel_types::Usage;

/// What the cache stores: the answer and who gave it.
pub(crate) struct StoredAnswer {
    /// The answer.
    pub body: StoredBody,
    /// The provider that answered.
    pub provider: Arc<str>,
    /// The upstream model that answered.
    pub model: Arc<str>,
}

/// A stored answer's content.
pub(crate) enum StoredBody {
    /// A chat answer in canonical form, rendered afresh (new id, JSON or
    /// chunks) for each hit.
    Chat(Response),
    /// An answer replayed byte for byte (embeddings: no id, no stream).
    Verbatim {
        /// The upstream's JSON.
        body: Bytes,
        /// Its usage.
        usage: Usage,
    },
}

/// The header line of an encoded answer.
#[derive(serde::Deserialize)]
struct EncodedHeader {
    v: u32,
    kind: String,
    provider: String,
    model: String,
    usage: Option<Usage>,
}

/// Builds one canonical answer from a stream's events, keeping at most
/// `limit` bytes of content; anything that makes the answer unstorable
/// (too big, unreadable, no finish, no usage) is noted, never an error: the
/// stream itself is forwarded regardless.
pub(crate) struct Assembler {
    response: Response,
    text: String,
    reasoning: String,
    /// (upstream tool-call index, call), in order of appearance.
    calls: Vec<(u32, ToolCall)>,
    usage: Option<TokenUsage>,
    metered: Option<Usage>,
    bytes: usize,
    limit: usize,
    unstorable: bool,
}

// === impl StoredAnswer ===

impl StoredAnswer {
    /// The answer of a whole completion, when it is complete: it has a finish
    /// reason and usage, and is at most `limit` bytes.
    pub(crate) fn from_completion(
        completion: &Completion,
        endpoint: keel_types::Endpoint,
        limit: usize,
        provider: &Arc<str>,
        model: &Arc<str>,
    ) -> Option<Self> {
        if completion.body.len() > limit {
            return None;
        }
        let usage = completion.usage?;
        let body = match endpoint {
            // Never planned for the cache; kept verbatim if it were.
            keel_types::Endpoint::Embeddings
            | keel_types::Endpoint::Responses
            | keel_types::Endpoint::Messages => StoredBody::Verbatim {
                body: completion.body.clone(),
                usage,
            },
            keel_types::Endpoint::Chat => {
                let response = read_completion(&completion.body).ok()?;
                response.finish?;
                StoredBody::Chat(response)
            }
        };
        Some(Self {
            body,
            provider: provider.clone(),
            model: model.clone(),
        })
    }

    /// The answer as bytes for the shared level: a JSON header line (kind,
    /// who answered, a verbatim answer's usage), then the body (a chat
    /// answer as a completion).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (kind, usage, body) = match &self.body {
            StoredBody::Chat(response) => (
                "chat",
                None,
                completion_json_with_id(response, &response.id, 0),
            ),
            StoredBody::Verbatim { body, usage } => ("verbatim", Some(usage), body.to_vec()),
        };
        let header = serde_json::json!({
            "v": 1,
            "kind": kind,
            "provider": &*self.provider,
            "model": &*self.model,
            "usage": usage,
        });
        let mut bytes = header.to_string().into_bytes();
        bytes.push(b'\n');
        bytes.extend_from_slice(&body);
        bytes
    }

    /// An answer [`Self::encode`] wrote; `None` for anything else (another
    /// version's entry, or bytes that were never ours).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let split = bytes.iter().position(|&byte| byte == b'\n')?;
        let header: EncodedHeader = serde_json::from_slice(&bytes[..split]).ok()?;
        if header.v != 1 {
            return None;
        }
        let body = &bytes[split + 1..];
        let body = match (header.kind.as_str(), header.usage) {
            ("chat", _) => {
                let response = read_completion(body).ok()?;
                response.finish?;
                StoredBody::Chat(response)
            }
            ("verbatim", Some(usage)) => StoredBody::Verbatim {
                body: Bytes::copy_from_slice(body),
                usage,
            },
            _ => return None,
        };
        Some(Self {
            body,
            provider: Arc::from(header.provider),
            model: Arc::from(header.model),
        })
    }

    /// The bytes the entry holds, for the cache's weigher.
    pub(crate) fn bytes(&self) -> usize {
        let shared = self.provider.len() + self.model.len() + std::mem::size_of::<Self>();
        let response = match &self.body {
            StoredBody::Chat(response) => response,
            StoredBody::Verbatim { body, .. } => return body.len() + shared,
        };
        let calls: usize = response
            .tool_calls
            .iter()
            .map(|call| call.id.len() + call.name.len() + call.arguments.len() + 72)
            .sum();
        let text: usize = response.text.iter().map(|text| text.len() + 24).sum();
        response.id.len()
            + response.model.len()
            + text
            + response.reasoning.as_ref().map_or(0, String::len)
            + response.stop_sequence.as_ref().map_or(0, String::len)
            + calls
            + shared
    }

    /// The answer as a fresh non-stream completion.
    pub(crate) fn completion(&self) -> Completion {
        match &self.body {
            StoredBody::Chat(response) => Completion {
                body: Bytes::from(completion_json_with_id(response, &fresh_id(), unix_now())),
                usage: Some(response.usage.openai()),
                written: None,
            },
            StoredBody::Verbatim { body, usage } => Completion {
                body: body.clone(),
                usage: Some(*usage),
                written: None,
            },
        }
    }

    /// The answer as a fresh chunk stream: the role, reasoning, text and
    /// tool calls, the finish, the usage chunk when `include_usage`, and
    /// the terminal event.
    pub(crate) fn events(&self, include_usage: bool) -> Vec<StreamEvent> {
        let StoredBody::Chat(response) = &self.body else {
            // Only chat answers stream; a verbatim answer replays whole.
            return vec![StreamEvent::Done];
        };
        let writer = ChunkWriter::new(
            fresh_id(),
            response.model.clone(),
            unix_now(),
            include_usage,
        );
        let mut deltas = vec![Delta::Role];
        if let Some(reasoning) = &response.reasoning {
            deltas.push(Delta::Reasoning(reasoning.into()));
        }
        deltas.extend(response.text.iter().map(|text| Delta::Text(text.into())));
        for (index, call) in (0u32..).zip(&response.tool_calls) {
            deltas.push(Delta::ToolCallStart {
                index,
                id: call.id.as_str().into(),
                name: call.name.as_str().into(),
            });
            if !call.arguments.is_empty() {
                deltas.push(Delta::ToolCallArguments {
                    index,
                    fragment: call.arguments.as_str().into(),
                });
            }
        }
        if let Some(reason) = response.finish {
            deltas.push(Delta::Finish {
                reason,
                stop_sequence: response.stop_sequence.as_deref().map(Into::into),
            });
        }
        if include_usage {
            deltas.push(Delta::Usage(response.usage));
        }
        let mut events: Vec<StreamEvent> = deltas
            .iter()
            .map(|delta| StreamEvent::Chunk {
                data: Bytes::from(writer.write(delta)),
                token: !matches!(delta, Delta::Role | Delta::Usage(_)),
                usage: None,
                text: None,
            })
            .collect();
        events.push(StreamEvent::Done);
        events
    }
}

// === impl Assembler ===

impl Assembler {
    /// An empty answer that may grow to `limit` bytes of content.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            response: Response::default(),
            text: String::new(),
            reasoning: String::new(),
            calls: Vec::new(),
            usage: None,
            metered: None,
            bytes: 0,
            limit,
            unstorable: false,
        }
    }

    /// Adds one event of the stream (anything but a chunk adds nothing).
    pub(crate) fn feed(&mut self, event: &StreamEvent) {
        let StreamEvent::Chunk { data, usage, .. } = event else {
            return;
        };
        if usage.is_some() {
            self.metered = *usage;
        }
        if self.unstorable || data.is_empty() {
            return;
        }
        let Ok(text) = std::str::from_utf8(data) else {
            self.unstorable = true;
            return;
        };
        let mut model = None;
        let read = read_chunk(text, |meta, delta| {
            if model.is_none() && !meta.model.is_empty() {
                model = Some(meta.model.to_string());
            }
            self.apply(delta);
        });
        if read.is_err() {
            self.unstorable = true;
        }
        if self.response.model.is_empty() {
            self.response.model = model.unwrap_or_default();
        }
    }

    fn apply(&mut self, delta: Delta<'_>) {
        let grown = match &delta {
            Delta::Text(text) | Delta::Reasoning(text) => text.len(),
            Delta::ToolCallStart { id, name, .. } => id.len() + name.len() + 72,
            Delta::ToolCallArguments { fragment, .. } => fragment.len(),
            _ => 0,
        };
        self.bytes = self.bytes.saturating_add(grown);
        if self.bytes > self.limit {
            // Past the entry cap: stop holding the answer at once.
            self.unstorable = true;
            self.text = String::new();
            self.reasoning = String::new();
            self.calls = Vec::new();
            return;
        }
        match delta {
            Delta::Role => {}
            Delta::Text(text) => self.text.push_str(&text),
            Delta::Reasoning(text) => self.reasoning.push_str(&text),
            Delta::ToolCallStart { index, id, name } => {
                let call = self.call(index);
                if !id.is_empty() {
                    call.id = id.into_owned();
                }
                call.name.push_str(&name);
            }
            Delta::ToolCallArguments { index, fragment } => {
                self.call(index).arguments.push_str(&fragment);
            }
            Delta::Finish {
                reason,
                stop_sequence,
            } => {
                self.response.finish = Some(reason);
                self.response.stop_sequence = stop_sequence.map(|text| text.into_owned());
            }
            Delta::Usage(usage) => self.usage = Some(usage),
        }
    }

    /// The call with upstream index `index`, opened on first sight. Indices
    /// are looked up, never used as positions, so a hostile index costs nothing.
    fn call(&mut self, index: u32) -> &mut ToolCall {
        let position = match self.calls.iter().position(|(seen, _)| *seen == index) {
            Some(position) => position,
            None => {
                self.calls.push((index, ToolCall::default()));
                self.calls.len() - 1
            }
        };
        &mut self.calls[position].1
    }

    /// The whole answer, when it can be stored: it finished, its usage is
    /// known (from the usage chunk, or metered by the adapter) and it stayed
    /// within the cap.
    pub(crate) fn finish(self, provider: &Arc<str>, model: &Arc<str>) -> Option<StoredAnswer> {
        if self.unstorable {
            return None;
        }
        let mut response = self.response;
        response.finish?;
        response.usage = self.usage.or_else(|| {
            self.metered.map(|usage| TokenUsage {
                input: usage.prompt_tokens,
                output: usage.completion_tokens,
                ..TokenUsage::default()
            })
        })?;
        if !self.text.is_empty() {
            response.text.push(self.text);
        }
        response.reasoning = (!self.reasoning.is_empty()).then_some(self.reasoning);
        response.tool_calls = self.calls.into_iter().map(|(_, call)| call).collect();
        Some(StoredAnswer {
            body: StoredBody::Chat(response),
            provider: provider.clone(),
            model: model.clone(),
        })
    }
}

/// A new completion id in OpenAI's form.
fn fresh_id() -> String {
    let mut id = String::with_capacity(38);
    id.push_str("chatcmpl-");
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(29));
    id
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use keel_types::canonical::{FinishReason, Response, TokenUsage, ToolCall};

    use super::*;

    fn stored(body: StoredBody) -> StoredAnswer {
        StoredAnswer {
            body,
            provider: Arc::from("openai"),
            model: Arc::from("gpt-4o"),
        }
    }

    /// What the shared level holds decodes to the answer that was stored:
    /// text, reasoning, tool calls with their ids, finish and usage.
    #[test]
    fn answers_survive_the_shared_level() {
        let response = Response {
            id: String::from("chatcmpl-1"),
            model: String::from("gpt-4o"),
            text: vec![String::from("Hello — ünïcode")],
            reasoning: Some(String::from("thought")),
            tool_calls: vec![ToolCall {
                id: String::from("call_1"),
                name: String::from("lookup"),
                arguments: String::from(r#"{"q":"x"}"#),
            }],
            finish: Some(FinishReason::ToolCalls),
            stop_sequence: None,
            usage: TokenUsage {
                input: 12,
                output: 7,
                cache_read: 3,
                cache_creation: 0,
            },
        };
        let decoded = StoredAnswer::decode(&stored(StoredBody::Chat(response.clone())).encode());
        let Some(StoredAnswer {
            body: StoredBody::Chat(back),
            provider,
            model,
        }) = decoded
        else {
            panic!("a chat answer did not decode as one");
        };
        assert_eq!((&*provider, &*model), ("openai", "gpt-4o"));
        assert_eq!(back, response);

        let usage = Usage {
            prompt_tokens: 4,
            completion_tokens: 0,
            total_tokens: 4,
            ..Usage::default()
        };
        let verbatim = StoredBody::Verbatim {
            body: Bytes::from_static(b"{\"data\":[]}"),
            usage,
        };
        let decoded = StoredAnswer::decode(&stored(verbatim).encode());
        assert!(matches!(
            decoded,
            Some(StoredAnswer { body: StoredBody::Verbatim { body, usage: back }, .. })
                if body == Bytes::from_static(b"{\"data\":[]}") && back == usage
        ));
    }

    #[test]
    fn foreign_bytes_are_not_answers() {
        for bytes in [
            &b""[..],
            b"{}",
            b"{\"v\":2,\"kind\":\"chat\",\"provider\":\"p\",\"model\":\"m\"}\n{}",
            b"not json\n{}",
        ] {
            assert!(StoredAnswer::decode(bytes).is_none(), "{bytes:?}");
        }
    }
}
