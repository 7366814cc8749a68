//! Server-sent events framing both ways.
//!
//! Decoding follows the WHATWG event stream format, incrementally: bytes
//! are regrouped into whole lines ([`whole_lines`], which bounds a line),
//! and each line is read once, without copying the buffer it came in.
//! Encoding writes the few frame shapes Keel sends to clients.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

/// The terminal frame of an OpenAI stream.
pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// The `data` text of OpenAI's terminal frame.
pub const DONE_DATA: &str = "[DONE]";

/// One event of a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Its type: the `event:` field, `message` without one (not copied).
    pub event: Cow<'static, str>,
    /// Its `data:` lines, joined with `\n`.
    pub data: String,
    /// The last event id the stream set (`id:`, which carries over).
    pub id: String,
    /// The reconnection time the event set (`retry:`).
    pub retry: Option<Duration>,
}

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
/// Comment lines (keep-alives) are consumed and never surface as events; a
/// leading byte order mark is skipped; an event not ended by an empty line
/// when the bytes end is dropped, as the format says. The stream ends after
/// its first error.
pub fn decode<S, B, E>(bytes: S) -> impl Stream<Item = Result<Event, DecodeError<E>>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    Decoder {
        lines: Box::pin(whole_lines(bytes, MAX_LINE)),
        parser: Parser::default(),
        ready: VecDeque::new(),
        ended: false,
    }
}

/// The stream [`decode`] returns.
struct Decoder<L> {
    lines: Pin<Box<L>>,
    parser: Parser,
    /// Events read and not yet taken.
    ready: VecDeque<Event>,
    ended: bool,
}

impl<L, E> Stream for Decoder<L>
where
    L: Stream<Item = Result<Bytes, Feed<E>>>,
{
    type Item = Result<Event, DecodeError<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let failure = match this.lines.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.ended = true;
                    continue;
                }
                Poll::Ready(Some(Ok(lines))) => match this.parser.feed(&lines, &mut this.ready) {
                    Ok(()) => continue,
                    Err(error) => DecodeError::Parse(error),
                },
                Poll::Ready(Some(Err(Feed::Transport(error)))) => DecodeError::Transport(error),
                Poll::Ready(Some(Err(Feed::LineTooLong(limit)))) => {
                    DecodeError::Parse(format!("an SSE line is longer than {limit} bytes"))
                }
            };
            // Nothing is queued here: lines are only read once the
            // queue is empty, and a buffer that is not UTF-8 yields nothing.
            this.ended = true;
            return Poll::Ready(Some(Err(failure)));
        }
    }
}

/// The event being read, and what carries over between events.
#[derive(Default)]
struct Parser {
    /// Bytes have been read (a byte order mark can only come first).
    started: bool,
    /// The last buffer ended with `\r`: a `\n` starting the next ends the
    /// same line.
    after_cr: bool,
    /// The event read so far (its id is set when it is dispatched).
    event: Event,
    /// The event has a `data:` line (its data may still be empty).
    has_data: bool,
    last_id: String,
}

// === impl Parser ===

