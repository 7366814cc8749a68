//! Keel's HTTP front end: routes, auth, body extraction, the OpenAI error
//! mapping and SSE responses. Handlers extract, call the router, and encode;
//! no routing or provider logic lives here.

mod admin;
mod affinity;
mod api;
mod auth;
mod cache;
mod chat;
mod coalesce;
mod cors;
mod embeddings;
mod error;
mod extract;
mod headers;
mod idempotency;
mod jobs;
mod json;
mod keepalive;
mod last_resort;
mod ledger;
mod limits;
mod messages;
mod request_id;
mod responses;
mod route;
mod routes;
mod shed;
mod signal;
mod sse;
mod translated;
mod verbatim;
mod wait;

use std::future::Future;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::Duration;

use keel_router::Router;
use tokio::net::TcpListener;

pub use affinity::tag_session;
pub use api::Api;
pub use auth::{key_digest, Admin, Tenant, Tenants};
pub use chat::CHAT_ENDPOINT;
pub use cors::layer as with_cors;
pub use error::ApiError;
pub use ledger::{charge, job_output, Bill, NotAJobResult};
pub use limits::{settle_usage, Admitted, Exceeded, Reservation, TenantLimits};
pub use messages::messages_request;
pub use route::{route_within_limits, Served, Unserved};
pub use routes::{app, metrics_app};

/// What every handler shares.
pub struct AppState {
    /// The router requests go through.
    pub router: Arc<Router>,
    /// Who may call.
    pub tenants: Tenants,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// The largest upstream answer read, in bytes (`server.max_upstream_body`).
    pub max_upstream_body: usize,
    /// How long a request body may take to arrive (`server.body_timeout`).
    pub body_timeout: Duration,
    /// Tenant rate limits (shared with the job workers, whose runs count
    /// against them too).
    pub limits: Arc<TenantLimits>,
    /// Requests in flight on this instance; beyond its size, load is shed.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Every Keel metric.
    pub metrics: Arc<keel_telemetry::Metrics>,
    /// The async job queue. `keel::start` always opens one; `None` (a state
    /// built by hand) answers the job endpoints with 503.
    pub jobs: Option<Arc<keel_queue::Queue>>,
    /// The digest of `server.admin_key`; `None` turns the admin routes off
    /// (and leaves `/metrics` open).
    pub admin_key: Option<[u8; 32]>,
    /// `/metrics` is served on `server.metrics_listen` instead of here.
    pub metrics_elsewhere: bool,
    /// Ends committed streams cleanly when the shutdown grace runs out.
    pub cutoff: Cutoff,
    /// The configured SLOs, which every live request for a model counts in.
    pub slos: Arc<keel_slo::Slos>,
    /// How long a stream waits for its first token before its headers go
    /// out and keep-alive comments follow (`server.sse_keepalive`); zero:
    /// never.
    pub sse_keepalive: Duration,
    /// Where limits (and a cache level) are shared with other instances:
    /// `keel_redis_up` reads its link.
    pub shared: keel_redis::Shared,
}

// === impl AppState ===

impl AppState {
    /// How much of a request body is read, and for how long.
    pub(crate) fn body_limit(&self) -> extract::BodyLimit {
        extract::BodyLimit {
            bytes: self.max_body,
            time: self.body_timeout,
        }
    }
}

/// Tells committed streams that the shutdown grace period is over: each
/// ends with its error event and `[DONE]` (Anthropic: `event: error`)
/// instead of being cut mid-frame, so no client takes a cut for an end.
#[derive(Clone)]
pub struct Cutoff(Arc<signal::Signal>);

// === impl Cutoff ===

impl Cutoff {
    /// A cutoff not yet reached.
    pub fn new() -> Self {
        Self(Arc::default())
    }

    /// Reaches it: every guarded stream ends now.
    pub fn cut(&self) {
        self.0.fire();
    }

    /// `events` until the cutoff, then a [`keel_router::ProviderError::Shutdown`].
    pub(crate) fn guard(&self, events: keel_router::EventStream) -> keel_router::EventStream {
        use futures_util::StreamExt as _;
        let mut cut = self.0.waiter();
        let mut events = Some(events);
        futures_util::stream::poll_fn(move |cx| {
            let Some(open) = events.as_mut() else {
                return Poll::Ready(None);
            };
            // An event ready is forwarded before the cutoff is looked at.
            if let Poll::Ready(item) = open.poll_next_unpin(cx) {
                if item.is_none() {
                    events = None;
                }
                return Poll::Ready(item);
            }
            ready!(cut.poll_fired(cx));
            events = None;
            let provider = String::from("keel");
            Poll::Ready(Some(Err(keel_router::ProviderError::Shutdown { provider })))
        })
        .boxed()
    }
}

impl Default for Cutoff {
    fn default() -> Self {
        Self::new()
    }
}

/// The most header fields a request may have (431 in the error shape
/// beyond); hyper's own, higher limit answers an empty 431.
pub const MAX_HEADERS: usize = 100;

/// Connection limits of a listener.
#[derive(Clone, Copy, Debug)]
pub struct Connections {
    /// Connections open at once; one more is closed as soon as it is
    /// accepted (kept below the open-files limit, so the listener never
    /// runs out of descriptors and stops serving everyone).
    pub max: usize,
    /// A request's headers must arrive within this, counted from the
    /// connection going idle: it is also the keep-alive idle timeout.
    pub header_timeout: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            max: 10_000,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then stops accepting
/// and lets in-flight requests (streams included) finish for up to `grace`;
/// streams still open then end with their error event ([`Cutoff`]).
/// Each connection must send a request's headers within
/// `connections.header_timeout` (also the idle keep-alive limit), and at
/// most `connections.max` are open at once.
pub async fn serve(
    listener: TcpListener,
    service: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    cutoff: Cutoff,
    connections: Connections,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(connections.header_timeout)
        .max_headers(MAX_HEADERS * 4);
    let draining = Arc::new(signal::Signal::default());
    let open = Arc::new(tokio::sync::Semaphore::new(connections.max));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors or memory: wait a moment rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            tracing::debug!(
                max = connections.max,
                "connection cap reached; closing a new connection"
            );
            drop(stream);
            continue;
        };
        // Small SSE frames must leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(stream);
        let connection = http.serve_connection(io, service.clone());
        let mut drain = draining.waiter();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let mut draining = false;
            let ended = std::future::poll_fn(|cx| {
                // Shutting down: the request in flight finishes, then the
                // connection closes.
                if !draining && drain.poll_fired(cx).is_ready() {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
                connection.as_mut().poll(cx)
            })
            .await;
            if let Err(error) = ended {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(
        grace_seconds = grace.as_secs_f64(),
        "shutting down: no new connections; waiting for in-flight requests"
    );
    draining.fire();
    // Every connection holds one of `open`'s permits until it has ended.
    let all = u32::try_from(connections.max).unwrap_or(u32::MAX);
    let mut drained = std::pin::pin!(async move {
        let _ = open.acquire_many(all).await;
    });
    tokio::select! {
        () = &mut drained => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period over; ending the streams still open");
            // Streams end with their error event; give their last writes a
            // moment, then close whatever is left.
            cutoff.cut();
            let _ = tokio::time::timeout(CUTOFF_FLUSH, &mut drained).await;
        }
    }
    Ok(())
}

/// How long streams ended by the cutoff get to write their last frames.
const CUTOFF_FLUSH: Duration = Duration::from_secs(1);
