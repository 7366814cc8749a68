//! HTTP/1.1 client framing, without I/O: a request head written into a
//! buffer, a response head parsed from one (with `httparse`), and a body
//! decoder that takes its data out of the read buffer as it comes.
//!
//! Upstreams are hostile input like clients: the head, each chunk-size
//! line, its extensions and the trailers all have a bound, and crossing one
//! is an error that names it.

use std::mem::MaybeUninit;

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, StatusCode};

/// The longest response head read, status line and headers.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// The most header fields in a response head.
const MAX_HEADERS: usize = 100;

/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;

/// The most bytes of trailer fields after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// Hex digits in a chunk size: fifteen keep it below 2^60.
const MAX_CHUNK_DIGITS: u8 = 15;

/// Why an upstream's answer could not be read.
#[derive(Debug)]
pub(crate) enum Error {
    /// Reading or writing the connection failed.
    Io(std::io::Error),
    /// The connection ended before the answer did.
    Closed,
    /// The bytes are not HTTP/1.1 as RFC 9112 frames it.
    Framing(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(error) => write!(f, "connection error: {error}"),
            Self::Closed => f.write_str("the connection closed before the answer ended"),
            Self::Framing(problem) => write!(f, "invalid HTTP/1.1 answer: {problem}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(error) => Some(error),
            Self::Closed | Self::Framing(_) => None,
        }
    }
}

/// Writes the head of `request`: the target in origin form, `host` unless
/// a header names one, the provider's `defaults` that the request's own
/// headers do not replace, then those, and `content-length` for any
/// request that is not a `GET` (given lengths and codings are dropped).
pub(super) fn write_head(
    out: &mut Vec<u8>,
    request: &Request<Bytes>,
    host: Option<&HeaderValue>,
    defaults: &HeaderMap,
) {
    let method = request.method();
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let headers = request.headers();
    if let Some(host) = host {
        if !headers.contains_key(HOST) && !defaults.contains_key(HOST) {
            write_field(out, &HOST, host);
        }
    }
    let defaults = defaults
        .iter()
        .filter(|(name, _)| !headers.contains_key(*name));
    for (name, value) in defaults.chain(headers) {
        if name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
            write_field(out, name, value);
        }
    }
    let body_len = request.body().len();
    if body_len > 0 || method != Method::GET {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, body_len);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn write_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut value: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789"[value % 10];
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A response head, and how its body is framed.
#[derive(Debug)]
pub(super) struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Framing,
    /// The connection may carry another request once the body has ended.
    pub reusable: bool,
}

/// How a response body ends (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (204, 304).
    Empty,
    /// `content-length` bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// Parses the response head at the start of `buffer` and removes it: `None`
/// while it is incomplete. Interim answers (1xx) are removed and skipped.
pub(super) fn parse_head(buffer: &mut BytesMut) -> Result<Option<Head>, Error> {
    loop {
        if buffer.is_empty() {
            return Ok(None);
        }
        // Left uninitialised: most heads have a handful of fields.
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buffer,
            &mut fields,
        );
        let length = match parsed {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD => {
                return Err(Error::Framing("the head is longer than 64 KiB"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Error::Framing("more than 100 header fields"))
            }
            Err(_) => return Err(Error::Framing("the head does not parse")),
        };
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| Error::Framing("bad status code"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::Framing("101 Switching Protocols was not asked for"));
        }
        if status.is_informational() {
            buffer.advance(length);
            continue;
        }
        let mut facts = Facts {
            close: response.version != Some(1),
            ..Facts::default()
        };
        let mut headers = HeaderMap::with_capacity(response.headers.len());
        for field in response.headers.iter() {
            facts.note(field.name, field.value);
            let name = HeaderName::from_bytes(field.name.as_bytes())
                .map_err(|_| Error::Framing("bad header name"))?;
            let value = HeaderValue::from_bytes(field.value)
                .map_err(|_| Error::Framing("bad header value"))?;
            headers.append(name, value);
        }
        buffer.advance(length);
        return framed(status, headers, &facts).map(Some);
    }
}

