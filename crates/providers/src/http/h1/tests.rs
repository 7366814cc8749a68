//! The framing alone, on bytes: heads split at every byte, chunked bodies
//! cut at random, and each bound crossed.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_LENGTH, HOST};
use http::{HeaderMap, Method, Request, StatusCode, Uri};

use super::{parse_head, write_head, Decoded, Decoder, Error, Framing, Head};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn head_of(text: &str) -> Result<Option<Head>, Error> {
    parse_head(&mut BytesMut::from(text))
}

fn framing_of(text: &str) -> Result<(Framing, bool), Error> {
    let head = head_of(text)?.ok_or("incomplete").map_err(Error::Framing)?;
    Ok((head.body, head.reusable))
}

/// Everything the decoder makes of `wire`, fed in pieces cut at `cuts`,
/// then the connection closed.
fn decode_in_pieces(framing: Framing, wire: &[u8], cuts: &[usize]) -> Result<Vec<u8>, Error> {
    let mut decoder = Decoder::new(framing);
    let mut buffer = BytesMut::new();
    let mut body = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([wire.len()].iter()) {
        buffer.extend_from_slice(&wire[from..to.max(from)]);
        from = to.max(from);
        loop {
            match decoder.decode(&mut buffer)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::NeedMore => break,
                Decoded::End => return Ok(body),
            }
        }
    }
    decoder.closed()?;
    Ok(body)
}

fn request(method: Method, uri: &str, headers: HeaderMap, body: &'static [u8]) -> Request<Bytes> {
    let mut request = Request::new(Bytes::from_static(body));
    *request.method_mut() = method;
    *request.uri_mut() = Uri::try_from(uri).unwrap_or_default();
    *request.headers_mut() = headers;
    request
}

#[test]
fn a_request_head_has_origin_form_its_headers_and_a_length() {
    let host = HeaderValue::from_static("api.example.com");
    let mut defaults = HeaderMap::new();
    defaults.insert("authorization", HeaderValue::from_static("Bearer k"));
    defaults.insert("anthropic-version", HeaderValue::from_static("1"));
    // Keel frames the body itself: a length given by hand is not sent.
    defaults.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
    // The request's own headers replace the defaults of their name, every
    // value of theirs kept.
    let mut own = HeaderMap::new();
    own.append("anthropic-version", HeaderValue::from_static("2"));
    own.append("anthropic-version", HeaderValue::from_static("3"));
    let post = request(
        Method::POST,
        "http://api.example.com/v1/chat?x=1",
        own,
        b"{}",
    );
    let mut out = Vec::new();
    write_head(&mut out, &post, Some(&host), &defaults);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "POST /v1/chat?x=1 HTTP/1.1\r\nhost: api.example.com\r\n\
         authorization: Bearer k\r\nanthropic-version: 2\r\n\
         anthropic-version: 3\r\ncontent-length: 2\r\n\r\n"
    );
    // A `Host` given by hand is the one sent.
    let mut named = HeaderMap::new();
    named.insert(HOST, HeaderValue::from_static("elsewhere"));
    let get = request(Method::GET, "http://a/v1/models", HeaderMap::new(), b"");
    let mut out = Vec::new();
    write_head(&mut out, &get, Some(&host), &named);
    assert_eq!(out, b"GET /v1/models HTTP/1.1\r\nhost: elsewhere\r\n\r\n");
    let empty_post = request(Method::POST, "http://a", HeaderMap::new(), b"");
    let mut out = Vec::new();
    write_head(&mut out, &empty_post, None, &HeaderMap::new());
    assert_eq!(out, b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
}

#[test]
fn a_head_is_incomplete_at_every_cut_and_whole_with_its_last_byte() -> TestResult {
    let wire = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                transfer-encoding: chunked\r\nx-a: 1\r\nx-a: 2\r\n\r\n5\r\nhello";
    let head_length = wire.find("\r\n\r\n").ok_or("no blank line")? + 4;
    for cut in 0..head_length {
        assert!(head_of(&wire[..cut])?.is_none(), "cut at {cut}");
    }
    let mut buffer = BytesMut::from(wire);
    let head = parse_head(&mut buffer)?.ok_or("incomplete")?;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.body, Framing::Chunked);
    assert!(head.reusable);
    assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
    assert_eq!(
        &buffer[..],
        b"5\r\nhello",
        "the body's bytes stay in the buffer"
    );
    Ok(())
}

#[test]
fn interim_answers_are_skipped_and_a_switch_of_protocol_is_refused() -> TestResult {
    let wire = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
                HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
    let head = head_of(wire)?.ok_or("incomplete")?;
    assert_eq!(head.status, StatusCode::CREATED);
    assert!(head_of("HTTP/1.1 100 Continue\r\n\r\n")?.is_none());
    assert!(matches!(
        head_of("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n"),
        Err(Error::Framing(_))
    ));
    Ok(())
}

