//! Messages passed through to Anthropic targets: the body went as it came
//! (only `model` rewritten), and the answer comes back as the upstream sent
//! it, each event frame forwarded as it arrives. A failure after the first
//! token ends the stream with Anthropic's `event: error`.

use std::convert::Infallible;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{future, stream, StreamExt};
use keel_router::{EventStream, StreamEvent};

use crate::limits::{settle_usage, Reservation};

/// The SSE body of a stream passed through.
pub(crate) fn body(
    head: Vec<StreamEvent>,
    rest: EventStream,
    reservation: Option<Reservation>,
) -> Body {
    let events = stream::iter(head.into_iter().map(Ok)).chain(rest);
    let frames = events.scan(false, move |ended, event| {
        if *ended {
            return future::ready(None);
        }
        let frame = match event {
            Ok(StreamEvent::Chunk { data, usage, .. }) => {
                settle_usage(reservation.as_ref(), usage.as_ref());
                data
            }
            Ok(StreamEvent::Done) => {
                *ended = true;
                Bytes::new()
            }
            Err(error) => {
                *ended = true;
                tracing::warn!(%error, "upstream Messages stream failed after the first token");
                let mut out = BytesMut::new();
                super::stream::failure_event(&error, &mut out);
                out.freeze()
            }
        };
        future::ready(Some(frame))
    });
    let frames = frames.filter(|frame| future::ready(!frame.is_empty()));
    Body::from_stream(crate::coalesce::coalesce(Box::pin(frames)).map(Ok::<_, Infallible>))
}
