//! `models.<name>.on_failure.respond`: the templated answer a model gives
//! when routing fails for the gateway's own reasons (every target and
//! fallback failed, the request's budget ran out, no target could take it)
//! and no stale cache entry could stand in, marked `x-keel-degraded: true`.
//! Never for a failure that is the request's own (an upstream 4xx, a tenant
//! limit, an unknown model): the client must learn of those.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;
use keel_router::{Answer, CacheStatus, RouteError, Routed, Router, StreamEvent};
use keel_types::{ChatRequest, Usage};
use serde_json::json;

use crate::headers::{X_KEEL_DEGRADED, X_KEEL_MODEL, X_KEEL_PROVIDER};
use crate::limits::Reservation;
use crate::ApiError;

/// A request's model's last resort, read before the request is routed.
pub(crate) struct LastResort {
    /// The public model, named in the answer.
    model: String,
    /// The assistant's text.
    content: Arc<str>,
    /// Whether the client asked for a stream.
    stream: bool,
}

// === impl LastResort ===

impl LastResort {
    /// The last resort of `request`'s model, when it has one. A Responses
    /// request passed through natively has none: its answers go to the
    /// client verbatim, and a chat completion would be the wrong shape.
    pub(crate) fn of(router: &Router, request: &ChatRequest) -> Option<Self> {
        if request.endpoint() == keel_types::Endpoint::Responses {
            return None;
        }
        let content = router.last_resort(request.model())?.clone();
        Some(Self {
            model: request.model().to_owned(),
            content,
            stream: request.stream(),
        })
    }

    /// The templated answer in place of `error`, encoded by the front end's
    /// `respond`, when `error` is a failure the last resort stands in for.
    pub(crate) fn answer(
        self,
        error: &ApiError,
        cache: Option<CacheStatus>,
        respond: impl FnOnce(Routed, Option<Reservation>) -> Response,
    ) -> Option<Response> {
        let ApiError::Route(route_error) = error else {
            return None;
        };
        if !stands_in_for(route_error) {
            return None;
        }
        tracing::warn!(model = %self.model, error = %route_error, "routing failed; answering with the model's on_failure text");
        let routed = Routed {
            provider: Arc::from(""),
            model: Arc::from(self.model.as_str()),
            attempts: route_error.attempts(),
            hedged: false,
            cache,
            price: None,
            answer: self.into_answer(),
        };
        let mut response = respond(routed, None);
        // Nobody answered: no provider or upstream model to name.
        let headers = response.headers_mut();
        headers.remove(X_KEEL_PROVIDER);
        headers.remove(X_KEEL_MODEL);
        headers.insert(X_KEEL_DEGRADED, HeaderValue::from_static("true"));
        Some(response)
    }

    /// The answer as an upstream would have given it: a whole chat
    /// completion, or its chunks and `[DONE]`.
    fn into_answer(self) -> Answer {
        let id = format!("chatcmpl-keel-{:016x}", fastrand::u64(..));
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let usage = json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0});
        if !self.stream {
            let body = json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": self.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": &*self.content},
                    "finish_reason": "stop",
                }],
                "usage": usage,
            });
            return Answer::Complete(keel_router::Completion {
                body: Bytes::from(body.to_string()),
                usage: Some(Usage::default()),
                written: None,
            });
        }
        let chunk = |choice: serde_json::Value, usage: Option<&serde_json::Value>| {
            let mut data = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "choices": [choice],
            });
            if let Some(usage) = usage {
                data["usage"] = usage.clone();
            }
            StreamEvent::Chunk {
                data: Bytes::from(data.to_string()),
                token: true,
                usage: None,
                text: None,
            }
        };
        let delta = json!({"role": "assistant", "content": &*self.content});
        let head = vec![
            chunk(
                json!({"index": 0, "delta": delta, "finish_reason": null}),
                None,
            ),
            // The last chunk reports the (zero) usage.
            chunk(
                json!({"index": 0, "delta": {}, "finish_reason": "stop"}),
                Some(&usage),
            ),
            StreamEvent::Done,
        ];
        Answer::Stream {
            head,
            rest: Box::pin(futures_util::stream::empty()),
        }
    }
}

/// Whether `error` is the gateway's failure to find an answer, not the
/// request's fault: every target failed, the budget ran out, or none could
/// take the request. (With no enabled provider at all the model is
/// misconfigured; that error stays, so it is noticed.)
fn stands_in_for(error: &RouteError) -> bool {
    matches!(
        error,
        RouteError::Exhausted { .. }
            | RouteError::DeadlineExceeded { .. }
            | RouteError::Unavailable { .. }
    )
}
