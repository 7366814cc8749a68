//! A Messages body passed through (`Endpoint::Messages`: the client spoke
//! Anthropic's API and every target of its model is Anthropic-kind): the
//! body goes as it came with only `model` rewritten (and `max_tokens`
//! added when absent), with the client's `anthropic-beta` and
//! `anthropic-version`; the answer comes back as the upstream sent it.
//! Each stream event is forwarded as its whole SSE frame, classified only
//! for what the gateway acts on: a `content_block_delta` is a token (the
//! commit point); `message_start` and `message_delta` carry the usage,
//! reported once the message's last count is known (`message_delta`);
//! `message_stop` ends the answer; `error` is a failure (before the
//! commit point it fails over like any other).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use keel_sse::{DecodeError, Event};
use keel_types::canonical::TokenUsage;
use keel_types::{ChatRequest, Usage};
use serde::Deserialize;

use super::response::{in_band_error, UsageIn};
use crate::reply::{next_data_event_as, until_terminal};
use crate::{EventStream, ProviderError, StreamEvent};

/// The client headers a passed-through body takes along; the provider's
/// own value stands when the client sent none.
pub const ANTHROPIC_FORWARDED_HEADERS: [&str; 2] = ["anthropic-beta", "anthropic-version"];

/// The fields of an event (or a whole message) the gateway reads.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<MessageProbe>,
    #[serde(default)]
    usage: Option<UsageIn>,
}

#[derive(Deserialize)]
struct MessageProbe {
    #[serde(default)]
    usage: Option<UsageIn>,
}

struct State<S> {
    events: S,
    provider: Arc<str>,
    usage: TokenUsage,
    ended: bool,
}

/// The upstream body: the client's with `model` rewritten, and
/// `max_tokens` (which Anthropic requires) added only when absent.
pub(crate) fn body(request: &ChatRequest, upstream_model: &str, max_tokens: u32) -> Vec<u8> {
    let model = serde_json::Value::from(upstream_model).to_string();
    let raw = request.raw();
    if raw.get("max_tokens").is_some() {
        return raw.to_json_with(&[("model", &model)]);
    }
    raw.to_json_with(&[("model", &model), ("max_tokens", &max_tokens.to_string())])
}

/// The client's `anthropic-beta` and `anthropic-version`, as headers over
/// the provider's. A configured `anthropic-beta` is kept, the client's
/// features added after it; a value that is not a valid header is left
/// out (the client sent it, the server read it: it cannot happen).
pub(crate) fn headers(request: &ChatRequest, configured_beta: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in request.forwarded_headers() {
        let value = match (name.as_str(), configured_beta) {
            ("anthropic-beta", Some(configured)) if !configured.is_empty() => {
                format!("{configured},{value}")
            }
            _ => value.clone(),
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            continue;
        };
        headers.insert(name, value);
    }
    headers
}

/// A non-stream answer's usage: the upstream's `message` is passed
/// through as it came, once it is known to be a JSON object.
pub(crate) fn message_usage(provider: &str, body: &[u8]) -> Result<Usage, ProviderError> {
    let probe: MessageProbe =
        serde_json::from_slice(body).map_err(|error| ProviderError::Protocol {
            provider: provider.to_owned(),
            detail: format!("the message is not valid JSON: {error}"),
        })?;
    let mut usage = TokenUsage::default();
    if let Some(reported) = probe.usage {
        reported.apply(&mut usage);
    }
    Ok(usage.openai())
}

/// The upstream's Messages event stream, frame by frame.
pub(crate) fn event_stream<S, E>(provider: Arc<str>, bytes: S) -> EventStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let state = State {
        events: Box::pin(keel_sse::decode(bytes)),
        provider,
        usage: TokenUsage::default(),
        ended: false,
    };
    until_terminal(state, |mut state| async move {
        let item = next_event(&mut state).await;
        (item, state)
    })
}

