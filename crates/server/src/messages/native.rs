//! Messages passed through to Anthropic targets: the body went as it came
//! (only `model` rewritten), and the answer comes back as the upstream sent
//! it, each event frame forwarded as it arrives. A failure after the first
//! token ends the stream with Anthropic's `event: error`.

use axum::body::Body;
use bytes::BytesMut;
use keel_router::{EventStream, StreamEvent};

use crate::limits::Reservation;

/// The SSE body of a stream passed through; a failure after the first
/// token ends it with Anthropic's `event: error`.
pub(crate) fn body(
    head: Vec<StreamEvent>,
    rest: EventStream,
    reservation: Option<Reservation>,
) -> Body {
    crate::verbatim::body(head, rest, reservation, |_, error| {
        let mut out = BytesMut::new();
        super::stream::failure_event(error, &mut out);
        out.freeze()
    })
}
