//! Upstream byte streams replayed through the adapters' stream decoders,
//! synchronously: the entry points of the fuzz targets (`fuzz/`) and of the
//! property tests that run the same inputs in the normal suite. Every piece
//! is ready at once, so the streams never wait.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{stream, StreamExt as _};

use crate::{EventStream, ProviderError, StreamEvent};

/// An OpenAI-kind stream arriving in `pieces`, as the adapter classifies it.
pub fn openai_stream(pieces: &[&[u8]]) -> Vec<Result<StreamEvent, ProviderError>> {
    let bytes = ready_pieces(pieces);
    drain(crate::openai::event_stream(Arc::from("fuzz"), bytes, false))
}

/// An Anthropic stream arriving in `pieces`, as the adapter converts it to
/// OpenAI chunks.
pub fn anthropic_stream(pieces: &[&[u8]]) -> Vec<Result<StreamEvent, ProviderError>> {
    let bytes = ready_pieces(pieces);
    let converter = crate::anthropic::stream::StreamConverter::new(0, true);
    drain(crate::anthropic::stream::event_stream(
        Arc::from("fuzz"),
        bytes,
        converter,
    ))
}

/// A non-stream Anthropic message body, as the adapter converts it.
pub fn anthropic_message(body: &[u8]) -> Result<crate::Completion, ProviderError> {
    crate::anthropic::completion_from_body("fuzz", body)
}

fn ready_pieces(
    pieces: &[&[u8]],
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let owned: Vec<Result<Bytes, std::convert::Infallible>> = pieces
        .iter()
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    stream::iter(owned)
}

/// Every event of a stream whose input is all ready.
fn drain(mut events: EventStream) -> Vec<Result<StreamEvent, ProviderError>> {
    let waker = futures_util::task::noop_waker();
    let mut context = Context::from_waker(&waker);
    let mut out = Vec::new();
    // Bounded: a stream of ready input ends; the cap is a guard, not a limit.
    for _ in 0..1_000_000 {
        match events.poll_next_unpin(&mut context) {
            Poll::Ready(Some(event)) => out.push(event),
            Poll::Ready(None) | Poll::Pending => break,
        }
    }
    out
}
