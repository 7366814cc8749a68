//! `POST /v1/chat/completions`: parse, route, and answer as JSON or SSE with
//! headers naming who answered.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keel_router::{Answer, Routed};

use crate::extract::ChatBody;
use crate::{sse, ApiError, AppState, Tenant};

/// Routes one chat completion and encodes the committed answer.
pub async fn completions(_tenant: Tenant, State(state): State<Arc<AppState>>, ChatBody(request): ChatBody) -> Result<Response, ApiError> {
    let routed = state.router.dispatch(Arc::new(request)).await?;
    Ok(respond(routed))
}

fn respond(routed: Routed) -> Response {
    let Routed { provider, model, attempts, answer } = routed;
    let (content_type, body) = match answer {
        Answer::Complete(completion) => ("application/json", Body::from(completion.body)),
        Answer::Stream { head, rest } => ("text/event-stream", sse::body(head, rest)),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Ok(value) = HeaderValue::from_str(&provider) {
        headers.insert("x-keel-provider", value);
    }
    if let Ok(value) = HeaderValue::from_str(&model) {
        headers.insert("x-keel-model", value);
    }
    headers.insert("x-keel-attempts", HeaderValue::from(attempts));
    response
}
