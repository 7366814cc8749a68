//! Server-sent events framing both ways.
//!
//! Decoding builds on `eventsource-stream`, which parses frames incrementally
//! (never re-scanning what it already read). Encoding writes the few frame
//! shapes Keel sends to clients.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

pub use eventsource_stream::Event;

/// The terminal frame of an OpenAI stream.
pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// The `data` text of OpenAI's terminal frame.
pub const DONE_DATA: &str = "[DONE]";

/// Why upstream bytes could not be decoded into events.
#[derive(Debug)]
pub enum DecodeError<E> {
    /// The bytes were not UTF-8 or not SSE.
    Parse(String),
    /// The byte stream itself failed (reset, timeout, …).
    Transport(E),
}

/// Decodes a byte stream into SSE events, frame by frame as bytes arrive.
/// Comment lines (keep-alives) are consumed and never surface as events.
pub fn decode<S, B, E>(bytes: S) -> impl Stream<Item = Result<Event, DecodeError<E>>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    use eventsource_stream::{EventStreamError, Eventsource};
    bytes.eventsource().map(|item| {
        item.map_err(|error| match error {
            EventStreamError::Transport(inner) => DecodeError::Transport(inner),
            EventStreamError::Utf8(inner) => DecodeError::Parse(inner.to_string()),
            EventStreamError::Parser(inner) => DecodeError::Parse(inner.to_string()),
        })
    })
}

/// Encodes one `data:` frame. `data` must not contain a newline, which holds
/// for compact JSON.
pub fn data_frame(data: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(data.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// Encodes one frame with an `event:` name, as Anthropic's streams use.
pub fn named_frame(event: &str, data: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(event.len() + data.len() + 16);
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(event.as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    const FIXTURE: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"h\u{e9}llo \u{1f600}\"}}]}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "data: {\"a\":\r\n",
        "data: 1}\r\n\r\n",
        "data: [DONE]\n\n",
    );

    fn decode_pieces(pieces: Vec<Vec<u8>>) -> Vec<(String, String)> {
        let input = stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>));
        let events = futures_executor::block_on(decode(input).collect::<Vec<_>>());
        events
            .into_iter()
            .map(|event| match event {
                Ok(event) => (event.event, event.data),
                Err(error) => (String::from("error"), format!("{error:?}")),
            })
            .collect()
    }

    #[test]
    fn same_events_whatever_the_split_point() {
        let whole = decode_pieces(vec![FIXTURE.as_bytes().to_vec()]);
        assert_eq!(whole.len(), 4);
        assert_eq!(
            whole[1],
            (String::from("ping"), String::from("{\"type\": \"ping\"}"))
        );
        assert_eq!(whole[2].1, "{\"a\":\n1}");
        assert_eq!(whole[3].1, DONE_DATA);
        let bytes = FIXTURE.as_bytes();
        for split in 0..=bytes.len() {
            let pieces = vec![bytes[..split].to_vec(), bytes[split..].to_vec()];
            assert_eq!(decode_pieces(pieces), whole, "split at byte {split}");
        }
    }

    #[test]
    fn same_events_when_every_byte_arrives_alone() {
        let whole = decode_pieces(vec![FIXTURE.as_bytes().to_vec()]);
        let bytewise = FIXTURE.as_bytes().iter().map(|byte| vec![*byte]).collect();
        assert_eq!(decode_pieces(bytewise), whole);
    }

    #[test]
    fn frames_are_encoded_as_sse() {
        assert_eq!(&data_frame(b"{}")[..], b"data: {}\n\n");
        assert_eq!(
            &named_frame("ping", b"{}")[..],
            b"event: ping\ndata: {}\n\n"
        );
    }
}
