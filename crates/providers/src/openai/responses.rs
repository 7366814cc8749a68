//! The Responses API passed through (`responses: native`): each upstream
//! event is forwarded as its whole SSE frame, classified only for what the
//! gateway acts on: a delta of text, refusal or function-call arguments is
//! a token (the commit point); `response.completed` and
//! `response.incomplete` end the answer and carry its usage;
//! `response.failed` and `error` are failures (before the commit point
//! they fail over like any other).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use keel_sse::{DecodeError, Event};
use keel_types::{ErrorBody, Usage};
use serde::Deserialize;

use crate::reply::{next_data_event_as, until_terminal};
use crate::{EventStream, ProviderError, StreamEvent};

/// Event types that carry part of the answer.
const TOKEN_EVENTS: [&str; 4] = [
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta",
];

/// The fields of an event (or a whole response) the gateway reads.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    response: Option<ResponseProbe>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct ResponseProbe {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    usage: Option<UsageProbe>,
    #[serde(default)]
    error: Option<ErrorProbe>,
}

#[derive(Deserialize)]
struct UsageProbe {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<CachedProbe>,
}

#[derive(Deserialize)]
struct CachedProbe {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct ErrorProbe {
    #[serde(default)]
    message: Option<String>,
}

struct State<S> {
    events: S,
    provider: Arc<str>,
    ended: bool,
}

/// The upstream's Responses event stream, frame by frame.
pub(crate) fn event_stream<S, E>(provider: Arc<str>, bytes: S) -> EventStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let state = State {
        events: Box::pin(keel_sse::decode(bytes)),
        provider,
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
        next_data_event_as(&mut state.events, provider, "a Responses event").await?;
    let kind = probe.kind.as_deref().unwrap_or(&event.event);
    match kind {
        "error" | "response.failed" => Err(failed(provider, &probe)),
        "response.completed" | "response.incomplete" => {
            state.ended = true;
            let usage = probe
                .response
                .and_then(|response| response.usage)
                .map(usage);
            Ok(chunk(kind, &event.data, false, usage))
        }
        _ => {
            let token = TOKEN_EVENTS.contains(&kind);
            Ok(chunk(kind, &event.data, token, None))
        }
    }
}

/// The event as its whole SSE frame, to forward as it came.
fn chunk(kind: &str, data: &str, token: bool, usage: Option<Usage>) -> StreamEvent {
    StreamEvent::Chunk {
        data: keel_sse::named_frame(kind, data.as_bytes()),
        token,
        usage,
        text: None,
    }
}

/// A non-stream Responses answer's usage, after checking it did not fail.
pub(crate) fn response_usage(provider: &str, body: &[u8]) -> Result<Option<Usage>, ProviderError> {
    let response: ResponseProbe =
        serde_json::from_slice(body).map_err(|error| ProviderError::Protocol {
            provider: provider.to_owned(),
            detail: format!("the response is not valid JSON: {error}"),
        })?;
    if response.status.as_deref() == Some("failed") {
        let probe = Probe {
            kind: None,
            response: Some(response),
            message: None,
        };
        return Err(failed(provider, &probe));
    }
    Ok(response.usage.map(usage))
}

fn failed(provider: &str, probe: &Probe) -> ProviderError {
    let message = probe
        .response
        .as_ref()
        .and_then(|response| response.error.as_ref()?.message.clone())
        .or_else(|| probe.message.clone())
        .unwrap_or_else(|| String::from("the response failed"));
    ProviderError::InBand {
        provider: provider.to_owned(),
        body: ErrorBody::new(message, "server_error", None, None),
    }
}

fn usage(usage: UsageProbe) -> Usage {
    let cached = usage
        .input_tokens_details
        .map_or(0, |details| details.cached_tokens);
    Usage {
        prompt_tokens: usage.input_tokens,
        completion_tokens: usage.output_tokens,
        total_tokens: usage.input_tokens.saturating_add(usage.output_tokens),
        prompt_tokens_details: (cached > 0).then_some(keel_types::PromptTokensDetails {
            cached_tokens: cached,
        }),
    }
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

    #[test]
    fn deltas_are_tokens_and_the_terminal_event_carries_usage() {
        let got = events(concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":3,\"output_tokens\":2}}}\n\n",
        ));
        let tokens: Vec<Option<bool>> = got
            .iter()
            .map(|item| match item {
                Ok(StreamEvent::Chunk { token, .. }) => Some(*token),
                _ => None,
            })
            .collect();
        assert_eq!(tokens, [Some(false), Some(true), Some(false), None]);
        assert!(matches!(got.last(), Some(Ok(StreamEvent::Done))));
        let Some(Ok(StreamEvent::Chunk { data, usage, .. })) = got.get(2) else {
            panic!("the terminal event: {got:?}")
        };
        assert!(data.starts_with(b"event: response.completed\ndata: {"));
        assert_eq!(usage.map(|usage| usage.total_tokens), Some(5));
    }

    #[test]
    fn a_failed_response_or_a_cut_stream_is_a_failure() {
        let failed = events(
            "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"message\":\"boom\"}}}\n\n",
        );
        assert!(
            matches!(failed.first(), Some(Err(message)) if message.contains("boom")),
            "{failed:?}"
        );
        let cut = events("event: response.created\ndata: {\"type\":\"response.created\"}\n\n");
        assert!(
            matches!(cut.last(), Some(Err(_))),
            "no terminal event: {cut:?}"
        );
    }
}