#[test]
fn framing_follows_rfc_9112() -> TestResult {
    let ok = "HTTP/1.1 200 OK\r\n";
    let cases = [
        ("content-length: 12\r\n", Framing::Length(12), true),
        (
            "content-length: 12, 12\r\ncontent-length: 12\r\n",
            Framing::Length(12),
            true,
        ),
        ("transfer-encoding: chunked\r\n", Framing::Chunked, true),
        (
            "transfer-encoding: gzip, chunked\r\n",
            Framing::Chunked,
            true,
        ),
        // A length beside a coding: the coding wins, the connection closes.
        (
            "transfer-encoding: chunked\r\ncontent-length: 5\r\n",
            Framing::Chunked,
            false,
        ),
        ("transfer-encoding: gzip\r\n", Framing::UntilClose, false),
        ("", Framing::UntilClose, false),
        (
            "content-length: 2\r\nconnection: keep-alive, close\r\n",
            Framing::Length(2),
            false,
        ),
    ];
    for (fields, framing, reusable) in cases {
        let text = format!("{ok}{fields}\r\n");
        assert_eq!(framing_of(&text)?, (framing, reusable), "{fields:?}");
    }
    assert_eq!(
        framing_of("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n")?,
        (Framing::Empty, true)
    );
    assert_eq!(
        framing_of("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n")?,
        (Framing::Length(2), false),
        "HTTP/1.0 closes"
    );
    for fields in [
        "content-length: 12, 13\r\n",
        "content-length: -1\r\n",
        "content-length: 1e3\r\n",
        "content-length: 1234567890123456789\r\n",
    ] {
        let text = format!("{ok}{fields}\r\n");
        assert!(
            matches!(framing_of(&text), Err(Error::Framing(_))),
            "{fields}"
        );
    }
    Ok(())
}

#[test]
fn a_head_past_its_bounds_is_refused() {
    let long = format!("HTTP/1.1 200 OK\r\nx-long: {}", "a".repeat(super::MAX_HEAD));
    assert!(matches!(head_of(&long), Err(Error::Framing(problem)) if problem.contains("64 KiB")));
    let just_under = format!("HTTP/1.1 200 OK\r\nx-long: {}", "a".repeat(1000));
    assert!(matches!(head_of(&just_under), Ok(None)));

    let fields = |count: usize| {
        let mut text = String::from("HTTP/1.1 200 OK\r\n");
        for index in 0..count {
            text.push_str(&format!("x-{index}: v\r\n"));
        }
        text + "content-length: 0\r\n\r\n"
    };
    assert!(matches!(head_of(&fields(99)), Ok(Some(_))));
    assert!(
        matches!(head_of(&fields(100)), Err(Error::Framing(problem)) if problem.contains("100"))
    );
    assert!(matches!(
        head_of("HTTP/1.1 OK\r\n\r\n"),
        Err(Error::Framing(_))
    ));
}

/// A small xorshift generator: the same cuts on every run.
struct Cuts(u64);

impl Cuts {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % below.max(1) as u64).unwrap_or(0)
    }
}

/// `data` in chunks of random sizes, some with extensions, and trailers.
fn chunked(data: &[u8], cuts: &mut Cuts) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let size = (1 + cuts.next(40)).min(data.len() - at);
        let extension = if cuts.next(4) == 0 { ";name=\"v\"" } else { "" };
        let digits = if cuts.next(2) == 0 {
            format!("{size:x}")
        } else {
            format!("{size:04X}")
        };
        wire.extend_from_slice(format!("{digits}{extension}\r\n").as_bytes());
        wire.extend_from_slice(&data[at..at + size]);
        wire.extend_from_slice(b"\r\n");
        at += size;
    }
    let trailers = if cuts.next(3) == 0 {
        "x-checksum: 1\r\n"
    } else {
        ""
    };
    wire.extend_from_slice(format!("0\r\n{trailers}\r\n").as_bytes());
    wire
}

#[test]
fn chunked_bodies_decode_to_their_data_however_they_are_cut() -> TestResult {
    let mut cuts = Cuts(0x9E37_79B9_7F4A_7C15);
    for round in 0..2_000 {
        let data: Vec<u8> = (0..cuts.next(300))
            .map(|index| (index * 7 + round) as u8)
            .collect();
        let wire = chunked(&data, &mut cuts);
        let mut points: Vec<usize> = (0..cuts.next(6)).map(|_| cuts.next(wire.len())).collect();
        points.sort_unstable();
        assert_eq!(
            decode_in_pieces(Framing::Chunked, &wire, &points)?,
            data,
            "round {round}"
        );
    }
    let wire = chunked(b"data: {\"x\":1}\n\n", &mut cuts);
    let every_byte: Vec<usize> = (1..wire.len()).collect();
    assert_eq!(
        decode_in_pieces(Framing::Chunked, &wire, &every_byte)?,
        b"data: {\"x\":1}\n\n"
    );
    Ok(())
}

