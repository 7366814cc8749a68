//! What an upstream attempt yields: a complete body, or a stream of events
//! already classified for the router (token, terminal, usage).

use std::future::Future;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt};
use keel_sse::{DecodeError, Event};
use keel_types::Usage;

use crate::ProviderError;

/// A successful upstream response head and what follows it.
pub enum Reply {
    /// A non-stream answer: the full body in the client's format.
    Complete(Completion),
    /// A stream of events, in the client's format, not yet inspected by the
    /// router for its first token.
    Stream(EventStream),
}

/// A whole non-stream answer.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The JSON body for the client.
    pub body: Bytes,
    /// Token usage read from it.
    pub usage: Option<Usage>,
    /// The answer already written by the request's
    /// [`keel_types::AnswerWriter`], from the read that checked it; `None`
    /// when the request has none, or the adapter's check read it otherwise.
    /// It is that request's alone (a Responses object carries the request's
    /// own id): an answer shared with other requests goes without it.
    pub written: Option<Bytes>,
}

/// A stream of events; it ends after [`StreamEvent::Done`] or with an error
/// (a stream that ends without `Done` was truncated and yields
/// [`ProviderError::Truncated`] last).
pub type EventStream = BoxStream<'static, Result<StreamEvent, ProviderError>>;

/// One event of an upstream stream.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// One chunk, as the JSON of an OpenAI `chat.completion.chunk`.
    Chunk {
        /// The chunk's JSON text; empty for usage kept from the client (the
        /// usage chunk Keel asked for and the client did not): nothing to
        /// send, only `usage` to meter.
        data: Bytes,
        /// It carries a token: the first such chunk is the commit point.
        token: bool,
        /// Token usage, when the chunk reports it.
        usage: Option<Usage>,
        /// The chunk's text, when text is all it carries that a
        /// translating front end acts on (the adapter read it; see
        /// [`keel_types::ChunkInfo::text`]).
        text: Option<keel_types::ChunkText>,
    },
    /// The upstream's terminal event: the answer is complete.
    Done,
}

/// The adapters' stream loop: calls `next` for one event at a time and ends
/// the stream after the first terminal item (`Done` or an error), so nothing
/// an upstream sends after its end, or after a failure, is ever forwarded.
pub(crate) fn until_terminal<State, Next, Fut>(state: State, mut next: Next) -> EventStream
where
    State: Send + 'static,
    Next: FnMut(State) -> Fut + Send + 'static,
    Fut: Future<Output = (Result<StreamEvent, ProviderError>, State)> + Send + 'static,
{
    stream::unfold(Some(state), move |state| {
        let step = state.map(&mut next);
        async move {
            let (item, state) = step?.await;
            let more = matches!(item, Ok(StreamEvent::Chunk { .. }));
            Some((item, more.then_some(state)))
        }
    })
    .boxed()
}

/// The next SSE event that carries data (comments and empty events are
/// skipped): a stream that ends before its terminal event is truncated, a
/// broken one is the attempt's error.
pub(crate) async fn next_data_event<S, E>(
    events: &mut S,
    provider: &str,
) -> Result<Event, ProviderError>
where
    S: Stream<Item = Result<Event, DecodeError<E>>> + Unpin,
    E: std::fmt::Display,
{
    loop {
        match events.next().await {
            None => {
                return Err(ProviderError::Truncated {
                    provider: provider.to_owned(),
                })
            }
            Some(Err(error)) => return Err(decode_failure(provider, error)),
            Some(Ok(event)) if event.data.is_empty() => continue,
            Some(Ok(event)) => return Ok(event),
        }
    }
}

/// [`next_data_event`], with its data read as JSON into `P`; data that is
/// not is a protocol error naming `what` the event is.
pub(crate) async fn next_data_event_as<P, S, E>(
    events: &mut S,
    provider: &str,
    what: &str,
) -> Result<(Event, P), ProviderError>
where
    P: serde::de::DeserializeOwned,
    S: Stream<Item = Result<Event, DecodeError<E>>> + Unpin,
    E: std::fmt::Display,
{
    let event = next_data_event(events, provider).await?;
    let read = serde_json::from_str(&event.data).map_err(|error| ProviderError::Protocol {
        provider: provider.to_owned(),
        detail: format!("{what} is not valid JSON: {error}"),
    })?;
    Ok((event, read))
}

/// A failure of the SSE byte stream, as the attempt's error.
pub(crate) fn decode_failure<E: std::fmt::Display>(
    provider: &str,
    error: DecodeError<E>,
) -> ProviderError {
    match error {
        DecodeError::Transport(error) => ProviderError::Transport {
            provider: provider.to_owned(),
            detail: error.to_string(),
        },
        DecodeError::Parse(detail) => ProviderError::Protocol {
            provider: provider.to_owned(),
            detail,
        },
    }
}
