//! Pure conversions for the OpenAI adapter: upstream bytes and headers to
//! events, usage and classified errors.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::{HeaderMap, RETRY_AFTER};
use keel_sse::{DecodeError, Event, DONE_DATA};
use keel_types::canonical::openai::read_checked_completion;
use keel_types::{inspect_answer, AnswerList, AnswerWriter, ChunkReader, ErrorBody, Usage};

use crate::reply::{decode_failure, until_terminal};
use crate::{EventStream, ProviderError, StreamEvent};

/// What one SSE event means for the stream.
#[derive(Debug, PartialEq)]
pub(crate) enum Classified {
    /// Nothing to forward (an empty keep-alive event).
    Skip,
    /// A chunk to forward; `finished` when it carries a finish_reason.
    Chunk { event: StreamEvent, finished: bool },
    /// `[DONE]`.
    Done,
}

/// Classifies one upstream SSE event of an OpenAI stream. The usage chunk
/// of a client that did not ask for it (`forward_usage` false: Keel asked
/// the upstream for it regardless) keeps its usage for metering but no data.
pub(crate) fn classify_event(
    provider: &str,
    chunks: &mut ChunkReader,
    event: Event,
    forward_usage: bool,
) -> Result<Classified, ProviderError> {
    if event.data.is_empty() {
        return Ok(Classified::Skip);
    }
    if event.data == DONE_DATA {
        return Ok(Classified::Done);
    }
    let info = chunks.inspect(&event.data);
    if info.is_error || event.event == "error" {
        let body = serde_json::from_str::<ErrorBody>(&event.data)
            .unwrap_or_else(|_| ErrorBody::new(truncate(&event.data), "server_error", None, None));
        return Err(ProviderError::InBand {
            provider: provider.to_owned(),
            body,
        });
    }
    let data = if info.usage_only && !forward_usage {
        Bytes::new()
    } else {
        Bytes::from(event.data)
    };
    let event = StreamEvent::Chunk {
        data,
        token: info.has_token,
        usage: info.usage,
        text: info.text,
    };
    Ok(Classified::Chunk {
        event,
        finished: info.finished,
    })
}

struct StreamState<S> {
    events: S,
    provider: Arc<str>,
    chunks: ChunkReader,
    finished: bool,
    forward_usage: bool,
}

/// Turns the upstream body into events. A stream that ends after a
/// finish_reason but without `[DONE]` is complete; one that ends before is
/// truncated. `forward_usage`: the client asked for the usage chunk.
pub(crate) fn event_stream<S, E>(provider: Arc<str>, bytes: S, forward_usage: bool) -> EventStream
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let events = Box::pin(keel_sse::decode(bytes));
    let state = StreamState {
        events,
        provider,
        chunks: ChunkReader::default(),
        finished: false,
        forward_usage,
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
        let provider = &*state.provider;
        match state.events.next().await {
            None if state.finished => return Ok(StreamEvent::Done),
            None => {
                return Err(ProviderError::Truncated {
                    provider: provider.to_owned(),
                })
            }
            Some(Err(error)) => return Err(decode_failure(provider, error)),
            Some(Ok(event)) => {
                match classify_event(provider, &mut state.chunks, event, state.forward_usage)? {
                    Classified::Skip => continue,
                    // `[DONE]` without any finish_reason: the answer was cut
                    // short, whatever the upstream's last word says.
                    Classified::Done if !state.finished => {
                        return Err(ProviderError::Truncated {
                            provider: provider.to_owned(),
                        })
                    }
                    Classified::Done => return Ok(StreamEvent::Done),
                    Classified::Chunk { event, finished } => {
                        state.finished |= finished;
                        return Ok(event);
                    }
                }
            }
        }
    }
}

/// Checks a non-stream body is a completion and reads its usage; with the
/// request's `writer`, the one read that checks it also writes the front
/// end's answer wherever it can (the rest is checked as without one).
pub(crate) fn checked_completion(
    provider: &str,
    body: &[u8],
    writer: Option<&AnswerWriter>,
) -> Result<(Option<Usage>, Option<Bytes>), ProviderError> {
    if let Some(writer) = writer {
        if let Some((answer, usage)) = read_checked_completion(body) {
            return Ok((usage, Some(Bytes::from(writer.write(&answer)))));
        }
    }
    Ok((completion_usage(provider, body)?, None))
}

/// Checks a non-stream body is a completion and reads its usage.
pub(crate) fn completion_usage(
    provider: &str,
    body: &[u8],
) -> Result<Option<Usage>, ProviderError> {
    answer_usage(provider, body, AnswerList::Choices)
}

/// The usage of an embeddings answer (`usage.prompt_tokens`), after checking
/// it is one: a `data` list, and no in-band error.
pub(crate) fn embeddings_usage(
    provider: &str,
    body: &[u8],
) -> Result<Option<Usage>, ProviderError> {
    answer_usage(provider, body, AnswerList::Data)
}

/// The usage of an answer holding `list`, after checking it is one: JSON,
/// the list, and no in-band error.
fn answer_usage(
    provider: &str,
    body: &[u8],
    list: AnswerList,
) -> Result<Option<Usage>, ProviderError> {
    let (what, list_name) = match list {
        AnswerList::Choices => ("completion", "choices"),
        AnswerList::Data => ("embeddings answer", "data"),
    };
    let protocol = |detail: String| ProviderError::Protocol {
        provider: provider.to_owned(),
        detail,
    };
    let answer = inspect_answer(body, list)
        .map_err(|error| protocol(format!("the {what} is not valid JSON: {error}")))?;
    if let Some(message) = answer.error {
        return Err(ProviderError::InBand {
            provider: provider.to_owned(),
            body: ErrorBody::new(message, "server_error", None, None),
        });
    }
    if !answer.has_list {
        return Err(protocol(format!("the {what} has no {list_name}")));
    }
    Ok(answer.usage)
}

/// Classifies a non-success response from its status, body and Retry-After.
pub(crate) fn error_from_status(
    provider: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> ProviderError {
    let body = serde_json::from_slice::<ErrorBody>(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        let kind = if status >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        ErrorBody::new(
            format!("upstream status {status}: {}", truncate(&text)),
            kind,
            None,
            None,
        )
    });
    ProviderError::Status {
        provider: provider.to_owned(),
        status,
        body,
        retry_after,
    }
}

/// Reads `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let date = httpdate::parse_http_date(value).ok()?;
            date.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The longest `Retry-After` believed from an upstream: it pauses the
/// provider's bucket and is passed on to clients, so 10^10 s or a date in
/// the year 9999 is read as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Classifies an error from sending: no response head arrived.
pub(crate) fn send_error(provider: &str, failed: crate::http::SendError) -> ProviderError {
    let provider = provider.to_owned();
    let detail = failed.detail;
    if failed.connect {
        ProviderError::Connect { provider, detail }
    } else {
        ProviderError::Transport { provider, detail }
    }
}

/// Classifies an error while reading a body.
fn truncate(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[path = "convert/tests.rs"]
mod tests;
