//! A wire-faithful OpenAI + Anthropic mock upstream with a fault-injection control API.
//!
//! Serves `POST /v1/chat/completions` (OpenAI Chat Completions, JSON and
//! SSE), `POST /v1/responses` (OpenAI Responses, JSON and SSE with
//! `sequence_number`ed events ending in `response.completed`,
//! `response.incomplete` or, after an injected error, `error` and
//! `response.failed`), `POST /v1/messages` (Anthropic Messages, JSON and SSE),
//! `POST /v1/embeddings` (OpenAI Embeddings, deterministic vectors),
//! `GET /v1/models` (faulted under the name `_models`), and the control API:
//!
//! - `PUT /_mock/faults/{model}`: replace the model's fault plan (body: `Faults` JSON)
//! - `DELETE /_mock/faults/{model}`: remove the model's fault plan
//! - `DELETE /_mock/faults`: remove every plan and every counter
//! - `GET /_mock/stats`: every model's counters, `{"<model>": ModelStats}`
//! - `GET /_mock/stats/{model}`: one model's counters
//! - `GET /_mock/requests`: the last 64 API requests received (method,
//!   path, headers, body up to 1 MiB, body length), oldest first;
//!   `DELETE /_mock/requests` empties it
//!
//! Replies are deterministic: "Hello from the keel mock (model X). " and
//! filler words, one word per content chunk, or one tool call when the
//! request offers tools. Faults (`Faults`) are set per upstream model, with
//! `*` as the plan for models without one, and counters (`ModelStats`) tell
//! tests what the mock saw.
//!
//! It runs in-process (`spawn_local`) for `kind: mock` providers and tests,
//! and standalone through `keel mock`.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::{Listener, ListenerExt};
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

mod anthropic;
mod control;
mod embeddings;
mod errors;
mod faults;
mod log;
mod openai;
mod reply;
mod respond;
mod responses;
mod state;
mod stats;
mod stream;
mod wire;

pub use crate::faults::{
    FailNext, Faults, HeavyTail, InvalidFaults, DEFAULT_CHUNKS, HEAVY_TAIL_BASE_MS, MAX_CHUNKS,
};
pub use crate::log::{LoggedRequest, LOG_CAPACITY, LOG_MAX_BODY};
pub use crate::openai::{LISTED_MODELS, MODELS_LIST};
pub use crate::state::{MockState, WILDCARD_MODEL};
pub use crate::stats::ModelStats;

/// The largest request body the mock accepts.
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The mock's routes: both provider APIs and the `/_mock/` control API.
pub fn router(state: MockState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/models", get(openai::models))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/messages", post(anthropic::messages))
        .merge(control::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            log::record,
        ))
        .with_state(state)
}

/// Serves the mock on `listener` until the listener fails, with
/// `TCP_NODELAY` on every accepted socket (without it every stream chunk
/// waits ~40 ms for Nagle and delayed ACKs).
pub async fn serve(listener: TcpListener, state: MockState) -> std::io::Result<()> {
    axum::serve(nodelay(listener), router(state)).await
}

/// Like `serve`, but stops accepting when `shutdown` completes and returns
/// once the open connections have finished (a stalled stream never
/// finishes: abort the task to stop at once).
pub async fn serve_with_shutdown(
    listener: TcpListener,
    state: MockState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(nodelay(listener), router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `127.0.0.1:0` and serves the mock in a background task.
///
/// Returns the bound address and the serving task; abort the task to stop the mock.
pub async fn spawn_local(
    state: MockState,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let address = listener.local_addr()?;
    let task = tokio::spawn(serve(listener, state));
    Ok((address, task))
}

/// Sets `TCP_NODELAY` on every socket `listener` accepts.
fn nodelay(listener: TcpListener) -> impl Listener<Io = TcpStream, Addr = SocketAddr> {
    listener.tap_io(|socket| {
        if let Err(error) = socket.set_nodelay(true) {
            tracing::warn!(%error, "keel mock: failed to set TCP_NODELAY on an accepted socket");
        }
    })
}

async fn not_found() -> Response {
    errors::Api::OpenAi.error(StatusCode::NOT_FOUND, "Unknown request URL (keel mock)")
}
