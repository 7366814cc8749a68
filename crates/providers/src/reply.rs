//! What an upstream attempt yields: a complete body, or a stream of events
//! already classified for the router (token, terminal, usage).

use bytes::Bytes;
use futures_util::stream::BoxStream;
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
        /// The chunk's JSON text.
        data: Bytes,
        /// It carries a token: the first such chunk is the commit point.
        token: bool,
        /// Token usage, when the chunk reports it.
        usage: Option<Usage>,
    },
    /// The upstream's terminal event: the answer is complete.
    Done,
}