impl Parser {
    /// Reads every line `bytes` ends (it is UTF-8 as a whole, or refused),
    /// queueing the events they complete; an unfinished last line is
    /// dropped (it only comes when the bytes end).
    fn feed(&mut self, bytes: &[u8], events: &mut VecDeque<Event>) -> Result<(), String> {
        let mut text = std::str::from_utf8(bytes)
            .map_err(|error| format!("the upstream stream is not UTF-8: {error}"))?;
        if !self.started && !text.is_empty() {
            self.started = true;
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        if std::mem::take(&mut self.after_cr) {
            text = text.strip_prefix('\n').unwrap_or(text);
        }
        while let Some(end) = line_end(text.as_bytes()) {
            let (line, rest) = text.split_at(end);
            let rest = if let Some(rest) = rest.strip_prefix("\r\n") {
                rest
            } else {
                self.after_cr = rest == "\r";
                &rest[1..]
            };
            self.line(line, events);
            text = rest;
        }
        Ok(())
    }

    fn line(&mut self, line: &str, events: &mut VecDeque<Event>) {
        if line.is_empty() {
            events.extend(self.dispatch());
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some(("", _)) => return, // a comment
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event.event = Cow::Owned(value.to_owned()),
            // Lines joined with `\n`; one line is copied once, at its size.
            "data" if !self.has_data => {
                self.has_data = true;
                self.event.data = String::from(value);
            }
            "data" => {
                self.event.data.push('\n');
                self.event.data.push_str(value);
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.last_id),
            "retry" => {
                if let Ok(millis) = value.parse::<u64>() {
                    self.event.retry = Some(Duration::from_millis(millis));
                }
            }
            _ => {}
        }
    }

    /// The event an empty line ends; none without a `data:` line.
    fn dispatch(&mut self) -> Option<Event> {
        let mut event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        if event.event.is_empty() {
            event.event = Cow::Borrowed("message");
        }
        event.id.clone_from(&self.last_id);
        Some(event)
    }
}

/// Where the first line of `bytes` ends (its `\n` or `\r`): `memchr`'s
/// vector search, a few instructions per 16 bytes, where the byte loop or
/// an eight-byte word at a time took several times that on every event
/// read and written.
fn line_end(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', b'\r', bytes)
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
                    // The line the held-back bytes belong to ends in this
                    // chunk (looked for only when it could be too long).
                    if pending.len().saturating_add(cut) > max_line {
                        let first_end = line_end(chunk).unwrap_or(cut);
                        if pending.len().saturating_add(first_end) > max_line {
                            return Some((
                                Err(Feed::LineTooLong(max_line)),
                                (bytes, pending, true),
                            ));
                        }
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
    let mut frame = BytesMut::with_capacity(data.len() + 8);
    put_data_frame(&mut frame, data);
    frame.freeze()
}

/// Writes [`data_frame`]'s frame at the end of `out`.
pub fn put_data_frame(out: &mut BytesMut, data: &[u8]) {
    write_data_lines(out, data);
    out.extend_from_slice(b"\n");
}

/// Encodes one frame with an `event:` name, as Anthropic's streams use.
pub fn named_frame(event: &str, data: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(event.len() + data.len() + 16);
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(event.as_bytes());
    frame.extend_from_slice(b"\n");
    write_data_lines(&mut frame, data);
    frame.extend_from_slice(b"\n");
    frame.freeze()
}

/// `data: <line>\n` for each line of `data` (split at `\n`, `\r\n` or `\r`,
/// the SSE line ends).
fn write_data_lines(frame: &mut BytesMut, data: &[u8]) {
    if line_end(data).is_none() {
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(data);
        frame.extend_from_slice(b"\n");
        return;
    }
    let mut rest = data;
    loop {
        let end = line_end(rest).unwrap_or(rest.len());
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(&rest[..end]);
        frame.extend_from_slice(b"\n");
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
                Ok(event) => (event.event.into_owned(), event.data),
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

    /// The decoder reads any bytes as `eventsource-stream` (the decoder
    /// Keel used before) does: the same events up to the first error, and
    /// an error where it has one; only a leading byte order mark differs
    /// (see the next test).
    #[test]
    fn any_bytes_decode_as_eventsource_stream_decodes_them() {
        use eventsource_stream::Eventsource;
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |bound: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % bound as u64) as usize
        };
        let tokens: [&[u8]; 20] = [
            b"data:",
            b"data: ",
            b"event:",
            b"id:",
            b"retry:",
            b"12",
            b" ",
            b"{}",
            b"\"",
            b"\r",
            b"\n",
            b"\n",
            b"\r\n",
            b":",
            b"x",
            b"y",
            "\u{e9}".as_bytes(),
            "\u{feff}".as_bytes(),
            b"\0",
            b"\xff",
        ];
        let theirs = |pieces: Vec<Vec<u8>>| -> Vec<(String, String, String, Option<Duration>)> {
            let input = stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>));
            let events = futures_executor::block_on(
                whole_lines(input, MAX_LINE)
                    .eventsource()
                    .collect::<Vec<_>>(),
            );
            events
                .into_iter()
                .map_while(Result::ok)
                .map(|event| (event.event, event.data, event.id, event.retry))
                .collect()
        };
        let ours = |pieces: Vec<Vec<u8>>| {
            let input = stream::iter(pieces.into_iter().map(Ok::<_, std::io::Error>));
            let events = futures_executor::block_on(decode(input).collect::<Vec<_>>());
            let failed = events.iter().any(Result::is_err);
            let events: Vec<_> = events
                .into_iter()
                .map_while(Result::ok)
                .map(|event| (event.event.into_owned(), event.data, event.id, event.retry))
                .collect();
            (events, failed)
        };
        let mut compared = 0;
        for _ in 0..5_000 {
            let bytes: Vec<u8> = (0..next(60))
                .flat_map(|_| tokens[next(tokens.len())].iter().copied())
                .collect();
            let cut = next(bytes.len() + 1);
            let pieces = vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()];
            let (events, failed) = ours(pieces.clone());
            if bytes.starts_with("\u{feff}".as_bytes()) {
                // eventsource-stream panics on a leading byte order mark
                // (it slices one byte into the three of U+FEFF).
                continue;
            }
            // A `\r` that ends the bytes ends a line here; eventsource-stream
            // waits for a `\n` that may follow, which never comes.
            let mut their_pieces = pieces;
            if bytes.ends_with(b"\r") {
                their_pieces.push(b"\n".to_vec());
            }
            let expected = theirs(their_pieces);
            if failed {
                // An error: what came before it agrees.
                assert!(
                    expected.starts_with(&events),
                    "{:?}",
                    String::from_utf8_lossy(&bytes)
                );
            } else {
                compared += 1;
                assert_eq!(
                    events,
                    expected,
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
        assert!(
            compared > 1_000,
            "only {compared} inputs decoded without error"
        );
    }

    /// A stream may start with a byte order mark, which is skipped there
    /// and only there (a line starting with one names no known field),
    /// however the bytes are cut.
    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let text = "\u{feff}data: a\n\n\u{feff}data: b\n\ndata: c\n\n";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let events = decode_pieces(vec![bytes[..cut].to_vec(), bytes[cut..].to_vec()]);
            let data: Vec<&str> = events.iter().map(|(_, data)| data.as_str()).collect();
            assert_eq!(data, ["a", "c"], "cut at {cut}");
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
