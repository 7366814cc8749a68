//! The request path shared by both wire formats once a request is valid:
//! admit it, apply the fault plan, and send the JSON or the stream.

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;

use crate::errors::Api;
use crate::faults::Interruption;
use crate::state::MockState;
use crate::stats::RequestGuard;
use crate::stream::{injected_drop, sse_response, SseScript, Timing};

/// A valid request's reply, before faults.
pub(crate) enum Reply {
    /// A complete JSON body.
    Json(Bytes),
    /// A stream of SSE events.
    Stream(Box<dyn SseScript>),
}

/// Answers a valid request for `model` with the reply `build` makes for the
/// plan's chunk count, as the model's fault plan says.
///
/// Every `.await` here happens while the request guard is alive, so a client
/// that goes away during a delay makes hyper drop this future and the request
/// counts as cancelled.
pub(crate) async fn respond(
    state: &MockState,
    api: Api,
    model: &str,
    build: impl FnOnce(u32) -> Reply,
) -> Response {
    let mut admission = state.admit(model);
    let faults = admission.faults;
    let headers_delay = Duration::from_millis(faults.headers_delay_ms);
    if let Some(fail) = admission.fail {
        admission.guard.fail_injected();
        sleep(headers_delay).await;
        return api.injected_failure(&fail);
    }
    let reply = build(faults.chunk_count());
    sleep(headers_delay).await;
    match reply {
        Reply::Json(json) => {
            sleep(admission.first_token_delay).await;
            json_reply(json, admission.guard, faults.interruption())
        }
        Reply::Stream(script) => {
            let timing = Timing {
                first_token: admission.first_token_delay,
                between_chunks: Duration::from_millis(faults.chunk_delay_ms),
                write_each: faults.write_each_chunk,
            };
            sse_response(script, admission.guard, timing, faults.interruption())
        }
    }
}

/// A JSON reply; a stall or drop in the plan applies after the response head.
///
/// An in-band error event has no meaning outside a stream and is ignored.
fn json_reply(
    json: Bytes,
    mut guard: RequestGuard,
    interruption: Option<(u32, Interruption)>,
) -> Response {
    let body = match interruption.map(|(_, how)| how) {
        Some(Interruption::Stall) => Body::from_stream(stream::once(async move {
            // The guard lives in the body, so dropping the body counts as cancelled.
            let _guard = guard;
            std::future::pending::<io::Result<Bytes>>().await
        })),
        Some(Interruption::Drop) => {
            guard.fail_injected();
            Body::from_stream(stream::once(async {
                Err::<Bytes, _>(injected_drop().await)
            }))
        }
        Some(Interruption::ErrorEvent) | None => {
            guard.complete();
            Body::from(json)
        }
    };
    let headers = [(header::CONTENT_TYPE, "application/json")];
    (StatusCode::OK, headers, body).into_response()
}

async fn sleep(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}
