//! The SSE body of a stream passed through (a native Messages or Responses
//! answer): each upstream event frame forwarded as it arrives, usage
//! settling the tenant's token reservation, and a failure after the first
//! token ended in band with the front end's own failure event.

use std::convert::Infallible;

use axum::body::Body;
use bytes::Bytes;
use futures_util::{future, stream, StreamExt};
use keel_router::{EventStream, ProviderError, StreamEvent};

use crate::limits::{settle_usage, Reservation};

/// The body: `head`, then `rest`; a failure becomes `failure(frames
/// forwarded so far, error)`, after which nothing more is sent.
pub(crate) fn body(
    head: Vec<StreamEvent>,
    rest: EventStream,
    reservation: Option<Reservation>,
    failure: impl Fn(u64, &ProviderError) -> Bytes + Send + 'static,
) -> Body {
    let events = stream::iter(head.into_iter().map(Ok)).chain(rest);
    let frames = events.scan((0u64, false), move |(forwarded, ended), event| {
        if *ended {
            return future::ready(None);
        }
        let frame = match event {
            Ok(StreamEvent::Chunk { data, usage, .. }) => {
                settle_usage(reservation.as_ref(), usage.as_ref());
                *forwarded += 1;
                data
            }
            Ok(StreamEvent::Done) => {
                *ended = true;
                Bytes::new()
            }
            Err(error) => {
                *ended = true;
                tracing::warn!(%error, "upstream stream passed through failed after it started");
                failure(*forwarded, &error)
            }
        };
        future::ready(Some(frame))
    });
    let frames = frames.filter(|frame| future::ready(!frame.is_empty()));
    Body::from_stream(crate::coalesce::coalesce(Box::pin(frames)).map(Ok::<_, Infallible>))
}
