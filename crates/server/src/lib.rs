//! Keel's HTTP front end: routes, auth, body extraction, the OpenAI error
//! mapping and SSE responses. Handlers extract, call the router, and encode;
//! no routing or provider logic lives here.

mod auth;
mod cache;
mod chat;
mod coalesce;
mod error;
mod extract;
mod headers;
mod idempotency;
mod jobs;
mod limits;
mod messages;
mod request_id;
mod routes;
mod shed;
mod sse;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_router::Router;
use tokio::net::TcpListener;

pub use auth::{key_digest, Admin, Tenant, Tenants};
pub use chat::CHAT_ENDPOINT;
pub use error::ApiError;
pub use limits::{settle_usage, Admitted, Exceeded, Reservation, TenantLimits};
pub use routes::app;

/// What every handler shares.
pub struct AppState {
    /// The router requests go through.
    pub router: Arc<Router>,
    /// Who may call.
    pub tenants: Tenants,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// Tenant rate limits (shared with the job workers, whose runs count
    /// against them too).
    pub limits: Arc<TenantLimits>,
    /// Requests in flight on this instance; beyond its size, load is shed.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Every Keel metric.
    pub metrics: Arc<keel_telemetry::Metrics>,
    /// The async job queue; `None` turns the job endpoints off (503).
    pub jobs: Option<Arc<keel_queue::Queue>>,
    /// The digest of `server.admin_key`; `None` turns the admin routes off.
    pub admin_key: Option<[u8; 32]>,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting
/// and lets in-flight requests (streams included) finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|socket| {
        // Small SSE frames must leave at once, not wait for Nagle.
        let _ = socket.set_nodelay(true);
    });
    let draining = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let draining = draining.clone();
        async move {
            shutdown.await;
            tracing::info!(
                grace_seconds = grace.as_secs_f64(),
                "shutting down: no new connections; waiting for in-flight requests"
            );
            draining.notify_one();
        }
    };
    let server = std::future::IntoFuture::into_future(
        axum::serve(listener, app).with_graceful_shutdown(signal),
    );
    tokio::select! {
        result = server => result,
        () = async { draining.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("shutdown grace period over; closing the connections still open");
            Ok(())
        }
    }
}
