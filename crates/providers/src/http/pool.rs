//! Upstream HTTP/1.1 connections, each driven by the request that holds it.
//!
//! hyper's pooled client runs every connection as a task of its own, so each
//! chunk of a stream crosses from that task to the request's through a
//! channel and a wake-up, one scheduler turn per chunk, and each connection
//! keeps read and write buffers and a request channel for as long as it
//! lives. Here the task that waits for the answer reads the socket itself,
//! framing with `h1`: a chunk already read is decoded and passed on in the
//! same poll, "pending" means the socket has nothing more, and a stream
//! waiting for its next chunk holds no buffer.
//!
//! An idle connection is driven by no one. It is checked when it is taken
//! from the pool (read once with a waker that does nothing: an upstream
//! that closed it, or sent something unasked, makes it unusable), and a
//! request of which a reused connection could not write a byte is sent
//! again on a new one. A connection goes back to the pool only when its
//! body was read to the end: a body dropped before that is read on if its
//! end is already at hand (a stream's last chunk, behind its terminal
//! event), and closes the connection otherwise.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::HeaderValue;
use http::uri::{Authority, Scheme};
use http::HeaderMap;
use http::{Request, Response, Uri, Version};
use http_body::Frame;
use hyper::rt::{Read as _, ReadBuf, Write as _};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tower_service::Service as _;

use super::h1::{self, Decoded, Decoder};
use super::{error_chain, SendError};

pub(crate) type Connector = HttpsConnector<HttpConnector>;
type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

/// A connection unused this long is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most idle connections a pool keeps; one more is closed.
const MAX_IDLE: usize = 1024;

/// Idle connections to upstreams, and the connector that makes new ones.
pub(crate) struct Pool {
    connector: Connector,
    /// The `Host` header of the first origin asked for: a provider's
    /// requests all go to one.
    host: std::sync::OnceLock<(Origin, Option<HeaderValue>)>,
    /// Oldest first.
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
}

/// Where a connection goes: scheme and authority.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: Scheme,
    authority: Authority,
}

/// One HTTP/1.1 connection, and what was read from it and not yet decoded.
struct Conn {
    origin: Origin,
    io: Io,
    /// Holds only bytes not yet decoded, so a stream waiting for its next
    /// chunk holds no read buffer.
    buffer: BytesMut,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// A response body that drives its connection while it is read, and hands
/// the connection back to its pool once read to the end.
pub(crate) struct Body {
    /// `None` once the body has ended or failed. Boxed: a connection is
    /// large, and the body moves through every layer of the stream.
    conn: Option<Box<Conn>>,
    decoder: Decoder,
    /// The head allowed another request on the connection.
    reusable: bool,
    pool: Arc<Pool>,
}

/// Why a request got no answer.
enum Failed {
    /// Not a byte of it was written (the write failed with this error): it
    /// can go on another connection.
    Unsent(Box<Request<Bytes>>, std::io::Error),
    Error(h1::Error),
}

/// The header fields a request goes out with beside its own.
#[derive(Clone, Copy)]
struct Fields<'a> {
    /// The origin's `Host`, unless a header names one.
    host: Option<&'a HeaderValue>,
    /// The provider's headers, those the request does not replace.
    defaults: &'a HeaderMap,
}

// === impl Pool ===

impl Pool {
    pub(crate) fn new(connector: Connector) -> Self {
        Self {
            connector,
            host: std::sync::OnceLock::new(),
            idle: Mutex::new(VecDeque::new()),
            max_idle: MAX_IDLE,
        }
    }

    /// Sends `request` (its URI absolute) on an idle connection to its
    /// origin, or on a new one, and waits for the response head.
    pub(crate) async fn send(
        self: Arc<Self>,
        mut request: Request<Bytes>,
        defaults: Arc<HeaderMap>,
    ) -> Result<Response<Body>, SendError> {
        let origin = Origin::of(request.uri())?;
        let host = self.host_of(&origin);
        let fields = Fields {
            host: host.as_ref(),
            defaults: &defaults,
        };
        if let Some(mut conn) = self.checkout(&origin) {
            match conn.send(request, fields).await {
                Ok(head) => return Ok(self.attach(head, conn)),
                // The upstream closed it before the request went out
                // (its idle timeout, say): nothing was sent, so sending
                // on a new connection is safe.
                Err(Failed::Unsent(unsent, _)) => request = *unsent,
                Err(Failed::Error(error)) => return Err(transport(&error)),
            }
        }
        let mut conn = self.connect(origin).await?;
        match conn.send(request, fields).await {
            Ok(head) => Ok(self.attach(head, conn)),
            Err(Failed::Unsent(_, error)) => Err(transport(&h1::Error::Io(error))),
            Err(Failed::Error(error)) => Err(transport(&error)),
        }
    }

