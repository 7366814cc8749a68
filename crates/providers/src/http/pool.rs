//! Upstream HTTP/1.1 connections, each driven by the request that holds it.
//!
//! hyper's pooled client runs every connection as a task of its own, so each
//! chunk of a stream crosses from that task to the request's through a
//! channel and a wake-up, one scheduler turn per chunk. Here the task that
//! waits for the answer drives the connection itself, while the request is
//! sent and while the body is read: a chunk already read from the socket is
//! decoded and passed on in the same poll, and "pending" means the socket
//! has nothing more.
//!
//! An idle connection is driven by no one. It is checked when it is taken
//! from the pool (polled once with a waker that does nothing: an upstream
//! that closed it, or sent something unasked, makes it finish), and a
//! request that a reused connection could not even start is sent again on
//! a new one. A connection goes back to the pool only when its body was read
//! to the end: a body dropped before that is read on if its end is already
//! at hand (a stream's last chunk, behind its terminal event), and closes
//! the connection otherwise.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::Frame;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tower_service::Service as _;

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

/// One HTTP/1.1 connection: the request side, and the connection future
/// (`None` once it has finished).
struct Conn {
    origin: Origin,
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Option<http1::Connection<Io, Full<Bytes>>>,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// A response body that drives its connection while it is read, and hands
/// the connection back to its pool once read to the end.
pub(crate) struct Body {
    incoming: Incoming,
    /// Boxed: a connection is large, and the body moves through every
    /// layer of the stream.
    conn: Option<Box<Conn>>,
    pool: Arc<Pool>,
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
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<Body>, SendError> {
        let origin = Origin::of(request.uri())?;
        let host = self.host_of(&origin);
        to_origin_form(&mut request, host);
        if let Some(mut conn) = self.checkout(&origin) {
            match conn.send(request).await {
                Ok(response) => return Ok(self.attach(response, conn)),
                // The upstream closed it before the request went out
                // (its idle timeout, say): nothing was sent, so sending
                // on a new connection is safe.
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(transport(failed.error())),
                },
            }
        }
        let mut conn = self.connect(origin).await?;
        match conn.send(request).await {
            Ok(response) => Ok(self.attach(response, conn)),
            Err(failed) => Err(transport(failed.error())),
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

    fn attach(self: Arc<Self>, response: Response<Incoming>, conn: Box<Conn>) -> Response<Body> {
        response.map(|incoming| Body {
            incoming,
            conn: Some(conn),
            pool: self,
        })
    }

    /// The newest idle connection to `origin` that is still open.
    fn checkout(&self, origin: &Origin) -> Option<Box<Conn>> {
        loop {
            let mut conn = {
                let mut idle = self.lock_idle();
                let now = Instant::now();
                // The newest is at the back: if it has expired, all have.
                if idle
                    .back()
                    .is_some_and(|entry| now.duration_since(entry.since) > IDLE_TIMEOUT)
                {
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

    /// Keeps `conn` for the next request, unless it has closed (whether
    /// it can take one is checked when it is taken).
    fn check_in(&self, conn: Box<Conn>) {
        if conn.driver.is_none() || conn.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock_idle();
        while idle
            .front()
            .is_some_and(|entry| now.duration_since(entry.since) > IDLE_TIMEOUT)
        {
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
        let (sender, driver) = http1::handshake(io).await.map_err(|error| SendError {
            connect: true,
            detail: error_chain(&error),
        })?;
        Ok(Box::new(Conn {
            origin,
            sender,
            driver: Some(driver),
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

fn transport(error: &hyper::Error) -> SendError {
    SendError {
        connect: false,
        detail: error_chain(error),
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

/// What an origin server is sent: a `Host` header and the path alone.
fn to_origin_form(request: &mut Request<Full<Bytes>>, host: Option<HeaderValue>) {
    if let Some(host) = host {
        if !request.headers().contains_key(HOST) {
            request.headers_mut().insert(HOST, host);
        }
    }
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
}

// === impl Conn ===

impl Conn {
    /// Sends `request` and drives the connection until the response head
    /// arrives.
    async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Full<Bytes>>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(request));
        std::future::poll_fn(|cx| {
            let mut drove = false;
            loop {
                if let Poll::Ready(result) = response.as_mut().poll(cx) {
                    return Poll::Ready(result);
                }
                // Driven once and still no head: wait for the socket. A
                // finished connection resolves the response with its error.
                if drove || !self.drive(cx) {
                    return Poll::Pending;
                }
                drove = true;
            }
        })
        .await
    }

    /// Polls the connection future; false once it has finished (closed or
    /// failed: the request or body waiting on it is told by hyper).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = self.driver.as_mut() else {
            return false;
        };
        if Pin::new(driver).poll(cx).is_ready() {
            self.driver = None;
        }
        true
    }

    /// Open, idle, and ready for a request: polled once, with a waker that
    /// does nothing, so an end or an unasked answer already read shows.
    fn is_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx);
        self.driver.is_some() && matches!(self.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }
}

// === impl Body ===

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let mut drove = false;
        loop {
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Ready(None) => {
                    if let Some(conn) = this.conn.take() {
                        this.pool.check_in(conn);
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Some(Ok(frame))),
                // A broken body is never followed by another request.
                Poll::Ready(Some(Err(error))) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(error)));
                }
                // The connection had its turn and decoded nothing more.
                Poll::Pending if drove => return Poll::Pending,
                Poll::Pending => {}
            }
            let driven = this.conn.as_mut().is_some_and(|conn| conn.drive(cx));
            if !driven {
                return Poll::Pending;
            }
            drove = true;
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
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