async fn next_event<S, E>(state: &mut State<S>) -> Result<StreamEvent, ProviderError>
where
    S: Stream<Item = Result<Event, DecodeError<E>>> + Unpin,
    E: std::fmt::Display,
{
    if state.ended {
        return Ok(StreamEvent::Done);
    }
    let provider = &*state.provider;
    let (event, probe): (Event, Probe) =
        next_data_event_as(&mut state.events, provider, "an Anthropic stream event").await?;
    let kind = probe.kind.as_deref().unwrap_or(&event.event);
    let (token, usage) = match kind {
        "error" => return Err(in_band_error(provider, &event.data)),
        "message_start" => {
            if let Some(usage) = probe.message.and_then(|message| message.usage) {
                usage.apply(&mut state.usage);
            }
            (false, None)
        }
        "message_delta" => {
            if let Some(usage) = probe.usage {
                usage.apply(&mut state.usage);
            }
            (false, Some(state.usage.openai()))
        }
        "message_stop" => {
            state.ended = true;
            (false, None)
        }
        "content_block_delta" => (true, None),
        // `ping`, block starts and stops, and event types added later.
        _ => (false, None),
    };
    let name = if event.event.is_empty() || event.event == "message" {
        kind
    } else {
        &event.event
    };
    Ok(StreamEvent::Chunk {
        data: keel_sse::named_frame(name, event.data.as_bytes()),
        token,
        usage,
        text: None,
    })
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    fn events(frames: &str) -> Vec<Result<StreamEvent, String>> {
        let bytes = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(
            frames.to_owned(),
        ))]);
        let stream = event_stream(Arc::from("up"), bytes);
        futures_executor::block_on(stream.collect::<Vec<_>>())
            .into_iter()
            .map(|item| item.map_err(|error| error.to_string()))
            .collect()
    }

    const STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Hm\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn deltas_are_tokens_frames_go_as_they_came_and_message_delta_carries_usage() {
        let got = events(STREAM);
        let tokens: Vec<Option<bool>> = got
            .iter()
            .map(|item| match item {
                Ok(StreamEvent::Chunk { token, .. }) => Some(*token),
                _ => None,
            })
            .collect();
        assert_eq!(
            tokens,
            [
                Some(false),
                Some(false),
                Some(false),
                Some(true),
                Some(false),
                Some(false),
                Some(false),
                None
            ]
        );
        let frames: Vec<u8> = got
            .iter()
            .filter_map(|item| match item {
                Ok(StreamEvent::Chunk { data, .. }) => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(String::from_utf8_lossy(&frames), STREAM);
        let usages: Vec<Usage> = got
            .iter()
            .filter_map(|item| match item {
                Ok(StreamEvent::Chunk { usage, .. }) => *usage,
                _ => None,
            })
            .collect();
        assert_eq!(usages.len(), 1);
        let usage = usages.first().copied().unwrap_or_default();
        assert_eq!(
            usage,
            TokenUsage {
                input: 10,
                output: 7,
                cache_read: 4,
                cache_creation: 0,
            }
            .openai()
        );
    }

    #[test]
    fn an_error_event_or_a_cut_stream_is_a_failure() {
        let failed = events(
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}\n\n",
        );
        assert!(
            matches!(failed.first(), Some(Err(message)) if message.contains("busy")),
            "{failed:?}"
        );
        let cut =
            events("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n");
        assert!(
            matches!(cut.last(), Some(Err(_))),
            "no message_stop: {cut:?}"
        );
    }

    #[test]
    fn the_body_keeps_every_field_and_adds_max_tokens_only_when_absent(
    ) -> Result<(), keel_types::RequestError> {
        let with = ChatRequest::parse_native_messages(
            br#"{"model":"public","max_tokens":5,"thinking":{"type":"enabled","budget_tokens":1024},"top_k":3}"#,
        )?;
        assert_eq!(
            String::from_utf8_lossy(&body(&with, "claude-x", 4096)),
            r#"{"model":"claude-x","max_tokens":5,"thinking":{"type":"enabled","budget_tokens":1024},"top_k":3}"#
        );
        let without = ChatRequest::parse_native_messages(br#"{"model":"public","messages":[]}"#)?;
        assert_eq!(
            String::from_utf8_lossy(&body(&without, "claude-x", 4096)),
            r#"{"model":"claude-x","messages":[],"max_tokens":4096}"#
        );
        Ok(())
    }

    #[test]
    fn the_clients_beta_features_follow_the_configured_ones() -> Result<(), keel_types::RequestError>
    {
        let request = ChatRequest::parse_native_messages(br#"{"model":"m"}"#)?
            .with_forwarded_headers(vec![
                (String::from("anthropic-beta"), String::from("b2")),
                (
                    String::from("anthropic-version"),
                    String::from("2023-01-01"),
                ),
            ]);
        let merged = headers(&request, Some("b1"));
        assert_eq!(
            merged.get("anthropic-beta").map(HeaderValue::as_bytes),
            Some(&b"b1,b2"[..])
        );
        let alone = headers(&request, None);
        assert_eq!(
            alone.get("anthropic-beta").map(HeaderValue::as_bytes),
            Some(&b"b2"[..])
        );
        assert_eq!(
            alone.get("anthropic-version").map(HeaderValue::as_bytes),
            Some(&b"2023-01-01"[..])
        );
        Ok(())
    }
}