    fn host_of(&self, origin: &Origin) -> Option<HeaderValue> {
        let (first, host) = self.host.get_or_init(|| (origin.clone(), origin.host()));
        if first == origin {
            host.clone()
        } else {
            origin.host()
        }
    }

    fn attach(self: Arc<Self>, head: h1::Head, conn: Box<Conn>) -> Response<Body> {
        let mut response = Response::new(Body {
            conn: Some(conn),
            decoder: Decoder::new(head.body),
            reusable: head.reusable,
            pool: self,
        });
        *response.status_mut() = head.status;
        *response.version_mut() = Version::HTTP_11;
        *response.headers_mut() = head.headers;
        response
    }

    /// The newest idle connection to `origin` that is still open.
    fn checkout(&self, origin: &Origin) -> Option<Box<Conn>> {
        loop {
            let mut conn = {
                let mut idle = self.lock_idle();
                let now = Instant::now();
                // The newest is at the back: if it has expired, all have.
                if idle.back().is_some_and(|entry| entry.expired(now)) {
                    idle.clear();
                }
                let found = idle
                    .iter()
                    .rposition(|entry| entry.conn.origin == *origin)?;
                idle.remove(found)?.conn
            };
            if conn.is_usable() {
                return Some(conn);
            }
        }
    }

    /// Keeps `conn` for the next request (whether it is still open is
    /// checked when it is taken).
    fn check_in(&self, conn: Box<Conn>) {
        let now = Instant::now();
        let mut idle = self.lock_idle();
        while idle.front().is_some_and(|entry| entry.expired(now)) {
            idle.pop_front();
        }
        if idle.len() < self.max_idle {
            idle.push_back(Idle { conn, since: now });
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // A panic elsewhere cannot leave the list half-changed.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn connect(&self, origin: Origin) -> Result<Box<Conn>, SendError> {
        let mut connector = self.connector.clone();
        let connect = |error: Box<dyn std::error::Error + Send + Sync>| SendError {
            connect: true,
            detail: error_chain(&*error),
        };
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(connect)?;
        let io = connector.call(origin.uri()).await.map_err(connect)?;
        Ok(Box::new(Conn {
            origin,
            io,
            buffer: BytesMut::new(),
        }))
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.lock_idle().len())
            .finish_non_exhaustive()
    }
}

fn transport(error: &h1::Error) -> SendError {
    SendError {
        connect: false,
        detail: error_chain(error),
    }
}

// === impl Idle ===

impl Idle {
    /// Unused for longer than the idle timeout at `now`.
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.since) > IDLE_TIMEOUT
    }
}

// === impl Origin ===

impl Origin {
    fn of(uri: &Uri) -> Result<Self, SendError> {
        match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => Ok(Self {
                scheme: scheme.clone(),
                authority: authority.clone(),
            }),
            _ => Err(SendError {
                connect: true,
                detail: format!("not an absolute URL: {uri}"),
            }),
        }
    }

    fn uri(&self) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        // Built from the parts of a URI that was valid.
        Uri::from_parts(parts).unwrap_or_default()
    }

    /// The `Host` header: the host, and the port unless it is the scheme's
    /// default.
    fn host(&self) -> Option<HeaderValue> {
        let default_port = if self.scheme == Scheme::HTTPS {
            443
        } else {
            80
        };
        let host = self.authority.host();
        match self.authority.port_u16() {
            Some(port) if port != default_port => {
                HeaderValue::try_from(format!("{host}:{port}")).ok()
            }
            _ => HeaderValue::try_from(host).ok(),
        }
    }
}

// === impl Conn ===