#[test]
fn a_chunked_body_ends_exactly_at_its_last_chunk() -> TestResult {
    let mut decoder = Decoder::new(Framing::Chunked);
    let mut buffer = BytesMut::from("2\r\nhi\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n");
    assert_eq!(
        decoder.decode(&mut buffer)?,
        Decoded::Data(Bytes::from("hi"))
    );
    assert!(!decoder.is_done());
    assert_eq!(decoder.decode(&mut buffer)?, Decoded::End);
    assert!(decoder.is_done());
    assert_eq!(&buffer[..], b"HTTP/1.1 200 OK\r\n", "what follows is left");
    Ok(())
}

#[test]
fn broken_chunked_framing_is_refused_by_name() {
    let refused = |wire: &str| label(decode_in_pieces(Framing::Chunked, wire.as_bytes(), &[]));
    assert_eq!(refused("zz\r\n"), "bad chunk size line");
    assert_eq!(refused("\r\n"), "bad chunk size line");
    assert_eq!(refused("2\nhi\r\n0\r\n\r\n"), "bad chunk size line");
    assert_eq!(
        refused("2\r\nhiX\r\n0\r\n\r\n"),
        "a chunk's data is not followed by CRLF"
    );
    assert_eq!(refused("1000000000000000\r\n"), "a chunk size is too large");
    assert_eq!(refused("0\r\nx-a: 1\n\r\n"), "bad trailer line");
    // Each bound, crossed by one byte, and met.
    let extension = |length: usize| format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(length));
    assert_eq!(
        refused(&extension(super::MAX_CHUNK_LINE)),
        "a chunk size line is longer than 4 KiB"
    );
    assert!(decode_in_pieces(
        Framing::Chunked,
        extension(super::MAX_CHUNK_LINE - 3).as_bytes(),
        &[]
    )
    .is_ok());
    let trailers = |length: usize| format!("0\r\nx: {}\r\n\r\n", "t".repeat(length));
    assert_eq!(
        refused(&trailers(super::MAX_TRAILERS)),
        "the trailers are longer than 16 KiB"
    );
    assert!(decode_in_pieces(
        Framing::Chunked,
        trailers(super::MAX_TRAILERS - 8).as_bytes(),
        &[]
    )
    .is_ok());
}

/// What a decoding came to: the framing problem's wording, or what else.
fn label(outcome: Result<Vec<u8>, Error>) -> &'static str {
    match outcome {
        Ok(_) => "decoded",
        Err(Error::Closed) => "closed",
        Err(Error::Io(_)) => "io",
        Err(Error::Framing(problem)) => problem,
    }
}

#[test]
fn a_body_cut_by_the_connection_is_an_error_unless_it_ends_there() -> TestResult {
    assert!(matches!(
        decode_in_pieces(Framing::Chunked, b"5\r\nhel", &[]),
        Err(Error::Closed)
    ));
    assert!(matches!(
        decode_in_pieces(Framing::Length(10), b"hello", &[2]),
        Err(Error::Closed)
    ));
    assert_eq!(
        decode_in_pieces(Framing::UntilClose, b"all of it", &[3])?,
        b"all of it"
    );
    assert_eq!(decode_in_pieces(Framing::Empty, b"", &[])?, b"");
    Ok(())
}

#[test]
fn a_length_body_takes_its_bytes_and_leaves_the_rest() -> TestResult {
    let mut decoder = Decoder::new(Framing::Length(5));
    assert_eq!(decoder.remaining(), Some(5));
    let mut buffer = BytesMut::from("hel");
    assert_eq!(
        decoder.decode(&mut buffer)?,
        Decoded::Data(Bytes::from("hel"))
    );
    assert_eq!(decoder.remaining(), Some(2));
    assert_eq!(decoder.decode(&mut buffer)?, Decoded::NeedMore);
    buffer.extend_from_slice(b"loEXTRA");
    assert_eq!(
        decoder.decode(&mut buffer)?,
        Decoded::Data(Bytes::from("lo"))
    );
    assert!(decoder.is_done());
    assert_eq!(decoder.decode(&mut buffer)?, Decoded::End);
    assert_eq!(&buffer[..], b"EXTRA");
    Ok(())
}
