//! Encodes a committed upstream stream as the client's SSE body.
//!
//! Frames are forwarded as they arrive; frames that arrive together are
//! written together (`crate::coalesce`, never waiting for more data), which
//! costs far less than one write per frame when an upstream sends bursts. After the commit
//! point a failure or truncation ends the stream with an OpenAI-style error
//! event and `[DONE]`, never a silent cut.

use std::convert::Infallible;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{future, stream, StreamExt};
use keel_router::{EventStream, ProviderError, StreamEvent};
use keel_sse::{data_frame, put_data_frame, DONE_FRAME};
use keel_types::ErrorBody;

use crate::error::stream_failure_message;
use crate::limits::{settle_usage, Reservation};

/// The SSE body: `head` first, then the rest of the upstream stream. Usage
/// reported in the stream settles the tenant's token reservation.
pub fn body(head: Vec<StreamEvent>, rest: EventStream, reservation: Option<Reservation>) -> Body {
    let events = stream::iter(head.into_iter().map(Ok)).chain(rest);
    let frames = events.scan(false, move |ended, event| {
        if *ended {
            return future::ready(None);
        }
        let frame = match event {
            Ok(StreamEvent::Chunk { data, usage, .. }) => {
                settle_usage(reservation.as_ref(), usage.as_ref());
                // Empty data: usage metered, nothing for the client.
                OutFrame::Data(data)
            }
            Ok(StreamEvent::Done) => {
                *ended = true;
                OutFrame::Whole(Bytes::from_static(DONE_FRAME))
            }
            Err(error) => {
                *ended = true;
                tracing::warn!(%error, "upstream stream failed after the first token");
                OutFrame::Whole(error_frames(&error))
            }
        };
        future::ready(Some(frame))
    });
    let frames = frames.filter(|frame| future::ready(!frame.is_empty()));
    let writes = crate::coalesce::coalesce(Box::pin(frames)).map(Ok::<_, Infallible>);
    Body::from_stream(writes)
}

/// One frame for the client: a chunk's data, framed where it is written.
enum OutFrame {
    Data(Bytes),
    Whole(Bytes),
}

impl OutFrame {
    fn is_empty(&self) -> bool {
        match self {
            Self::Data(bytes) | Self::Whole(bytes) => bytes.is_empty(),
        }
    }
}

impl crate::coalesce::Frame for OutFrame {
    fn write_to(&self, out: &mut BytesMut) {
        match self {
            Self::Data(data) => put_data_frame(out, data),
            Self::Whole(frame) => out.extend_from_slice(frame),
        }
    }
}

/// The error event and `[DONE]` that end a stream that failed mid-way.
pub fn error_frames(error: &ProviderError) -> Bytes {
    let message = stream_failure_message(error);
    let body = ErrorBody::new(message, "server_error", None, Some("upstream_stream_error"));
    in_band_error(&body)
}

/// `body` as an error event, then `[DONE]`: how a stream whose 200 has
/// been sent reports a failure.
pub fn in_band_error(body: &ErrorBody) -> Bytes {
    let mut frames = BytesMut::from(&data_frame(body.to_json().as_bytes())[..]);
    frames.extend_from_slice(DONE_FRAME);
    frames.freeze()
}