/// What a head's fields say about how its body ends.
#[derive(Default)]
struct Facts {
    /// Every `content-length` value, when they agree.
    length: Option<Result<u64, &'static str>>,
    /// There is a `transfer-encoding`, and whether its last coding is
    /// `chunked`.
    chunked: Option<bool>,
    /// HTTP/1.0, or `connection: close`.
    close: bool,
}

impl Facts {
    fn note(&mut self, name: &str, value: &[u8]) {
        if name.eq_ignore_ascii_case("content-length") {
            for item in value.split(|&byte| byte == b',') {
                let parsed = parse_decimal(item.trim_ascii()).ok_or("bad content-length");
                self.length = match (self.length, parsed) {
                    (Some(Ok(seen)), Ok(length)) if seen != length => {
                        Some(Err("content-length values differ"))
                    }
                    (Some(Err(problem)), _) => Some(Err(problem)),
                    (_, parsed) => Some(parsed),
                };
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value
                .rsplit(|&byte| byte == b',')
                .next()
                .unwrap_or_default();
            self.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            self.close |= value
                .split(|&byte| byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
}

/// How the body of a head ends, and whether its connection can be reused.
fn framed(status: StatusCode, headers: HeaderMap, facts: &Facts) -> Result<Head, Error> {
    let mut reusable = !facts.close;
    let body = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Empty
    } else if let Some(chunked) = facts.chunked {
        // A length beside a transfer coding may have been meant to smuggle
        // a second answer: the coding wins and the connection is not reused.
        reusable &= facts.length.is_none();
        if chunked {
            Framing::Chunked
        } else {
            reusable = false;
            Framing::UntilClose
        }
    } else if let Some(length) = facts.length {
        Framing::Length(length.map_err(Error::Framing)?)
    } else {
        reusable = false;
        Framing::UntilClose
    };
    Ok(Head {
        status,
        headers,
        body,
        reusable,
    })
}

/// Digits only, at most 18 of them (below 10^18, so no overflow).
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |value, digit| value * 10 + u64::from(digit - b'0')),
    )
}

/// Takes a body's data out of the read buffer as its framing allows.
#[derive(Debug)]
pub(super) struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left of a `content-length` body.
    Length(u64),
    /// Reading a chunk-size line: the size so far and its digits.
    Size {
        size: u64,
        digits: u8,
        line: usize,
    },
    /// Skipping a chunk extension, up to the line's `\r`.
    Extension {
        size: u64,
        line: usize,
    },
    /// The `\n` ending a chunk-size line.
    SizeEnd {
        size: u64,
    },
    /// Bytes left of a chunk's data.
    Data(u64),
    /// The `\r\n` after a chunk's data (`true`: the `\r` was read).
    DataEnd(bool),
    /// Trailer fields: bytes read of them, of the current line, and whether
    /// its `\r` was read.
    Trailers {
        total: usize,
        line: usize,
        cr: bool,
    },
    UntilClose,
    Done,
}

/// What the buffer held.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decoded {
    Data(Bytes),
    /// Nothing more until more is read.
    NeedMore,
    End,
}

