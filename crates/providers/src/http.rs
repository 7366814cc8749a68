//! The upstream HTTP client: HTTP/1.1 over rustls with the webpki roots,
//! with the provider's default headers, on connections of Keel's own pool
//! (`pool`), each driven by the request that holds it. reqwest is not used
//! here: its redirect layer parses the URL twice per request even with
//! redirects off, about a tenth of a plain request's instructions
//! (bench/README.md). Keel never follows upstream redirects. HTTP/2 is not
//! offered: every upstream API Keel speaks serves HTTP/1.1, and one
//! connection per request in flight is what their own SDKs use by default.

mod h1;
mod pool;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, Stream};
use http::header::{HeaderMap, HeaderValue, ACCEPT};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyDataStream, BodyExt as _};
use hyper_util::client::legacy::connect::HttpConnector;

pub(crate) use pool::Body;
use pool::Pool;

/// A pooled client for one provider.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    /// One connection pool per HTTP worker thread (`server.workers`) and
    /// one for every other thread, so a worker's requests find the
    /// connections it used last. Never empty.
    pools: Arc<[Arc<Pool>]>,
    /// The provider's headers, sent on every request that does not
    /// replace them (shared by requests, not copied).
    headers: Arc<HeaderMap>,
    /// The same without `content-type`: a GET has no body to describe.
    get_headers: Arc<HeaderMap>,
    /// The longest whole answer read (`server.max_upstream_body`).
    pub(crate) max_body: usize,
}

/// Why no response head arrived.
#[derive(Debug)]
pub(crate) struct SendError {
    /// The connection could not be made (refused, unreachable, TLS).
    pub(crate) connect: bool,
    /// The error and its causes.
    pub(crate) detail: String,
}

/// A request on its way: resolves with the response head.
pub(crate) type Sent = BoxFuture<'static, Result<Response<Body>, SendError>>;

// === impl HttpClient ===

impl HttpClient {
    /// A client sending `headers` on every request, with `accept: */*`
    /// unless they set one.
    pub(crate) fn new(
        mut headers: HeaderMap,
        connect_timeout: Duration,
        max_body: usize,
        pools: usize,
    ) -> Self {
        headers
            .entry(ACCEPT)
            .or_insert(HeaderValue::from_static("*/*"));
        let connector = connector(connect_timeout);
        let pools = (0..pools.max(1))
            .map(|_| Arc::new(Pool::new(connector.clone())))
            .collect();
        let mut get_headers = headers.clone();
        get_headers.remove(http::header::CONTENT_TYPE);
        Self {
            pools,
            headers: Arc::new(headers),
            get_headers: Arc::new(get_headers),
            max_body,
        }
    }

    /// The calling thread's connection pool.
    fn pool(&self) -> Arc<Pool> {
        // `pools` is never empty.
        Arc::clone(&self.pools[HTTP_WORKER.get() % self.pools.len()])
    }

    /// GETs `uri`, with the provider's headers and no body.
    pub(crate) fn get(&self, uri: Uri) -> Sent {
        let mut request = Request::new(Bytes::new());
        *request.uri_mut() = uri;
        let headers = Arc::clone(&self.get_headers);
        self.pool().send(request, headers).boxed()
    }

    /// POSTs `body` to `uri`.
    pub(crate) fn post(&self, uri: Uri, body: impl Into<Bytes>) -> Sent {
        self.post_with(uri, body, HeaderMap::new())
    }

    /// POSTs `body` to `uri` with `headers` over the provider's own (each
    /// name given replaces the provider's values).
    pub(crate) fn post_with(&self, uri: Uri, body: impl Into<Bytes>, headers: HeaderMap) -> Sent {
        let mut request = Request::new(body.into());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        self.pool().send(request, Arc::clone(&self.headers)).boxed()
    }
}

/// Makes connections: TCP with no Nagle delay, then TLS for `https`
/// (HTTP/1.1 by ALPN).
fn connector(connect_timeout: Duration) -> pool::Connector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

thread_local! {
    /// This thread's connection pool index: its HTTP worker's
    /// (`server.workers`), 0 on every other thread.
    static HTTP_WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes the calling thread send its upstream requests through connection
/// pool `index` of every provider (one per HTTP worker thread of
/// `server.workers`, counted from 1; 0 is every other thread's), so its
/// requests find the connections it used last, with no lock shared with
/// other workers.
pub fn set_http_worker(index: usize) {
    HTTP_WORKER.set(index);
}

/// Sends a GET of `uri` through `client` and reads the whole answer: `Ok`
/// for a success, else the status classified by `error_from_status` (each
/// API words its errors its own way).
pub(crate) fn probe(
    client: &HttpClient,
    provider: Arc<str>,
    uri: Uri,
    error_from_status: ErrorFromStatus,
) -> BoxFuture<'static, Result<(), crate::ProviderError>> {
    let sent = client.get(uri);
    let max_body = client.max_body;
    async move {
        let response = sent
            .await
            .map_err(|error| crate::openai::send_error(&provider, error))?;
        if !response.status().is_success() {
            let (status, retry_after, body) = crate::openai::read_error_body(response).await;
            return Err(error_from_status(&provider, status, &body, retry_after));
        }
        // Read to the end, so the connection goes back to the pool.
        read_body(response, max_body)
            .await
            .map(|_| ())
            .map_err(|error| body_failure(&provider, &error))
    }
    .boxed()
}

/// How one API turns an error status and body into the attempt's error.
pub(crate) type ErrorFromStatus = fn(&str, u16, &[u8], Option<Duration>) -> crate::ProviderError;

/// Why a whole body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The transport failed.
    Transport(h1::Error),
    /// The body is longer than the limit.
    TooLarge(usize),
}

/// The whole body, at most `limit` bytes (`server.max_upstream_body`): a
/// longer one is refused as soon as it passes the limit, never buffered.
pub(crate) async fn read_body(response: Response<Body>, limit: usize) -> Result<Bytes, BodyError> {
    let body = http_body_util::Limited::new(response.into_body(), limit);
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => match error.downcast::<h1::Error>() {
            Ok(transport) => Err(BodyError::Transport(*transport)),
            Err(_) => Err(BodyError::TooLarge(limit)),
        },
    }
}

/// A failure to read a whole answer, as the attempt's error.
pub(crate) fn body_failure(provider: &str, error: &BodyError) -> crate::ProviderError {
    match error {
        BodyError::Transport(error) => crate::ProviderError::Transport {
            provider: provider.to_owned(),
            detail: error_chain(error),
        },
        BodyError::TooLarge(limit) => crate::ProviderError::Protocol {
            provider: provider.to_owned(),
            detail: format!("the answer is longer than server.max_upstream_body ({limit} bytes)"),
        },
    }
}

/// The body as a stream of data chunks.
pub(crate) fn body_stream(
    response: Response<Body>,
) -> impl Stream<Item = Result<Bytes, h1::Error>> + Send + 'static {
    BodyDataStream::new(response.into_body())
}

/// An error and its causes on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
