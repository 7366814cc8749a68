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

/// The longest SSE line accepted from an upstream: 1 MiB. A longer
/// one ends the stream with [`DecodeError::Parse`] before it is buffered
/// further.
pub const MAX_LINE: usize = 1 << 20;

/// Decodes a byte stream into SSE events, frame by frame as bytes arrive.
/// Comment lines (keep-alives) are consumed and never surface as events.
///
/// The decoder is fed whole lines only ([`whole_lines`]): it re-reads its
/// buffer from the start each time it is fed, which is quadratic in a line
/// that arrives in many pieces; fed whole lines, it reads each byte once.
pub fn decode<S, B, E>(bytes: S) -> impl Stream<Item = Result<Event, DecodeError<E>>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    use eventsource_stream::{EventStreamError, Eventsource};
    whole_lines(bytes, MAX_LINE).eventsource().map(|item| {
        item.map_err(|error| match error {
            EventStreamError::Transport(Feed::Transport(inner)) => DecodeError::Transport(inner),
            EventStreamError::Transport(Feed::LineTooLong(limit)) => {
                DecodeError::Parse(format!("an SSE line is longer than {limit} bytes"))
            }
            EventStreamError::Utf8(inner) => DecodeError::Parse(inner.to_string()),
            EventStreamError::Parser(inner) => DecodeError::Parse(inner.to_string()),
        })
    })
}

/// Why [`whole_lines`] stopped.
#[derive(Debug)]
pub enum Feed<E> {
    /// The byte stream failed.
    Transport(E),
    /// A line grew past the limit.
    LineTooLong(usize),
}

impl<E: std::fmt::Display> std::fmt::Display for Feed<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(error) => error.fmt(f),
            Self::LineTooLong(limit) => write!(f, "a line is longer than {limit} bytes"),
        }
    }
}

/// Regroups `bytes` so every item ends at a line end (`\n`, or a `\r` that
/// is not the last byte received, since a `\n` may follow it), holding back
/// the unfinished line, which may grow to `max_line` bytes; past that the
/// stream ends with [`Feed::LineTooLong`]. A last unfinished line is passed
/// on when the bytes end (the decoder discards it, as SSE says).
pub fn whole_lines<S, B, E>(bytes: S, max_line: usize) -> impl Stream<Item = Result<Bytes, Feed<E>>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    let state = (Box::pin(bytes), bytes::BytesMut::new(), false);
    futures_util::stream::unfold(state, move |(mut bytes, mut pending, ended)| async move {
        if ended {
            return None;
        }
        loop {
            match bytes.next().await {
                Some(Ok(chunk)) => {
                    let chunk = chunk.as_ref();
                    let cut = chunk.iter().rposition(|&byte| byte == b'\n').or_else(|| {
                        chunk[..chunk.len().saturating_sub(1)]
                            .iter()
                            .rposition(|&byte| byte == b'\r')
                    });
                    let Some(cut) = cut else {
                        pending.extend_from_slice(chunk);
                        if pending.len() > max_line {
                            return Some((
                                Err(Feed::LineTooLong(max_line)),
                                (bytes, pending, true),
                            ));
                        }
                        continue;
                    };
                    // The line the held-back bytes belong to ends in this chunk.
                    let first_end = chunk
                        .iter()
                        .position(|&byte| byte == b'\n' || byte == b'\r')
                        .unwrap_or(cut);
                    if pending.len().saturating_add(first_end) > max_line {
                        return Some((Err(Feed::LineTooLong(max_line)), (bytes, pending, true)));
                    }
                    pending.extend_from_slice(&chunk[..=cut]);
                    let lines = pending.split().freeze();
                    pending.extend_from_slice(&chunk[cut + 1..]);
                    if pending.len() > max_line {
                        return Some((Err(Feed::LineTooLong(max_line)), (bytes, pending, true)));
                    }
                    return Some((Ok(lines), (bytes, pending, false)));
                }
                Some(Err(error)) => {
                    return Some((Err(Feed::Transport(error)), (bytes, pending, true)))
                }
                None if pending.is_empty() => return None,
                None => {
                    let rest = pending.split().freeze();
                    return Some((Ok(rest), (bytes, pending, true)));
                }
            }
        }
    })
}

/// Encodes one `data:` frame: one `data:` line per line of `data` (an
/// upstream's multi-line data, which the decoder joined with `\n`, goes out
/// as several `data:` lines again, never as one broken line).
pub fn data_frame(data: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(data.len() + 8);
    write_data_lines(&mut frame, data);
    frame.extend_from_slice(b"\n");
    Bytes::from(frame)
}