impl Decoder {
    pub(super) fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(length) => State::Length(length),
            Framing::Chunked => State::Size {
                size: 0,
                digits: 0,
                line: 0,
            },
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// The body has ended: its connection can be reused if its head said so.
    pub(super) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of data the framing still promises, when it says.
    pub(super) fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(left) => Some(left),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of data (or the end) out of `buffer`.
    pub(super) fn decode(&mut self, buffer: &mut BytesMut) -> Result<Decoded, Error> {
        loop {
            if let State::Done = self.state {
                return Ok(Decoded::End);
            }
            if buffer.is_empty() {
                return Ok(Decoded::NeedMore);
            }
            match self.state {
                State::Length(left) | State::Data(left) => {
                    let taken = take(buffer, left);
                    let left = left - taken.len() as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::DataEnd(false),
                        _ => State::Data(left),
                    };
                    return Ok(Decoded::Data(taken));
                }
                State::UntilClose => return Ok(Decoded::Data(buffer.split().freeze())),
                _ => self.skip_framing(buffer)?,
            }
        }
    }

    /// The connection closed: the end of a body framed by it, an error for
    /// any other.
    pub(super) fn closed(&mut self) -> Result<Decoded, Error> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(Decoded::End)
            }
            _ => Err(Error::Closed),
        }
    }

    /// Reads chunked framing (a size line, a data's CRLF, trailers) from
    /// the front of `buffer` until data or the end is next, or the buffer
    /// runs out, and removes what it read.
    fn skip_framing(&mut self, buffer: &mut BytesMut) -> Result<(), Error> {
        let mut state = self.state;
        let mut used = 0;
        for &byte in buffer.iter() {
            state = framing_byte(state, byte)?;
            used += 1;
            if matches!(state, State::Data(_) | State::Done) {
                break;
            }
        }
        buffer.advance(used);
        self.state = state;
        Ok(())
    }
}

/// The state after one byte of chunked framing.
fn framing_byte(state: State, byte: u8) -> Result<State, Error> {
    const BAD_SIZE: Error = Error::Framing("bad chunk size line");
    let state = match state {
        State::Size { size, digits, line } => {
            if line >= MAX_CHUNK_LINE {
                return Err(Error::Framing("a chunk size line is longer than 4 KiB"));
            }
            match byte {
                b'\r' if digits > 0 => State::SizeEnd { size },
                b';' | b' ' | b'\t' if digits > 0 => State::Extension {
                    size,
                    line: line + 1,
                },
                _ => {
                    let digit = hex_value(byte).ok_or(BAD_SIZE)?;
                    if digits >= MAX_CHUNK_DIGITS {
                        return Err(Error::Framing("a chunk size is too large"));
                    }
                    State::Size {
                        size: size << 4 | digit,
                        digits: digits + 1,
                        line: line + 1,
                    }
                }
            }
        }
        State::Extension { size, line } => match byte {
            _ if line >= MAX_CHUNK_LINE => {
                return Err(Error::Framing("a chunk size line is longer than 4 KiB"))
            }
            b'\r' => State::SizeEnd { size },
            b'\n' => return Err(BAD_SIZE),
            _ => State::Extension {
                size,
                line: line + 1,
            },
        },
        State::SizeEnd { size } => match byte {
            b'\n' if size == 0 => State::Trailers {
                total: 0,
                line: 0,
                cr: false,
            },
            b'\n' => State::Data(size),
            _ => return Err(BAD_SIZE),
        },
        State::DataEnd(false) if byte == b'\r' => State::DataEnd(true),
        State::DataEnd(true) if byte == b'\n' => State::Size {
            size: 0,
            digits: 0,
            line: 0,
        },
        State::DataEnd(_) => return Err(Error::Framing("a chunk's data is not followed by CRLF")),
        State::Trailers { total, line, cr } => {
            if total >= MAX_TRAILERS {
                return Err(Error::Framing("the trailers are longer than 16 KiB"));
            }
            match (byte, cr) {
                (b'\n', true) if line == 0 => State::Done,
                (b'\n', true) => State::Trailers {
                    total: total + 1,
                    line: 0,
                    cr: false,
                },
                (b'\r', false) => State::Trailers {
                    total: total + 1,
                    line,
                    cr: true,
                },
                (b'\r' | b'\n', _) | (_, true) => return Err(Error::Framing("bad trailer line")),
                _ => State::Trailers {
                    total: total + 1,
                    line: line + 1,
                    cr: false,
                },
            }
        }
        State::Length(_) | State::Data(_) | State::UntilClose | State::Done => state,
    };
    Ok(state)
}

/// Up to `left` bytes from the front of `buffer`.
fn take(buffer: &mut BytesMut, left: u64) -> Bytes {
    let count = usize::try_from(left)
        .unwrap_or(usize::MAX)
        .min(buffer.len());
    buffer.split_to(count).freeze()
}

fn hex_value(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests;
