//! Responses passed through to targets that speak the API (`responses:
//! native`): the body goes as it came with only `model` rewritten, and the
//! answer comes back as the upstream sent it, each event frame forwarded as
//! it arrives. A failure after the first event ends the stream with a
//! `response.failed` event numbered after the last one forwarded.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use keel_router::{EventStream, ProviderError, StreamEvent};

use crate::error::stream_failure_message;
use crate::limits::Reservation;

/// The SSE body of a native stream; a failure after the first event ends
/// it with `response.failed`, numbered after the events forwarded (the
/// upstream's sequence numbers count from 0, so the next is the count).
pub(crate) fn body(
    head: Vec<StreamEvent>,
    rest: EventStream,
    reservation: Option<Reservation>,
) -> Body {
    crate::verbatim::body(head, rest, reservation, failed_frame)
}

fn failed_frame(sequence_number: u64, error: &ProviderError) -> Bytes {
    let message = stream_failure_message(error);
    failed_event(sequence_number, "server_error", &message)
}

/// `response.failed`, the first event, for a stream whose routing failed
/// after its headers (and keep-alive comments) were sent.
pub(crate) fn in_band_error(body: &keel_types::ErrorBody) -> Bytes {
    let code = body.error.code.as_deref().unwrap_or("server_error");
    failed_event(0, code, &body.error.message)
}

fn failed_event(sequence_number: u64, code: &str, message: &str) -> Bytes {
    let event = serde_json::json!({
        "type": "response.failed",
        "sequence_number": sequence_number,
        "response": {
            "object": "response",
            "status": "failed",
            "error": {"code": code, "message": message},
            "output": [],
        },
    });
    let mut frame = BytesMut::new();
    frame.extend_from_slice(b"event: response.failed\ndata: ");
    frame.extend_from_slice(event.to_string().as_bytes());
    frame.extend_from_slice(b"\n\n");
    frame.freeze()
}