/// Encodes one frame with an `event:` name, as Anthropic's streams use.
pub fn named_frame(event: &str, data: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(event.len() + data.len() + 16);
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(event.as_bytes());
    frame.extend_from_slice(b"\n");
    write_data_lines(&mut frame, data);
    frame.extend_from_slice(b"\n");
    Bytes::from(frame)
}

/// `data: <line>\n` for each line of `data` (split at `\n`, `\r\n` or `\r`,
/// the SSE line ends).
fn write_data_lines(frame: &mut Vec<u8>, data: &[u8]) {
    if !data.iter().any(|&byte| byte == b'\n' || byte == b'\r') {
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(data);
        frame.push(b'\n');
        return;
    }
    let mut rest = data;
    loop {
        let end = rest
            .iter()
            .position(|&byte| byte == b'\n' || byte == b'\r')
            .unwrap_or(rest.len());
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(&rest[..end]);
        frame.push(b'\n');
        if end == rest.len() {
            return;
        }
        let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
}

#[cfg(test)]
mod tests {
    /// Trust boundary 10: multi-line data leaves as one `data:` line per
    /// line, and decodes back to what it was.
    #[test]
    fn tb10_multi_line_data_becomes_several_data_lines() {
        assert_eq!(&super::data_frame(b"{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        let frame = super::data_frame(b"{\"a\":\n1}\r\n\rx");
        assert_eq!(&frame[..], b"data: {\"a\":\ndata: 1}\ndata: \ndata: x\n\n");
        let named = super::named_frame("e", b"1\n2");
        assert_eq!(&named[..], b"event: e\ndata: 1\ndata: 2\n\n");
        let decoded: Vec<_> =
            futures_executor::block_on(futures_util::StreamExt::collect::<Vec<_>>(super::decode(
                futures_util::stream::iter([Ok::<_, std::convert::Infallible>(super::data_frame(
                    b"line one\nline two",
                ))]),
            )));
        assert!(matches!(
            decoded.as_slice(),
            [Ok(event)] if event.data == "line one\nline two"
        ));
    }

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

    /// Trust boundary 5: a line past 1 MiB ends the stream with a parse
    /// error, whether it arrives whole or in pieces, before more is held.
    #[test]
    fn tb5_a_line_longer_than_the_limit_ends_the_stream() {
        let long = format!("data: {}\n\n", "x".repeat(MAX_LINE + 1));
        let whole = decode_pieces(vec![long.as_bytes().to_vec()]);
        let pieces = long
            .as_bytes()
            .chunks(16 * 1024)
            .map(<[u8]>::to_vec)
            .collect();
        let split = decode_pieces(pieces);
        for events in [whole, split] {
            assert_eq!(events.len(), 1, "{events:?}");
            assert_eq!(events[0].0, "error");
            assert!(
                events[0].1.contains("longer than 1048576 bytes"),
                "{}",
                events[0].1
            );
        }
        let just_fits = format!("data: {}\n\n", "x".repeat(MAX_LINE - 7));
        let pieces = just_fits
            .as_bytes()
            .chunks(4096)
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(decode_pieces(pieces).len(), 1);
    }

    /// Regrouped on line ends: what the decoder is fed always ends a line.
    #[test]
    fn whole_lines_hold_back_the_unfinished_line() {
        let pieces = [&b"data: a"[..], b"bc\ndata", b": d\r", b"\n\n", b"tail"];
        let input = stream::iter(pieces.map(|piece| Ok::<_, std::io::Error>(piece.to_vec())));
        let fed: Vec<String> =
            futures_executor::block_on(whole_lines(input, 64).collect::<Vec<_>>())
                .into_iter()
                .map(|item| {
                    item.map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                        .unwrap_or_default()
                })
                .collect();
        assert_eq!(fed, ["data: abc\n", "data: d\r\n\n", "tail"]);
    }

    /// Hostile bytes, in the normal suite: random bytes decode to the same
    /// events however they are cut into pieces (up to the first error), and
    /// never panic. `fuzz/` runs the decoder under `cargo fuzz`.
    #[test]
    fn any_bytes_decode_the_same_whatever_the_pieces() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |bound: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % bound as u64) as usize
        };
        let alphabet = b"data: event:{}[]\"\r\n\n\n:xy\xc3\xa9\xff";
        for _ in 0..2_000 {
            let len = next(200);
            let bytes: Vec<u8> = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
            let whole = decode_pieces(vec![bytes.clone()]);
            let cut = next(len + 1);
            let split = decode_pieces(vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]);
            let until_error = |events: &[(String, String)]| -> Vec<(String, String)> {
                events
                    .iter()
                    .take_while(|(name, _)| name != "error")
                    .cloned()
                    .collect()
            };
            assert_eq!(
                until_error(&whole),
                until_error(&split),
                "{:?} cut at {cut}",
                String::from_utf8_lossy(&bytes)
            );
        }
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