impl Conn {
    /// Writes `request` and reads until the response head has arrived.
    async fn send(
        &mut self,
        request: Request<Bytes>,
        fields: Fields<'_>,
    ) -> Result<h1::Head, Failed> {
        let mut head = Vec::with_capacity(HEAD_CAPACITY);
        h1::write_head(&mut head, &request, fields.host, fields.defaults);
        let body = request.body();
        let mut written = 0;
        let wrote = poll_fn(|cx| self.poll_write_all(cx, &head, body, &mut written)).await;
        match wrote {
            Ok(()) => {}
            Err(error) if written == 0 => return Err(Failed::Unsent(Box::new(request), error)),
            Err(error) => return Err(Failed::Error(h1::Error::Io(error))),
        }
        poll_fn(|cx| self.poll_head(cx))
            .await
            .map_err(Failed::Error)
    }

    /// Writes what is left of `head` then `body`, and flushes.
    fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        body: &[u8],
        written: &mut usize,
    ) -> Poll<std::io::Result<()>> {
        let total = head.len() + body.len();
        while *written < total {
            let (first, second) = match head.get(*written..) {
                Some(rest) if !rest.is_empty() => (rest, body),
                _ => (
                    body.get(*written - head.len()..).unwrap_or_default(),
                    &[][..],
                ),
            };
            let slices = [IoSlice::new(first), IoSlice::new(second)];
            match ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices))? {
                0 => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                count => *written += count,
            }
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<h1::Head, h1::Error>> {
        loop {
            if let Some(head) = h1::parse_head(&mut self.buffer)? {
                return Poll::Ready(Ok(head));
            }
            if ready!(self.poll_read_more(cx))? == 0 {
                return Poll::Ready(Err(h1::Error::Closed));
            }
        }
    }

    /// Reads what the socket has into the buffer, through this thread's
    /// scratch space: the buffer grows by what was read, no more. 0 at the
    /// connection's end.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, h1::Error>> {
        let io = Pin::new(&mut self.io);
        let buffer = &mut self.buffer;
        SCRATCH
            .with_borrow_mut(|scratch| {
                let mut read = ReadBuf::new(scratch);
                ready!(io.poll_read(cx, read.unfilled()))?;
                buffer.extend_from_slice(read.filled());
                Poll::Ready(Ok(read.filled().len()))
            })
            .map_err(h1::Error::Io)
    }

    /// Open and idle: the upstream has neither closed it nor sent anything
    /// unasked since it came back (`Body::finish` takes back only one with
    /// nothing left over). Read once, with a waker that does nothing.
    fn is_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.poll_read_more(&mut cx).is_pending()
    }
}

/// Room for a request head with the usual headers.
const HEAD_CAPACITY: usize = 512;

/// The most read from a socket at once.
const READ_SIZE: usize = 32 * 1024;

thread_local! {
    /// Where this thread's upstream reads land before they are copied
    /// into the connection's buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_SIZE]);
}

// === impl Body ===

impl Body {
    /// The body has ended: its connection goes back to the pool if its head
    /// allowed that and nothing unasked came after the body.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.buffer.is_empty() {
                self.pool.check_in(conn);
            }
        }
    }

    /// A broken body is never followed by another request.
    fn fail(&mut self, error: h1::Error) -> Poll<Option<Result<Frame<Bytes>, h1::Error>>> {
        self.conn = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = h1::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h1::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let decoded = match this.decoder.decode(&mut conn.buffer) {
                Ok(Decoded::NeedMore) => match conn.poll_read_more(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => this.decoder.closed(),
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Ready(Err(error)) => return this.fail(error),
                },
                decoded => decoded,
            };
            match decoded {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(error) => return this.fail(error),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.decoder.remaining() {
            Some(exact) => http_body::SizeHint::with_exact(exact),
            None => http_body::SizeHint::default(),
        }
    }
}

impl Drop for Body {
    /// A stream is dropped after its terminal event, before the body's own
    /// end (the chunked encoding's last chunk), which is usually read
    /// already: finish the body without waiting, and the connection is
    /// reused. Anything not at hand closes the connection.
    fn drop(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..MAX_FRAMES_AT_DROP {
            if self.conn.is_none() {
                return;
            }
            match http_body::Body::poll_frame(Pin::new(&mut *self), &mut cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(None | Some(Err(_))) | Poll::Pending => return,
            }
        }
    }
}

/// Frames of an unread body read when it is dropped, before its
/// connection is given up.
const MAX_FRAMES_AT_DROP: usize = 4;

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
