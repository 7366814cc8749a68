//! The SSE body of a front end that re-encodes the committed chat chunk
//! stream in its own format (Anthropic Messages, the Responses API): one
//! loop for both, each format an [`EventEncoder`].

use std::convert::Infallible;

use axum::body::Body;
use bytes::BytesMut;
use futures_util::{future, stream, StreamExt};
use keel_router::{EventStream, ProviderError, StreamEvent};
use keel_types::canonical::openai::{read_chunk, ChunkMeta};
use keel_types::canonical::Delta;
use keel_types::Usage;

use crate::limits::{settle_usage, Reservation};

/// The buffer each chunk's events are written into starts this large.
const WRITE_CAPACITY: usize = 512;

/// One format's events, written from the canonical deltas of each chunk.
pub(crate) trait EventEncoder: Send + 'static {
    /// Writes the events for one delta of a chunk.
    fn delta(&mut self, meta: &ChunkMeta<'_>, delta: Delta<'_>, out: &mut BytesMut);

    /// Ends a complete stream.
    fn done(&mut self, out: &mut BytesMut);

    /// Ends a stream that failed after it started, in band.
    fn error(&mut self, error: &ProviderError, out: &mut BytesMut);

    /// Usage the stream reported, also on chunks kept from the client.
    fn usage(&mut self, _usage: &Usage) {}

    /// Writes the events for a chunk whose only content is `text`, as the
    /// adapter read it; `false`, writing nothing, while the stream has not
    /// started (its first chunk names the model, so it is read whole).
    fn text_only(&mut self, text: &str, out: &mut BytesMut) -> bool;

    /// Writes the events for one OpenAI chunk.
    fn chunk(&mut self, data: &[u8], out: &mut BytesMut) -> Result<(), serde_json::Error> {
        let text = std::str::from_utf8(data).map_err(serde::de::Error::custom)?;
        read_chunk(text, |meta, delta| self.delta(meta, delta, out))
    }
}

/// The SSE body: `head` first, then the rest of the upstream stream, each
/// chunk converted as it arrives. Usage reported in the stream settles the
/// tenant's token reservation.
pub(crate) fn body<E: EventEncoder>(
    head: Vec<StreamEvent>,
    rest: EventStream,
    encoder: E,
    reservation: Option<Reservation>,
) -> Body {
    let events = stream::iter(head.into_iter().map(Ok)).chain(rest);
    let writes = events.scan((encoder, false), move |(encoder, ended), event| {
        if *ended {
            return future::ready(None);
        }
        // Room for a chunk's events at once, rather than growing event by event.
        let mut out = BytesMut::with_capacity(WRITE_CAPACITY);
        match event {
            Ok(StreamEvent::Chunk {
                data, usage, text, ..
            }) => {
                settle_usage(reservation.as_ref(), usage.as_ref());
                if let Some(usage) = &usage {
                    encoder.usage(usage);
                }
                // Text the adapter already read is not read again.
                let written = text
                    .as_ref()
                    .and_then(|text| text.as_str(&data))
                    .is_some_and(|text| encoder.text_only(text, &mut out));
                // Empty data: usage metered, nothing for the client.
                if !written && !data.is_empty() {
                    if let Err(error) = encoder.chunk(&data, &mut out) {
                        *ended = true;
                        tracing::warn!(%error, "an upstream chunk could not be read after the first token");
                        let error = ProviderError::Protocol {
                            provider: String::from("upstream"),
                            detail: error.to_string(),
                        };
                        encoder.error(&error, &mut out);
                    }
                }
            }
            Ok(StreamEvent::Done) => {
                *ended = true;
                encoder.done(&mut out);
            }
            Err(error) => {
                *ended = true;
                tracing::warn!(%error, "upstream stream failed after the first token");
                encoder.error(&error, &mut out);
            }
        }
        future::ready(Some(out.freeze()))
    });
    let writes = writes.filter(|write| future::ready(!write.is_empty()));
    Body::from_stream(crate::coalesce::coalesce(Box::pin(writes)).map(Ok::<_, Infallible>))
}
