//! The fault-injection control API under `/_mock/`.
//!
//! - `PUT /_mock/faults/{model}`: replace the model's fault plan (body: `Faults` JSON)
//! - `DELETE /_mock/faults/{model}`: remove the model's fault plan
//! - `DELETE /_mock/faults`: remove every plan and every counter
//! - `GET /_mock/stats`: every model's counters, `{"<model>": ModelStats}`
//! - `GET /_mock/stats/{model}`: one model's counters
//! - `GET /_mock/requests`: the last API requests received, oldest first
//! - `DELETE /_mock/requests`: forget them
//!
//! `{model}` may contain slashes; `*` is the wildcard plan.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;

use crate::faults::Faults;
use crate::state::MockState;

/// The control routes, to be merged into the mock's router.
pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route("/_mock/faults", delete(clear))
        .route(
            "/_mock/faults/{*model}",
            delete(remove_faults).put(put_faults),
        )
        .route("/_mock/stats", get(all_stats))
        .route("/_mock/stats/{*model}", get(model_stats))
        .route("/_mock/requests", get(requests).delete(forget_requests))
}

async fn requests(State(state): State<MockState>) -> Response {
    Json(json!({"requests": state.requests()})).into_response()
}

async fn forget_requests(State(state): State<MockState>) -> StatusCode {
    state.forget_requests();
    StatusCode::NO_CONTENT
}

async fn put_faults(
    State(state): State<MockState>,
    Path(model): Path<String>,
    body: Bytes,
) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(error) => return invalid(&error.to_string()),
    };
    if let Err(error) = faults.validate() {
        return invalid(&error.to_string());
    }
    state.set_faults(&model, faults.clone());
    Json(json!({"model": model, "faults": faults})).into_response()
}

async fn remove_faults(State(state): State<MockState>, Path(model): Path<String>) -> StatusCode {
    state.remove_faults(&model);
    StatusCode::NO_CONTENT
}

async fn clear(State(state): State<MockState>) -> StatusCode {
    state.clear();
    StatusCode::NO_CONTENT
}

async fn all_stats(State(state): State<MockState>) -> Response {
    Json(state.all_stats()).into_response()
}

async fn model_stats(State(state): State<MockState>, Path(model): Path<String>) -> Response {
    Json(state.stats(&model)).into_response()
}

fn invalid(detail: &str) -> Response {
    let body = json!({"error": format!("invalid fault plan: {detail}")});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}
